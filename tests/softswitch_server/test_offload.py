"""Finishing offloaded packet-ins (GSO segmentation, CHECKSUM_PARTIAL) in software; scapy is
the oracle for checksums."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dysco.softswitch.server._offload import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    VNET_HDR,
    OffloadError,
    VnetHdr,
    csum16,
    finish,
)

PREFIX = bytes.fromhex("0102030405060708090a")  # a controller header, copied to every segment


def partial(pkt: Ether) -> bytes:
    """The frame as the kernel hands it over with CHECKSUM_PARTIAL: the TCP checksum field holds
    the pseudo header's sum only."""
    raw = bytearray(bytes(pkt))
    ip = Ether(bytes(raw))[IP]  # built: lengths filled in
    pseudo = struct.pack("!4s4sBBH", bytes(raw[26:30]), bytes(raw[30:34]), 0, 6, ip.len - ip.ihl * 4)
    struct.pack_into("!H", raw, 14 + ip.ihl * 4 + 16, csum16(pseudo))
    return bytes(raw)


def gso_frame(payload: int, flags: str = "PA", options: list[tuple[str, object]] | None = None) -> bytes:
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.0.1.2", dst="10.0.3.2", id=100, flags="DF")
        / TCP(sport=40000, dport=80, seq=4_294_967_000, ack=77, flags=flags, options=options or [])
        / bytes(i % 251 for i in range(payload))
    )
    return partial(pkt)


def test_a_gso_packet_becomes_mss_sized_segments_with_right_checksums() -> None:
    frame = gso_frame(3000, flags="FPA", options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    hdr = VnetHdr(F_NEEDS_CSUM, GSO_TCPV4, 14 + 20 + 32, 1448, 14 + 20, 16)
    out = finish(hdr, PREFIX + frame, skip=len(PREFIX))
    assert [len(f) - len(PREFIX) for f in out] == [14 + 20 + 32 + n for n in (1448, 1448, 104)]
    data = b""
    for i, f in enumerate(out):
        assert f.startswith(PREFIX)
        pkt = Ether(f[len(PREFIX) :])
        tcp = pkt[TCP]
        sent = (pkt[IP].chksum, tcp.chksum)
        del pkt[IP].chksum, pkt[TCP].chksum
        again = Ether(bytes(pkt))
        assert sent == (again[IP].chksum, again[TCP].chksum), f"segment {i}: checksums"
        assert tcp.seq == (4_294_967_000 + 1448 * i) % 2**32  # wraps past 2^32
        assert pkt[IP].id == 100 + i and pkt[IP].len == 20 + 32 + len(tcp.payload)
        assert str(tcp.flags) == ("FPA" if i == 2 else "A")
        assert tcp.options == [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
        data += bytes(tcp.payload)
    assert data == bytes(i % 251 for i in range(3000))


def test_a_partial_checksum_without_gso_is_finished_and_padding_dropped() -> None:
    frame = gso_frame(0, flags="A") + bytes(6)  # a pure ACK padded to 60 bytes
    hdr = VnetHdr(F_NEEDS_CSUM, 0, 0, 0, 34, 16)
    (out,) = finish(hdr, frame)
    pkt = Ether(out)
    assert len(out) == 54
    sent = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert Ether(bytes(pkt))[TCP].chksum == sent != struct.unpack_from("!H", frame, 50)[0]


def test_a_frame_that_is_not_offloaded_is_left_as_it_is() -> None:
    frame = b"anything at all, even not IP"
    assert finish(VnetHdr(0, 0, 0, 0, 0, 0), frame) == [frame]


def test_the_header_is_read_as_the_kernel_writes_it() -> None:
    data = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16) + b"frame"
    assert VnetHdr.split(data) == (VnetHdr(1, 1, 66, 1448, 34, 16), b"frame")
    with pytest.raises(OffloadError, match="shorter than a virtio_net_hdr"):
        VnetHdr.split(b"\x01\x01")


@pytest.mark.parametrize(
    ("frame", "hdr", "message"),
    [
        (bytes(Ether() / IP() / UDP() / b"x"), VnetHdr(1, 0, 0, 0, 34, 6), "not TCP"),
        (b"\x02" * 60, VnetHdr(1, 0, 0, 0, 34, 16), "not IPv4 over Ethernet"),
        (gso_frame(100), VnetHdr(1, 4, 0, 1448, 34, 16), r"GSO type 0x4 \(only TCPv4"),
        (gso_frame(100)[:80], VnetHdr(1, 1, 0, 1448, 34, 16), "does not fit the 80-byte frame"),
    ],
)
def test_what_cannot_be_finished_is_an_error(frame: bytes, hdr: VnetHdr, message: str) -> None:
    with pytest.raises(OffloadError, match=message):
        finish(hdr, frame)
