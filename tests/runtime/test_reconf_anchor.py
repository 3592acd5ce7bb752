"""One anchor of a reconfiguration on its own (runtime/core/_twopath.py): which path each byte and
each acknowledgment of the host takes, phase by phase, and the translations it applies."""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime._nic import Nic
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Mapping, Table
from dysco.runtime.core._twopath import Anchor, PathSide, Phase, translate
from dysco.runtime.core._types import FiveTuple
from dysco.softswitch.api import Program

MAC = b"\2" * 6
HOST = FiveTuple(1, 100, 40000, 80)
OLD = FiveTuple(1, 10, 10000, 80)
NEW = FiveTuple(1, 50, 10001, 80)


def _anchor() -> Anchor:
    return Anchor(True, 100, HOST, OLD, HOST.reversed(), OLD.reversed(), 0)


def _data(seq: int, n: int, ack: int = 500, flags: int = pk.ACK) -> pk.TcpFrame:
    return pk.TcpFrame(
        MAC, MAC, HOST.src, HOST.dst, HOST.sport, HOST.dport, seq, ack, flags, payload=b"x" * n
    )


def test_until_the_new_path_is_up_every_byte_takes_the_old_path() -> None:
    a = _anchor()
    a.new_target, a.new_in_key = NEW, NEW.reversed()
    assert [side for side, _ in a.outgoing(_data(1000, 100))] == [PathSide.OLD]
    a.phase = Phase.NEW_PATH  # the new path's SYN is out, its SYN-ACK not in yet
    segs = a.outgoing(_data(1100, 100))
    assert [(side, g.seq, len(g.payload)) for side, g in segs] == [(PathSide.OLD, 1100, 100)]
    # the SYN-ACK fixes the boundary after what the host sent meanwhile
    a.fix_boundary()
    a.phase = Phase.TWO_PATH
    assert a.old_sent == 1200 and not a.idle
    segs = a.outgoing(_data(1150, 100))
    assert [(side, g.seq, len(g.payload)) for side, g in segs] == [
        (PathSide.OLD, 1150, 50),
        (PathSide.NEW, 1200, 50),
    ]


def test_a_fin_in_the_new_path_phase_goes_on_the_old_path() -> None:
    a = _anchor()
    a.phase = Phase.NEW_PATH
    segs = a.outgoing(_data(1000, 0, flags=pk.ACK | pk.FIN))
    assert [(side, g.flags & pk.FIN) for side, g in segs] == [(PathSide.OLD, pk.FIN)]
    a.fix_boundary()
    assert a.old_sent == 1001  # the FIN is old: the other side acknowledges it on the old path


def _switched_after_200_bytes() -> Anchor:
    """An anchor in the two-path phase whose host sent bytes 1000..1199 before the switch."""
    a = _anchor()
    a.new_target, a.new_in_key = NEW, NEW.reversed()
    a.outgoing(_data(1000, 200))
    a.phase = Phase.NEW_PATH
    a.fix_boundary()
    a.phase = Phase.TWO_PATH
    return a


def test_old_path_acks_carry_a_sequence_number_its_receiver_accepts() -> None:
    """Once the host sent new data far past the boundary, an ACK on the old path still carries
    the old path's end as its sequence number: Linux discards a segment beyond its receive window,
    ACK and all, so a proxy on the old path would never see its last bytes acknowledged."""
    a = _switched_after_200_bytes()
    assert a.old_sent == 1200
    segs = a.outgoing(_data(900_000, 100, ack=700))  # new data, and an ack of old-path bytes
    assert [(side, g.seq, len(g.payload), g.ack) for side, g in segs] == [
        (PathSide.NEW, 900_000, 100, 700),
        (PathSide.OLD, 1200, 0, 700),
    ]
    a.learn_peer(800, idle=False)  # the peer's boundary: acks past 800 belong to the new path
    segs = a.outgoing(_data(900_100, 0, ack=950))
    assert [(side, g.seq, g.ack) for side, g in segs] == [
        (PathSide.NEW, 900_100, 950),
        (PathSide.OLD, 1200, 800),
    ]


def test_old_path_segments_never_acknowledge_what_only_the_new_path_carried() -> None:
    """The peer was idle (its boundary unknown as a number) and its new data reached the host:
    the host's retransmission of old data goes on the old path with an ack no further than the
    new path's first byte, or the old path's sender would take it as acking unsent data."""
    a = _switched_after_200_bytes()
    a.learn_peer(0, idle=True)
    a.to_host(_from_peer(NEW.reversed(), 6000, 1200, 300, n=0), new=True)  # a pure ACK: no data
    assert a.new_rcvd_min is None
    a.to_host(_from_peer(NEW.reversed(), 6100, 1200, 300), new=True)  # reordered: 6000.. comes later
    a.to_host(_from_peer(NEW.reversed(), 6000, 1200, 300), new=True)
    assert a.new_rcvd_min == 6000
    segs = a.outgoing(_data(1100, 100, ack=6200))  # old data, acking the new path's 200 bytes
    assert [(side, g.seq, len(g.payload), g.ack) for side, g in segs] == [
        (PathSide.OLD, 1100, 100, 6000),
        (PathSide.NEW, 1200, 0, 6200),  # the new path's data is acknowledged on the new path
    ]


def test_an_idle_hosts_old_path_acks_carry_its_first_sequence_number() -> None:
    a = _anchor()
    a.new_target, a.new_in_key = NEW, NEW.reversed()
    a.phase = Phase.NEW_PATH
    a.fix_boundary()  # nothing seen from the host: every byte it sends is new
    a.phase = Phase.TWO_PATH
    assert a.idle
    a.outgoing(_data(5000, 100, ack=600))
    segs = a.outgoing(_data(90_000, 100, ack=700))
    assert [(side, g.seq, len(g.payload)) for side, g in segs] == [
        (PathSide.NEW, 90_000, 100),
        (PathSide.OLD, 5000, 0),
    ]


def _from_peer(t: FiveTuple, seq: int, ack: int, window: int, n: int = 100) -> pk.TcpFrame:
    return pk.TcpFrame(
        MAC, MAC, t.src, t.dst, t.sport, t.dport, seq, ack, pk.ACK, window=window, payload=b"y" * n
    )


def test_an_old_path_segment_behind_the_new_paths_acks_gets_the_newest_ack() -> None:
    """A proxy on the old path acknowledges only the old path's data; once the new path's acks
    moved the host's snd_una more than a window past that, Linux would discard the proxy's last
    bytes (RFC 5961 "too old ack"): the anchor gives them the newest ack and the new path's window."""
    a = _anchor()
    a.new_target, a.new_in_key = NEW, NEW.reversed()
    a.phase = Phase.TWO_PATH
    assert a.to_host(_from_peer(OLD.reversed(), 7000, 1200, 40), new=False).ack == 1200  # nothing newer
    new = a.to_host(_from_peer(NEW.reversed(), 9000, 5_000_000, 300), new=True)
    a.incoming(_from_peer(NEW.reversed(), 9000, 5_000_000, 300))
    assert (new.ack, new.window, new.five_tuple) == (5_000_000, 300, HOST.reversed())
    old = _from_peer(OLD.reversed(), 7100, 1200, 40)
    a.incoming(old)
    g = a.to_host(old, new=False)
    assert (g.seq, g.ack, g.window, g.payload) == (7100, 5_000_000, 300, old.payload)
    assert g.five_tuple == HOST.reversed()
    a.phase = Phase.NEW_PATH  # before the switch the old path's acks are the host's: untouched
    assert a.to_host(old, new=False).ack == 1200


def test_software_translation_of_timestamps_and_window() -> None:
    ts = bytes([1, 1, 8, 10]) + (100).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big")
    f = replace(_data(1000, 10), options=ts, window=1000)
    g = translate(f, NEW, 5, 3, ts=(7, 2), ws=(2, 5))
    assert (g.seq, g.ack, g.window) == (1005, 497, 125)
    assert g.options[4:8] == (107).to_bytes(4, "big") and g.options[8:12] == (1).to_bytes(4, "big")
    syn = replace(f, flags=pk.SYN)  # no ACK: TSecr and window stay
    h = translate(syn, NEW, 0, 0, ts=(7, 2), ws=(2, 5))
    assert h.options[8:12] == (2**32 - 1).to_bytes(4, "big") and h.window == 1000


def test_nic_entries_carry_the_splice_translations(dysco_program: Program) -> None:
    nic = Nic(dysco_program.p4info)
    m = Mapping(Table.IN, NEW, HOST, 9, 1, 2, ts_val_delta=-3, ts_ecr_delta=4, ws=(7, 2))
    assert nic.entry(m).action.params[4:10] == (1, 2, 2**32 - 3, 4, 7, 2)
    drop = nic.entry(Mapping(Table.OUT, HOST, None, 0, drop=True))
    punt = nic.entry(Mapping(Table.OUT, HOST, None, 9))
    assert drop.action.params == () and drop.action.action_id != punt.action.action_id
