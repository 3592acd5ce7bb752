"""The Dysco SYN payload: round trips, the documented bytes, and every way to get it wrong."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _syn_payload as w
from dysco.runtime.core._types import FiveTuple, ip_int

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
        (36, "B", 7, w.GarbledPayload, "tag type 7 unknown"),
        (36, "B", 1, w.GarbledPayload, "HMAC-SHA256.*no keys"),
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


# ---- authentication (docs/protocol.md §5) ------------------------------------------------------------

KEY1, KEY2 = bytes(range(32)), bytes(range(100, 148))
RING = auth.KeyRing({1: KEY1}, current=1)
ME, PEER = ip_int("10.0.2.1"), ip_int("10.0.1.1")
T0 = 1_700_000_000 * auth.SECOND


def _sealed(ring: auth.KeyRing = RING, now: int = T0, sender: int = PEER, receiver: int = ME) -> bytes:
    return w.encode(P, ring, sender=sender, receiver=receiver, now=now)


def _guard(**kw: int) -> auth.ReplayGuard:
    return auth.ReplayGuard(ME, **kw)


def test_sealed_documented_bytes() -> None:
    data = _sealed()
    assert len(data) == 40 + 32
    assert data[6:8] == (72).to_bytes(2, "big")  # length counts the tag
    assert data[36:40] == bytes([1, 1, 0, 32])  # type HMAC-SHA256, key 1, 32 bytes
    assert data[40:44] == PEER.to_bytes(4, "big") and data[44:48] == ME.to_bytes(4, "big")
    assert data[48:56] == T0.to_bytes(8, "big")
    assert data[56:] == hmac.new(KEY1, data[:56], hashlib.sha256).digest()[:16]
    unsealed = w.encode(P)
    assert data[:6] == unsealed[:6] and data[8:36] == unsealed[8:36]  # the rest as without keys


def test_sealed_round_trip_keeps_following_syn_data() -> None:
    data = _sealed()
    payload, rest = w.decode(data + b"tfo", RING, _guard(), now=T0)
    assert rest == b"tfo"
    assert payload == replace(P, tag=w.Tag(w.TagType.HMAC_SHA256, 1, data[40:72]))
    assert auth.Stamp.unpack(payload.tag.value) == auth.Stamp(PEER, ME, T0)
    assert w.encode(payload) == data  # re-encoding the decoded payload gives the same bytes


def test_without_a_guard_only_the_mac_is_checked() -> None:
    data = _sealed(receiver=12345)
    assert w.decode(data, RING, now=0)[0].session == S
    assert w.decode(data, RING, now=0)[0].session == S  # no memory, no window


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("data", "ring", "error", "kind", "match"),
    [
        (_flip(_sealed(), 71), RING, w.PayloadBadMac, "bad_mac", "does not match"),
        (_flip(_sealed(), 13), RING, w.PayloadBadMac, "bad_mac", "does not match"),  # session address
        (_flip(_sealed(), 49), RING, w.PayloadBadMac, "bad_mac", "does not match"),  # the time
        (_sealed(), auth.KeyRing({2: KEY2}, 2), w.PayloadUnknownKey, "unknown_key", "key id 1"),
        (w.encode(P), RING, w.PayloadMissingTag, "missing_tag", "requires"),
        (_sealed(receiver=ME + 1), RING, w.PayloadMisdirected, "misdirected", "receiver"),
        (_sealed(now=T0 - 31 * auth.SECOND), RING, w.PayloadStale, "stale", r"31\.000 s ago"),
        (_sealed(now=T0 + 31 * auth.SECOND), RING, w.PayloadStale, "stale", "in the future"),
    ],
    ids=["mac", "session", "time", "key", "none", "receiver", "old", "future"],
)
def test_auth_failures(
    data: bytes, ring: auth.KeyRing, error: type[w.BadPayload], kind: str, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        w.decode(data, ring, _guard(), now=T0)
    assert isinstance(info.value, w.BadPayload) and isinstance(info.value, auth.AuthError)
    assert info.value.kind == kind


def test_replayed_within_the_window() -> None:
    guard = _guard()
    data = _sealed()
    w.decode(data, RING, guard, now=T0)
    with pytest.raises(w.PayloadReplayed, match=r"sent this message 1\.000 s ago") as info:
        w.decode(data, RING, guard, now=T0 + auth.SECOND)
    assert info.value.kind == "replayed"
    # the same session sealed again (a retransmission re-sealed at its own time) is accepted
    w.decode(_sealed(now=T0 + 1), RING, guard, now=T0 + auth.SECOND)
    assert len(guard) == 2


def test_a_sealed_payload_with_a_wrong_tag_length_is_garbled() -> None:
    data = bytearray(_sealed())
    struct.pack_into("!H", data, 38, 28)
    struct.pack_into("!H", data, 6, 68)
    with pytest.raises(w.GarbledPayload, match="tag of 28 bytes"):
        w.decode(bytes(data[:68]), RING, _guard(), now=T0)


def test_rotation_old_key_accepted_unknown_refused() -> None:
    rotating = auth.KeyRing({1: KEY1, 2: KEY2}, current=2)
    # a sender still on key 1 is accepted by a receiver that already signs with key 2 ...
    assert w.decode(_sealed(RING), rotating, _guard(), now=T0)[0].tag.key_id == 1
    # ... and the other way round, while both hold both keys
    new = _sealed(rotating)
    assert new[37] == 2
    assert w.decode(new, auth.KeyRing({1: KEY1, 2: KEY2}, current=1), _guard(), now=T0)[0].tag.key_id == 2
    # once key 1 is retired, what it signed is refused
    with pytest.raises(w.PayloadUnknownKey):
        w.decode(_sealed(RING), auth.KeyRing({2: KEY2}, current=2), _guard(), now=T0)
    # the same id with another key does not verify
    with pytest.raises(w.PayloadBadMac):
        w.decode(_sealed(RING), auth.KeyRing({1: KEY2}, current=1), _guard(), now=T0)


@pytest.mark.parametrize("sent", [-30 * auth.SECOND, 0, 30 * auth.SECOND])
def test_window_edges_are_inclusive(sent: int) -> None:
    payload, _ = w.decode(_sealed(now=T0 + sent), RING, _guard(), now=T0)
    assert auth.Stamp.unpack(payload.tag.value).time == T0 + sent


@pytest.mark.parametrize("sent", [-30 * auth.SECOND - 1, 30 * auth.SECOND + 1])
def test_one_ns_beyond_the_window_is_stale(sent: int) -> None:
    with pytest.raises(w.PayloadStale):
        w.decode(_sealed(now=T0 + sent), RING, _guard(), now=T0)


@given(st.data())
def test_any_mutation_of_a_sealed_payload_is_refused(data: st.DataObject) -> None:
    sealed = _sealed()
    at = data.draw(st.integers(0, len(sealed) - 1))
    new = data.draw(st.binary(min_size=1, max_size=len(sealed) - at))
    mutated = sealed[:at] + new + sealed[at + len(new) :]
    if mutated == sealed:
        return
    with pytest.raises(w.BadPayload):
        w.decode(mutated, RING, _guard(), now=T0)


@given(st.binary(max_size=120))
def test_any_bytes_with_keys_decode_or_raise_bad_payload(data: bytes) -> None:
    with contextlib.suppress(w.BadPayload):
        w.decode(data, RING, _guard(), now=T0)
