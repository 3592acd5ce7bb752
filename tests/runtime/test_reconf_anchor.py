"""One anchor of a reconfiguration on its own (runtime/_twopath.py): which path each byte and
each acknowledgment of the host takes, phase by phase, and the translations it applies."""

from __future__ import annotations

from dataclasses import replace

from dysco.runtime import _packet as pk
from dysco.runtime._events import Mapping, Table
from dysco.runtime._nic import Nic
from dysco.runtime._twopath import Anchor, PathSide, Phase, translate
from dysco.runtime._types import FiveTuple
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
