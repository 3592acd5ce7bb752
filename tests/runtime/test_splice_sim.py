"""Splicing a TCP-terminating proxy out of the path (Agent.splice) in the simulation, with the real
NIC program: the client reaches the proxy through Dysco, the proxy reaches the server through its
own Dysco policy; after the splice the client's and the server's anchors carry the bytes."""

from __future__ import annotations

import pytest

from dysco.compiler import compile_text
from dysco.errors import PeerError
from dysco.runtime.core import SECOND
from dysco.runtime.core import _inband as ib
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._splice_translation import Side, compute
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.runtime.core.reconf import PROBE_ATTEMPTS
from dysco.runtime.sim import MS, SpliceProxy, TcpStack, World
from dysco.softswitch.api import Program
from dysco.testbed._demo_sim import TimedNotes, WaveProxy

from .simworld import feed

CLIENT, PROXY, SERVER = ip_int("10.0.0.1"), ip_int("10.0.0.20"), ip_int("10.0.0.100")


def _direct(text: str):  # type: ignore[no-untyped-def]
    """A policy whose chain is only its destination (the agent there is the right end)."""
    policies = compile_text(text)
    object.__setattr__(next(iter(policies.chains.values())), "hops", ())
    return policies


def _world(  # type: ignore[no-untyped-def]
    program: Program,
    seed: int,
    splice_after: int,
    loss: float = 0.0,
    *,
    timestamps: bool = False,
    connect_after: int = 0,
    idle_timeout: int = 5 * SECOND,
):
    w = World(program, seed)
    w.net.faults.loss = loss
    client = TcpStack(w.sim, CLIENT, lambda f: None, timestamps)
    ch = w.host("client", CLIENT, policies=_direct("policy p: tcp dst port 8080 -> 10.0.0.20\n"),
                app=lambda h: client, idle_timeout=idle_timeout)  # fmt: skip
    client.emit = ch.emit
    ph = w.host("proxy", PROXY, policies=_direct("policy s: tcp dst port 80 -> 10.0.0.100\n"),
                app=lambda h: SpliceProxy(h, 8080, SERVER, 80, splice_after, connect_after=connect_after,
                                          timestamps=timestamps),
                idle_timeout=idle_timeout, splice=True)  # fmt: skip
    server = TcpStack(w.sim, SERVER, lambda f: None, timestamps)
    sh = w.host("server", SERVER, app=lambda h: server, idle_timeout=idle_timeout)
    server.emit = sh.emit
    server.listen(80, lambda req: b"answer:" + req[::-1] * 3)
    sent_by_proxy: list[tuple[int, bytes]] = []

    def watch(frame: bytes) -> bool:
        if int.from_bytes(frame[26:30], "big") == PROXY and frame[23] == 6 and not _control(frame):
            sent_by_proxy.append((w.sim.now, frame))
        return False

    w.net.faults.drop_if = watch
    return w, client, server, ph, sent_by_proxy


def _control(frame: bytes) -> bool:
    """An in-band control segment of the proxy's agent (not its kernel's)."""
    try:
        ib.parse(frame)
    except PeerError:
        return False
    return True


@pytest.mark.parametrize(("seed", "loss"), [(1, 0.0), (2, 0.0), (3, 0.02), (4, 0.05)])
def test_the_proxy_is_spliced_out(dysco_program: Program, seed: int, loss: float) -> None:
    w, client, server, ph, sent_by_proxy = _world(dysco_program, seed, 3000, loss)
    request = bytes(range(256)) * 60
    conn = client.connect(PROXY, 8080, request)
    w.sim.run(60 * SECOND)
    proxy = ph.app
    assert isinstance(proxy, SpliceProxy) and proxy.splice_at is not None and proxy.closed_at is not None
    # bytes exact both ways, nobody acknowledged for bytes it did not send
    (srv,) = server.conns.values()
    assert bytes(srv.received) == request
    assert conn.done and not conn.reset and not conn.failed
    assert bytes(conn.received) == b"answer:" + request[::-1] * 3
    assert conn.bad_acks == [] and srv.bad_acks == []
    # the answer (sent after the splice) went around the proxy
    (_inbound, outbound) = proxy.pairs[0]
    assert len(outbound.received) < len(conn.received) // 2, len(outbound.received)
    # the proxy kernel's FINs after the splice never left its NIC
    assert proxy.closed_at > proxy.splice_at
    late = [pk.parse(f) for t, f in sent_by_proxy if t >= proxy.closed_at]
    assert late == []
    assert ph.agent is not None and ph.agent.metrics["splice.completed"] == 1
    assert w.leftovers() == {}


@pytest.mark.parametrize("seed", [6, 7])
def test_translated_timestamps_keep_the_proxys_clock(dysco_program: Program, seed: int) -> None:
    """Linux TCP with timestamps (per-connection TSval offsets, PAWS), data both ways.  The proxy
    opens its upstream connection 2 s after accepting the client and is spliced about 4 s into
    the session.  Each end host must go on seeing the proxy's TSval clock after the splice, to
    within the path's delay: translated TSvals seconds ahead make PAWS discard what the proxy
    still sends on the old path, TSvals behind make it discard the new path's segments."""
    w, client, server, ph, _sent = _world(
        dysco_program, seed, 400_000, timestamps=True, connect_after=2 * SECOND
    )
    server.listen_stream(80)
    proxy = ph.app
    assert isinstance(proxy, SpliceProxy)
    conn = client.connect(PROXY, 8080, b"", stream=True)
    up, down, every, until = bytes(range(100)) * 10, bytes(range(50)) * 10, 10 * MS, 6 * SECOND
    feed(w, conn, up, every, until)

    def answer() -> None:
        srv = next(iter(server.conns.values()), None)
        if srv is None:
            w.sim.after(every, answer)
        else:
            feed(w, srv, down, every, until)

    answer()
    w.sim.run(60 * SECOND)
    assert proxy.splice_at is not None and proxy.closed_at is not None
    assert 3 * SECOND < proxy.splice_at < 5 * SECOND
    (srv,) = server.conns.values()
    assert conn.done and srv.done and not conn.failed and not srv.failed
    assert len(srv.received) > 500_000 and bytes(srv.received) == up * (len(srv.received) // len(up))
    assert bytes(conn.received) == srv.data and len(srv.data) > 150_000
    assert conn.bad_acks == [] and srv.bad_acks == []
    # what each end received after the splice (answer and upload on the new path) ran on the
    # proxy's TSval clock: at most a tick behind, at most the one-way delay and two ticks ahead
    assert conn.ts_ok and srv.ts_ok
    for c in (conn, srv):
        assert c.ts_lead[0] >= -1 and c.ts_lead[1] <= 3, c.ts_lead
    assert client.paws_drops == 0 and server.paws_drops == 0
    assert ph.agent is not None and ph.agent.metrics["splice.completed"] == 1
    assert w.leftovers() == {}


def test_a_session_after_a_splice_takes_over_the_drop_entries(dysco_program: Program) -> None:
    """After a splice the proxy's agent drops what its kernel still sends on the spliced sockets
    and releases the subsession ports; the next session the proxy opens to the same server gets
    the same port: its five-tuple must become the new session's, not stay a drop entry.  (It
    used to: ALREADY_EXISTS, and when that session was spliced in turn its reconfiguration never
    completed and the session stalled until it idled out.)"""
    w = World(dysco_program, 1)
    client = TcpStack(w.sim, CLIENT, lambda f: None)
    ch = w.host("client", CLIENT, policies=_direct("policy p: tcp dst port 8080 -> 10.0.0.20\n"),
                app=lambda h: client, idle_timeout=5 * SECOND)  # fmt: skip
    client.emit = ch.emit
    ph = w.host("proxy", PROXY, policies=_direct("policy s: tcp dst port 80 -> 10.0.0.100\n"),
                app=lambda h: WaveProxy(h, 8080, SERVER, 80, [20_000, 20_000]), idle_timeout=5 * SECOND,
                splice=True)  # fmt: skip
    ph.notes = TimedNotes(w.sim)
    server = TcpStack(w.sim, SERVER, lambda f: None)
    sh = w.host("server", SERVER, app=lambda h: server, idle_timeout=5 * SECOND)
    server.emit = sh.emit
    server.listen(80, lambda req: b"answer:" + req[::-1])
    proxy = ph.app
    assert isinstance(proxy, WaveProxy) and ph.agent is not None
    first = client.connect(PROXY, 8080, bytes(300_000))
    w.sim.run_for(50 * MS)
    assert ph.agent.metrics["splice.completed"] == 1 and ph.agent.drops
    second = client.connect(PROXY, 8080, b"\1" * 300_000)
    w.sim.run_for(2 * SECOND)
    outcomes = [proxy.outcome(port) for port in proxy.requested]
    assert [o[0] if o else "no outcome" for o in outcomes] == ["spliced", "spliced"]
    assert second.done and not second.failed and not second.reset
    assert bytes(second.received) == b"answer:" + b"\1" * 300_000
    assert ph.agent.metrics["splice.drop_taken_over"] >= 1
    assert not any(v for k, v in ph.agent.metrics.items() if k.startswith("errors."))
    w.sim.run(60 * SECOND)
    assert first.done and not first.failed and not first.reset
    assert w.leftovers() == {}


def test_a_splice_that_cannot_be_done_is_refused(dysco_program: Program) -> None:
    w, client, _server, ph, _sent = _world(dysco_program, 5, 10**9)
    client.connect(PROXY, 8080, bytes(300_000))  # still relaying when the splice is asked for
    w.sim.run_for(20 * MS)
    assert ph.agent is not None
    bogus = FiveTuple(CLIENT, PROXY, 1, 2)
    out = ph.agent.splice(w.sim.now, bogus, bogus)
    assert [n.message for n in out if getattr(n, "event", "") == "splice_refused"] == [
        f"the inbound socket {bogus} is not a Dysco session ending at this agent"
    ]
    assert ph.agent.metrics["splice.refused"] == 1
    # the client's agent is busy with a reconfiguration of its own: the splice fails, cleanly
    ch = w.hosts["client"]
    assert ch.agent is not None
    ((csid, cs),) = ch.agent.sessions.items()
    ch.execute(ch.agent.reconfigure(w.sim.now, csid, PROXY, [ip_int("10.0.0.60")]))
    inbound = cs.session
    ((_, out_conn),) = [(k, c) for k, c in ph.app.tcp.conns.items() if c.client]  # type: ignore[union-attr]
    outbound = FiveTuple(PROXY, SERVER, out_conn.local_port, 80)
    ph.execute(ph.agent.splice(w.sim.now, inbound, outbound))
    w.sim.run_for(20 * MS)
    events = [n.event for n in ph.notes]
    assert "splice_started" in events and "splice_failed" in events and "spliced" not in events
    assert not ph.agent.rc.splices


def test_translations_of_a_splice() -> None:
    c = Side(1000, 0, wscale=7, sack=True, tsval=500)
    p1 = Side(9000, 1 * MS, wscale=2, sack=True, tsval=70)
    p2 = Side(5000, 2 * MS, wscale=5, sack=False, tsval=80)
    s = Side(2**32 - 10, 3 * MS, wscale=9, sack=True, tsval=4000)
    t = compute(c, p1, p2, s, fwd_bytes=3, rev_bytes=-1)
    assert t.fwd.seq == 5000 - 1000 + 3 and t.rev.seq == (9000 + 10 - 1) % 2**32
    # the SYNs were seen 2 ms (c -> p2) and 2 ms (p1 -> s) apart; one tick for rounding
    assert t.fwd.ts == (80 - 500 - 2 + 1) % 2**32 and t.rev.ts == (70 - 4000 + 2 + 1) % 2**32
    assert t.fwd.ws == (7, 5) and t.rev.ws == (9, 2)
    assert t.warnings == ("SACK permitted on one session only",)
    plain = compute(Side(1, 0), Side(2, 0), Side(3, 0), Side(4, 0), 0, 0)
    assert plain.fwd.ts == 0 and plain.fwd.ws == (0, 0) and plain.warnings == ()


def _linux_clock(offset: int, at: int) -> int:
    """A Linux connection's TSval at ``at`` (ns): the host's 1 kHz clock plus its random offset."""
    return (offset + at // MS) & 0xFFFFFFFF


def test_timestamp_translation_of_sessions_set_up_seconds_apart() -> None:
    """The client connects at 10.000 s; the proxy opens its outbound connection 3.5 s later; the
    splice comes 40 s in.  Per-connection offsets are random 32-bit numbers (one wraps).  The
    agent sees the client's SYN 0.7 ms after it was stamped (network and punt), the server's
    SYN-ACK 0.9 ms after, the proxy's own SYN and SYN-ACK 0.2 ms after."""
    off_c, off_p1, off_p2, off_s = 0x1234_5678, 0xFFFF_F000, 0x0BAD_CAFE, 0x8000_0001
    t_c, t_p1 = 10_000_000_000 + 300_000, 10_001_000_000 + 600_000  # stamped (ns)
    t_p2, t_s = 13_500_000_000 + 100_000, 13_501_000_000 + 450_000
    c = Side(1, t_c + 700_000, tsval=_linux_clock(off_c, t_c))
    p1 = Side(2, t_p1 + 200_000, tsval=_linux_clock(off_p1, t_p1))
    p2 = Side(3, t_p2 + 200_000, tsval=_linux_clock(off_p2, t_p2))
    s = Side(4, t_s + 900_000, tsval=_linux_clock(off_s, t_s))
    t = compute(c, p1, p2, s, 0, 0)
    splice = 50_000_000_000
    for later in (splice, splice + 123_456_789, splice + 3_600_000_000_000):
        # what the server sees from the client after the splice, against what the proxy sends it
        lead_fwd = (_linux_clock(off_c, later) + t.fwd.ts - _linux_clock(off_p2, later)) & 0xFFFFFFFF
        lead_rev = (_linux_clock(off_s, later) + t.rev.ts - _linux_clock(off_p1, later)) & 0xFFFFFFFF
        # never behind the proxy's clock, never more than a few ticks ahead (not 40 s)
        assert 0 <= lead_fwd <= 3 and 0 <= lead_rev <= 3, (lead_fwd, lead_rev)


def _idle_client(program: Program, seed: int, close_at: int, *, answers_syns: bool = True):  # type: ignore[no-untyped-def]
    """The client writes 40 KB at once and then nothing until ``close_at``; the proxy takes all
    of it before its upstream connection is up (1 s later) and is spliced right then, its
    upstream socket still holding most of the bytes.  ``answers_syns=False``: the client's
    stack ignores SYNs on its connection (a host that never answers its anchor's probe)."""
    w, client, server, ph, _sent = _world(
        program, seed, 1, connect_after=1 * SECOND, idle_timeout=close_at + 5 * SECOND
    )
    if not answers_syns:
        receive = client.receive

        def no_syns(frame: bytes) -> None:
            if not pk.parse(frame).flags & pk.SYN or frame[47] & pk.ACK:
                receive(frame)

        client.receive = no_syns  # type: ignore[method-assign]
    server.listen_stream(80)
    burst = bytes(range(256)) * 160
    conn = client.connect(PROXY, 8080, b"", stream=True)
    conn.data = burst

    def close() -> None:
        conn.want_fin = True
        conn.pump()

    def answer_fin() -> None:
        srv = next(iter(server.conns.values()), None)
        if srv is not None and srv.peer_fin:
            srv.want_fin = True
            srv.pump()
        else:
            w.sim.after(10 * MS, answer_fin)

    w.sim.after(close_at, close)
    answer_fin()
    w.sim.run(3 * close_at + 30 * SECOND)
    proxy = ph.app
    assert isinstance(proxy, SpliceProxy) and proxy.splice_at is not None
    assert proxy.splice_at > 1 * SECOND
    (srv,) = server.conns.values()
    assert bytes(srv.received) == burst
    assert conn.done and srv.done and not conn.failed and not srv.failed
    assert conn.bad_acks == [] and srv.bad_acks == []
    assert ph.agent is not None and ph.agent.metrics["splice.completed"] == 1
    assert w.leftovers() == {}
    ch = w.hosts["client"]
    assert ch.agent is not None
    return ch.agent.metrics, client


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_what_the_proxy_holds_for_an_idle_client_still_reaches_the_server(
    dysco_program: Program, seed: int
) -> None:
    """The client's anchor saw nothing from its host since the lock, so its host's sequence
    number is unknown: it must learn it (probing its host) before telling the server's anchor
    where the old path's data ends, else the server's anchor finishes early and the old path is
    torn down under the proxy's last bytes."""
    metrics, client = _idle_client(dysco_program, seed, 4 * SECOND)
    assert metrics["reconf.host_probes"] == 1 and client.challenge_acks == 1
    assert metrics["reconf.idle_switch"] == 0


def test_an_anchor_whose_host_never_answers_switches_idle_after_its_probes(dysco_program: Program) -> None:
    """A client that ignores the probes: its anchor probes PROBE_ATTEMPTS times, backing off,
    then switches as idle (the proxy drained long before); the session completes."""
    metrics, client = _idle_client(dysco_program, 14, 12 * SECOND, answers_syns=False)
    assert metrics["reconf.host_probes"] == PROBE_ATTEMPTS and client.challenge_acks == 0
    assert metrics["reconf.idle_switch"] == 1 and metrics["reconf.completed"] == 1


def test_an_idle_anchors_lost_old_bytes_stay_on_the_old_path(dysco_program: Program) -> None:
    """The client sends two segments; the proxy gets the first, acknowledges it and is spliced
    right then, the second is lost on its way to the proxy.  The client's anchor sees nothing of
    its host between the lock and the switch (the proxy's ACK passed before the lock), so it
    probes: the host's challenge ACK carries its snd_nxt, past the lost segment, and that is
    where the client's old-path data ends (the server's anchor waits for it on the old path).
    The host's retransmission of the lost segment lies below that boundary: it belongs on the
    old path, through the proxy.  (Sent on the new path instead, the server's anchor took it for
    old-path data and its host's ACK of it went to the proxy, which never sent those bytes and
    discarded the ACK: neither end's data was acknowledged again and the splice timed out, 1 of
    600 sessions in the testbed's scale run.)"""
    w, client, server, ph, _sent = _world(dysco_program, 21, 1000)
    server.listen_stream(80)
    conn = client.connect(PROXY, 8080, b"", stream=True)
    w.sim.run_for(100 * MS)
    assert conn.established and len(server.conns) == 1
    lost: list[pk.TcpFrame] = []

    def lose_the_second_segment(frame: bytes) -> bool:
        if frame[23] != 6:
            return False  # not TCP (a control message)
        f = pk.parse(frame)
        if f.src == CLIENT and f.payload and f.seq == (conn.iss + 1 + 1000) & 0xFFFFFFFF and not lost:
            lost.append(f)
            return True
        return False

    w.net.faults.drop_if = lose_the_second_segment
    data = bytes(range(250)) * 8  # two segments of 1,000 bytes
    conn.data = data
    conn.pump()
    w.sim.run_for(5 * SECOND)
    assert lost and isinstance(ph.app, SpliceProxy) and ph.app.splice_at is not None
    (srv,) = server.conns.values()
    assert bytes(srv.received) == data
    conn.want_fin = True
    conn.pump()
    srv.want_fin = True
    srv.pump()
    w.sim.run_for(30 * SECOND)
    assert conn.done and srv.done and not conn.failed and not srv.failed
    assert conn.bad_acks == [] and srv.bad_acks == []
    proxy = ph.app
    assert isinstance(proxy, SpliceProxy)
    assert [c.bad_acks for c in proxy.tcp.conns.values()] == [[], []]
    assert proxy.tcp.unsent_ack_drops == 0
    ch = w.hosts["client"]
    assert ch.agent is not None and ch.agent.metrics["reconf.host_probes"] >= 1
    assert ph.agent is not None and ph.agent.metrics["splice.completed"] == 1
    assert w.leftovers() == {}
