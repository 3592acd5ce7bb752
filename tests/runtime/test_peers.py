"""Known agents (runtime/core/_peers.py): an agent that authenticates a message from another gives
it a cell of the NIC's peer meter (a ``Peer`` action), once, and only for a message whose stamp
names the packet's own source."""

from __future__ import annotations

from collections import Counter

from dysco.p4names import CONTROL_UDP_PORT
from dysco.runtime import Agent, Config, Port, Reason
from dysco.runtime.core import SECOND
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Peer
from dysco.runtime.core._peers import Peers
from dysco.runtime.core._syn_payload import SynPayload, encode
from dysco.runtime.core._types import FiveTuple, ip_int

RING = auth.KeyRing({1: bytes(range(32))}, current=1)
ME, LEFT, OTHER = ip_int("10.0.0.10"), ip_int("10.0.0.1"), ip_int("10.0.0.2")
SERVER = ip_int("10.0.0.100")


def _agent(keys: auth.KeyRing | None = RING, cells: int = 64) -> Agent:
    a = Agent(Config(ME, keys=keys, peer_cells=cells))
    a.wall_offset = 0
    return a


def _syn(src: int, sport: int, sender: int | None = None, keys: auth.KeyRing | None = RING) -> bytes:
    p = SynPayload(FiveTuple(LEFT, SERVER, sport + 30000, 80), (ME,))
    payload = encode(p, keys, sender=src if sender is None else sender, receiver=ME, now=sport)
    return pk.TcpFrame(b"\2" * 6, b"\4" * 6, src, ME, sport, 80, 1, 0, pk.SYN, payload=payload).to_bytes()


def _peers(actions: list[Action]) -> list[Peer]:
    return [a for a in actions if isinstance(a, Peer)]


def test_an_authenticated_dysco_syn_gives_its_sender_a_cell_once() -> None:
    a = _agent()
    first = a.packet_in(10_000, _syn(LEFT, 10_000), Port.NET, Reason.DYSCO_SYN)
    assert _peers(first) == [Peer(LEFT, 0)]
    again = a.packet_in(10_001, _syn(LEFT, 10_001), Port.NET, Reason.DYSCO_SYN)
    assert _peers(again) == [] and len(a.sessions) == 2
    assert a.metrics["peers.learned"] == 1 and a.peers.items() == [(LEFT, 0)]


def test_no_cell_for_what_is_not_authenticated_as_its_source() -> None:
    a = _agent()
    # sealed by an agent of the domain, but sent from another address (relayed): no cell
    relayed = a.packet_in(10_000, _syn(OTHER, 10_000, sender=LEFT), Port.NET, Reason.DYSCO_SYN)
    assert _peers(relayed) == [] and len(a.sessions) == 1
    # refused (no tag): no cell
    assert _peers(a.packet_in(10_001, _syn(OTHER, 10_001, keys=None), Port.NET, Reason.DYSCO_SYN)) == []
    assert a.metrics["drops.bad_payload.missing_tag"] == 1
    # an agent without keys authenticates nothing
    plain = _agent(keys=None)
    assert _peers(plain.packet_in(0, _syn(LEFT, 10_000, keys=None), Port.NET, Reason.DYSCO_SYN)) == []
    assert len(plain.sessions) == 1 and len(plain.peers) == 0


def test_an_authenticated_control_message_gives_its_sender_a_cell() -> None:
    a = _agent()
    msg = cw.Message(cw.Kind.REQUEST_LOCK, 7, 3, OTHER, SERVER, FiveTuple(OTHER, ME, 10000, 80))
    data = cw.encode(msg, RING, sender=OTHER, receiver=ME, now=SECOND)
    frame = cw.udp_frame(OTHER, ME, CONTROL_UDP_PORT, data)
    out = a.packet_in(SECOND, frame, Port.NET, Reason.CONTROL)
    assert _peers(out) == [Peer(OTHER, 0)] and a.metrics["control.request_lock"] == 1


def test_the_least_recently_authenticated_agent_gives_its_cell_up() -> None:
    metrics: Counter[str] = Counter()
    peers = Peers(2, metrics)
    out: list[Action] = []
    for address in (1, 2, 1, 3):  # 2 is now the least recent
        peers.authenticated(address, out)
    assert out == [Peer(1, 0), Peer(2, 1), Peer(3, 1, replaces=2)]
    assert peers.items() == [(1, 0), (3, 1)] and metrics["peers.replaced"] == 1
    none = Peers(0, metrics)
    none.authenticated(1, out)
    assert len(out) == 3 and len(none) == 0
