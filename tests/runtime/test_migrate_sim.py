"""State migration in the simulation: a stateful middlebox replaced in a live session, its state
moving to the new one before either anchor uses the new path; and every way that can fail."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from dysco.runtime.core import SECOND, HookCall, HookError, HookOp, View, hook_done, run_hook
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.sim import MS, Forwarder, Host, World
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, check_clean, feed, respond

LINGER = 30 * SECOND
NEW = "10.0.0.50"
HOOK_DELAY = 2 * MS
"""How long a hook call takes in the simulation."""


class Tracker(Forwarder):
    """A stateful middlebox: its state per session is the bytes it forwarded each way.  It
    records the data segments it forwarded for a session before that session's state was imported
    (a new instance must see none: the anchors switch only once the state is in place)."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.state: dict[FiveTuple, list[int]] = {}
        self.imported: set[FiveTuple] = set()
        self.data = 0
        self.data_before_import = 0

    def receive(self, frame: bytes) -> None:
        f = pk.parse(frame)
        t = f.five_tuple
        if f.syn_only:
            self.state.setdefault(t, [0, 0])
        key = t if t in self.state else t.reversed()
        if f.payload and t.dst != self.host.address:
            self.data += 1
            if key in self.state:
                self.state[key][0 if key == t else 1] += len(f.payload)
            if key not in self.imported:
                self.data_before_import += 1
        super().receive(frame)


class MemoryHook:
    """The state hook of a :class:`Tracker` (what ``--state-hook`` gives a real middlebox)."""

    name = "memory"

    def __init__(self, app: Tracker, fail: str = "") -> None:
        self.app = app
        self.fail = fail
        self.exported: list[tuple[View, bytes]] = []

    def export_state(self, view: View) -> bytes:
        if self.fail == "export":
            raise HookError("export refused")
        counts = self.app.state.get(view.orig)
        if counts is None:
            raise HookError(f"no state for {view.orig}")
        state = struct.pack("!II", *counts)
        self.exported.append((view, state))
        return state

    def import_state(self, state: bytes, view: View) -> None:
        if self.fail == "import":
            raise HookError("import refused")
        if len(state) != 8:
            raise HookError(f"{len(state)} bytes of state")
        self.app.state[view.orig] = list(struct.unpack("!II", state))
        self.app.imported.add(view.orig)


def with_hook(h: Host, hook: MemoryHook, delay: int = HOOK_DELAY) -> None:
    """The simulation's stand-in for the agent service's hook runner: the host's agent gets the
    calls its core queues, each done ``delay`` later."""
    assert h.agent is not None
    agent = h.agent
    agent.rc.mig.enabled = True
    execute = h.execute

    def run(call: HookCall) -> Callable[[], None]:
        return lambda: h.execute(hook_done(agent, h.sim.now, call.id, *run_hook(hook, call)))

    def execute_and_hook(actions: Any) -> None:
        execute(actions)
        for call in agent.rc.mig.take():
            h.sim.after(delay, run(call))

    h.execute = execute_and_hook  # type: ignore[method-assign]


def _world(program: Program, *, old_hook: str | None = "", new_hook: str | None = "", seed: int = 0) -> Any:
    """client -> mb0 (a Tracker) -> server, and a Tracker NEW; a hook string None: no hook, else
    what it fails ("" never)."""
    w, client, server = chain_world(program, 1, seed=seed, mb_app=lambda i: Tracker)
    new = w.host("new", ip_int(NEW), app=Tracker)
    old = w.hosts["mb0"]
    hooks = {}
    for h, fail in ((old, old_hook), (new, new_hook)):
        if fail is not None:
            assert isinstance(h.app, Tracker)
            hooks[h.name] = MemoryHook(h.app, fail)
            with_hook(h, hooks[h.name])
    return w, client, server, old, new, hooks


def _replace(w: World) -> int:
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [ip_int(NEW)]))
    return sid


def _events(h: Host) -> list[str]:
    return [n.event for n in h.notes]


DATA = bytes(range(256)) * 1200


def test_the_state_moves_before_the_new_path_carries_data(dysco_program: Program) -> None:
    w, client, server, old, new, hooks = _world(dysco_program)
    conn = client.connect(ip_int(SERVER), 80, DATA)
    w.sim.run_for(4 * MS)
    _replace(w)
    w.sim.run_for(LINGER)
    ch, sh = w.hosts["client"], w.hosts["server"]
    assert ch.agent is not None and sh.agent is not None and old.agent is not None and new.agent is not None
    assert conn.done and not conn.reset and bytes(conn.received) == respond(DATA)
    assert [bytes(c.received) for c in server.conns.values()] == [DATA]
    assert ch.agent.metrics["reconf.completed"] == 1 and ch.agent.metrics["migrate.completed"] == 1
    assert old.agent.metrics["migrate.marked"] == 1 and old.agent.metrics["migrate.exported"] == 1
    assert new.agent.metrics["migrate.imported"] == 1
    ev = _events(ch)
    assert ev.index("state_migration_started") < ev.index("state_migrated") < ev.index("reconfigured")
    assert isinstance(new.app, Tracker) and isinstance(old.app, Tracker)
    # the new instance got the old one's state, and not one data segment before it
    ((view, state),) = hooks["mb0"].exported
    assert view.orig.dport == 80 and view.reply == view.orig.reversed()
    assert view.orig in new.app.imported and sum(struct.unpack("!II", state)) > 0
    assert new.app.data > 0 and new.app.data_before_import == 0
    # and it carried the rest: what both instances counted adds up to at least every byte
    assert sum(old.app.state[view.orig]) + sum(new.app.state[view.orig]) - sum(
        struct.unpack("!II", state)
    ) >= (len(DATA) + len(respond(DATA)))
    check_clean(w)


def test_a_stateless_old_middlebox_is_replaced_as_before(dysco_program: Program) -> None:
    w, client, _server, _old, new, _hooks = _world(dysco_program, old_hook=None)
    conn = client.connect(ip_int(SERVER), 80, DATA)
    w.sim.run_for(4 * MS)
    _replace(w)
    w.sim.run_for(LINGER)
    ch = w.hosts["client"]
    assert ch.agent is not None and new.agent is not None
    assert conn.done and not conn.reset and bytes(conn.received) == respond(DATA)
    assert ch.agent.metrics["reconf.completed"] == 1
    assert not any(k.startswith("migrate.") for k in ch.agent.metrics)
    assert not any(
        k.startswith("control.state") for h in w.hosts.values() if h.agent for k in h.agent.metrics
    )
    check_clean(w)


@pytest.mark.parametrize(
    ("old_hook", "new_hook", "failure", "why"),
    [
        ("", None, "migrate.failed.no_hook", "has no state hook"),
        ("export", "", "migrate.failed.hook_failed", "memory: export refused"),
        ("", "import", "migrate.failed.hook_failed", "memory: import refused"),
    ],
    ids=["no-hook-at-the-new-middlebox", "export-fails", "import-fails"],
)
def test_a_failed_migration_cancels_and_the_session_stays_on_the_old_path(
    dysco_program: Program, old_hook: str, new_hook: str | None, failure: str, why: str
) -> None:
    w, client, server, old, new, _hooks = _world(dysco_program, old_hook=old_hook, new_hook=new_hook)
    conn = client.connect(ip_int(SERVER), 80, DATA)
    w.sim.run_for(4 * MS)
    _replace(w)
    w.sim.run_for(LINGER)
    ch = w.hosts["client"]
    assert ch.agent is not None and isinstance(new.app, Tracker) and isinstance(old.app, Tracker)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(DATA)
    assert [bytes(c.received) for c in server.conns.values()] == [DATA]
    assert ch.agent.metrics["reconf.failed"] == 1 and ch.agent.metrics[failure] == 1
    assert ch.agent.metrics["reconf.completed"] == 0
    (failed,) = [n for n in ch.notes if n.event == "reconfigure_failed"]
    assert "state migration failed" in failed.message and why in failed.message and failed.error
    assert new.app.data == 0  # not one data segment took the new path
    assert old.app.data > 0
    check_clean(w)


def test_a_silent_new_middlebox_times_the_migration_out(dysco_program: Program) -> None:
    # the new path is up, then the new middlebox is cut off from the old one: the transfer of
    # the state is never answered, the left anchor gives up and cancels; data flows both ways
    # all along, for longer than the left anchor waits
    w, client, server, old, new, _hooks = _world(dysco_program)
    server.listen_stream(80)
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    up, down, every, until = bytes(range(100)) * 10, bytes(range(50)) * 10, 10 * MS, 12 * SECOND
    feed(w, conn, up, every, until)
    w.sim.run_for(50 * MS)
    (srv,) = server.conns.values()
    feed(w, srv, down, every, until)
    _replace(w)
    w.net.partition(old.address, new.address)
    w.sim.run_for(LINGER)
    ch = w.hosts["client"]
    assert ch.agent is not None and old.agent is not None and isinstance(new.app, Tracker)
    assert conn.done and srv.done and not conn.reset and not srv.reset
    assert bytes(srv.received) == conn.data and bytes(conn.received) == srv.data and len(srv.data) > 500_000
    assert ch.agent.metrics["migrate.failed.timeout"] == 1 and ch.agent.metrics["reconf.failed"] == 1
    (failed,) = [n.message for n in ch.notes if n.event == "reconfigure_failed"]
    assert "10.0.0.10 did not answer the state export" in failed
    assert old.agent.metrics["reconf.gave_up.state_export"] == 1  # its transfer, given up too
    assert new.app.data == 0
    check_clean(w)


@pytest.mark.parametrize("seed", range(8))
def test_migration_on_a_faulty_network(dysco_program: Program, seed: int) -> None:
    # loss, duplication and reordering of data and control packets; data both ways all along
    w, client, server, _old, new, _hooks = _world(dysco_program, seed=seed)
    w.net.faults.loss = 0.03
    w.net.faults.duplicate = 0.03
    w.net.faults.jitter = 2 * MS
    server.listen_stream(80)
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    up, down, every, until = bytes(range(100)) * 4, bytes(range(50)) * 4, 10 * MS, 3 * SECOND
    feed(w, conn, up, every, until)
    while not server.conns:
        w.sim.run_for(MS)
    (srv,) = server.conns.values()
    feed(w, srv, down, every, until)
    w.sim.run_for((20 + 10 * seed) * MS)
    sid = _replace(w)
    w.sim.run_for(2 * LINGER)
    ch = w.hosts["client"]
    assert ch.agent is not None and isinstance(new.app, Tracker)
    assert conn.done and srv.done and not conn.reset and not srv.reset
    assert bytes(srv.received) == conn.data and bytes(conn.received) == srv.data and len(srv.data) > 50_000
    m = ch.agent.metrics
    assert m["reconf.completed"] == 1, [n.message for n in ch.notes if n.session_id == sid]
    assert m["migrate.completed"] == 1 and new.app.data_before_import == 0 and new.app.data > 0
    assert conn.bad_acks == [] and srv.bad_acks == []
    check_clean(w)


def test_a_session_reconfigured_again_after_its_migration(dysco_program: Program) -> None:
    # fw1 -> new, then new (stateful too) -> back out: a second migration from the new instance
    w, client, _server, old, _new, _hooks = _world(dysco_program)
    conn = client.connect(ip_int(SERVER), 80, DATA * 3)
    w.sim.run_for(4 * MS)
    sid = _replace(w)
    ch = w.hosts["client"]
    assert ch.agent is not None
    while ch.agent.metrics["reconf.completed"] == 0:
        w.sim.run_for(MS)
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [old.address]))
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(DATA * 3)
    assert ch.agent.metrics["reconf.completed"] == 2 and ch.agent.metrics["migrate.completed"] == 2
    check_clean(w)


# ---- the hook runner and the messages ------------------------------------------------------------

VIEW = View(FiveTuple(1, 2, 3, 80), FiveTuple(2, 1, 80, 3))


class _Odd:
    name = "odd"

    def __init__(self, result: object) -> None:
        self.result = result

    def export_state(self, view: View) -> bytes:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result  # type: ignore[return-value]

    def import_state(self, state: bytes, view: View) -> None:
        raise KeyError("boom")


@pytest.mark.parametrize(
    ("hook", "op", "expected"),
    [
        (None, HookOp.EXPORT, (b"", "no state hook")),
        (_Odd(b"s"), HookOp.EXPORT, (b"s", "")),
        (_Odd("text"), HookOp.EXPORT, (b"", "odd: export gave str, not bytes")),
        (_Odd(bytes(cw.MAX_STATE + 1)), HookOp.EXPORT, (b"", f"odd: 1025 bytes of state > {cw.MAX_STATE}")),
        (_Odd(HookError("gone")), HookOp.EXPORT, (b"", "odd: gone")),
        (_Odd(b""), HookOp.IMPORT, (b"", "odd: KeyError: 'boom'")),
    ],
)
def test_a_hooks_outcome_is_state_or_a_reason(
    hook: _Odd | None, op: HookOp, expected: tuple[bytes, str]
) -> None:
    assert run_hook(hook, HookCall(1, op, VIEW)) == expected


def test_state_messages_round_trip_and_bad_state_lengths_are_refused() -> None:
    m = cw.Message(cw.Kind.STATE_EXPORT, 9, 4, 1, 2, hops=(3,), value=cw.TRANSFER, state=b"\x01" * 40)
    data = cw.encode(m)
    assert cw.decode(data) == m and len(data) == m.encoded_size()
    with pytest.raises(ValueError, match="DONE carries no state"):
        cw.encode(cw.Message(cw.Kind.DONE, 1, 1, 1, 1, state=b"x"))
    with pytest.raises(ValueError, match="state of 1025 bytes"):
        cw.encode(cw.Message(cw.Kind.STATE_IMPORTED, 1, 1, 1, 1, state=bytes(1025)))
    at = cw.FIXED - cw.TAG.size + cw.ADDRESS.size  # the state length, after one hop
    longer = data[:at] + struct.pack("!H", 41) + data[at + 2 :]
    with pytest.raises(cw.GarbledControl, match="length 150 for 1 hops"):
        cw.decode(longer)
    huge = data[:at] + struct.pack("!H", cw.MAX_STATE + 1) + data[at + 2 :]
    with pytest.raises(cw.GarbledControl, match="state of 1025 bytes"):
        cw.decode(huge)
    with pytest.raises(cw.TruncatedControl, match="state length is cut off"):
        cw.decode(data[: at + 1])
