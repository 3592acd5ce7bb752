"""Control messages: round trips, the documented layout, and every way to get them wrong."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dysco.errors import PeerError
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as c
from dysco.runtime.core._types import FiveTuple, ip_int

SUB = FiveTuple(ip_int("10.0.0.1"), ip_int("10.0.0.10"), 10000, 80)
M = c.Message(
    c.Kind.REQUEST_LOCK,
    7,
    3,
    ip_int("10.0.0.1"),
    ip_int("10.0.0.100"),
    SUB,
    FiveTuple(ip_int("10.0.0.1"), ip_int("10.0.0.100"), 40000, 80),
    delta_fwd=5,
    hops=(ip_int("10.0.0.20"),),
    ts_fwd=2**32 - 3,
    ws_fwd=(7, 2),
)


def test_documented_layout() -> None:
    data = c.encode(M)
    assert len(data) == M.encoded_size() == 104 + 4
    assert data[:4] == b"DYSR" and data[4] == 1 and data[5] == 1 and data[6] == 4
    assert int.from_bytes(data[8:10], "big") == len(data)
    assert int.from_bytes(data[12:16], "big") == 7 and int.from_bytes(data[16:20], "big") == 3
    assert data[28:32] == bytes([10, 0, 0, 1]) and data[36:38] == (10000).to_bytes(2, "big")
    assert int.from_bytes(data[76:80], "big") == 5
    assert int.from_bytes(data[88:92], "big") == 2**32 - 3 and data[96:100] == bytes([7, 2, 0, 0])
    assert data[100:104] == bytes([10, 0, 0, 20]) and data[104:] == b"\0" * 4
    assert [n for _, _, n in c.HEADER.describe()][:4] == ["magic", "version", "type", "family"]


def test_round_trip_and_udp_framing() -> None:
    assert c.decode(c.encode(M)) == M
    frame = c.udp_frame(1, 2, 9797, c.encode(M))
    assert c.parse_udp(frame, 9797) == (1, 2, c.encode(M))
    with pytest.raises(c.BadControl, match="port 9797"):
        c.parse_udp(frame, 9798)


def test_failed_layout() -> None:
    """Around a dead hop (docs/protocol.md §4): ``value`` bit 1, ``sub`` the dead hop and the right
    anchor without ports, and the right anchor's NOT_NEIGHBOUR."""
    dead, right = ip_int("10.0.0.10"), ip_int("10.0.0.100")
    assert c.around(dead, right) == FiveTuple(dead, right, 0, 0, 0)
    m = replace(M, sub=c.around(dead, right), value=c.FAILED)
    data = c.encode(m)
    assert data[28:44] == bytes([10, 0, 0, 10, 10, 0, 0, 100]) + bytes(8)
    assert int.from_bytes(data[84:88], "big") == 2 == c.FAILED
    nack = replace(m, kind=c.Kind.NACK_LOCK, status=c.Status.NOT_NEIGHBOUR)
    assert c.encode(nack)[5] == 3 and c.encode(nack)[7] == 9
    for kind in (c.Kind.REQUEST_LOCK, c.Kind.NACK_LOCK, c.Kind.CANCEL_LOCK, c.Kind.TEARDOWN, c.Kind.DELEGATE):
        x = replace(nack, kind=kind)
        assert c.decode(c.encode(x)) == x
    delegate = replace(M, kind=c.Kind.DELEGATE, value=c.FAILOVER)
    assert int.from_bytes(c.encode(delegate)[84:88], "big") == 4 == c.FAILOVER
    assert c.decode(c.encode(delegate)) == delegate


a32 = st.integers(0, 2**32 - 1)
tuples = st.builds(FiveTuple, a32, a32, st.integers(0, 65535), st.integers(0, 65535), st.sampled_from([0, 6]))


@given(
    st.sampled_from(list(c.Kind)),
    a32,
    a32,
    tuples,
    tuples,
    st.lists(a32, max_size=16),
    st.sampled_from(list(c.Status)),
)
def test_round_trip_any(
    kind: c.Kind, mid: int, v: int, t1: FiveTuple, t2: FiveTuple, hops: list[int], status: c.Status
) -> None:
    ws = (v % 15, mid % 15)
    m = c.Message(
        kind, mid, v, v, mid, t1, t2, t1, v, mid, v, status, tuple(hops), ts_fwd=mid, ts_rev=v, ws_fwd=ws
    )
    assert c.decode(c.encode(m)) == m


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_refuse(data: bytes) -> None:
    with contextlib.suppress(c.BadControl):
        c.decode(data)


GOOD = c.encode(M)


def _patch(off: int, value: bytes) -> bytes:
    return GOOD[:off] + value + GOOD[off + len(value) :]


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (GOOD[:10], c.TruncatedControl, "header"),
        (GOOD[:-1], c.TruncatedControl, "length"),
        (GOOD + b"x", c.GarbledControl, "length says"),
        (_patch(0, b"XXXX"), c.GarbledControl, "magic"),
        (_patch(4, b"\x02"), c.UnknownVersion, "version 2"),
        (_patch(5, b"\x63"), c.GarbledControl, "99"),
        (_patch(6, b"\x06"), c.GarbledControl, "family"),
        (_patch(7, b"\x63"), c.GarbledControl, "99"),
        (_patch(11, b"\x01"), c.GarbledControl, "reserved"),
        (_patch(10, b"\x11"), c.GarbledControl, "17 hops"),
        (_patch(8, b"\x00\x10"), c.GarbledControl, "length 16"),
        (_patch(41, b"\x01"), c.GarbledControl, "pad"),
        (_patch(40, b"\x11"), c.GarbledControl, "protocol 17"),
        (_patch(98, b"\x0f"), c.GarbledControl, "shift 15 > 14"),
        (_patch(104, b"\x01"), c.GarbledControl, "tag type 1"),
        (_patch(106, b"\x00\x04"), c.GarbledControl, "tag length"),
    ],
)
def test_malformed(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        c.decode(data)
    assert isinstance(info.value, PeerError)


def test_encoder_refuses_too_much() -> None:
    with pytest.raises(ValueError, match="hops"):
        c.encode(c.Message(c.Kind.DONE, 1, 1, 1, 1, hops=(1,) * 17))
    with pytest.raises(ValueError, match="tag"):
        c.encode(c.Message(c.Kind.DONE, 1, 1, 1, 1, tag=c.Tag(0, 0, b"x" * 65)))
    with pytest.raises(ValueError, match="window scale"):
        c.encode(c.Message(c.Kind.DONE, 1, 1, 1, 1, ws_rev=(15, 0)))


# ---- authentication (docs/protocol.md §5) ------------------------------------------------------------

RING = auth.KeyRing({1: bytes(range(32))}, current=1)
ME, PEER = ip_int("10.0.0.10"), ip_int("10.0.0.1")
T0 = 1_700_000_000 * auth.SECOND


def _sealed(m: c.Message = M, ring: auth.KeyRing = RING, now: int = T0, receiver: int = ME) -> bytes:
    return c.encode(m, ring, sender=PEER, receiver=receiver, now=now)


def test_sealed_layout() -> None:
    data = _sealed()
    assert len(data) == 104 + 4 + 32 and int.from_bytes(data[8:10], "big") == len(data)
    assert data[104:108] == bytes([1, 1, 0, 32])
    assert data[108:124] == auth.Stamp(PEER, ME, T0).pack()
    assert data[124:] == hmac.new(RING.keys[1], data[:124], hashlib.sha256).digest()[:16]


def test_sealed_round_trip() -> None:
    guard = auth.ReplayGuard(ME)
    data = _sealed()
    m = c.decode(data, RING, guard, now=T0)
    assert m == replace(M, tag=c.Tag(c.TagType.HMAC_SHA256, 1, data[108:]))
    assert c.encode(m) == data
    with pytest.raises(c.ControlReplayed) as info:
        c.decode(data, RING, guard, now=T0)
    assert isinstance(info.value, c.BadControl) and info.value.kind == "replayed"


@pytest.mark.parametrize(
    ("data", "error", "kind"),
    [
        (GOOD, c.ControlMissingTag, "missing_tag"),
        (_sealed(receiver=PEER), c.ControlMisdirected, "misdirected"),
        (_sealed(now=T0 - 31 * auth.SECOND), c.ControlStale, "stale"),
        (_sealed()[:-1] + bytes([_sealed()[-1] ^ 0x80]), c.ControlBadMac, "bad_mac"),
        (_sealed(ring=auth.KeyRing({9: bytes(32)}, 9)), c.ControlUnknownKey, "unknown_key"),
    ],
    ids=["none", "receiver", "old", "mac", "key"],
)
def test_auth_failures(data: bytes, error: type[c.BadControl], kind: str) -> None:
    with pytest.raises(error) as info:
        c.decode(data, RING, auth.ReplayGuard(ME), now=T0)
    assert info.value.kind == kind and isinstance(info.value, auth.AuthError)


def test_sealed_message_without_keys_is_garbled() -> None:
    with pytest.raises(c.GarbledControl, match="no keys"):
        c.decode(_sealed())


sealed_messages = st.builds(
    c.Message,
    st.sampled_from(list(c.Kind)),
    a32,
    a32,
    a32,
    a32,
    tuples,
    tuples,
    tuples,
    hops=st.lists(a32, max_size=4).map(tuple),
)


@given(sealed_messages, st.data())
def test_any_mutation_of_a_sealed_message_is_refused(m: c.Message, data: st.DataObject) -> None:
    sealed = _sealed(m)
    assert c.decode(sealed, RING, auth.ReplayGuard(ME), now=T0).kind == m.kind
    at = data.draw(st.integers(0, len(sealed)))
    cut = data.draw(st.integers(0, 4))
    new = data.draw(st.binary(max_size=8))
    mutated = sealed[:at] + new + sealed[at + cut :]
    if mutated == sealed:
        return
    with pytest.raises(c.BadControl):
        c.decode(mutated, RING, auth.ReplayGuard(ME), now=T0)
