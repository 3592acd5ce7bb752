"""The pcap reader: both byte orders, nanosecond files, raw IPv4, and its errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dysco.compiler.evaluate import Syn
from dysco.compiler.generate import syn_frame
from dysco.compiler.pcapfile import PcapError, read_syns, syn_fields, write_pcap

SYN = Syn(0x0A000105, 0x0A000909, 40000, 443)


def _big_endian(path: Path, frames: list[bytes], magic: int = 0xA1B2C3D4, linktype: int = 1) -> None:
    with path.open("wb") as f:
        f.write(struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
        for frame in frames:
            f.write(struct.pack(">IIII", 0, 0, len(frame), len(frame)) + frame)


def test_round_trip_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "le.pcap"
    write_pcap(path, [syn_frame(SYN), syn_frame(SYN)])
    assert list(read_syns(path)) == [(1, SYN), (2, SYN)]


def test_big_endian_nanosecond_and_raw_ip(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    _big_endian(path, [syn_frame(SYN)], magic=0xA1B23C4D)
    assert list(read_syns(path)) == [(1, SYN)]
    raw = tmp_path / "raw.pcap"
    write_pcap(raw, [syn_frame(SYN)[14:]], linktype=101)
    assert list(read_syns(raw)) == [(1, SYN)]


def test_what_is_not_a_syn_the_classifier_sees() -> None:
    frame = bytearray(syn_frame(SYN))
    assert syn_fields(bytes(frame)) == SYN
    later_fragment = bytearray(frame)
    later_fragment[14 + 7] = 1
    assert syn_fields(bytes(later_fragment)) is None
    ack = bytearray(frame)
    ack[14 + 20 + 13] = 0x10
    assert syn_fields(bytes(ack)) is None
    assert syn_fields(bytes(frame[:40])) is None  # cut inside the TCP header
    ipv6 = bytearray(frame)
    ipv6[12:14] = b"\x86\xdd"
    assert syn_fields(bytes(ipv6)) is None


def test_errors_name_the_file_and_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    write_pcap(path, [syn_frame(SYN)])
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(PcapError, match=r"cut.pcap: offset 24: the file ends inside a 54-byte frame"):
        list(read_syns(path))
    path.write_bytes(data[:30])
    with pytest.raises(PcapError, match=r"offset 24: the file ends inside a record header"):
        list(read_syns(path))
    wifi = tmp_path / "wifi.pcap"
    write_pcap(wifi, [], linktype=105)
    with pytest.raises(PcapError, match=r"link type 105 is not Ethernet \(1\) or raw IPv4 \(101\)"):
        read_syns(wifi)
