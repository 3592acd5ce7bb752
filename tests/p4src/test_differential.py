"""Differential: random packets, valid and malformed, through dysco.p4 with random session entries,
on the python back end (the oracle) and the ebpf back end in the kernel.  The frames out must be
equal (per port, in order), and so must the punt-drop counters.

Packets carry right TCP checksums (recomputed over the bytes after any mangling): the ebpf target
fixes checksums incrementally, which equals python's full recomputation only from a right one
(docs/dataplane.md).  For the same reason a TCP checksum of 0x0000 on one side and 0xFFFF on the
other is the same sum and counts as equal.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dysco.p4names import PACKET_OUT, PUNT_DROPPED, SESSION_OUT, SUBSESSION_IN, PacketOutMode

from .dataplane import Dut, Rewrite
from .test_rate_limits import _id


def _why() -> str | None:
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


WHY = _why()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

HOST, NET, CPU = 1, 2, 255
ADDRS = ["10.0.1.5", "10.0.9.9", "10.0.2.1"]
PORTS = [80, 7000, 40000]
TEARDOWN_SESSION = 100


def ip4(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_frame(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
    options: bytes, payload: bytes, data_offset: int | None, ip_flags_frag: int, pad: int,
) -> bytes:  # fmt: skip
    """Ethernet/IPv4/TCP with right checksums over the bytes as they are (also a data offset
    that does not match the options, which the parser must then cope with)."""
    options += b"\0" * (-len(options) % 4)
    doff = data_offset if data_offset is not None else 5 + len(options) // 4
    tcp = (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0) + options + payload
    )
    total = 20 + len(tcp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, ip_flags_frag, 64, 6, 0, ip4(src), ip4(dst))
    ip = ip[:10] + struct.pack("!H", 0xFFFF - csum(ip)) + ip[12:]
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    c = 0xFFFF - csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + b"\0" * pad


OPTIONS = st.lists(
    st.sampled_from(
        [
            b"\x01",  # NOP
            b"\x02\x04\x05\xb4",  # MSS
            b"\x03\x03\x07",  # window scale
            b"\x04\x02",  # SACK permitted
            b"\x08\x0a" + bytes(range(8)),  # timestamps
            b"\x01\x01\x08\x0a" + bytes(range(8, 16)),  # aligned timestamps
            b"\x01\x01\x05\x0a" + bytes(range(8)),  # one SACK block
            b"\x05\x12" + bytes(range(16)),  # two SACK blocks, misaligned
            b"\xfd\x02",  # the Dysco tag
            b"\x1e\x03\x00",  # an unknown option
            b"\x02\x05\x00\x00\x00",  # MSS of a wrong length
            b"\x00",  # end of options
        ]
    ),
    max_size=5,
).map(lambda xs: b"".join(xs)[:40])

FIVE = st.tuples(
    st.sampled_from(ADDRS), st.sampled_from(ADDRS), st.sampled_from(PORTS), st.sampled_from(PORTS)
)
U32 = st.integers(0, 2**32 - 1)


@st.composite
def tcp_packets(draw: Any, five: Any = FIVE) -> bytes:
    src, dst, sport, dport = draw(five)
    flags = draw(st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x19, 0x01, 0x00, 0x3F]))
    payload = draw(st.one_of(st.binary(max_size=40), st.just(b"DYSC" + bytes(12))))
    window = draw(st.integers(0, 0xFFFF))
    doff = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(0, 15)))
    frag = draw(st.sampled_from([0, 0, 0, 0x4000, 0x2000, 1]))
    frame = tcp_frame(
        src, dst, sport, dport, draw(U32), draw(U32), flags, window, draw(OPTIONS), payload, doff, frag,
        draw(st.sampled_from([0, 0, 0, 6])),
    )  # fmt: skip
    cut = draw(st.one_of(st.none(), st.none(), st.none(), st.integers(14, max(14, len(frame) - 1))))
    return frame[:cut] if cut is not None else frame


def udp_frame(dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 9797, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, ip4(ADDRS[2]), ip4(ADDRS[0]))
    ip = ip[:10] + struct.pack("!H", 0xFFFF - csum(ip)) + ip[12:]
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + udp


FRAMES = st.one_of(
    tcp_packets(),
    st.builds(udp_frame, st.sampled_from([9797, 53]), st.binary(max_size=20)),
    st.binary(min_size=14, max_size=80),  # anything
)


@st.composite
def inputs(draw: Any, sessions: list[tuple[Any, tuple[str, str, int, int], Any]]) -> tuple[int, bytes]:
    """Mostly packets of the sessions, into the port their table looks at; also any others."""
    if sessions and draw(st.integers(0, 3)):
        table, five, _ = draw(st.sampled_from(sessions))
        port = HOST if table == SESSION_OUT else NET
        if draw(st.integers(0, 5)) == 0:
            port = CPU
        frame = draw(tcp_packets(st.just(five)))
    else:
        port = draw(st.sampled_from([HOST, NET, CPU]))
        frame = draw(FRAMES)
    if port == CPU:
        mode = draw(st.sampled_from([0, int(PacketOutMode.PIPELINE)]))
        into = HOST if not sessions or draw(st.booleans()) else NET
        return port, PACKET_OUT.encode(port=into, mode=mode) + frame
    return port, frame


@st.composite
def entries(draw: Any) -> list[tuple[Any, tuple[str, str, int, int], Any]]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        table = draw(st.sampled_from([SESSION_OUT, SUBSESSION_IN]))
        kind = draw(st.sampled_from(["rewrite", "rewrite", "punt", "drop"]))
        if kind == "rewrite":
            a, b, sp, dp = draw(FIVE)
            action: Any = Rewrite(
                a, b, sp, dp, draw(U32), draw(U32), draw(U32), draw(U32),
                draw(st.integers(0, 14)), draw(st.integers(0, 14)), draw(U32),
            )  # fmt: skip
        elif kind == "punt":
            action = (table.punt_action, draw(U32))
        else:
            action = table.drop_action
        out.append((table, draw(FIVE), action))
    return out


def same(a: list[tuple[int, bytes]], b: list[tuple[int, bytes]]) -> bool:
    if len(a) != len(b):
        return False
    return all(
        pa == pb and (fa == fb or _csum_zero_equal(fa, fb)) for (pa, fa), (pb, fb) in zip(a, b, strict=True)
    )


def _csum_zero_equal(a: bytes, b: bytes) -> bool:
    """Equal but for a TCP checksum of 0x0000 against 0xFFFF (the same one's-complement sum)."""
    if len(a) != len(b):
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) != 2 or diff[1] != diff[0] + 1:
        return False
    return {a[diff[0] : diff[0] + 2], b[diff[0] : diff[0] + 2]} == {b"\x00\x00", b"\xff\xff"}


@st.composite
def cases(draw: Any) -> tuple[list[Any], list[tuple[int, bytes]]]:
    setup = draw(entries())
    return setup, draw(st.lists(inputs(setup), min_size=1, max_size=4))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_random_packets_and_sessions_give_equal_output_on_both_back_ends(
    dysco_program: Any, ebpf_dysco: Any, case: tuple[list[Any], list[tuple[int, bytes]]]
) -> None:
    setup, packets = case
    ebpf_dysco.load(dysco_program)
    duts = [Dut(dysco_program), Dut(dysco_program, device=ebpf_dysco)]
    for dut in duts:
        dut.teardown_copies_to_cpu(TEARDOWN_SESSION)
        seen = set()
        for table, five, action in setup:
            if (table.table, five) in seen:
                continue
            seen.add((table.table, five))
            dut.add_session(five, action, table=table)
    for port, frame in packets:
        py, kernel = (sorted(d.send(port, frame), key=lambda pf: pf[0]) for d in duts)
        assert same(py, kernel), f"into port {port}: {frame.hex()}\npython {py}\nebpf   {kernel}"
    counter = _id(dysco_program.p4info, "counters", PUNT_DROPPED)
    for reason in range(16):
        assert duts[0].sw.read_counter(counter, reason) == duts[1].sw.read_counter(counter, reason)
