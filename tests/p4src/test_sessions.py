"""session-out and subsession-in: rewrites, deltas, options, teardown copies, punt-all, idle timeout."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dysco.p4names import (
    HOST_PORT,
    NET_PORT,
    SESSION_OUT,
    SETUP_PORTS,
    SETUP_PORTS_ACTION,
    SUBSESSION_IN,
    TEARDOWN_CLONE_SESSION,
    Detail,
    Reason,
)
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry

from .dataplane import Dut, Rewrite, assert_frames, checksums_ok, packet_in

M32 = 2**32
HOST_SIDE = ("10.0.1.5", "10.0.9.9", 40000, 80)  # the session as the host sees it
NET_SIDE = ("10.0.1.5", "10.0.2.1", 50000, 7000)  # the subsession on the wire
TO_NET = Rewrite(NET_SIDE[0], NET_SIDE[1], NET_SIDE[2], NET_SIDE[3])
# replies come back on the subsession and are mapped back to the session
FROM_NET = ("10.0.2.1", "10.0.1.5", 7000, 50000)
TO_HOST = Rewrite("10.0.9.9", "10.0.1.5", 80, 40000)


def seg(five: tuple[str, str, int, int], flags: str = "A", payload: bytes = b"data", **tcp: Any) -> Ether:
    src, dst, sport, dport = five
    return (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=src, dst=dst, id=7)
        / TCP(sport=sport, dport=dport, flags=flags, window=tcp.pop("window", 1000), **tcp)
        / payload
    )


def fresh(pkt: Ether) -> bytes:
    """``pkt`` with its checksums computed by scapy."""
    pkt = pkt.copy()
    del pkt[IP].chksum
    del pkt[TCP].chksum
    return bytes(pkt)


def expect(pkt: Ether, rw: Rewrite, **changes: Any) -> bytes:
    out = Ether(bytes(pkt))
    out[IP].src, out[IP].dst = rw.src_addr, rw.dst_addr
    out[TCP].sport, out[TCP].dport = rw.src_port, rw.dst_port
    for k, v in changes.items():
        setattr(out[TCP], k, v)
    return fresh(out)


def one_out(dut: Dut, port: int, pkt: Ether, want_port: int, want: bytes) -> None:
    got = dut.send(port, fresh(pkt))
    assert_frames(got, [(want_port, want)])
    assert checksums_ok(got[0][1]), "checksums do not match scapy's"


def test_session_out_rewrites_tuple_and_ack(dut: Dut) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ack_delta": 1000})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, seq=5, ack=200_000)
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, ack=199_000))


def test_a_gso_sized_segment_is_translated_not_punted(dut: Dut) -> None:
    """With TSO on, the stack hands the NIC segments of up to 64 KB; total_len >= 32 KB is no
    sign of a bad length."""
    rw = Rewrite(**{**TO_NET.__dict__, "ack_delta": 7})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, seq=5, ack=900, payload=bytes(range(256)) * 156)  # total_len 39,976
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, ack=893))


def test_subsession_in_rewrites_tuple_and_seq(dut: Dut) -> None:
    rw = Rewrite(**{**TO_HOST.__dict__, "seq_delta": 1000})
    dut.add_session(FROM_NET, rw, table=SUBSESSION_IN)
    pkt = seg(FROM_NET, seq=5000, ack=77, payload=b"x" * 501)
    one_out(dut, NET_PORT, pkt, HOST_PORT, expect(pkt, rw, seq=6000))


def test_tables_are_per_direction(dut: Dut) -> None:
    dut.add_session(HOST_SIDE, TO_NET)
    pkt = seg(HOST_SIDE)
    assert_frames(dut.send(NET_PORT, fresh(pkt)), [(HOST_PORT, fresh(pkt))])


@pytest.mark.parametrize(
    ("seq", "ack", "seq_delta", "ack_delta"),
    [
        (M32 - 10, 5, 100, 100),  # both wrap
        (3, M32 - 1, -7, -7),  # negative deltas
        (0, 0, M32 - 1, 1),
        (M32 - 1, M32 - 1, 1, M32 - 1),
    ],
)
def test_deltas_wrap_modulo_2_32(dut: Dut, seq: int, ack: int, seq_delta: int, ack_delta: int) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "seq_delta": seq_delta, "ack_delta": ack_delta})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, seq=seq, ack=ack)
    want = expect(pkt, rw, seq=(seq + seq_delta) % M32, ack=(ack - ack_delta) % M32)
    one_out(dut, HOST_PORT, pkt, NET_PORT, want)


def test_ack_untouched_without_ack_flag(dut: Dut) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ack_delta": 1000})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, flags="S", payload=b"", ack=12345)
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw))


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_sack_edges_follow_the_ack_delta(dut: Dut, blocks: int) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ack_delta": 5000})
    dut.add_session(HOST_SIDE, rw)
    edges = [(M32 - 3000 + 1000 * i, M32 - 2500 + 1000 * i) for i in range(blocks)]
    flat = tuple(x % M32 for e in edges for x in e)
    opts: list[Any] = [("NOP", None), ("NOP", None), ("SAck", flat)]
    if blocks <= 3:
        opts = [("NOP", None), ("NOP", None), ("Timestamp", (11, 22)), *opts]
    pkt = seg(HOST_SIDE, ack=10_000, options=opts)
    shifted = tuple((x - 5000) % M32 for x in flat)
    want_opts = [o if o[0] != "SAck" else ("SAck", shifted) for o in opts]
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, ack=5000, options=want_opts))


def test_timestamps_translated(dut: Dut) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ts_val_delta": 1_000_000, "ts_ecr_delta": -5})
    dut.add_session(HOST_SIDE, rw)
    opts: list[Any] = [("NOP", None), ("NOP", None), ("Timestamp", (M32 - 1, 3))]
    pkt = seg(HOST_SIDE, options=opts)
    want_opts = [("NOP", None), ("NOP", None), ("Timestamp", (999_999, M32 - 2))]
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, options=want_opts))


def test_syn_timestamps_keep_the_zero_echo_and_window(dut: Dut) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ts_val_delta": 10, "ts_ecr_delta": 10, "ws_from": 7, "ws_to": 0})
    dut.add_session(HOST_SIDE, rw)
    opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (100, 0)), ("NOP", None), ("WScale", 7)]
    pkt = seg(HOST_SIDE, flags="S", payload=b"", window=64240, options=opts)
    want_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (110, 0)), ("NOP", None), ("WScale", 7)]
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, options=want_opts))


@pytest.mark.parametrize(
    ("window", "ws_from", "ws_to", "want"),
    [(100, 7, 2, 3200), (3200, 2, 7, 100), (60000, 7, 0, 0xFFFF), (1000, 3, 3, 1000), (5, 0, 4, 0)],
)
def test_window_rescaled(dut: Dut, window: int, ws_from: int, ws_to: int, want: int) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ws_from": ws_from, "ws_to": ws_to})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, window=window)
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, window=want))


def test_unknown_options_kept_and_later_ones_translated(dut: Dut) -> None:
    rw = Rewrite(**{**TO_NET.__dict__, "ts_val_delta": 1})
    dut.add_session(HOST_SIDE, rw)
    opts: list[Any] = [(30, b"\x01\x02\x03\x04\x05\x06"), ("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
    pkt = seg(HOST_SIDE, options=opts)
    want_opts = [*opts[:3], ("Timestamp", (2, 2))]
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw, options=want_opts))


def test_misaligned_timestamps_punted_only_when_they_need_translating(dut: Dut) -> None:
    opts: list[Any] = [("Timestamp", (1, 2)), ("NOP", None), ("NOP", None)]  # TSval at byte 2: misaligned
    pkt = seg(HOST_SIDE, options=opts)
    dut.add_session(HOST_SIDE, TO_NET)
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, TO_NET))
    rw = Rewrite(**{**TO_NET.__dict__, "ts_val_delta": 1})
    dut.sw.write_entry("modify", dut.session_entry(HOST_SIDE, rw))
    out = dut.send(HOST_PORT, fresh(pkt))
    assert [p for p, _ in out] == [255]
    fields, inner = packet_in(out[0][1])
    assert (fields["reason"], fields["detail"]) == (Reason.UNSUPPORTED, Detail.MISALIGNED)
    assert bytes(inner) == fresh(pkt)


@pytest.mark.parametrize("flags", ["R", "RA"])
def test_rst_copied_to_the_agent(dut: Dut, flags: str) -> None:
    dut.teardown_copies_to_cpu(TEARDOWN_CLONE_SESSION)
    rw = Rewrite(**{**TO_NET.__dict__, "session_id": 42, "ack_delta": 1})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, flags=flags, ack=10)
    got = dut.send(HOST_PORT, fresh(pkt))
    assert sorted(p for p, _ in got) == [NET_PORT, 255]
    copy = next(f for p, f in got if p == 255)
    fields, inner = packet_in(copy)
    assert (fields["reason"], fields["session_id"], fields["ingress_port"]) == (
        Reason.TEARDOWN,
        42,
        HOST_PORT,
    )
    assert bytes(inner) == fresh(pkt), "the copy is the segment as it was received"
    want_ack = 9 if "A" in flags else 10
    assert next(f for p, f in got if p == NET_PORT) == expect(pkt, rw, ack=want_ack)


def test_no_copy_of_plain_segments(dut: Dut) -> None:
    dut.teardown_copies_to_cpu(TEARDOWN_CLONE_SESSION)
    dut.add_session(HOST_SIDE, TO_NET)
    assert [p for p, _ in dut.send(HOST_PORT, fresh(seg(HOST_SIDE, flags="PA")))] == [NET_PORT]


def test_rst_copy_from_net(dut: Dut) -> None:
    dut.teardown_copies_to_cpu(TEARDOWN_CLONE_SESSION)
    dut.add_session(FROM_NET, Rewrite(**{**TO_HOST.__dict__, "session_id": 9}), table=SUBSESSION_IN)
    got = dut.send(NET_PORT, fresh(seg(FROM_NET, flags="RA")))
    assert sorted(p for p, _ in got) == [HOST_PORT, 255]
    fields, _ = packet_in(next(f for p, f in got if p == 255))
    assert (fields["reason"], fields["session_id"], fields["ingress_port"]) == (Reason.TEARDOWN, 9, NET_PORT)


@pytest.mark.parametrize(
    ("table", "port", "five", "rw"),
    [(SESSION_OUT, HOST_PORT, HOST_SIDE, TO_NET), (SUBSESSION_IN, NET_PORT, FROM_NET, TO_HOST)],
)
@pytest.mark.parametrize("flags", ["FA", "FPA", "F"])
def test_fin_goes_to_the_agent_untouched(
    dut: Dut, table: Any, port: int, five: Any, rw: Any, flags: str
) -> None:
    """A FIN of a translated session is punted as it came, not translated and copied: the agent
    forwards it itself, after it has made the session's entries punt (docs/protocol.md)."""
    dut.teardown_copies_to_cpu(TEARDOWN_CLONE_SESSION)
    dut.add_session(five, Rewrite(**{**rw.__dict__, "session_id": 21}), table=table)
    pkt = fresh(seg(five, flags=flags, ack=10))
    got = dut.send(port, pkt)
    assert [p for p, _ in got] == [255]
    fields, inner = packet_in(got[0][1])
    assert (fields["reason"], fields["session_id"], fields["ingress_port"]) == (Reason.TWO_PATH, 21, port)
    assert bytes(inner) == pkt


@pytest.mark.parametrize(
    ("table", "port", "five"), [(SESSION_OUT, HOST_PORT, HOST_SIDE), (SUBSESSION_IN, NET_PORT, FROM_NET)]
)
def test_punt_session_sends_everything_to_the_agent(dut: Dut, table: Any, port: int, five: Any) -> None:
    dut.add_session(five, (table.punt_action, 77), table=table)
    for flags in ("A", "PA", "FA", "S"):
        pkt = fresh(seg(five, flags=flags))
        out = dut.send(port, pkt)
        assert [p for p, _ in out] == [255]
        fields, inner = packet_in(out[0][1])
        assert (fields["reason"], fields["session_id"], fields["ingress_port"]) == (Reason.TWO_PATH, 77, port)
        assert bytes(inner) == pkt


def test_drop_session(dut: Dut) -> None:
    dut.add_session(HOST_SIDE, SESSION_OUT.drop_action)
    assert dut.send(HOST_PORT, fresh(seg(HOST_SIDE))) == []
    assert dut.send(HOST_PORT, fresh(seg(("10.0.1.5", "10.0.9.9", 40001, 80)))) != []


def test_session_syn_skips_the_classifier(dut: Dut) -> None:
    """A SYN the agent sends through the pipeline after installing the session is translated, not punted."""
    from .test_classifier import syn

    dut.add_session(HOST_SIDE, TO_NET)
    pkt = syn(HOST_SIDE[0], HOST_SIDE[1], HOST_SIDE[3])
    pkt[TCP].sport = HOST_SIDE[2]
    assert [p for p, _ in dut.send(HOST_PORT, fresh(pkt))] == [NET_PORT]


def test_a_syn_ack_that_overtakes_its_entry_goes_to_the_agent(dut: Dut) -> None:
    """A SYN-ACK from the network to a port of setup_ports with no subsession_in entry yet is
    punted (the agent sent the SYN on before its entries' writes were answered); outside the
    range, not a SYN-ACK, or with its entry in, the NIC decides as before."""
    table, action = dut.names[SETUP_PORTS], dut.names[SETUP_PORTS_ACTION]
    match = (FieldMatch(table.match_fields[0].id, "range", 50000, high=50099),)
    dut.sw.write_entry("insert", TableEntry(table.preamble.id, match, ActionCall(action.preamble.id, ()), 1))
    synack = fresh(seg(FROM_NET, "SA", b""))
    got = dut.send(NET_PORT, synack)
    assert [p for p, _ in got] == [255]
    fields, inner = packet_in(got[0][1])
    assert (fields["reason"], fields["ingress_port"]) == (Reason.SETUP_MISS, NET_PORT)
    assert bytes(inner) == synack
    elsewhere = fresh(seg(("10.0.2.1", "10.0.1.5", 7000, 50100), "SA", b""))
    assert_frames(dut.send(NET_PORT, elsewhere), [(HOST_PORT, elsewhere)])
    ack = fresh(seg(FROM_NET, "A", b""))
    assert_frames(dut.send(NET_PORT, ack), [(HOST_PORT, ack)])
    dut.add_session(FROM_NET, TO_HOST, table=SUBSESSION_IN)
    assert_frames(dut.send(NET_PORT, synack), [(HOST_PORT, expect(seg(FROM_NET, "SA", b""), TO_HOST))])


@pytest.mark.fake_clock
def test_idle_timeout_with_a_fake_clock(dut: Dut) -> None:
    out_entry = dut.add_session(HOST_SIDE, TO_NET, timeout_ns=1_000_000_000)
    in_entry = dut.add_session(FROM_NET, TO_HOST, table=SUBSESSION_IN, timeout_ns=2_000_000_000)
    dut.clock.now += 999_999_999
    assert dut.sw.expired_entries() == []
    dut.send(HOST_PORT, fresh(seg(HOST_SIDE)))  # a hit restarts the idle period
    dut.clock.now += 999_999_999
    assert dut.sw.expired_entries() == []
    dut.clock.now += 2  # outbound idle 1 s + 1 ns since its hit; inbound never hit, idle 2 s
    expired = dut.sw.expired_entries()
    assert sorted((e.table_id, e.match) for e in expired) == sorted(
        (e.table_id, e.match) for e in (out_entry, in_entry)
    )
    assert dut.sw.expired_entries() == []  # reported once per idle period


def test_a_padded_frame_is_translated_and_keeps_its_padding(dut: Dut) -> None:
    """A pure ACK padded to Ethernet's 60 bytes: the TCP checksum is fixed incrementally, so
    the padding is no reason to punt."""
    rw = Rewrite(**{**TO_NET.__dict__, "ack_delta": 3})
    dut.add_session(HOST_SIDE, rw)
    pkt = seg(HOST_SIDE, payload=b"", seq=9, ack=1000)
    frame = fresh(pkt) + b"\x00" * 6  # 54 -> 60 bytes of Ethernet minimum
    want = expect(pkt, rw, ack=997) + b"\x00" * 6
    got = dut.send(HOST_PORT, frame)
    assert_frames(got, [(NET_PORT, want)])
    assert checksums_ok(got[0][1])


def test_timestamp_deltas_leave_other_option_words_alone(dut: Dut) -> None:
    """Regression: with no timestamps option, words 0 and 1 of the option area are not TSval/TSecr."""
    rw = Rewrite(**{**TO_NET.__dict__, "ts_val_delta": 5, "ts_ecr_delta": 5})
    dut.add_session(HOST_SIDE, rw)
    opts: list[Any] = [("NOP", None), ("NOP", None), ("SAck", (1, 2)), ("MSS", 1)]
    pkt = seg(HOST_SIDE, options=opts)
    one_out(dut, HOST_PORT, pkt, NET_PORT, expect(pkt, rw))
