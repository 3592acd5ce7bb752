"""The Dysco SYN payload: round trips, the documented bytes, and every way to get it wrong."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dysco.errors import PeerError
from dysco.runtime import _wire as w
from dysco.runtime._types import FiveTuple, ip_int

S = FiveTuple(ip_int("10.0.1.1"), ip_int("10.0.9.9"), 40000, 80)
P = w.SynPayload(S, (ip_int("10.0.2.1"), ip_int("10.0.9.9")))


def test_documented_bytes() -> None:
    data = w.encode(P)
    assert data.hex() == (
        "44595343"
        "01"
        "04"
        "0028"
        "02"
        "00"
        "0000"  # header
        "0a000101"
        "0a000909"
        "9c40"
        "0050"
        "06"
        "000000"  # session
        "0a000201"
        "0a000909"  # hops
        "00"
        "00"
        "0000"  # tag
    )
    assert len(data) == P.encoded_size() == 40


def test_round_trip_keeps_following_syn_data() -> None:
    payload, rest = w.decode(w.encode(P) + b"fast open data")
    assert payload == P
    assert rest == b"fast open data"


def test_ipv6_round_trip() -> None:
    p = w.SynPayload(FiveTuple(1 << 120, 2, 1, 2), (3 << 100, 4), family=6)
    assert w.decode(w.encode(p)) == (p, b"")


hop = st.integers(0, 2**32 - 1)


@given(
    st.builds(FiveTuple, hop, hop, st.integers(0, 65535), st.integers(0, 65535)),
    st.lists(hop, min_size=1, max_size=w.MAX_HOPS),
    st.binary(max_size=20),
)
def test_round_trip_property(s: FiveTuple, hops: list[int], tail: bytes) -> None:
    p = w.SynPayload(s, tuple(hops))
    assert w.decode(w.encode(p) + tail) == (p, tail)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_bad_payload(data: bytes) -> None:
    with contextlib.suppress(w.BadPayload):
        w.decode(data)


@given(st.binary(min_size=1, max_size=80), st.integers(0, 39))
def test_garbling_a_valid_payload_never_crashes(noise: bytes, at: int) -> None:
    data = bytearray(w.encode(P))
    data[at : at + len(noise)] = noise
    try:
        w.decode(bytes(data))
    except w.BadPayload as exc:
        assert isinstance(exc, PeerError)
        assert exc.kind in {"truncated", "oversized", "garbled", "unknown_version"}


@pytest.mark.parametrize("cut", [0, 3, 4, 11, 12, 20, 39])
def test_truncated(cut: int) -> None:
    with pytest.raises(w.TruncatedPayload):
        w.decode(w.encode(P)[:cut])


def _with(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(w.encode(P))
    struct.pack_into("!" + fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "error", "message"),
    [
        (0, "I", 0x44595344, w.GarbledPayload, "no Dysco magic"),
        (4, "B", 2, w.UnknownVersion, "version 2"),
        (5, "B", 5, w.GarbledPayload, "address family 5"),
        (6, "H", 30, w.GarbledPayload, "length 30 < 40"),
        (6, "H", 200, w.OversizedPayload, "length 200 >"),
        (6, "H", 44, w.TruncatedPayload, "40 bytes < length 44"),
        (8, "B", 17, w.OversizedPayload, "17 hops > 16"),
        (8, "B", 0, w.GarbledPayload, "no hops"),
        (9, "B", 1, w.GarbledPayload, "flags must be 0"),
        (10, "H", 1, w.GarbledPayload, "reserved must be 0"),
        (24, "B", 17, w.GarbledPayload, "protocol 17"),
        (25, "B", 1, w.GarbledPayload, "session field pad"),
        (36, "B", 1, w.GarbledPayload, "tag type 1 unknown"),
        (38, "H", 4, w.GarbledPayload, "tag length 4 disagrees"),
    ],
)
def test_must_fail(offset: int, fmt: str, value: int, error: type[w.BadPayload], message: str) -> None:
    data = _with(offset, fmt, value)
    with pytest.raises(error, match=message):
        w.decode(data)


def test_tag_none_with_value_refused() -> None:
    data = bytearray(w.encode(P))
    struct.pack_into("!H", data, 6, 42)
    struct.pack_into("!H", data, 38, 2)
    with pytest.raises(w.GarbledPayload, match="tag type NONE with a value"):
        w.decode(bytes(data) + b"xx")


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError, match="hops"):
        w.encode(w.SynPayload(S, tuple(range(17))))
    with pytest.raises(ValueError, match="family"):
        w.encode(w.SynPayload(S, (1,), family=5))


def test_has_magic_only_for_dysco() -> None:
    assert w.has_magic(w.encode(P))
    assert not w.has_magic(b"GET / HTTP/1.1")  # a TCP Fast Open SYN
    assert not w.has_magic(b"DYS")


def test_layout_describes_offsets() -> None:
    assert w.HEADER.describe() == [
        (0, 4, "magic"),
        (4, 1, "version"),
        (5, 1, "family"),
        (6, 2, "length"),
        (8, 1, "hops"),
        (9, 1, "flags"),
        (10, 2, "reserved"),
    ]
