"""``dysco demo`` on the namespace testbed (needs root): examples/splice.toml's client, proxy and
server, each behind its own ``dysco switch`` NIC and ``dysco agent``; examples/splice_proxy.py
relays; ``dysco ctl splice`` removes it from each session, one after the other, mid-transfer.

The traffic is :mod:`dysco.testbed._demo_peer` in the client's and the server's namespaces; its
byte counts (every 0.1 s) give the goodput, its digests the verification.  The reconfiguration
time is what the proxy's agent measures and answers to ``dysco ctl splice --json``: from the
request's arrival to its report that the old path through the proxy is gone.  Everything started
here stops, and the testbed is taken down, also on an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from dysco.errors import UserError
from dysco.testbed._demo_story import (
    AFTER_S,
    ProxyUse,
    Say,
    Splice,
    Story,
    Transfer,
    progress_line,
    splice_points,
)
from dysco.testbed._netns import Plan, Testbed
from dysco.testbed._process import Process
from dysco.testbed._topology import load_topology

PORT = 9000
"""The port examples/splice.toml's policies send through the proxy."""
CTL_TIMEOUT_S = 30.0
WAIT_S = 60.0
"""For one line the demo waits for (a process ready, a stats line)."""
TRANSFER_S = 120.0
"""A transfer not done by then is a failure."""
NO_TIMESTAMPS = "net.ipv4.tcp_timestamps=0"
"""The demo switches timestamps off unless asked (``--tcp-timestamps``).  It had to while the
anchors' timestamp translation ran ahead of the proxy's clock by the time since the handshakes
and the receivers' PAWS check dropped what the proxy still sent on the old path (a session
spliced N seconds after it began stalled for about N seconds; fixed in 4a9b356, checked by
tests/runtime/test_splice_sim.py); the default stays until the demo test has run with
timestamps on long enough."""
_ACCEPTED = re.compile(r"accepted \d+ (\S+):(\d+) -> (\S+) \(via (\S+)\)")
_STATS = re.compile(r"up (\d+) down (\d+) cpu_s ([\d.]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def plan_for(root: Path, prefix: str, logs: Path, timestamps: bool = False) -> Plan:
    """examples/splice.toml with this run's names, free P4Runtime ports and paths; TCP timestamps
    off on every host unless ``timestamps`` (see :data:`NO_TIMESTAMPS`)."""
    path = root / "examples" / "splice.toml"
    n = path.read_text().count("[[host]]")
    plan = load_topology(
        path,
        prefix=prefix,
        ports=tuple(free_port() for _ in range(n)),
        p4=str(root / "p4src" / "dysco.p4"),
        policies=str(logs / "policy.dysco"),
        linger=0.5,
    )
    if timestamps:
        return plan
    hosts = tuple(replace(h, sysctls=(*h.sysctls, NO_TIMESTAMPS)) for h in plan.hosts)
    return replace(plan, hosts=hosts)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The proxy's stats line: bytes relayed both ways and its CPU time, at ``t``."""

    t: float
    relayed: int
    cpu_s: float


class NetDemo:
    def __init__(self, root: Path, plan: Plan, logs: Path, sessions: int, size: int, say: Say) -> None:
        self.root, self.plan, self.logs, self.say = root, plan, logs, say
        self.sessions = sessions
        self.size = size
        stamps = "" if all(NO_TIMESTAMPS in h.sysctls for h in plan.hosts) else ", TCP timestamps on"
        self.story = Story(
            world=f"testbed: 3 namespaces, dysco switch NICs, real Linux TCP{stamps}",
            short="testbed",
            measured="time: the proxy's agent, from the splice request to the old path gone (ctl --json)",
            sessions=sessions,
            size_up=0,
            size_down=0,
        )
        self.points = splice_points(sessions, size)
        self.start = 0.0
        self.client_port: dict[int, int] = {}
        """Session -> the client's port."""
        self.legs: dict[int, tuple[str, str]] = {}
        """The client's port -> the proxy's two connections (--in, --out of dysco ctl splice)."""
        self.up = [0] * sessions
        self.down = [0] * sessions
        self.done: dict[str, dict[int, list[str]]] = {"client": {}, "server": {}}
        self.finished: dict[int, float] = {}
        self.errors: list[str] = []
        self.splicing: dict[int, Future[Splice]] = {}
        self.snapshots: list[Snapshot] = []
        self.named: dict[str, Snapshot] = {}
        """base (before the transfer), first (at the first splice request), last (all splices
        answered), end (the transfer over)."""
        self.told: set[int] = set()

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> Story:
        proxy_h, server_h = self.plan.role("middlebox")[0], self.plan.role("server")[0]
        with Testbed(self.plan, self.logs) as tb:
            nics = tb.carried_by()
            self.story.world = self.story.world.replace("dysco switch NICs", f"dysco switch NICs ({nics})")
            hosts = ", ".join(h.name for h in self.plan.hosts)
            self.say(f"testbed up: {hosts}; NICs on the {nics} (logs in {self.logs})")
            mgmt = self.plan.mgmt(proxy_h)
            script = str(self.root / "examples" / "splice_proxy.py")
            listen = ["--listen", f"{proxy_h.address}:{PORT}", "--server", f"{server_h.address}:{PORT}"]
            proxy_argv = tb.netns_argv("proxy", [sys.executable, script, *listen, "--mgmt", mgmt])
            peer = [sys.executable, "-m", "dysco.testbed._demo_peer"]
            server_argv = tb.netns_argv("server", [*peer, "server", str(PORT), str(self.sessions)])
            client_argv = tb.netns_argv(
                "client",
                [
                    *peer,
                    "client",
                    proxy_h.address,
                    str(PORT),
                    str(self.sessions),
                ],
            )
            with (
                Process(proxy_argv, self.logs / "proxy.log", "listening") as proxy,
                Process(server_argv, self.logs / "server.log", "listening") as server,
                ThreadPoolExecutor(max_workers=self.sessions, thread_name_prefix="splice") as pool,
            ):
                self.snapshot(proxy, "base")
                self.start = time.monotonic()
                with Process(client_argv, self.logs / "client.log", "started") as client:
                    self.transfer(proxy, server, client, pool, mgmt)
                self.snapshot(proxy, "end")
        return self.finish()

    def transfer(
        self, proxy: Process, server: Process, client: Process, pool: ThreadPoolExecutor, mgmt: str
    ) -> None:
        next_line = 1.0
        deadline = self.start + TRANSFER_S
        stop_at: float | None = None
        peers = {"server": server, "client": client}
        while len(self.done["client"]) + len(self.done["server"]) < 2 * self.sessions:
            # wait on a peer that has more to say; the others' lines are taken as they come
            who = "server" if len(self.done["server"]) < self.sessions else "client"
            try:
                line = peers[who].lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if line is None:
                raise UserError(f"the {who} ended early; see {self.logs / (who + '.log')}")
            self.on_line(who, line)
            for other, p in (*peers.items(), ("proxy", proxy)):
                for more in p.drain():
                    self.on_line(other, more)
            if proxy.proc is not None and proxy.proc.poll() is not None:
                raise UserError(f"the proxy ended early; see {self.logs / 'proxy.log'}")
            self.maybe_splice(proxy, pool, mgmt)
            self.report_splices(proxy)
            now = time.monotonic() - self.start
            if stop_at is None and len(self.told) == self.sessions:
                stop_at = now + AFTER_S
            if stop_at is not None and now >= stop_at:
                self.say(f"{now:6.2f} s  the client finishes its sessions")
                client.send_line("stop")
                stop_at = float("inf")
            if now >= next_line:
                self.story.splices = self.splice_list()
                self.say(progress_line(self.story, now))
                next_line += 1.0
            if len(self.errors) or time.monotonic() > deadline:
                what = "; ".join(self.errors) or f"not done in {TRANSFER_S:g} s"
                raise UserError(f"the transfer failed: {what}; see {self.logs}")
        for f in list(self.splicing.values()):
            f.result()
        self.report_splices(proxy)

    def on_line(self, who: str, line: str) -> None:
        try:
            self._on_line(who, line)
        except (ValueError, IndexError):
            self.errors.append(f"unexpected output from the {who}: {line.strip()[:200]!r}")

    def _on_line(self, who: str, line: str) -> None:
        words = line.split()
        if not words:
            return
        if who == "proxy":
            m = _ACCEPTED.search(line)
            if m:
                self.legs[int(m.group(2))] = (
                    f"{m.group(1)}:{m.group(2)}-{self.plan.role('middlebox')[0].address}:{PORT}",
                    f"{m.group(4)}-{m.group(3)}",
                )
            m = _STATS.search(line)
            if words[0] == "stats" and m:
                t = time.monotonic() - self.start if self.start else 0.0
                self.snapshots.append(Snapshot(t, int(m.group(1)) + int(m.group(2)), float(m.group(3))))
            return
        if words[0] == "p":
            counts = [int(w) for w in words[2:]]
            t = float(words[1]) - self.start
            if who == "server":
                self.up = counts
            else:
                self.down = counts
            if self.start and t >= 0:
                self.story.samples.append((t, sum(self.up), sum(self.down)))
        elif words[0] == "connected":
            self.client_port[int(words[1])] = int(words[2])
        elif words[0] == "done":
            n = int(words[1])
            self.done[who][n] = words
            if n in self.done["client"] and n in self.done["server"]:
                self.finished[n] = time.monotonic() - self.start
        elif words[0] == "error":
            self.errors.append(f"{who} {line.strip()}")

    # ---- splices -------------------------------------------------------------------------------

    def maybe_splice(self, proxy: Process, pool: ThreadPoolExecutor, mgmt: str) -> None:
        """Splice the next session once it reached its point and the previous splice is over:
        one reconfiguration at a time (an open issue: a reconfiguration that starts while another
        is under way at the same left anchor has been seen to hang, stalling its session)."""
        if any(not f.done() for f in self.splicing.values()):
            return
        for n in range(1, self.sessions + 1):
            port = self.client_port.get(n)
            if n in self.splicing or port not in self.legs or self.up[n - 1] < self.points[n - 1]:
                continue
            if not self.splicing:
                self.snapshot(proxy, "first")  # the proxy's work until the first splice
            inbound, outbound = self.legs[port]
            requested = time.monotonic() - self.start
            self.say(f"{requested:6.2f} s  session {n}: splice requested (dysco ctl splice)")
            self.splicing[n] = pool.submit(self.splice, n, inbound, outbound, mgmt, requested)
            return

    def splice(self, n: int, inbound: str, outbound: str, mgmt: str, requested: float) -> Splice:
        argv = [sys.executable, "-m", "dysco", "ctl", "splice", "--in", inbound, "--out", outbound]
        argv = self.plan_ns("proxy", [*argv, "--mgmt", mgmt, "--json", "--timeout", "20"])
        began = time.monotonic()
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=CTL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return Splice(n, requested, None, "no answer", None)
        done = time.monotonic()
        try:
            answer = json.loads(out.stdout)
        except json.JSONDecodeError:
            why = (out.stderr or out.stdout).strip().splitlines()
            return Splice(n, requested, done - self.start, why[-1] if why else f"exit {out.returncode}", None)
        seconds = answer.get("seconds")
        return Splice(
            n,
            requested,
            done - self.start,
            str(answer.get("outcome")),
            float(seconds) if isinstance(seconds, int | float) else None,
            done - began,
        )

    def plan_ns(self, name: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.plan.ns(self.plan.host(name).key), *argv]

    def report_splices(self, proxy: Process) -> None:
        for n, f in self.splicing.items():
            if f.done() and n not in self.told:
                self.told.add(n)
                s = f.result()
                took = f" in {s.seconds * 1000:.0f} ms (agent)" if s.seconds is not None else ""
                assert s.done is not None or s.outcome == "no answer"
                self.say(f"{s.done or 0.0:6.2f} s  session {n}: {s.outcome}{took}")
                if len(self.told) == self.sessions:
                    self.snapshot(proxy, "last")  # the proxy's work from the last splice on

    def splice_list(self) -> list[Splice]:
        out = [f.result() for f in self.splicing.values() if f.done()]
        pending = [Splice(n, 0.0, None, "pending", None) for n, f in self.splicing.items() if not f.done()]
        return sorted(out, key=lambda s: s.requested) + pending

    def snapshot(self, proxy: Process, name: str) -> None:
        """Ask the proxy for its stats line (SIGUSR2) and wait for it, handling other lines."""
        if proxy.proc is None:
            return
        before = len(self.snapshots)
        proxy.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + WAIT_S
        while len(self.snapshots) == before:
            try:
                line = proxy.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise UserError(f"the proxy did not answer SIGUSR2; see {self.logs / 'proxy.log'}") from None
            if line is None:
                raise UserError(f"the proxy ended early; see {self.logs / 'proxy.log'}")
            self.on_line("proxy", line)
        self.named[name] = self.snapshots[-1]

    # ---- the outcome ---------------------------------------------------------------------------

    def finish(self) -> Story:
        st = self.story
        st.splices = [f.result() for f in self.splicing.values()]
        for n in range(1, self.sessions + 1):
            c, s = self.done["client"].get(n), self.done["server"].get(n)
            if c is None or s is None:
                continue
            # client: done N sent SHA BYTES got SHA BYTES; server: done N got SHA BYTES sent SHA BYTES
            st.transfers.append(Transfer(n, c[3], s[3], s[6], c[6], int(s[4]), int(c[7]), self.finished[n]))
        snaps = self.named
        if {"base", "first"} <= snaps.keys():
            base, first = snaps["base"], snaps["first"]
            st.proxy_before = ProxyUse(first.relayed - base.relayed, first.cpu_s - base.cpu_s, first.t)
        if {"last", "end"} <= snaps.keys():
            last, end = snaps["last"], snaps["end"]
            st.proxy_after = ProxyUse(end.relayed - last.relayed, end.cpu_s - last.cpu_s, end.t - last.t)
        return st


def run(
    root: Path, prefix: str, logs: Path, sessions: int, size: int, say: Say, timestamps: bool = False
) -> Story:
    """The story on the namespace testbed; progress through ``say``."""
    logs.mkdir(parents=True, exist_ok=True)
    plan = plan_for(root, prefix, logs, timestamps)
    with contextlib.suppress(FileNotFoundError):
        for old in logs.glob("*.log"):
            old.unlink()
    return NetDemo(root, plan, logs, sessions, size, say).run()
