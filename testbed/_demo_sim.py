"""``dysco demo`` in the in-process simulation: the hosts of examples/splice.toml (client, splicing
proxy, server), each a softswitch running p4src/dysco.p4 plus its agent's core, on a simulated
network with a fake clock.  The same story as on the testbed, in simulated time: concurrent
transfers both ways through a TCP-terminating proxy, the proxy spliced out of each session
mid-transfer (``Agent.splice``, which ``dysco.runtime.splice`` asks of a real agent), every
byte checked by SHA-256 at both ends."""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Callable
from typing import Any

from dysco.compiler import compile_text
from dysco.errors import InternalError
from dysco.runtime.core import SECOND
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Notify
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.sim import MS, Conn, Host, SpliceProxy, TcpStack, World
from dysco.runtime.sim._net import Sim
from dysco.testbed._demo_story import ProxyUse, Say, Splice, Story, Transfer, progress_line, splice_points
from dysco.testbed._netns import Host as PlanHost
from dysco.testbed._netns import Plan

PORT = 9000
HOP_DELAY = 10 * MS
"""One way, per hop: a metropolitan network.  The simulated TCP sends a fixed window per
round trip, so this sets the goodput."""
SAMPLE = 10 * MS
LIMIT = 300 * SECOND
"""Simulated time after which a transfer that has not finished is a failure."""
HEADER = 8
"""Each upload starts with its session number (the server's answer depends on it)."""
OUTCOMES = ("spliced", "splice_failed")
SEQ = 1 << 32


def stream(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


class TimedNotes(list[Notify]):
    """A host's notes with the simulated time each arrived (the agent's report of an outcome)."""

    def __init__(self, sim: Sim) -> None:
        super().__init__()
        self.sim = sim
        self.times: list[int] = []

    def append(self, note: Notify) -> None:
        super().append(note)
        self.times.append(self.sim.now)

    def outcome(self, sid: int) -> tuple[str, int] | None:
        for note, at in zip(self, self.times, strict=True):
            if note.session_id == sid and note.event in OUTCOMES:
                return note.event, at
        return None


class WaveProxy(SpliceProxy):
    """The simulation's splicing proxy, one splice per connection: the i-th connection it accepts
    is handed to its agent once it relayed ``points[i]`` bytes toward the server; it closes the
    two sockets once its agent reports the splice done (their FINs never leave the NIC)."""

    def __init__(self, host: Host, port: int, upstream: int, upstream_port: int, points: list[int]) -> None:
        super().__init__(host, port, upstream, upstream_port, splice_after=0)
        self.points = points
        self.requested: dict[int, int] = {}
        """Client port -> simulated time of the splice request."""
        self.sids: dict[int, int] = {}
        """Client port -> the inbound session's id at the agent (splice_started)."""
        self.refused: dict[int, str] = {}
        self.relayed_at_first = 0

    @property
    def notes(self) -> TimedNotes:
        assert isinstance(self.host.notes, TimedNotes)
        return self.host.notes

    def relayed_bytes(self) -> int:
        return sum(self.relayed.values())

    def _maybe_splice(self, inbound: Conn, outbound: Conn) -> None:
        agent, key = self.host.agent, inbound.remote_port
        i = next(k for k, (c, _) in enumerate(self.pairs) if c is inbound)
        if agent is None or key in self.requested or i >= len(self.points):
            return
        if not (outbound.established and self.relayed.get(id(inbound), 0) >= self.points[i]):
            return
        now = self.host.sim.now
        if not self.requested:
            self.splice_at, self.relayed_at_first = now, self.relayed_bytes()
        self.requested[key] = now
        a = self.host.address
        fwd = FiveTuple(inbound.remote, a, inbound.remote_port, inbound.local_port)
        out = FiveTuple(a, outbound.remote, outbound.local_port, outbound.remote_port)
        actions = agent.splice(now, fwd, out)
        for n in actions:
            if isinstance(n, Notify) and n.event == "splice_started":
                self.sids[key] = n.session_id
            elif isinstance(n, Notify) and n.event == "splice_refused":
                self.refused[key] = n.message
        self.host.execute(actions)
        if key in self.sids:
            self.host.sim.after(SAMPLE, lambda: self._close_when_spliced(inbound, outbound))

    def _close_when_spliced(self, inbound: Conn, outbound: Conn) -> None:
        got = self.notes.outcome(self.sids[inbound.remote_port])
        if got is None:
            self.host.sim.after(SAMPLE, lambda: self._close_when_spliced(inbound, outbound))
        elif got[0] == "spliced":
            for c in (inbound, outbound):
                c.want_fin = True
                c.pump()

    def outcome(self, key: int) -> tuple[str, int] | None:
        """The splice of the connection from client port ``key``: (outcome, simulated time)."""
        if key in self.refused:
            return "splice_refused", self.requested[key]
        sid = self.sids.get(key)
        return self.notes.outcome(sid) if sid is not None else None


class ReorderingStack(TcpStack):
    """The simulated TCP with an out-of-order queue, as Linux has: a segment ahead of the next
    expected byte is kept (and acknowledged as a duplicate) until the hole before it fills.
    During a reconfiguration's two-path phase new-path segments may overtake old-path ones;
    without this queue the simulated end host would drop them and wait for a timeout."""

    def __init__(self, sim: Sim, address: int, emit: Callable[[bytes], None]) -> None:
        super().__init__(sim, address, emit)
        self.ahead: dict[tuple[int, int, int], dict[int, bytes]] = {}

    def receive(self, frame: bytes) -> None:
        f = pk.parse(frame)
        key = (f.src, f.sport, f.dport)
        c = self.conns.get(key)
        if c is not None and c.established and f.payload and 0 < (f.seq - c.rcv_nxt) % SEQ < SEQ // 2:
            self.ahead.setdefault(key, {})[f.seq] = frame
        super().receive(frame)
        queue = self.ahead.get(key)
        while c is not None and queue:
            for seq in [s for s in queue if 0 < (c.rcv_nxt - s) % SEQ < SEQ // 2]:
                del queue[seq]  # behind the next expected byte: already delivered
            nxt = queue.pop(c.rcv_nxt, None)
            if nxt is None:
                break
            super().receive(nxt)


class DuplexServer:
    """Accepts connections on ``port`` and answers each with ``down`` bytes (chosen by the session
    number at the head of the upload) while the upload goes on; its FIN follows the client's."""

    def __init__(self, host: Host, port: int, down: int) -> None:
        self.tcp = ReorderingStack(host.sim, host.address, host.emit)
        self.tcp.listen_stream(port)
        self.down = down
        self.answering: set[int] = set()

    def receive(self, frame: bytes) -> None:
        self.tcp.receive(frame)
        for c in self.tcp.conns.values():
            if id(c) not in self.answering and c.established and len(c.received) >= HEADER:
                self.answering.add(id(c))
                c.data = stream(1000 + int.from_bytes(c.received[:HEADER], "big"), self.down)
            if c.peer_fin and not c.want_fin and id(c) in self.answering:
                c.want_fin = True
            c.pump()

    def session(self, c: Conn) -> int:
        return int.from_bytes(c.received[:HEADER], "big") if len(c.received) >= HEADER else 0


class SimDemo:
    """One run of the story on ``plan`` in simulated time; :meth:`run` returns the story."""

    def __init__(self, plan: Plan, sessions: int, size_up: int, size_down: int, say: Say, seed: int) -> None:
        from dysco.softswitch import load_program

        self.say = say
        self.sessions = sessions
        self.story = Story(
            world=f"simulation, {HOP_DELAY // MS} ms per hop, simulated time",
            short="simulation",
            measured="time: splice request to the proxy's agent reporting the old path gone",
            sessions=sessions,
            size_up=size_up,
            size_down=size_down,
        )
        self.w = World(load_program(plan.p4), seed)
        self.w.net.faults.delay = HOP_DELAY
        self.plan = plan
        client, proxy, server = (plan.role(r)[0] for r in ("client", "middlebox", "server"))
        self.client = ReorderingStack(self.w.sim, ip_int(client.address), lambda f: None)
        self.client.emit = self._host(client, lambda h: self.client).emit
        points = splice_points(sessions, size_up + HEADER)
        up = ip_int(server.address)
        ph = self._host(proxy, lambda h: WaveProxy(h, PORT, up, PORT, points))
        ph.notes = TimedNotes(self.w.sim)
        assert isinstance(ph.app, WaveProxy)
        self.proxy = ph.app
        sh = self._host(server, lambda h: DuplexServer(h, PORT, size_down))
        assert isinstance(sh.app, DuplexServer)
        self.server = sh.app
        self.uploads = [n.to_bytes(HEADER, "big") + stream(n, size_up) for n in range(1, sessions + 1)]
        self.conns: list[Conn] = []
        self.port_of: dict[int, int] = {}
        """Client port -> session number."""
        self.finished: dict[int, float] = {}
        self.told: set[tuple[int, str]] = set()
        self.relayed: list[tuple[float, int]] = []
        self.next_line = 1.0
        self.proxy_address = ip_int(proxy.address)

    def _host(self, h: PlanHost, app: Any) -> Host:
        text = self.plan.policy_files().get(h.name, ("", ""))[1]
        nets = [*h.agentless, *(f"10.0.{x.subnet}.0/24" for x in self.plan.hosts if not x.agent)]
        return self.w.host(
            h.name,
            ip_int(h.address),
            policies=compile_text(text, h.name) if text else None,
            app=app,
            agentless=tuple(ipaddress.IPv4Network(n) for n in nets),
            splice=h.splice,
            linger=int(self.plan.linger * SECOND),
        )

    def run(self) -> Story:
        for n, data in enumerate(self.uploads, start=1):
            c = self.client.connect(self.proxy_address, PORT, data)
            self.conns.append(c)
            self.port_of[c.local_port] = n
        self.w.sim.after(SAMPLE, self._sample)
        self.w.sim.run(LIMIT + SECOND)
        if len(self.finished) < self.sessions:
            raise InternalError(f"the simulated transfers did not finish in {LIMIT // SECOND} s")
        self._splices()
        self._proxy_use()
        self._transfers()
        return self.story

    def _sample(self) -> None:
        t = self.w.sim.now / SECOND
        up = sum(max(0, len(c.received) - HEADER) for c in self.server.tcp.conns.values())
        down = sum(len(c.received) for c in self.conns)
        self.story.samples.append((t, up, down))
        self.relayed.append((t, self.proxy.relayed_bytes()))
        self._events()
        for n, c in enumerate(self.conns, start=1):
            if c.done and n not in self.finished:
                self.finished[n] = t
        if t >= self.next_line:
            self._splices()
            self.say(progress_line(self.story, t))
            self.next_line += 1.0
        if len(self.finished) < self.sessions and self.w.sim.now < LIMIT:
            self.w.sim.after(SAMPLE, self._sample)

    def _events(self) -> None:
        """Say each splice request and outcome once, at its simulated time."""
        for port, at in sorted(self.proxy.requested.items(), key=lambda kv: kv[1]):
            n = self.port_of[port]
            if (n, "requested") not in self.told:
                self.told.add((n, "requested"))
                self.say(f"{at / SECOND:6.2f} s  session {n}: splice requested")
            got = self.proxy.outcome(port)
            if got is not None and (n, "outcome") not in self.told:
                self.told.add((n, "outcome"))
                self.say(f"{got[1] / SECOND:6.2f} s  session {n}: {got[0]} in {(got[1] - at) / MS:.0f} ms")

    def _splices(self) -> None:
        splices = []
        for port, at in sorted(self.proxy.requested.items(), key=lambda kv: kv[1]):
            got = self.proxy.outcome(port)
            outcome, done = (got[0], got[1] / SECOND) if got else ("no answer", None)
            took = done - at / SECOND if done is not None else None
            splices.append(Splice(self.port_of[port], at / SECOND, done, outcome, took))
        self.story.splices = splices

    def _proxy_use(self) -> None:
        if not self.story.splices or self.proxy.splice_at is None:
            return
        first = self.proxy.splice_at / SECOND
        self.story.proxy_before = ProxyUse(self.proxy.relayed_at_first, None, first)
        last = max(s.done or s.requested for s in self.story.splices)
        then = next((r for t, r in self.relayed if t >= last), self.proxy.relayed_bytes())
        end = max(self.finished.values())
        self.story.proxy_after = ProxyUse(self.proxy.relayed_bytes() - then, None, max(0.0, end - last))

    def _transfers(self) -> None:
        served = {self.server.session(c): c for c in self.server.tcp.conns.values()}
        for n, c in enumerate(self.conns, start=1):
            s = served.get(n)
            self.story.transfers.append(
                Transfer(
                    n,
                    up_sent=_sha(self.uploads[n - 1][HEADER:]),
                    up_got=_sha(bytes(s.received[HEADER:])) if s else "",
                    down_sent=_sha(s.data) if s else "",
                    down_got=_sha(bytes(c.received)),
                    up=len(s.received) - HEADER if s else 0,
                    down=len(c.received),
                    finished=self.finished[n],
                )
            )


def run(plan: Plan, sessions: int, size_up: int, size_down: int, say: Say, seed: int = 1) -> Story:
    """The story on ``plan`` (examples/splice.toml) in simulated time; progress through ``say``."""
    return SimDemo(plan, sessions, size_up, size_down, say, seed).run()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
