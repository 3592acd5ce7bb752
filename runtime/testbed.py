"""A chain on one machine: client -> middlebox -> server, each host a network namespace behind its
own ``dysco switch`` NIC and ``dysco agent``, the hosts joined by a router namespace.

::

    ns P-c (10.0.1.2) eth0 = P-c-host [dysco switch: 1 HOST, 2 NET] P-c-net = r-c  \\
    ns P-m (10.0.2.2) eth0 = P-m-host [dysco switch]               P-m-net = r-m  -- ns P-r (router)
    ns P-s (10.0.3.2) eth0 = P-s-host [dysco switch]               P-s-net = r-s  /

The NICs' ends and the switch and agent processes stay in the calling namespace; the middlebox
application is Linux IP forwarding in its namespace.  Offloads are off on every veth (the NIC sees
real, checksummed packets).  :class:`Plan` writes every command down once: the real-process test
runs them and docs/operations.md shows them (a test keeps the two equal).
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dysco.errors import UserError

SWITCH_READY = "softswitch: P4Runtime server listening on"
AGENT_READY = "dysco agent: ready"
START_S = 60.0
STOP_S = 10.0
OFFLOADS = "tx off rx off tso off gso off gro off"


@dataclass(frozen=True, slots=True)
class Host:
    key: str
    """One letter: c, m or s."""
    name: str
    subnet: int
    """10.0.SUBNET.0/24."""
    grpc_port: int

    @property
    def address(self) -> str:
        return f"10.0.{self.subnet}.2"

    @property
    def gateway(self) -> str:
        return f"10.0.{self.subnet}.1"


@dataclass(frozen=True, slots=True)
class Plan:
    prefix: str = "dy"
    ports: tuple[int, int, int] = (9561, 9562, 9563)
    p4: str = "p4src/dysco.p4"
    policies: str = "/tmp/dysco-chain.dysco"
    linger: float = 2.0
    dysco: str = "dysco"
    agents: str = "cms"
    """Keys of the hosts that run an agent.  Without the server's ("cm"), its NIC runs dysco.p4 on
    its own, the chain ends at the middlebox, and the router sends the server's replies through
    the middlebox so they come back along the chain (partial deployment)."""

    @property
    def hosts(self) -> tuple[Host, Host, Host]:
        c, m, s = self.ports
        return Host("c", "client", 1, c), Host("m", "mbox", 2, m), Host("s", "server", 3, s)

    def ns(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def mgmt(self, host: Host) -> str:
        return f"/tmp/{self.prefix}-{host.name}.sock"

    @property
    def policy_text(self) -> str:
        mbox = self.hosts[1].address
        return f"middlebox fw {{ instances {mbox}; }}\npolicy web: tcp dst port 80 -> fw\n"

    # ---- the commands ---------------------------------------------------------------------------

    def network(self) -> list[str]:
        """Namespaces, veth pairs, addresses, routes, forwarding, offloads off."""
        r = self.ns("r")
        cmds = [
            f"ip netns add {r}",
            f"ip -n {r} link set lo up",
            f"ip netns exec {r} sysctl -qw net.ipv4.ip_forward=1",
        ]
        for h in self.hosts:
            ns, host_end, net_end = (
                self.ns(h.key),
                f"{self.prefix}-{h.key}-host",
                f"{self.prefix}-{h.key}-net",
            )
            cmds += [
                f"ip netns add {ns}",
                f"ip -n {ns} link set lo up",
                f"ip link add {host_end} type veth peer name eth0 netns {ns}",
                f"ip link add {net_end} type veth peer name r-{h.key} netns {r}",
                f"ip -n {ns} addr add {h.address}/24 dev eth0",
                f"ip -n {r} addr add {h.gateway}/24 dev r-{h.key}",
            ]
            for end in (host_end, net_end):
                cmds += [f"sysctl -qw net.ipv6.conf.{end}.disable_ipv6=1", f"ethtool -K {end} {OFFLOADS}"]
                cmds.append(f"ip link set {end} up")
            cmds += [
                f"ip netns exec {ns} ethtool -K eth0 {OFFLOADS}",
                f"ip netns exec {r} ethtool -K r-{h.key} {OFFLOADS}",
                f"ip -n {ns} link set eth0 up",
                f"ip -n {r} link set r-{h.key} up",
                f"ip -n {ns} route add default via {h.gateway}",
            ]
        if "s" not in self.agents:
            mbox, server = self.hosts[1], self.hosts[2]
            cmds += [
                f"ip -n {r} rule add iif r-{server.key} lookup 100",
                f"ip -n {r} route add default via {mbox.address} table 100",
            ]
        m = self.ns("m")
        cmds += [
            f"ip netns exec {m} sysctl -qw net.ipv4.ip_forward=1",
            f"ip netns exec {m} sysctl -qw net.ipv4.conf.all.send_redirects=0",
            f"ip netns exec {m} sysctl -qw net.ipv4.conf.eth0.send_redirects=0",
        ]
        return cmds

    def with_agent(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.key in self.agents)

    def switch(self, h: Host) -> str:
        # a NIC without an agent loads the program at start; the others get it from their agent
        mode, program = ("--no-p4", "") if h.key in self.agents else ("", f" {self.p4}")
        ports = f"-i 1@{self.prefix}-{h.key}-host -i 2@{self.prefix}-{h.key}-net"
        start = f"{self.dysco} -v switch {mode} {ports}".replace("  ", " ")
        return f"{start} -- --cpu-port 255 --grpc-server-addr 127.0.0.1:{h.grpc_port}{program}"

    def agent(self, h: Host) -> str:
        options = ""
        if h.key == "c":
            options = f" --policies {self.policies}" + "".join(
                f" --agentless 10.0.{x.subnet}.0/24" for x in self.hosts if x.key not in self.agents
            )
        return (
            f"{self.dysco} -v agent --p4runtime 127.0.0.1:{h.grpc_port} --address {h.address} --name {h.name}"
            f"{options} --p4 {self.p4} --linger {self.linger:g} --mgmt {self.mgmt(h)}"
        )

    def teardown(self) -> list[str]:
        # deleting this namespace's ends removes each pair at once; a namespace goes asynchronously
        links = [f"ip link del {self.prefix}-{h.key}-{side}" for h in self.hosts for side in ("host", "net")]
        return [*links, *(f"ip netns del {self.ns(k)}" for k in ("c", "m", "s", "r"))]

    def script(self) -> str:
        """Everything above as a shell session (docs/operations.md shows this text)."""
        lines = ["# the network", *self.network(), "", "# the policy of the client's agent"]
        lines += [f"cat > {self.policies} <<'EOF'", self.policy_text.rstrip("\n"), "EOF", ""]
        lines.append("# three NICs, then their agents (each in its own terminal, or with &)")
        lines += [self.switch(h) for h in self.hosts]
        lines += [self.agent(h) for h in self.with_agent()]
        return "\n".join(lines) + "\n"


def run(cmd: str) -> None:
    proc = subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"{cmd}: {proc.stderr.strip() or proc.stdout.strip()}")


def _pump(stream: IO[str], lines: queue.Queue[str], log: IO[str]) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        lines.put(line)


class Process:
    """A ``dysco`` process whose output is logged to ``log`` and whose lines can be waited for."""

    def __init__(self, argv: list[str], log: Path, ready: str) -> None:
        self.argv = argv
        self.log_path = log
        self.ready = ready
        self.lines: queue.Queue[str] = queue.Queue()
        self.ready_line = ""
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Process:
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        self._thread = threading.Thread(
            target=_pump,
            args=(self.proc.stdout, self.lines, self._log),
            name=f"pump-{self.argv[1]}",
            daemon=True,
        )
        self._thread.start()
        try:
            self.ready_line = self.wait_for(self.ready, START_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_for(self, text: str, timeout: float) -> str:
        """The next output line containing ``text``; raises UserError after ``timeout`` seconds."""
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if text in line:
                    return line
        except queue.Empty:
            raise UserError(
                f"{' '.join(self.argv[:3])}: no line with {text!r} in {timeout}s; see {self.log_path}"
            ) from None

    def send_line(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=STOP_S)
        if self._log is not None:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


class SwitchProcess(Process):
    """``dysco switch --no-p4`` on ``address``, optionally with interfaces."""

    def __init__(self, address: str, *, log: Path, interfaces: tuple[str, ...] = ()) -> None:
        argv = [sys.executable, "-m", "dysco", "-v", "switch", "--no-p4"]
        for i, iface in enumerate(interfaces, start=1):
            argv += ["-i", f"{i}@{iface}"]
        super().__init__([*argv, "--", "--cpu-port", "255", "--grpc-server-addr", address], log, SWITCH_READY)
        self.address = address


@dataclass
class Testbed:
    """The plan carried out: network, switches and agents; everything goes again on exit."""

    __test__ = False  # not a pytest class

    plan: Plan
    logs: Path

    def __post_init__(self) -> None:
        self.switches: list[Process] = []
        self.agents: list[Process] = []

    def _argv(self, cmd: str) -> list[str]:
        argv = shlex.split(cmd)
        if argv[0] == self.plan.dysco:
            argv = [sys.executable, "-m", "dysco", *argv[1:]]
        return argv

    def __enter__(self) -> Testbed:
        try:
            for cmd in self.plan.teardown():  # leftovers of an interrupted run
                subprocess.run(shlex.split(cmd), capture_output=True, check=False)
            for cmd in self.plan.network():
                run(cmd)
            Path(self.plan.policies).write_text(self.plan.policy_text)
            for h in self.plan.hosts:
                p = Process(self._argv(self.plan.switch(h)), self.logs / f"switch-{h.name}.log", SWITCH_READY)
                self.switches.append(p)
                p.__enter__()
            for h in self.plan.with_agent():
                p = Process(self._argv(self.plan.agent(h)), self.logs / f"agent-{h.name}.log", AGENT_READY)
                self.agents.append(p)
                p.__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for p in [*reversed(self.agents), *reversed(self.switches)]:
            p.__exit__()
        for cmd in self.plan.teardown():
            subprocess.run(shlex.split(cmd), capture_output=True, check=False)
        Path(self.plan.policies).unlink(missing_ok=True)

    def netns_argv(self, key: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.plan.ns(key), *argv]

    def agent_of(self, name: str) -> Process:
        return self.agents[[h.name for h in self.plan.with_agent()].index(name)]

    def hosts(self) -> Iterator[Host]:
        """The hosts that run an agent."""
        yield from self.plan.with_agent()
