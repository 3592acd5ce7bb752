"""The middlebox's own voice in the core, in the simulation: a middlebox that changes the
stream's length declares its delta and leaves (the anchors take the delta over), a middlebox
application chooses next hops for a session being set up, and what each call refuses."""

from __future__ import annotations

from functools import partial

import pytest

from dysco.runtime import Notify
from dysco.runtime.core import SECOND
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.sim import MS, ChainClassifier, Forwarder, Host, Inserter, World
from dysco.softswitch.api import Program

from .simworld import CLIENT, SERVER, chain_world, check_clean, respond

LINGER = 30 * SECOND
TEXT = b"X-Inserted-By: mb0\r\n"


def _leave_after_insertion(program: Program, declare: bool) -> tuple[World, bytes, bool, bytes]:
    app = partial(Inserter, text=TEXT, declare=declare)
    w, client, server = chain_world(program, 1, mb_app=lambda i: app)
    data = bytes(range(256)) * 40
    conn = client.connect(ip_int(SERVER), 80, data)
    mb0 = w.hosts["mb0"]
    assert mb0.agent is not None
    while not conn.received and w.sim.now < 50 * MS:  # until the first bytes went through mb0
        w.sim.run_for(MS // 10)
    (sid,) = mb0.agent.sessions
    mb0.execute(mb0.agent.request_removal(w.sim.now, sid))
    w.sim.run_for(LINGER)
    [served] = [bytes(c.received) for c in server.conns.values()]
    assert served == data
    return w, bytes(conn.received), conn.done and not conn.reset, respond(data)


def test_a_middlebox_that_inserted_bytes_leaves_and_the_stream_stays_exact(dysco_program: Program) -> None:
    w, received, clean, response = _leave_after_insertion(dysco_program, declare=True)
    assert clean and received == TEXT + response
    mb0 = w.hosts["mb0"]
    assert mb0.agent is not None and mb0.agent.metrics["delta.declared"] >= 1
    check_clean(w)


def test_without_its_declared_delta_the_ends_fall_out_of_step(dysco_program: Program) -> None:
    # the same without the declaration: what the test above would see without the API
    _w, received, clean, response = _leave_after_insertion(dysco_program, declare=False)
    assert not (clean and received == TEXT + response)


def test_declare_delta_refusals(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(5 * MS)
    ch, mb0 = w.hosts["client"], w.hosts["mb0"]
    assert ch.agent is not None and mb0.agent is not None
    (s,) = mb0.agent.sessions.values()

    def refused(host_agent: object, *args: object) -> str:
        out = host_agent.declare_delta(*args)  # type: ignore[attr-defined]
        (n,) = [a for a in out if isinstance(a, Notify)]
        assert n.event == "delta_refused" and n.error
        return n.message

    nobody = FiveTuple(ip_int(CLIENT), ip_int(SERVER), 1, 2)
    assert "no session 10.0.0.1:1->10.0.0.100:2 reaching a middlebox" in refused(mb0.agent, nobody, 0, 5)
    (cs,) = ch.agent.sessions.values()  # the left end's host opened it: no middlebox there
    assert "reaching a middlebox or proxy" in refused(ch.agent, cs.session, 0, 5)
    assert "magnitude below 2**31" in refused(mb0.agent, s.session, 1 << 31, 0)
    out = mb0.agent.declare_delta(s.session, 3, -2)
    assert [a.event for a in out if isinstance(a, Notify)] == ["delta_declared"]
    assert s.mb_delta == (3, -2)
    mb0.execute(mb0.agent.request_removal(w.sim.now, s.sid))
    assert "declare the delta before the removal starts" in refused(mb0.agent, s.session, 0, 0)


class _Chooser(ChainClassifier):
    """Chooses the scrubber for every session and keeps what its agent answered."""

    def __init__(self, host: Host, hops: list[int]) -> None:
        super().__init__(host, lambda t: hops)
        self.answers: list[Notify] = []

    def receive(self, frame: bytes) -> None:
        before = len(self.host.notes)
        super().receive(frame)
        self.answers += [n for n in self.host.notes[before:] if isinstance(n, Notify)]


def test_prepended_hops_are_the_sessions_path_from_the_middlebox_on(dysco_program: Program) -> None:
    scrubber = ip_int("10.0.0.50")
    apps: list[_Chooser] = []

    def make(h: Host) -> _Chooser:
        apps.append(_Chooser(h, [scrubber]))
        return apps[-1]

    w, client, _server = chain_world(dysco_program, 1, mb_app=lambda i: make)
    extra = w.host("scrubber", scrubber, app=Forwarder)
    data = bytes(range(256)) * 10
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(2 * MS)
    mb0, sh = w.hosts["mb0"], w.hosts["server"]
    assert mb0.agent is not None and sh.agent is not None and extra.agent is not None
    assert [n.event for n in apps[0].answers] == ["hops_added"]
    assert "on through 10.0.0.50, 10.0.0.100" in apps[0].answers[0].message
    (row,) = mb0.agent.session_list(w.sim.now)
    assert row["chain"] == ["10.0.0.10", "10.0.0.50", "10.0.0.100"]
    ((_, s),) = extra.agent.sessions.items()
    assert s.chain == (scrubber, ip_int(SERVER))
    # every entry of the middlebox's session carries the new chain in its note (an adoption
    # after a restart refuses a session whose notes differ)
    assert len({m.note for m in mb0.nic_mappings()}) == 1
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    check_clean(w)


def test_prepend_hops_refusals(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1)
    mb0 = w.hosts["mb0"]
    assert mb0.agent is not None
    agent = mb0.agent

    def refused(session: FiveTuple, hops: list[int]) -> str:
        (n,) = [a for a in agent.prepend_hops(session, hops) if isinstance(a, Notify)]
        assert n.event == "hops_refused" and n.error
        return n.message

    nobody = FiveTuple(ip_int(CLIENT), ip_int(SERVER), 1, 80)
    assert refused(nobody, [ip_int("10.0.0.50")]).startswith(
        "no session 10.0.0.1:1->10.0.0.100:80 being set up through a middlebox here"
    )
    client.connect(ip_int(SERVER), 80, bytes(3000))
    w.sim.run_for(5 * MS)
    (s,) = agent.sessions.values()  # its SYN went on: too late
    assert "its SYN already went on" in refused(s.session, [ip_int("10.0.0.50")])


@pytest.mark.parametrize(
    ("hops", "message"),
    [
        (["10.0.0.10"], "10.0.0.10 is this agent: a hop cannot be the middlebox itself"),
        ([f"10.0.1.{i}" for i in range(1, 17)], "16 hops ahead of 1 would make more than 16"),
    ],
)
def test_a_refused_choice_leaves_the_session_on_its_chain(
    dysco_program: Program, hops: list[str], message: str
) -> None:
    apps: list[_Chooser] = []

    def make(h: Host) -> _Chooser:
        apps.append(_Chooser(h, [ip_int(a) for a in hops]))
        return apps[-1]

    w, client, _server = chain_world(dysco_program, 1, mb_app=lambda i: make)
    data = bytes(range(256)) * 10
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(LINGER)
    [answer] = apps[0].answers
    assert (answer.event, answer.message, answer.error) == ("hops_refused", message, True)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    check_clean(w)
