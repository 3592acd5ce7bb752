"""Seed-driven reconfiguration worlds: the property suite's scenarios, and their replay.

A seed draws a world (a chain of 0-4 middleboxes, spare middleboxes, network faults, a transfer in
both directions with either side's FIN first) and a script of reconfigurations (insert, delete,
replace; one, two contending from different anchors, or several in sequence; sometimes a new path
that cannot be set up).  :func:`run` plays it on the real NIC program and returns every property
(docs/architecture.md, "Contracts") that did not hold; a run is a function of its seed.

Replay a seed from the repository's root::

    python -m dysco.runtime.sim.replay 1234 -v
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dysco.compiler import compile_text
from dysco.runtime.core import SECOND
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._auth import KeyRing
from dysco.runtime.core._events import Notify, Table
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._types import ip_int, ip_str
from dysco.runtime.sim._apps import Forwarder
from dysco.runtime.sim._host import Host, World
from dysco.runtime.sim._net import MS, Faults
from dysco.runtime.sim._tcp import Conn, TcpStack
from dysco.softswitch.api import Program

CLIENT = ip_int("10.0.0.1")
SERVER = ip_int("10.0.0.100")
MIDDLE = [ip_int(f"10.0.0.{10 + i}") for i in range(4)]
SPARE = [ip_int(f"10.0.0.{50 + i}") for i in range(3)]
KINDS = ("insert", "delete", "replace")
SETTLE = 60 * SECOND
"""Simulated time after the start by which everything must have ended and been cleaned up."""
IDLE = 20 * SECOND
"""The NIC entries' idle timeout: reclaims what agents keep of a session that ended unusually."""
POLL = 1 * MS
SIM_KEYS = KeyRing({7: hashlib.sha256(b"dysco simulation").digest()}, 7)
"""The simulated trust domain's key ring (``--sealed``)."""


@dataclass(frozen=True, slots=True)
class Plan:
    seed: int
    n_mbs: int
    loss: float
    duplicate: float
    jitter: int
    eager: bool
    """The server sends its answer and FIN at once, without waiting for the client's FIN."""
    request: bytes
    answer: bytes
    mode: str
    """``one``, ``contend`` (two requests from different anchors at once) or ``sequence``."""
    steps: int
    fail: int
    """The step whose new path cannot be set up (-1: none)."""
    first_at: int
    by_request: bool = False
    """The reconfigurations are asked for by the agent right of the left anchor (rightRequest)."""

    def describe(self) -> str:
        return (
            f"seed {self.seed}: {self.n_mbs} middleboxes, loss {self.loss}, duplicate {self.duplicate}, "
            f"jitter {self.jitter // MS} ms, {'eager' if self.eager else 'lazy'} server, "
            f"{len(self.request)}/{len(self.answer)} bytes, {self.mode} x{self.steps}, fail {self.fail}, "
            f"first at {self.first_at / MS:.1f} ms{', by request' if self.by_request else ''}"
        )


def plan(seed: int) -> Plan:
    r = random.Random(seed)
    mode = r.choice(("one", "one", "contend", "sequence"))
    big = 30000 if mode == "sequence" else 12000
    steps = r.randint(2, 3) if mode == "sequence" else 1
    fail = r.randrange(steps) if mode != "contend" and r.random() < 0.2 else -1
    return Plan(
        seed,
        r.randint(0, 4),
        r.choice((0.0, 0.0, 0.02, 0.05)),
        r.choice((0.0, 0.0, 0.02)),
        r.choice((0, 0, 1 * MS, 3 * MS)),
        r.random() < 0.5,
        r.randbytes(r.randint(0, big)),
        r.randbytes(r.randint(0, big)),
        mode,
        steps,
        fail,
        r.randint(1 * MS, 12 * MS),
        mode != "contend" and r.random() < 0.3,  # drawn last: the earlier draws keep their seeds
    )


@dataclass(slots=True)
class Trigger:
    """One reconfiguration request as the script made it."""

    step: int
    kind: str
    left: Host
    right: int
    hops: tuple[int, ...]
    rid: int
    fail: bool
    at: int
    outcome: str = ""
    requester: Host | None = None
    """The agent that asked for it (rightRequest); ``rid`` is known once it is accepted."""
    notes_from: int = 0
    """The requester's notes before this request (earlier answers are not this one's)."""
    ended: bool = False
    """Failed because the session was ending (closing when the lock request came, closed first)."""
    """``reconfigured``, ``reconfigure_failed`` or ``reconfigure_refused`` (empty: neither yet)."""

    def describe(self) -> str:
        hops = ",".join(ip_str(h) for h in self.hops) or "-"
        return (
            f"step {self.step} at {self.at / MS:.2f} ms: {self.kind} {self.left.name} -> "
            f"{ip_str(self.right)} "
            f"via [{hops}] rid {self.rid}{' (new path fails)' if self.fail else ''}: "
            f"{self.outcome or 'unresolved'}"
        )


@dataclass
class Run:
    plan: Plan
    world: World
    client: TcpStack
    server: TcpStack
    rng: random.Random
    conn: Conn | None = None
    triggers: list[Trigger] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failing: tuple[int, int] | None = None
    """(left anchor, first new hop): the new-path SYNs the network drops."""

    # ---- the world ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, program: Program, p: Plan, sealed: bool = False) -> Run:
        """The world of plan ``p``; ``sealed``: every agent has :data:`SIM_KEYS`, so every Dysco
        SYN payload and control message is sealed and verified (docs/security.md)."""
        w = World(program, p.seed)
        cfg: dict[str, Any] = {"idle_timeout": IDLE, "keys": SIM_KEYS if sealed else None}
        w.net.faults = Faults(1 * MS, p.jitter, p.loss, p.duplicate)
        lines = [f"middlebox mb{i} {{ instances {ip_str(a)}; }}" for i, a in enumerate(MIDDLE[: p.n_mbs])]
        hops = ", ".join(f"mb{i}" for i in range(p.n_mbs)) or ip_str(SERVER)
        policies = compile_text("\n".join([*lines, f"policy web: tcp dst port 80 -> {hops}", ""]))
        if p.n_mbs == 0:
            object.__setattr__(next(iter(policies.chains.values())), "hops", ())
        client = TcpStack(w.sim, CLIENT, lambda f: None)
        server = TcpStack(w.sim, SERVER, lambda f: None)
        run = cls(p, w, client, server, random.Random(p.seed ^ 0x5EED))
        w.net.faults.drop_if = run._drop
        ch = w.host("client", CLIENT, policies=policies, app=lambda h: client, **cfg)
        client.emit = ch.emit
        for i, a in enumerate(MIDDLE[: p.n_mbs]):
            w.host(f"mb{i}", a, app=Forwarder, **cfg)
        for i, a in enumerate(SPARE):
            w.host(f"spare{i}", a, app=Forwarder, **cfg)
        sh = w.host("server", SERVER, app=lambda h: server, **cfg)
        server.emit = sh.emit
        server.listen(80, lambda req: p.answer, eager=p.eager)
        return run

    def _drop(self, frame: bytes) -> bool:
        if self.failing is None or len(frame) < 48 or frame[23] != 6:
            return False
        src, dst = int.from_bytes(frame[26:30], "big"), int.from_bytes(frame[30:34], "big")
        return (src, dst) == self.failing and bool(frame[47] & pk.SYN)

    def host(self, address: int) -> Host:
        return next(h for h in self.world.hosts.values() if h.address == address)

    def path(self) -> list[tuple[Host, int]] | None:
        """The session's agents from the client to the server (host, session id), as they are now."""
        h = self.host(CLIENT)
        assert h.agent is not None
        if len(h.agent.sessions) != 1:
            return None
        (sid,) = h.agent.sessions
        out = [(h, sid)]
        while True:
            assert h.agent is not None
            sub = h.agent.sessions[sid].down
            if sub is None:
                return out if h.address == SERVER else None
            h = self.host(sub.tuple.dst)
            if h.agent is None or len(out) > 8:
                return None
            nxt = h.agent.by_key.get((Table.IN, sub.tuple))
            if nxt is None or nxt not in h.agent.sessions:
                return None
            sid = nxt
            out.append((h, sid))

    # ---- the script ----------------------------------------------------------------------------------

    def start(self) -> None:
        p = self.plan
        self.conn = self.client.connect(SERVER, 80, p.request)
        sim = self.world.sim
        if p.mode == "contend":
            sim.at(p.first_at, self._contend)
        else:
            sim.at(p.first_at, lambda: self._step(0))
        sim.run(SETTLE)

    def _segment(self, n: int, kind: str, exclude: int | None = None) -> tuple[int, int] | None:
        r = self.rng
        need = 1 if kind == "insert" else 2
        pairs = [(i, j) for i in range(n - 1) for j in range(i + need, n) if i != exclude]
        return r.choice(pairs) if pairs else None

    def _trigger(
        self, step: int, path: list[tuple[Host, int]], i: int, j: int, kind: str, fail: bool
    ) -> bool:
        r = self.rng
        spares = [a for a in SPARE if a not in {h.address for h, _ in path}]
        # the new middleboxes are fresh: an agent cannot carry one session on both paths at once
        if kind != "delete" and not spares:
            self.skipped.append(f"step {step}: every spare middlebox is on the path already")
            return False
        if kind == "delete":
            hops = []
        else:
            hops = r.sample(spares, r.randint(1, min(len(spares), max(1, j - i - 1))))
        left, sid = path[i]
        right = path[j][0].address
        assert left.agent is not None
        if fail:
            self.failing = (left.address, hops[0] if hops else right)
        now = self.world.sim.now
        if self.plan.by_request:
            # the agent right of the left anchor asks for it (a middlebox deleting itself, or the
            # right end asking for a new middlebox in front of it)
            ask, ask_sid = path[i + 1]
            assert ask.agent is not None
            t = Trigger(step, kind, left, right, tuple(hops), 0, fail, now, requester=ask)
            t.notes_from = len(ask.notes)
            self.triggers.append(t)
            if kind == "delete" and j == i + 2:
                ask.execute(ask.agent.request_removal(now, ask_sid))
            else:
                ask.execute(ask.agent.request_reconfiguration(now, ask_sid, right, hops))
            return True
        actions = left.agent.reconfigure(now, sid, right, hops)
        started = [a for a in actions if isinstance(a, Notify) and a.event == "reconfigure_started"]
        rid = int(started[0].message.rsplit(" ", 1)[1]) if started else 0
        t = Trigger(
            step, kind, left, right, tuple(hops), rid, fail, now, "" if rid else "reconfigure_refused"
        )
        self.triggers.append(t)
        left.execute(actions)
        return True

    def _live(self) -> list[tuple[Host, int]] | None:
        path = self.path()
        if path is None:
            return None
        for h, sid in path[:-1]:
            assert h.agent is not None
            if h.agent.sessions[sid].fsm.state not in (SessionState.ESTABLISHED, SessionState.HALF_CLOSED):
                return None
        return path

    def _step(self, step: int) -> None:
        path = self._live()
        if path is None:
            self.skipped.append(f"step {step}: the session is not established at every agent")
            return
        kind = self.rng.choice(KINDS)
        seg = self._segment(len(path), kind)
        if seg is None:
            kind, seg = "insert", self._segment(len(path), "insert")
        assert seg is not None
        rc = path[seg[0]][0].agent.rc  # type: ignore[union-attr]
        if path[seg[0]][1] in rc.anchors or path[seg[0]][1] in rc.locks:
            # that agent is still finishing the previous reconfiguration: ask again later
            self.world.sim.after(POLL, lambda: self._step(step))
            return
        if self._trigger(step, path, *seg, kind, step == self.plan.fail):
            self.world.sim.after(POLL, self._await)

    def _await(self) -> None:
        t = self.triggers[-1]
        if not self._resolve(t):
            self.world.sim.after(POLL, self._await)
            return
        self.failing = None
        if t.step + 1 < self.plan.steps:
            self.world.sim.after(self.rng.randint(0, 3 * MS), lambda: self._step(t.step + 1))

    def _contend(self) -> None:
        path = self._live()
        if path is None or len(path) < 3:
            self.skipped.append("contention: needs an established chain with a middlebox")
            return self._step(0) if path is not None else None
        r = self.rng
        first = self._segment(len(path), r.choice(KINDS)) or self._segment(len(path), "insert")
        assert first is not None
        i1, j1 = first
        pairs = [(i, j) for i in range(len(path) - 1) for j in range(i + 1, len(path))]
        pairs = [(i, j) for i, j in pairs if i != i1 and max(i, i1) < min(j, j1)]
        if not pairs:
            pairs = [(i, j) for i in range(len(path) - 1) for j in range(i + 1, len(path)) if i != i1]
            j1 = len(path) - 1
            pairs = [(i, j) for i, j in pairs if max(i, i1) < min(j, j1)]
        i2, j2 = r.choice(pairs)
        for i, j in ((i1, j1), (i2, j2)):
            kind = r.choice(KINDS) if j - i >= 2 else "insert"
            self._trigger(0, path, i, j, kind, False)

    def _resolve(self, t: Trigger) -> bool:
        if t.outcome:
            return True
        if t.rid == 0 and t.requester is not None:
            for n in t.requester.notes[t.notes_from :]:
                if n.event == "right_request_accepted":
                    t.rid = int(n.message.rsplit(" ", 1)[1])
                elif n.event in ("right_request_refused", "right_request_failed"):
                    t.outcome = "reconfigure_refused"
                    t.ended = "(CLOSING)" in n.message
                    return True
            if t.rid == 0:
                return False
        for n in t.left.notes:
            done = n.event == "reconfigured" and n.message.endswith(f": rid {t.rid}")
            if done or (n.event == "reconfigure_failed" and f": rid {t.rid}:" in n.message):
                t.outcome = n.event
                t.ended = "(CLOSING)" in n.message or "the session closed first" in n.message
        return bool(t.outcome)

    # ---- the properties ------------------------------------------------------------------------------

    def violations(self) -> list[str]:
        out: list[str] = []
        p, c = self.plan, self.conn
        assert c is not None
        for t in self.triggers:
            self._resolve(t)
        if p.mode == "contend" and len(self.triggers) == 2:
            won = [t for t in self.triggers if t.outcome == "reconfigured"]
            if len(won) > 1 or (not won and not any(t.ended for t in self.triggers)):
                out.append(f"contending requests: {len(won)} succeeded, not exactly one")
        else:
            for t in self.triggers:
                want = "reconfigure_failed" if t.fail else "reconfigured"
                if t.outcome != want and not t.ended:
                    out.append(f"{t.describe()}; expected {want}")
        for t in self.triggers:
            if not t.outcome:
                out.append(f"{t.describe()}: neither completed nor failed")
        srv = list(self.server.conns.values())
        if not c.done or c.reset or c.failed:
            out.append(f"client connection did not finish cleanly (reset {c.reset}, failed {c.failed})")
        if bytes(c.received) != p.answer:
            out.append(f"client received {_diff(bytes(c.received), p.answer)}")
        if len(srv) != 1:
            out.append(f"server has {len(srv)} connections")
        elif bytes(srv[0].received) != p.request:
            out.append(f"server received {_diff(bytes(srv[0].received), p.request)}")
        for name, conn in [("client", c), *(("server", s) for s in srv)]:
            if conn.bad_acks:
                out.append(f"{name} was acked for bytes it never sent: {conn.bad_acks[:3]} (iss {conn.iss})")
        out.extend(f"{name} left {what}" for name, what in self.world.leftovers().items())
        return out


def _diff(got: bytes, want: bytes) -> str:
    i = next((k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    return f"{len(got)} bytes, expected {len(want)}, first difference at byte {i}"


def run(program: Program, seed: int, sealed: bool = False) -> tuple[Run, list[str]]:
    """Play seed ``seed`` (with every message sealed when ``sealed``); the run and the properties
    that did not hold."""
    r = Run.build(program, plan(seed), sealed)
    r.start()
    return r, r.violations()


def replay_command(seed: int) -> str:
    return f"python -m dysco.runtime.sim.replay {seed} -v"


def main(argv: list[str] | None = None, load: Callable[[str], Program] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m dysco.runtime.sim.replay",
        description="Replay reconfiguration property seeds in the simulation and print what failed.",
        epilog="example: python -m dysco.runtime.sim.replay 1234 -v",
    )
    ap.add_argument("seeds", nargs="+", type=int, metavar="SEED")
    ap.add_argument("--p4", default="p4src/dysco.p4", help="the data-plane program (default: %(default)s)")
    ap.add_argument("--sealed", action="store_true", help="every agent seals and verifies (a shared key)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the plan, requests and agent events")
    args = ap.parse_args(argv)
    if load is None:
        from dysco.softswitch import load_program

        load = load_program
    program = load(args.p4)
    bad = 0
    for seed in args.seeds:
        r, problems = run(program, seed, args.sealed)
        print(f"{r.plan.describe()}: {'FAILED' if problems else 'ok'}")
        if args.verbose:
            for t in r.triggers:
                print(f"  {t.describe()}")
            for s in r.skipped:
                print(f"  skipped {s}")
            for h in r.world.hosts.values():
                for n in h.notes:
                    print(f"  [{h.name}] {n.event}: {n.message}")
        for m in problems:
            print(f"  - {m}")
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
