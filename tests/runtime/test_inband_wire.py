"""In-band control segments (docs/protocol.md §4a): the documented bytes, round trips, every way to
get one wrong, and the sequence numbers they carry."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dysco import p4names
from dysco.errors import PeerError
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _inband as ib
from dysco.runtime.core._types import FiveTuple, ip_int

VIA = FiveTuple(ip_int("10.0.1.2"), ip_int("10.0.2.2"), 10000, 80)
BODY = cw.encode(cw.Message(cw.Kind.REQUEST_LOCK, 7, 3, ip_int("10.0.1.2"), ip_int("10.0.3.2"), VIA))


def test_documented_layout() -> None:
    f = ib.frame(VIA, False, 0x01020304, 0x05060708, BODY)
    ip, tcp = f[14:34], f[34:]
    assert f[12:14] == b"\x08\x00" and ip[0] == 0x45 and ip[9] == 6 and ip[6] == 0x40  # DF
    assert struct.unpack("!H", ip[2:4])[0] == 20 + 28 + len(BODY)
    assert ip[12:16] == bytes([10, 0, 1, 2]) and ip[16:20] == bytes([10, 0, 2, 2])
    assert struct.unpack("!HHII", tcp[:12]) == (10000, 80, 0x01020304, 0x05060708)
    assert tcp[12] == 7 << 4 and tcp[13] == 0x10  # data offset 7, ACK only
    assert tcp[14:16] == b"\0\0" and tcp[18:20] == b"\0\0"  # window 0, urgent 0
    assert tcp[20:28] == bytes([254, 8, 0x44, 0x59, 1, 0, 0, 0])
    assert tcp[28:] == BODY
    assert int.from_bytes(tcp[20:24], "big") == p4names.INBAND_OPTION
    left = ib.frame(VIA.reversed(), True, 0, 0, BODY)
    assert left[34 + 25] == ib.LEFTWARD == 1
    assert ib.frame(VIA.reversed(), True, 0, 0, BODY, relay=True)[34 + 25] == ib.LEFTWARD | ib.RELAY == 3


def test_checksums_are_right() -> None:
    f = ib.frame(VIA, True, 1, 2, BODY)
    pkt = Ether(f)
    ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
    del pkt[IP].chksum, pkt[TCP].chksum
    again = Ether(bytes(pkt))
    assert (again[IP].chksum, again[TCP].chksum) == (ip_sum, tcp_sum)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(1, 65535),
    st.booleans(),
    st.binary(max_size=300),
)
def test_round_trip(seq: int, ack: int, sport: int, leftward: bool, body: bytes) -> None:
    via = FiveTuple(VIA.src, VIA.dst, sport, VIA.dport)
    seg = ib.parse(ib.frame(via, leftward, seq, ack, body))
    assert seg == ib.Segment(via, leftward, seq, ack, body)
    relayed = ib.parse(ib.frame(via, leftward, seq, ack, body, relay=True))
    assert relayed == ib.Segment(via, leftward, seq, ack, body, relay=True)


def test_padded_frame() -> None:
    """Ethernet pads a short frame: the IPv4 length says where the message ends."""
    f = ib.frame(VIA, False, 1, 2, b"abc")
    assert ib.parse(f + bytes(20)).data == b"abc"


def _patch(f: bytes, at: int, value: bytes) -> bytes:
    return f[:at] + value + f[at + len(value) :]


GOOD = ib.frame(VIA, False, 1, 2, BODY)
SHORT = ib.frame(VIA, False, 1, 2, b"abc")
T = 34  # the TCP header's offset


@pytest.mark.parametrize(
    ("frame", "error", "text"),
    [
        (GOOD[:60], cw.TruncatedControl, "in-band frame of 60 bytes < 62"),
        (_patch(GOOD, 12, b"\x86\xdd"), cw.GarbledControl, "in-band frame: not IPv4"),
        (_patch(GOOD, 14 + 9, b"\x11"), cw.GarbledControl, "not TCP in IPv4 without options"),
        (_patch(GOOD, 14, b"\x46"), cw.GarbledControl, "not TCP in IPv4 without options"),
        (_patch(GOOD, 16, b"\x10\x00"), cw.TruncatedControl, "IPv4 length 4096 >"),
        (_patch(GOOD, T + 12, b"\x50"), cw.GarbledControl, "TCP header of 20 bytes"),
        (_patch(SHORT, T + 12, b"\xf0"), cw.GarbledControl, "TCP header of 60 bytes"),
        (_patch(GOOD, T + 13, b"\x11"), cw.GarbledControl, "flags 0x11 (only ACK)"),
        (_patch(GOOD, T + 13, b"\x12"), cw.GarbledControl, "flags 0x12 (only ACK)"),
        (_patch(GOOD, T + 22, b"\xf9\x89"), cw.GarbledControl, "first option 254/8/0xf989"),
        (_patch(GOOD, T + 24, b"\x02"), cw.UnknownVersion, "in-band option version 2"),
        (_patch(GOOD, T + 25, b"\x04"), cw.GarbledControl, "flags 0x04, reserved 0"),
        (_patch(GOOD, T + 26, b"\x00\x01"), cw.GarbledControl, "flags 0x00, reserved 1"),
    ],
    ids=[
        "short", "ipv6", "udp", "ip-options", "ip-length", "no-option", "long-header", "fin",
        "syn", "other-exid", "version", "flags", "reserved",
    ],
)  # fmt: skip
def test_malformed(frame: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        ib.parse(frame)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_refuse(data: bytes) -> None:
    with contextlib.suppress(PeerError):
        ib.parse(data)


@given(st.binary(max_size=120), st.integers(0, 120), st.integers(0, 255))
def test_any_corruption_parses_or_refuses(tail: bytes, at: int, byte: int) -> None:
    f = bytearray(GOOD + tail)
    f[at] = byte
    with contextlib.suppress(PeerError):
        ib.parse(bytes(f))


# ---- the numbers a segment carries ----------------------------------------------------------------


def test_numbers_lie_behind_what_was_seen() -> None:
    book = ib.SeqBook()
    book.saw(VIA, 5000, 9000)
    assert book.numbers(VIA, 1) == ((5000 - 2**30) % 2**32, (9000 - 2**30) % 2**32)
    # the other direction: its sequence number is this one's ack
    assert book.numbers(VIA.reversed(), 1) == ((9000 - 2**30) % 2**32, (5000 - 2**30) % 2**32)


def test_a_syn_tells_one_direction() -> None:
    book = ib.SeqBook()
    book.saw(VIA, 5000, None)
    seq, _ack = book.numbers(VIA, 1)
    assert seq == (5000 - 2**30) % 2**32
    assert book.numbers(VIA.reversed(), 1) == (0, (5000 - 2**30) % 2**32)


def test_retransmissions_try_every_half() -> None:
    """Of the four combinations of halves, one lies behind both directions: four attempts try
    them all, and then start over."""
    book = ib.SeqBook()
    tries = [book.numbers(VIA, k) for k in range(1, 6)]
    assert tries[:4] == [(0, 0), (2**31, 0), (0, 2**31), (2**31, 2**31)]
    assert tries[4] == tries[0]


def test_a_known_number_stays() -> None:
    book = ib.SeqBook()
    book.saw(VIA, 5000, None)  # a SYN: this direction's seq, the other's ack
    s = (5000 - 2**30) % 2**32
    assert [book.numbers(VIA, k) for k in (1, 2, 3)] == [(s, 0), (s, 2**31), (s, 0)]
    assert [book.numbers(VIA.reversed(), k) for k in (1, 2)] == [(0, s), (2**31, s)]


def test_known_numbers_are_doubted_after_four_attempts() -> None:
    book = ib.SeqBook()
    book.passed(ib.Segment(VIA.reversed(), False, 10, 20, b""))
    assert [book.numbers(VIA, k) for k in (1, 4, 5, 6, 7, 8)] == [
        (20, 10),
        (20, 10),
        (20, 10),
        (20 + 2**31, 10),
        (20, 10 + 2**31),
        (20 + 2**31, 10 + 2**31),
    ]


def test_what_got_through_comes_back_mirrored() -> None:
    book = ib.SeqBook()
    book.passed(ib.Segment(VIA, False, 111, 222, b""))
    assert book.numbers(VIA.reversed(), 1) == (222, 111)


def test_the_book_is_bounded() -> None:
    book = ib.SeqBook(limit=4)
    for port in range(10):
        book.saw(FiveTuple(1, 2, port, 80), 1, 2)
    assert len(book) == 4
