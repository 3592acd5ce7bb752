"""Reconfiguration in the simulation: the real NIC program, faulty network, many seeds."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from dysco import p4names
from dysco.errors import PeerError
from dysco.runtime import Notify
from dysco.runtime.core import SECOND
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Port, Reason
from dysco.runtime.core._fsm import SessionState
from dysco.runtime.core._types import ip_int
from dysco.runtime.core.reconf import LOCK_TIMEOUT
from dysco.runtime.sim import MS, Forwarder
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, check_clean, feed, respond

LINGER = 30 * SECOND


def test_insert_a_middlebox(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 0)
    new = ip_int("10.0.0.50")
    nh = w.host("new", new, app=Forwarder)
    data = bytes(range(256)) * 40
    conns = [client.connect(ip_int(SERVER), 80, data)]
    w.sim.run_for(3 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [new]))
    w.sim.run_for(LINGER)
    print([n.event + ":" + n.message for n in ch.notes])
    assert conns[0].done and not conns[0].reset
    assert bytes(conns[0].received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert ch.agent.metrics["reconf.completed"] == 1
    assert nh.app is not None and nh.app.frames > 0  # type: ignore[attr-defined]
    check_clean(w)


def test_delete_the_middlebox(dysco_program: Program) -> None:
    w, client, server = chain_world(dysco_program, 1)
    data = bytes(range(256)) * 40
    conns = [client.connect(ip_int(SERVER), 80, data)]
    w.sim.run_for(4 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))
    w.sim.run_for(LINGER)
    assert conns[0].done and not conns[0].reset
    assert bytes(conns[0].received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    assert ch.agent.metrics["reconf.completed"] == 1
    check_clean(w)


def _ctl_kind(frame: bytes) -> cw.Kind | None:
    """The kind of the control message ``frame`` carries, in a UDP datagram or in band."""
    try:
        _src, _dst, data = cw.parse_udp(frame, p4names.CONTROL_UDP_PORT)
    except PeerError:
        try:
            data = ib.parse(frame).data
        except PeerError:
            return None
    try:
        return cw.decode(data).kind
    except PeerError:
        return None


def test_a_fin_before_the_switch_reaches_the_new_path_reliably(dysco_program: Program) -> None:
    # the client's FIN goes on the old path before the reconfiguration: the new middlebox learns
    # it from a FIN message (the first one is lost), and frees the session without an idle timeout
    w, client, _server = chain_world(dysco_program, 0)
    new = ip_int("10.0.0.50")
    nh = w.host("new", new, app=Forwarder)
    lost: list[bytes] = []

    def drop_first_fin(frame: bytes) -> bool:
        if not lost and _ctl_kind(frame) is cw.Kind.FIN:
            lost.append(frame)
            return True
        return False

    w.net.faults.drop_if = drop_first_fin
    data = bytes(range(256)) * 80  # the answer (twice as long) starts after the client's FIN
    conn = client.connect(ip_int(SERVER), 80, data)
    ch = w.hosts["client"]
    assert ch.agent is not None and nh.agent is not None
    while not any(s.fins for s in ch.agent.sessions.values()):
        w.sim.run_for(MS // 10)
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [new]))
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert ch.agent.metrics["reconf.completed"] == 1 and len(lost) == 1
    assert nh.agent.metrics["control.fin"] == 1  # the retransmission
    closed = [n.message for n in nh.notes if n.event == "session_closed"]
    assert len(closed) == 1 and closed[0].endswith("(closed)")  # FINs both ways, not idle
    check_clean(w)


def test_the_right_anchors_lock_expires_when_the_left_anchor_is_gone(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1)
    client.connect(ip_int(SERVER), 80, bytes(300_000))  # still sending when the partition starts
    w.sim.run_for(4 * MS)
    ch, sh = w.hosts["client"], w.hosts["server"]
    assert ch.agent is not None and sh.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))
    while not sh.agent.rc.anchors:
        w.sim.run_for(MS // 10)
    locked_at = w.sim.now
    for h in ("mb0", "server"):  # the left anchor is cut off: neither its SYN nor its cancel arrive
        w.net.partition(ch.address, w.hosts[h].address)
    w.sim.run_for(LOCK_TIMEOUT - 10 * MS)
    assert sh.agent.rc.anchors and not any(n.event == "lock_expired" for n in sh.notes)
    w.sim.run(locked_at + LOCK_TIMEOUT + MS)
    assert not sh.agent.rc.anchors and sh.agent.metrics["reconf.lock_expired"] == 1
    assert [n.event for n in sh.notes if n.event == "lock_expired"] == ["lock_expired"]
    (s,) = sh.agent.sessions.values()
    assert all(m.target is not None for m, _ in s.mappings.values())  # back on the fast path


def test_a_middlebox_asks_to_be_deleted(dysco_program: Program) -> None:
    # rightRequest: mb1 asks mb0 (its left neighbour) to reconnect the session to the server
    w, client, server = chain_world(dysco_program, 2)
    data = bytes(range(256)) * 40
    conn = client.connect(ip_int(SERVER), 80, data)
    w.sim.run_for(5 * MS)
    mb0, mb1 = w.hosts["mb0"], w.hosts["mb1"]
    assert mb0.agent is not None and mb1.agent is not None
    (sid,) = mb1.agent.sessions
    mb1.execute(mb1.agent.request_removal(w.sim.now, sid))
    w.sim.run_for(LINGER)
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert [bytes(c.received) for c in server.conns.values()] == [data]
    events = [n.event for n in mb1.notes]
    assert events[:2] == ["right_request_sent", "right_request_accepted"]
    assert mb0.agent.metrics["reconf.completed"] == 1
    closed = [n.message for n in mb1.notes if n.event == "session_closed"]
    assert len(closed) == 1 and closed[0].endswith("(reconfigured away)")
    check_clean(w)


def test_a_right_request_that_cannot_be_honoured_is_refused(dysco_program: Program) -> None:
    w, client, _server = chain_world(dysco_program, 1)
    client.connect(ip_int(SERVER), 80, bytes(300_000))
    w.sim.run_for(5 * MS)
    ch, mb0, sh = w.hosts["client"], w.hosts["mb0"], w.hosts["server"]
    assert ch.agent is not None and mb0.agent is not None and sh.agent is not None
    ((csid, cs),) = ch.agent.sessions.items()
    (ssid,) = sh.agent.sessions
    # only a middlebox can leave; the left end has nobody on its left
    out = ch.agent.request_removal(w.sim.now, csid)
    assert [n.event for n in out if isinstance(n, Notify)] == ["right_request_refused"]
    out = sh.agent.request_removal(w.sim.now, ssid)
    assert "only a middlebox can leave" in next(n.message for n in out if isinstance(n, Notify))
    out = ch.agent.request_reconfiguration(w.sim.now, csid, ip_int(SERVER), [])
    assert any(isinstance(n, Notify) and "no agent on the left" in n.message for n in out)
    # the client is busy with its own reconfiguration: the server's request is refused there
    ch.execute(ch.agent.reconfigure(w.sim.now, csid, ip_int(SERVER), [ip_int("10.0.0.60")]))
    sh.execute(sh.agent.request_reconfiguration(w.sim.now, ssid, sh.address, []))
    w.sim.run_for(5 * MS)
    assert any(n.event == "right_request_refused" and "(BUSY)" in n.message for n in sh.notes)
    assert mb0.agent.metrics["control.right_request"] == 1 and cs.sid == csid


def test_a_kernels_rst_for_a_straggler_on_the_freed_old_path_ends_nothing(dysco_program: Program) -> None:
    # The left anchor completed and the middlebox left the path (its agent forgot the session),
    # while the server's agent, the right anchor, still waits for the TEARDOWN (the first one is
    # lost): a segment of its host that still takes the old path reaches the middlebox's kernel,
    # which answers with a RST, as Linux does.  That RST must not reach the server: it would
    # reset the connection there (and the server's kernel then the client's).
    w, client, server = chain_world(dysco_program, 1, mb_app=lambda i: partial(Forwarder, rsts=True))
    client.rsts = server.rsts = True
    sh, mb, ch = w.hosts["server"], w.hosts["mb0"], w.hosts["client"]
    assert sh.agent is not None and ch.agent is not None and isinstance(mb.app, Forwarder)
    sent: list[bytes] = []
    emit = server.emit
    server.emit = lambda frame: (sent.append(frame), emit(frame))[1]
    lost: list[bytes] = []

    def drop_first_teardown_to_the_server(frame: bytes) -> bool:
        if not lost and _ctl_kind(frame) is cw.Kind.TEARDOWN and frame[30:34] == sh.address.to_bytes(4):
            lost.append(frame)
            return True
        return False

    w.net.faults.drop_if = drop_first_teardown_to_the_server
    data = bytes(range(256)) * 80
    conn = client.connect(ip_int(SERVER), 80, data)
    while not sent or not any(f for f in sent if len(f) > 54):
        w.sim.run_for(MS // 10)
    w.sim.run_for(4 * MS)
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))
    while not any(n.event == "session_closed" for n in mb.notes):
        w.sim.run_for(MS // 10)
    assert lost and sh.agent.rc.anchors, "the server's agent is still in the two-path phase"
    # its kernel sends its first data (old-path bytes) again, with its current ack: the RST the
    # middlebox's kernel answers it with is at exactly the server's rcv_nxt, which Linux takes
    (sc,) = server.conns.values()
    old = pk.parse(next(f for f in sent if len(f) > 54))
    sh.emit(replace(old, ack=sc.rcv_nxt).to_bytes())
    w.sim.run_for(LINGER)
    assert mb.app.rsts >= 1, "the middlebox's kernel answered the straggler"
    assert not sc.reset, "the RST reached the server"
    assert conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert sh.agent.metrics["reconf.old_path_rst"] >= 1
    assert ch.agent.metrics["reconf.completed"] == 1
    check_clean(w)


def test_a_kernels_rst_at_a_middle_waits_for_the_teardown(dysco_program: Program) -> None:
    # The same straggler, but the TEARDOWN that is late (3 s of them lost) is the one to the
    # middlebox: the client's kernel, whose old subsession the left anchor freed, answers the
    # straggler with a RST that the middlebox's NIC copies to its agent.  Its session must wait
    # for the TEARDOWN (a RST copy there used to close it after the linger, so the TEARDOWN found
    # nothing and never went on to the server; a spliced proxy's splice failed that way, "the
    # session closed first", in a loaded 600-session run).
    w, client, server = chain_world(dysco_program, 1, mb_app=lambda i: partial(Forwarder, rsts=True))
    client.rsts = server.rsts = True
    sh, mb, ch = w.hosts["server"], w.hosts["mb0"], w.hosts["client"]
    assert sh.agent is not None and mb.agent is not None and ch.agent is not None
    sent: list[bytes] = []
    emit = server.emit
    server.emit = lambda frame: (sent.append(frame), emit(frame))[1]
    lost: list[int] = []

    def drop_teardowns_to_the_middlebox(frame: bytes) -> bool:
        to_mb = _ctl_kind(frame) is cw.Kind.TEARDOWN and frame[30:34] == mb.address.to_bytes(4)
        if to_mb and (not lost or w.sim.now < lost[0] + 3 * SECOND):
            lost.append(w.sim.now)
            return True
        return False

    w.net.faults.drop_if = drop_teardowns_to_the_middlebox
    data = bytes(range(256)) * 80
    conn = client.connect(ip_int(SERVER), 80, data)
    while not any(f for f in sent if len(f) > 54):
        w.sim.run_for(MS // 10)
    w.sim.run_for(4 * MS)
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), []))
    while not lost:
        w.sim.run_for(MS // 10)
    (sc,) = server.conns.values()
    old = pk.parse(next(f for f in sent if len(f) > 54))
    sh.emit(replace(old, ack=sc.rcv_nxt).to_bytes())
    w.sim.run_for(LINGER)
    assert client.rsts >= 1 and mb.agent.metrics["teardown.rst"] == 1, "the client's kernel answered"
    closed = [n.message for n in mb.notes if n.event == "session_closed"]
    assert closed == ["10.0.0.1:40000->10.0.0.100:80 (reconfigured away)"]
    assert sh.agent.metrics["control.teardown"] == 1, "the TEARDOWN went on to the right anchor"
    assert not sc.reset and conn.done and not conn.reset and bytes(conn.received) == respond(data)
    assert mb.agent.metrics["reconf.middle_rst_held"] == 1
    check_clean(w)


def test_a_rst_a_middle_held_lingers_from_the_cancel(dysco_program: Program) -> None:
    # A RST copy reaches the locked middlebox, then the new path cannot be set up (its hop has no
    # host) and the left anchor cancels: the middlebox's session ends a linger after the
    # CANCEL_LOCK, not a lock timeout after the RST.
    w, client, server = chain_world(dysco_program, 1)
    server.listen_stream(80)
    seen: list[bytes] = []
    mb = w.hosts["mb0"]

    def watch(frame: bytes) -> bool:
        if frame[23] == 6 and frame[30:34] == mb.address.to_bytes(4) and len(frame) > 54:
            seen.append(frame)
        return False

    w.net.faults.drop_if = watch
    conn = client.connect(ip_int(SERVER), 80, b"", stream=True)
    feed(w, conn, bytes(1000), 10 * MS, 60 * SECOND)
    w.sim.run_for(40 * MS)
    ch = w.hosts["client"]
    assert ch.agent is not None and mb.agent is not None
    (sid,) = ch.agent.sessions
    ch.execute(ch.agent.reconfigure(w.sim.now, sid, ip_int(SERVER), [ip_int("10.0.0.77")]))
    while not mb.agent.rc.locks:
        w.sim.run_for(MS // 10)
    ((msid, s),) = mb.agent.sessions.items()
    rst = replace(pk.parse(seen[-1]), flags=pk.RST | pk.ACK, payload=b"").to_bytes()
    mb.execute(mb.agent.packet_in(w.sim.now, rst, Port.NET, Reason.TEARDOWN, session_id=msid))
    assert s.fsm.state is SessionState.CLOSING and mb.agent.metrics["reconf.middle_rst_held"] == 1
    w.sim.run_for(LOCK_TIMEOUT // 2)
    assert mb.agent.metrics["control.cancel_lock"] == 1 and not mb.agent.rc.locks
    assert [n.event for n in ch.notes if n.event.startswith("reconfigure")][-1] == "reconfigure_failed"
    assert mb.agent.sessions == {} and mb.agent.metrics["sessions.closed"] == 1
    assert [n.message for n in mb.notes if n.event == "session_closed"] == [
        "10.0.0.1:40000->10.0.0.100:80 (closed)"
    ]
