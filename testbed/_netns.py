"""A testbed on one machine: hosts (clients, middleboxes, servers; :func:`load_topology` reads them
from a TOML file, :meth:`Plan.chain` is client -> middlebox -> server), each a network namespace
behind its own ``dysco switch`` NIC and (optionally) ``dysco agent``, joined by a router namespace.

::

    ns P-c (10.0.1.2) eth0 = P-c-host [dysco switch: 1 HOST, 2 NET] P-c-net = r-c  \\
    ns P-m (10.0.2.2) eth0 = P-m-host [dysco switch]               P-m-net = r-m  -- ns P-r (router)
    ns P-s (10.0.3.2) eth0 = P-s-host [dysco switch]               P-s-net = r-s  /

The NICs' ends and the switch and agent processes stay in the calling namespace; a middlebox
runs Linux IP forwarding, an iptables ruleset, NAT (MASQUERADE) or HAProxy in its namespace.
Offloads are off on every veth (the NIC sees
real, checksummed packets).  :class:`Plan` writes every command down once: the real-process test
runs them and docs/operations.md shows them (a test keeps the two equal).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import shutil
import signal
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dysco.errors import UserError
from dysco.softswitch.server.cli import default_backend
from dysco.testbed._etcd import (
    EtcdProcess,
    client_tls,
    make_key_file,
    make_pki,
    make_users,
    member_argvs,
    start_etcd,
)
from dysco.testbed._process import AGENT_READY, SWITCH_READY, Process, run

_BACKEND = re.compile(r", (\w+) backend$")
"""The back end at the end of a switch's ready line."""
OFFLOADS = {False: "tx off rx off tso off gso off gro off", True: "tx on rx on tso on gso on gro on"}
"""``ethtool -K`` arguments for every veth end: offloads off, or on as a real NIC has them."""
BACKENDS = ("ebpf", "python")
ETCD_IN_FORCE = " in force: "
"""An agent of an etcd testbed is up once it printed that its set from etcd is in force (its
other lines, e.g. the key ring's, do not say this)."""


ROLES = ("client", "middlebox", "server")
KINDS = ("forward", "iptables", "nat", "haproxy")
CHAIN_POLICY = "middlebox fw { instances $mbox; }\npolicy web: tcp dst port 80 -> fw\n"
"""The chain's policy; ``$NAME`` stands for the address of the host called NAME."""
FIREWALL_RULES = (
    "-P FORWARD DROP",
    "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-A FORWARD -p tcp --dport 80 -j ACCEPT",
)
"""An ``iptables`` middlebox's ruleset unless the topology gives one."""
HAPROXY_LISTEN = 10080


@dataclass(frozen=True, slots=True)
class Host:
    key: str
    """Short (c, m, s, m2, ...): names the namespace and the veths, which hold 15 characters."""
    name: str
    subnet: int
    """10.0.SUBNET.0/24."""
    grpc_port: int
    role: str = "client"
    agent: bool = True
    kind: str = "forward"
    """A middlebox's application: Linux forwarding, an iptables firewall, NAT, or HAProxy."""
    rules: tuple[str, ...] = ()
    """iptables arguments, one rule each (kind iptables)."""
    port: int = 80
    """The TCP port HAProxy intercepts and connects to on the (first) server."""
    p4: str = ""
    """A NIC without an agent runs this program (default: the plan's)."""
    sysctls: tuple[str, ...] = ()
    """``NAME=VALUE`` settings in the host's namespace (e.g. conntrack's)."""
    policy: str = ""
    """The policy of this host's agent (the first client's is the plan's)."""
    agentless: tuple[str, ...] = ()
    """More networks the agent treats as agentless (chains toward them end at their last hop)."""
    splice: bool = False
    """The agent watches handshakes so that a proxy on this host can splice (``--splice``)."""
    state_hook: str = ""
    """The middlebox's state hook (``--state-hook``, in the host's namespace): ``conntrack``."""
    group: str = ""
    """The agent's group in the fleet (``--group``; with the plan's etcd)."""

    @property
    def address(self) -> str:
        return f"10.0.{self.subnet}.2"

    @property
    def gateway(self) -> str:
        return f"10.0.{self.subnet}.1"


@dataclass(frozen=True, slots=True)
class Plan:
    hosts: tuple[Host, ...]
    prefix: str = "dy"
    p4: str = "p4src/dysco.p4"
    policies: str = "/tmp/dysco-chain.dysco"
    policy: str = CHAIN_POLICY
    linger: float = 2.0
    dysco: str = "dysco"
    backend: str = field(default_factory=lambda: default_backend(os.environ)[0])
    """The NICs' back end: ebpf where it loads (``$DYSCO_BACKEND`` overrides), else python."""
    offloads: bool | None = None
    """TSO/GSO/GRO and checksum offload on every veth end; None: on with ebpf, off with python
    (the python NIC's raw sockets carry frames up to the MTU only)."""
    nics: bool = True
    """False: no NICs and no agents, each host's eth0 joined straight to the router (the plain
    path that benchmarks compare with)."""
    etcd: bool = False
    """A single-node etcd for the agents (docs/fleet.md): the policies go there, not to files."""
    etcd_tls: bool = False
    """The etcd speaks TLS and wants client certificates (a throwaway CA in :attr:`etcd_pki`)."""
    etcd_ports: tuple[int, ...] = (2379, 2380)
    """Its client and peer ports on 127.0.0.1 (a pair per member)."""
    etcd_members: int = 1
    """Members of the etcd cluster (1 or 3); the agents and fleet commands are given them all."""
    etcd_auth: bool = False
    """etcd's access control on: a user per agent (its own scope), root for the operator."""
    keys: bool = False
    """The agents authenticate their messages (``--keys``); with etcd the ring is in etcd too."""

    def __post_init__(self) -> None:
        if len(self.etcd_ports) != 2 * self.etcd_members:
            raise UserError(f"etcd: {self.etcd_members} members need {2 * self.etcd_members} ports")
        if self.backend not in BACKENDS:
            raise UserError(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}")
        if self.offloads and self.backend == "python" and self.nics:
            raise UserError("offloads on need the ebpf backend (the python NIC carries frames up to the MTU)")

    @property
    def offloads_on(self) -> bool:
        return self.backend == "ebpf" if self.offloads is None else self.offloads

    @classmethod
    def chain(cls, agents: str = "cms", ports: tuple[int, int, int] = (9561, 9562, 9563), **kw: Any) -> Plan:
        """Client -> middlebox (Linux forwarding) -> server.  ``agents``: the keys of the hosts that
        run an agent.  Without the server's ("cm"), its NIC runs dysco.p4 on its own, the chain ends
        at the middlebox, and the router sends the server's replies through the middlebox so they
        come back along the chain (partial deployment)."""
        c, m, s = ports
        hosts = (
            Host("c", "client", 1, c, "client", "c" in agents),
            Host("m", "mbox", 2, m, "middlebox", "m" in agents),
            Host("s", "server", 3, s, "server", "s" in agents),
        )
        return cls(hosts, **kw)

    @property
    def agents(self) -> str:
        return "".join(h.key for h in self.hosts if h.agent)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if name in (h.name, h.key):
                return h
        raise UserError(f"no host {name!r} in the topology")

    def role(self, role: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.role == role)

    def ns(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def mgmt(self, host: Host) -> str:
        return f"/tmp/{self.prefix}-{host.name}.sock"

    @property
    def etcd_url(self) -> str:
        scheme = "https" if self.etcd_tls else "http"
        return ",".join(f"{scheme}://127.0.0.1:{port}" for port in self.etcd_ports[::2])

    @property
    def etcd_users(self) -> str:
        """The directory of the etcd users' password files (``root`` and one per agent)."""
        return f"/tmp/{self.prefix}-etcd-users"

    @property
    def key_file(self) -> str:
        return f"/tmp/{self.prefix}-keys.txt"

    @property
    def etcd_pki(self) -> str:
        return f"/tmp/{self.prefix}-etcd-pki"

    def etcd_client(self, user: str = "root") -> list[str]:
        """A fleet client's options for this etcd: ``--etcd URL``, its certificates and, with
        access control, ``user``'s credentials (the operator's: root)."""
        tls = client_tls(Path(self.etcd_pki)) if self.etcd_tls else []
        auth = (
            ["--etcd-user", user, "--etcd-password-file", f"{self.etcd_users}/{user}"]
            if self.etcd_auth
            else []
        )
        return ["--etcd", self.etcd_url, *tls, *auth]

    @property
    def etcd_data(self) -> str:
        return f"/tmp/{self.prefix}-etcd"

    def etcd_policies(self) -> dict[str, str]:
        """Key (under /dysco/) -> policy text: every agent's own policy under
        ``policies/agent/NAME``, and an empty ``policies/all`` so that each agent has a set from
        etcd in force (and says so) before the testbed is up."""
        keys = {"policies/all": ""}
        for name, (_, text) in self.policy_files().items():
            keys[f"policies/agent/{name}"] = text
        return keys

    def haproxy_files(self, host: Host) -> tuple[str, str]:
        """HAProxy's configuration and pid file."""
        base = f"/tmp/{self.prefix}-{host.name}.haproxy"
        return f"{base}.cfg", f"{base}.pid"

    @property
    def policy_text(self) -> str:
        return self._substitute(self.policy)

    def _substitute(self, text: str) -> str:
        try:
            return string.Template(text).substitute({h.name: h.address for h in self.hosts})
        except (KeyError, ValueError) as exc:
            raise UserError(f"the policy names no host {exc}") from None

    def policy_files(self) -> dict[str, tuple[str, str]]:
        """Host name -> (policy file, its text) for every agent with a policy."""
        clients = self.role("client")
        files = {clients[0].name: (self.policies, self.policy_text)} if clients else {}
        stem = self.policies.removesuffix(".dysco")
        for h in self.with_agent():
            if h.policy:
                files[h.name] = (f"{stem}-{h.name}.dysco", self._substitute(h.policy))
        return files

    # ---- the commands ---------------------------------------------------------------------------

    def network(self) -> list[str]:
        """Namespaces, veth pairs, addresses, routes, forwarding, offloads, middlebox rules."""
        r = self.ns("r")
        offloads = OFFLOADS[self.offloads_on]
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
            cmds += [f"ip netns add {ns}", f"ip -n {ns} link set lo up"]
            if self.nics:
                cmds += [
                    f"ip link add {host_end} type veth peer name eth0 netns {ns}",
                    f"ip link add {net_end} type veth peer name r-{h.key} netns {r}",
                ]
            else:
                cmds.append(f"ip -n {ns} link add eth0 type veth peer name r-{h.key} netns {r}")
            cmds += [
                f"ip -n {ns} addr add {h.address}/24 dev eth0",
                f"ip -n {r} addr add {h.gateway}/24 dev r-{h.key}",
            ]
            for end in (host_end, net_end) if self.nics else ():
                cmds += [f"sysctl -qw net.ipv6.conf.{end}.disable_ipv6=1", f"ethtool -K {end} {offloads}"]
                cmds.append(f"ip link set {end} up")
            cmds += [
                f"ip netns exec {ns} ethtool -K eth0 {offloads}",
                f"ip netns exec {r} ethtool -K r-{h.key} {offloads}",
                f"ip -n {ns} link set eth0 up",
                f"ip -n {r} link set r-{h.key} up",
                f"ip -n {ns} route add default via {h.gateway}",
            ]
        cmds += self._routes()
        for m in self.role("middlebox"):
            ns = self.ns(m.key)
            cmds += [
                f"ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1",
                f"ip netns exec {ns} sysctl -qw net.ipv4.conf.all.send_redirects=0",
                f"ip netns exec {ns} sysctl -qw net.ipv4.conf.eth0.send_redirects=0",
            ]
            cmds += [f"ip netns exec {ns} iptables {rule}" for rule in self._rules(m)]
        for h in self.hosts:
            cmds += [f"ip netns exec {self.ns(h.key)} sysctl -qw {setting}" for setting in h.sysctls]
        return cmds

    def _routes(self) -> list[str]:
        """Replies of servers without an agent go back through the last middlebox."""
        mboxes = self.role("middlebox")
        agentless = [s for s in self.role("server") if not s.agent]
        if not (mboxes and agentless):
            return []
        r = self.ns("r")
        cmds = [f"ip -n {r} rule add iif r-{s.key} lookup 100" for s in agentless]
        return [*cmds, f"ip -n {r} route add default via {mboxes[-1].address} table 100"]

    def _rules(self, m: Host) -> tuple[str, ...]:
        if m.kind == "iptables":
            return m.rules or FIREWALL_RULES
        if m.kind == "nat":
            return ("-t nat -A POSTROUTING -o eth0 -p tcp -j MASQUERADE",)
        if m.kind == "haproxy":
            redirect = f"-t nat -A PREROUTING -i eth0 -p tcp --dport {m.port} -j REDIRECT"
            return (f"{redirect} --to-ports {HAPROXY_LISTEN}",)
        return ()

    def haproxy_config(self, m: Host) -> str:
        servers = self.role("server")
        if not servers:
            raise UserError(f"{m.name}: HAProxy needs a server to connect to")
        return (
            "global\n    maxconn 4096\ndefaults\n    mode tcp\n    timeout connect 10s\n"
            "    timeout client 120s\n    timeout server 120s\n"
            f"frontend intercepted\n    bind {m.address}:{HAPROXY_LISTEN}\n    default_backend server\n"
            f"backend server\n    server {servers[0].name} {servers[0].address}:{m.port}\n"
        )

    def apps(self) -> list[str]:
        """Middlebox applications that are processes (HAProxy, as a daemon writing its pid file)."""
        return [
            f"ip netns exec {self.ns(m.key)} haproxy -D -p {self.haproxy_files(m)[1]} "
            f"-f {self.haproxy_files(m)[0]}"
            for m in self.role("middlebox")
            if m.kind == "haproxy"
        ]

    def with_agent(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.agent and self.nics)

    def with_nic(self) -> tuple[Host, ...]:
        return self.hosts if self.nics else ()

    def switch(self, h: Host) -> str:
        # a NIC without an agent loads the program at start; the others get it from their agent
        mode, program = ("--no-p4", "") if h.agent else ("", f" {h.p4 or self.p4}")
        ports = f"-i 1@{self.prefix}-{h.key}-host -i 2@{self.prefix}-{h.key}-net"
        start = f"{self.dysco} -v switch --backend {self.backend} {mode} {ports}".replace("  ", " ")
        return f"{start} -- --cpu-port 255 --grpc-server-addr 127.0.0.1:{h.grpc_port}{program}"

    def agent(self, h: Host) -> str:
        options = ""
        policy = self.policy_files().get(h.name)
        if self.etcd:  # its policies come from etcd
            options = " " + " ".join(self.etcd_client(h.name)) + (f" --group {h.group}" if h.group else "")
        elif policy is not None:
            options = f" --policies {policy[0]}"
        if self.keys:
            options += f" --keys {self.key_file}"
        if h.role == "client":
            options += "".join(f" --agentless 10.0.{x.subnet}.0/24" for x in self.hosts if not x.agent)
        options += "".join(f" --agentless {net}" for net in h.agentless)
        if h.splice:
            options += " --splice"
        if h.state_hook:
            options += f" --state-hook {h.state_hook} --state-netns {self.ns(h.key)}"
        return (
            f"{self.dysco} -v agent --p4runtime 127.0.0.1:{h.grpc_port} --address {h.address} --name {h.name}"
            f"{options} --p4 {self.p4} --linger {self.linger:g} --mgmt {self.mgmt(h)}"
        )

    def teardown(self) -> list[str]:
        # deleting this namespace's ends removes each pair at once; a namespace goes asynchronously
        links = [
            f"ip link del {self.prefix}-{h.key}-{side}" for h in self.with_nic() for side in ("host", "net")
        ]
        return [
            *links,
            *(f"ip netns del {self.ns(h.key)}" for h in self.hosts),
            f"ip netns del {self.ns('r')}",
        ]

    def etcd_commands(self) -> list[str]:
        """The etcd of ``etcd = true`` and its policy keys, as shell commands."""
        pki = Path(self.etcd_pki) if self.etcd_tls else None
        lines = [f"# a throwaway CA and certificates in {pki} (testbed/_etcd.py make_pki)"] if pki else []
        lines += [f"# the agents' key file {self.key_file}, mode 600, and keys/ring"] if self.keys else []
        lines += [
            " ".join(map(shlex.quote, a)) + " &"
            for a in member_argvs(Path(self.etcd_data), self.etcd_ports, pki)
        ]
        tls = f" --cacert {pki}/ca.crt --cert {pki}/client.crt --key {pki}/client.key" if pki else ""
        for key, text in self.etcd_policies().items():
            put = f"ETCDCTL_API=3 etcdctl --endpoints {self.etcd_url}{tls} put /dysco/{key}"
            lines += [f"{put} <<'EOF'", text.rstrip("\n"), "EOF"] if text else [f"{put} ''"]
        if self.etcd_auth:
            lines.append(
                f"# a user and role per agent, then auth enable (testbed/_etcd.py): {self.etcd_users}"
            )
        return lines

    def script(self) -> str:
        """Everything above as a shell session (docs/operations.md shows this text)."""
        lines = ["# the network", *self.network(), ""]
        if self.etcd:
            lines += ["# the fleet's etcd and the agents' policies in it", *self.etcd_commands(), ""]
        for name, (path, text) in self.policy_files().items() if not self.etcd else ():
            lines += [
                f"# the policy of the {name}'s agent"
                if name != "client"
                else "# the policy of the client's agent"
            ]
            lines += [f"cat > {path} <<'EOF'", text.rstrip("\n"), "EOF", ""]
        lines.append(
            f"# {_count(len(self.hosts))} NICs, then their agents (each in its own terminal, or with &)"
        )
        lines += [self.switch(h) for h in self.with_nic()]
        lines += [self.agent(h) for h in self.with_agent()]
        return "\n".join(lines) + "\n"


def _count(n: int) -> str:
    return ("one", "two", "three", "four", "five", "six")[n - 1] if 1 <= n <= 6 else str(n)


def stop_apps(plan: Plan) -> None:
    """Stop the middlebox daemons a (maybe failed) start left, by the pids in their pid files."""
    for m in plan.role("middlebox"):
        if m.kind != "haproxy":
            continue
        cfg, pidfile = (Path(f) for f in plan.haproxy_files(m))
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            for pid in pidfile.read_text().split():
                os.kill(int(pid), signal.SIGTERM)
        pidfile.unlink(missing_ok=True)
        cfg.unlink(missing_ok=True)


def clean(plan: Plan) -> None:
    """Everything the plan creates goes, whatever is left of it: daemons, links, namespaces, files."""
    stop_apps(plan)
    for cmd in plan.teardown():
        subprocess.run(shlex.split(cmd), capture_output=True, check=False)
    Path(plan.policies).unlink(missing_ok=True)
    for path, _ in plan.policy_files().values():
        Path(path).unlink(missing_ok=True)
    if plan.etcd:
        shutil.rmtree(plan.etcd_data, ignore_errors=True)
        shutil.rmtree(plan.etcd_pki, ignore_errors=True)
        shutil.rmtree(plan.etcd_users, ignore_errors=True)
    Path(plan.key_file).unlink(missing_ok=True)


@dataclass
class Testbed:
    """The plan carried out: network, switches, agents and middlebox daemons; everything goes again
    on exit."""

    __test__ = False  # not a pytest class

    plan: Plan
    logs: Path

    def __post_init__(self) -> None:
        self.switches: list[Process] = []
        self.agents: list[Process] = []
        self.exits: queue.Queue[Process] = queue.Queue()
        """Switches and agents that exited while the testbed was up, in the order they did."""
        self.etcd: EtcdProcess | None = None
        """The etcd (its first member)."""
        self.etcd_members: list[EtcdProcess] = []
        self._stopping = False

    def _start(self, kind: str, host: Host, *, append: bool = False) -> Process:
        cmd, ready = (
            (self.plan.switch(host), SWITCH_READY)
            if kind == "switch"
            else (self.plan.agent(host), ETCD_IN_FORCE if self.plan.etcd else AGENT_READY)
        )
        p = Process(
            self._argv(cmd),
            self.logs / f"{kind}-{host.name}.log",
            ready,
            name=f"{kind} {host.name}",
            on_exit=self._exited,
            append=append,
        )
        p.__enter__()  # a process that does not come up stops itself
        return p

    def _exited(self, p: Process) -> None:
        """A switch or agent ended (its reader thread has reaped it): said at once on standard
        error (the keeper's log for `dysco testbed up`) and queued for :meth:`wait_exit`."""
        if self._stopping:
            return
        print(
            f"testbed: {p.name} exited with code {p.returncode}; see {p.log_path}",
            file=sys.stderr,
            flush=True,
        )
        self.exits.put(p)

    def wait_exit(self, timeout: float) -> Process:
        """The next switch or agent to exit while the testbed is up."""
        try:
            return self.exits.get(timeout=timeout)
        except queue.Empty:
            raise UserError(f"no switch or agent exited within {timeout}s") from None

    def restart(self, name: str) -> Process:
        """Start ``"agent HOST"`` or ``"switch HOST"`` again (stopped first if it still runs),
        with the same command; its log goes on after the old one's."""
        kind, _, host_name = name.partition(" ")
        if kind not in ("agent", "switch"):
            raise UserError(f"restart {name!r}: say 'agent HOST' or 'switch HOST'")
        procs = self.agents if kind == "agent" else self.switches
        hosts = list(self.plan.with_agent() if kind == "agent" else self.plan.with_nic())
        names = [h.name for h in hosts]
        if host_name not in names:
            raise UserError(f"restart {name!r}: no {kind} on a host of that name ({', '.join(names)})")
        i = names.index(host_name)
        procs[i].__exit__()
        procs[i] = self._start(kind, hosts[i], append=True)
        return procs[i]

    def _argv(self, cmd: str) -> list[str]:
        argv = shlex.split(cmd)
        if argv[0] == self.plan.dysco:
            argv = [sys.executable, "-m", "dysco", *argv[1:]]
        return argv

    def __enter__(self) -> Testbed:
        try:
            clean(self.plan)  # leftovers of an interrupted run
            for cmd in self.plan.network():
                run(cmd)
            keys = make_key_file(Path(self.plan.key_file)) if self.plan.keys else {}
            if self.plan.etcd:
                p = self.plan
                pki = make_pki(Path(p.etcd_pki)) if p.etcd_tls else None
                agents = {h.name: h.group for h in p.with_agent()}
                users, root = make_users(Path(p.etcd_users), agents) if p.etcd_auth else (None, "")
                self.etcd_members = start_etcd(
                    Path(p.etcd_data), p.etcd_ports, self.logs / "etcd.log", {**p.etcd_policies(), **keys},
                    pki, users, root,
                )  # fmt: skip
                self.etcd = self.etcd_members[0]
            else:
                for path, text in self.plan.policy_files().values():
                    Path(path).write_text(text)
            for h in self.plan.with_nic():
                self.switches.append(self._start("switch", h))
            for h in self.plan.with_agent():
                self.agents.append(self._start("agent", h))
            for m in self.plan.role("middlebox"):
                if m.kind == "haproxy":
                    Path(self.plan.haproxy_files(m)[0]).write_text(self.plan.haproxy_config(m))
            for cmd in self.plan.apps():  # a daemon returns once it listens
                run(cmd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        stop_apps(self.plan)
        for p in [*reversed(self.agents), *reversed(self.switches)]:
            p.__exit__()
        for m in {id(m): m for m in [*self.etcd_members, *([self.etcd] if self.etcd else [])]}.values():
            m.__exit__()
        clean(self.plan)

    def netns_argv(self, key: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.plan.ns(self.plan.host(key).key), *argv]

    def carried_by(self) -> str:
        """Which back end the NICs run, as their switches said when they came up, and the
        offloads: ``ebpf backend, offloads on``."""
        said = sorted({m.group(1) for p in self.switches if (m := _BACKEND.search(p.ready_line))})
        backends = " and ".join(said) or "unknown"
        return f"{backends} backend, offloads {'on' if self.plan.offloads_on else 'off'}"

    def agent_of(self, name: str) -> Process:
        return self.agents[[h.name for h in self.plan.with_agent()].index(name)]

    def hosts(self) -> Iterator[Host]:
        """The hosts that run an agent."""
        yield from self.plan.with_agent()
