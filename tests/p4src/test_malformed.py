"""Malformed packets neither crash the program nor come out corrupted; random ones neither."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dysco.p4names import HOST_PORT, NET_PORT, SUBSESSION_IN, Detail, Reason
from dysco.softswitch import P4Program

from .dataplane import Dut, Rewrite, assert_frames, checksums_ok, ip_checksum_ok, packet_in, tcp_checksum_ok
from .test_sessions import FROM_NET, HOST_SIDE, TO_HOST, TO_NET, fresh, seg

RW_OUT = Rewrite(**{**TO_NET.__dict__, "ack_delta": 3, "ts_val_delta": 5, "ws_from": 2, "ws_to": 1})
RW_IN = Rewrite(**{**TO_HOST.__dict__, "seq_delta": 9, "ts_ecr_delta": 5})


def with_sessions(prog: P4Program) -> Dut:
    dut = Dut(prog)
    dut.add_session(HOST_SIDE, RW_OUT)
    dut.add_session(FROM_NET, RW_IN, table=SUBSESSION_IN)
    return dut


def raw_tcp(data_offset: int, options: bytes, payload: bytes = b"", ip_len: int | None = None) -> bytes:
    src, dst, sport, dport = HOST_SIDE
    tcp = TCP(sport=sport, dport=dport, flags="A", dataofs=data_offset) / (options + payload)
    ip = IP(src=src, dst=dst, len=ip_len) / tcp
    return bytes(Ether() / ip)


def punted(dut: Dut, frame: bytes, detail: Detail) -> None:
    out = dut.send(HOST_PORT, frame)
    assert [p for p, _ in out] == [255], out
    fields, inner = packet_in(out[0][1])
    assert (fields["reason"], fields["detail"]) == (Reason.UNSUPPORTED, detail)
    assert bytes(inner) == frame


CASES = {
    "data offset 3": (raw_tcp(3, b""), Detail.BAD_LENGTH),
    "data offset past the IPv4 packet": (raw_tcp(15, b"\x01" * 8), Detail.BAD_LENGTH),
    "option past the header": (raw_tcp(7, b"\x01\x01\x08\x1e" + b"\x00" * 4), Detail.BAD_OPTION),
    "option length 0": (raw_tcp(6, b"\x1e\x00\x01\x01"), Detail.BAD_OPTION),
    "option length 1": (raw_tcp(6, b"\x01\x1e\x01\x01"), Detail.BAD_OPTION),
    "timestamps of length 8": (
        raw_tcp(8, b"\x01\x01\x08\x08" + b"\x00" * 6 + b"\x01\x01"),
        Detail.BAD_OPTION,
    ),
    "two timestamps": (raw_tcp(11, (b"\x01\x01\x08\x0a" + b"\x00" * 8) * 2), Detail.BAD_OPTION),
    "sack of length 12": (raw_tcp(9, b"\x01\x01\x05\x0c" + b"\x00" * 8 + b"\x01" * 4), Detail.BAD_OPTION),
    "options cut off by the frame end": (
        raw_tcp(10, b"\x01\x01\x08\x0a" + b"\x00" * 8, ip_len=60),
        Detail.PARSER_ERROR,
    ),
    "IPv4 total length shorter than its header": (raw_tcp(5, b"", ip_len=10), Detail.BAD_LENGTH),
    "IPv4 total length beyond the frame": (raw_tcp(5, b"", b"abc", ip_len=60), Detail.FRAME_LENGTH),
}


@pytest.mark.parametrize("case", list(CASES))
def test_session_packet_the_fast_path_cannot_translate_is_punted(dysco_program: P4Program, case: str) -> None:
    frame, detail = CASES[case]
    punted(with_sessions(dysco_program), frame, detail)


@pytest.mark.parametrize("case", list(CASES))
def test_without_a_session_it_passes_untouched(dut: Dut, case: str) -> None:
    frame, _ = CASES[case]
    assert_frames(dut.send(HOST_PORT, frame), [(NET_PORT, frame)])


@pytest.mark.parametrize(
    "frame",
    [
        bytes(
            Ether()
            / IP(src=HOST_SIDE[0], dst=HOST_SIDE[1], proto=6, len=30)
            / (b"\x9c\x40\x00\x50" + b"\x00" * 6)
        ),
        bytes(Ether() / IP(src=HOST_SIDE[0], dst=HOST_SIDE[1], proto=6)) + b"\x9c\x40",
        bytes(Ether() / IP(ihl=3, src=HOST_SIDE[0], dst=HOST_SIDE[1]) / TCP(sport=40000, dport=80)),
        bytes(Ether())[:10],
        b"",
    ],
    ids=["tcp-header-truncated", "tcp-2-bytes", "ihl-3", "short-ethernet", "empty"],
)
def test_truncated_and_bad_ihl_pass_untouched(dysco_program: P4Program, frame: bytes) -> None:
    dut = with_sessions(dysco_program)
    assert_frames(dut.send(HOST_PORT, frame), [(NET_PORT, frame)])


def test_eol_then_padding_is_fine(dysco_program: P4Program) -> None:
    dut = with_sessions(dysco_program)
    pkt = seg(HOST_SIDE, options=[("NOP", None), ("NOP", None), ("Timestamp", (7, 8)), ("EOL", None)])
    out = dut.send(HOST_PORT, fresh(pkt))
    assert [p for p, _ in out] == [NET_PORT]
    assert checksums_ok(out[0][1])
    assert Ether(out[0][1])[TCP].options[2] == ("Timestamp", (12, 8))


# ---- random packets -------------------------------------------------------------------------------

BASES = [
    fresh(seg(HOST_SIDE, options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))], ack=100)),
    fresh(seg(HOST_SIDE, options=[("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4)), ("EOL", None)])),
    fresh(seg(FROM_NET, options=[("MSS", 1400), ("NOP", None), ("WScale", 3), (30, b"ab")], flags="SA")),
    fresh(seg(FROM_NET, flags="FA", payload=b"bye")),
]


def check_outputs(inp: int, frame: bytes, out: list[tuple[int, bytes]]) -> None:
    for port, data in out:
        if port == 255:
            fields, inner = packet_in(data)
            assert fields["ingress_port"] == inp
            assert bytes(inner) == frame, "punted packets are the packet as received"
            continue
        assert port == (NET_PORT if inp == HOST_PORT else HOST_PORT)
        if data != frame:
            assert len(data) == len(frame)
            # the IPv4 header checksum is recomputed; the TCP checksum is fixed incrementally
            # (RFC 1624), so it is right when it was right and a corrupted segment stays
            # detectably corrupted for the receiver
            assert ip_checksum_ok(data), f"wrong IPv4 checksum\n{Ether(data).show(dump=True)}"
            assert tcp_checksum_ok(data) == tcp_checksum_ok(frame), (
                f"TCP checksum right in: {tcp_checksum_ok(frame)}\n{Ether(data).show(dump=True)}"
            )


@given(
    base=st.sampled_from(BASES),
    edits=st.lists(st.tuples(st.integers(0, 99), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 120),
)
def test_mutated_session_packets(
    dysco_program: P4Program, base: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    frame = bytearray(base)
    for pos, value in edits:
        if pos < len(frame):
            frame[pos] = value
    data = bytes(frame[: len(frame) - cut % 40 if cut >= 80 else len(frame)])
    dut = with_sessions(dysco_program)
    dut.teardown_copies_to_cpu(100)
    inp = (
        HOST_PORT
        if Ether(base)[IP].src == HOST_SIDE[0] and Ether(base)[TCP].sport == HOST_SIDE[2]
        else NET_PORT
    )
    check_outputs(inp, data, dut.send(inp, data))


@given(data=st.binary(max_size=200), inp=st.sampled_from([HOST_PORT, NET_PORT]))
def test_random_bytes(dysco_program: P4Program, data: bytes, inp: int) -> None:
    dut = with_sessions(dysco_program)
    check_outputs(inp, data, dut.send(inp, data))
