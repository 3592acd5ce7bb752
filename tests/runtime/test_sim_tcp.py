"""The simulated TCP discards what Linux discards (runtime/sim/_tcp.py): a segment beyond the
receive window and a segment whose ACK is more than the window behind ``snd_una``, data and all."""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime.core import _packet as pk
from dysco.runtime.sim import MS, TcpStack
from dysco.runtime.sim._net import Sim
from dysco.runtime.sim._tcp import MSS, WINDOW

A, B = 0x0A000001, 0x0A000002


def _pair() -> tuple[Sim, TcpStack, TcpStack, list[bytes]]:
    sim = Sim(1)
    sent_by_a: list[bytes] = []
    a = TcpStack(sim, A, lambda f: None)
    b = TcpStack(sim, B, lambda f: None)
    a.emit = lambda f: (sent_by_a.append(f), sim.after(MS, lambda: b.receive(f)))  # type: ignore[method-assign]
    b.emit = lambda f: sim.after(MS, lambda: a.receive(f))  # type: ignore[method-assign]
    b.listen(80, lambda req: b"")
    return sim, a, b, sent_by_a


def test_segments_beyond_the_window_or_with_a_too_old_ack_are_discarded() -> None:
    sim, a, b, sent_by_a = _pair()
    conn = a.connect(B, 80, b"x" * 3 * WINDOW * MSS, stream=True)
    sim.run_for(2000 * MS)
    (srv,) = b.conns.values()
    assert len(srv.received) == 3 * WINDOW * MSS and conn.snd_una == srv.rcv_nxt
    last = pk.parse(sent_by_a[-1])
    got = len(srv.received)
    beyond = replace(last, seq=(srv.rcv_nxt + 2 * WINDOW * MSS) & 0xFFFFFFFF, payload=b"y" * 10)
    b.receive(beyond.to_bytes())
    assert b.beyond_window == 1 and len(srv.received) == got
    # b's snd_una is past the handshake only; an ACK more than a window behind it is too old
    old = replace(last, seq=srv.rcv_nxt, ack=(srv.snd_una - 2 * WINDOW * MSS) & 0xFFFFFFFF, payload=b"z" * 10)
    b.receive(old.to_bytes())
    assert b.old_ack_drops == 1 and len(srv.received) == got
    b.receive(replace(old, ack=srv.snd_una).to_bytes())  # the same segment with a current ACK: taken
    assert len(srv.received) == got + 10
