"""Key rings, key files and the replay guard (runtime/core/_auth.py; docs/security.md)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dysco.errors import SourceError, UserError
from dysco.runtime.core import _auth as auth

K1, K2 = "11" * 32, "22" * 48
ME = 0x0A000001
S = auth.SECOND
T0 = 1_700_000_000 * S


def test_key_file_round_trip() -> None:
    text = f"# the web tier's keys\n\n1 {K1}   # retiring\n  7 {K2} current\n"
    ring = auth.KeyRing.parse(text, "keys")
    assert ring.keys == {1: bytes.fromhex(K1), 7: bytes.fromhex(K2)} and ring.current == 7
    assert auth.KeyRing.parse(ring.dumps()) == ring


def test_mac_is_truncated_hmac_sha256() -> None:
    ring = auth.KeyRing({3: bytes.fromhex(K1)}, 3)
    assert ring.mac(3, b"abc") == hmac.new(bytes.fromhex(K1), b"abc", hashlib.sha256).digest()[:16]
    with pytest.raises(auth.UnknownKey, match="key id 4"):
        ring.mac(4, b"abc")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (f"1 {K1} current\nx {K2}\n", "keys:2:1", "key id 'x'"),
        (f"1 {K1} current\n256 {K2}\n", "keys:2:1", "key id '256'"),
        (f"1 {K1} current\n1 {K2}\n", "keys:2:1", "key id 1 given twice"),
        (f"1 {K1[:-1]}z current\n", "keys:1:3", "not hexadecimal"),
        (f"1 {K1[:-2]} current\n", "keys:1:3", "31 bytes"),
        (f"1 {'ab' * 65} current\n", "keys:1:3", "65 bytes"),
        (f"1 {K1} currant\n", "keys:1:68", 'only "current"'),
        (f"1 {K1} current extra\n", "keys:1:76", "expected"),
        ("1\n", "keys:1:2", "expected"),
        (f"1 {K1} current\n2 {K2} current\n", "keys:2:100", 'second key marked "current"'),
    ],
)
def test_bad_key_files_name_the_place(text: str, where: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        auth.KeyRing.parse(text, "keys")
    assert str(info.value).startswith(where + ":")
    assert "^" in str(info.value)  # the line with a caret under the column


@pytest.mark.parametrize(
    ("text", "message"), [("# nothing\n", "no keys"), (f"1 {K1}\n", 'no key is marked "current"')]
)
def test_key_files_without_keys_or_current(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        auth.KeyRing.parse(text, "keys")


def test_load_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"1 {K1} current\n")
    path.chmod(0o644)
    with pytest.raises(UserError, match="mode 0644 lets others read the keys"):
        auth.KeyRing.load(path)
    path.chmod(0o600)
    assert auth.KeyRing.load(path).current == 1
    with pytest.raises(UserError, match="cannot read the key file"):
        auth.KeyRing.load(tmp_path / "missing")


@pytest.mark.parametrize(
    ("keys", "current", "message"),
    [({1: b"x" * 31}, 1, "31 bytes"), ({1: b"x" * 32}, 2, "current key 2"), ({300: b"x" * 32}, 300, "0-255")],
)
def test_key_ring_checks_what_code_gives_it(keys: dict[int, bytes], current: int, message: str) -> None:
    with pytest.raises(UserError, match=message):
        auth.KeyRing(keys, current)


# ---- the replay guard --------------------------------------------------------------------------------


def _stamp(sender: int, time: int) -> auth.Stamp:
    return auth.Stamp(sender, ME, time)


def _mac(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_misdirected_before_anything_is_remembered() -> None:
    guard = auth.ReplayGuard(ME)
    with pytest.raises(auth.Misdirected):
        guard.check(auth.Stamp(5, ME + 1, T0), _mac(1), T0)
    assert len(guard) == 0


def test_memory_expires_with_the_window() -> None:
    guard = auth.ReplayGuard(ME, window=10 * S)
    for i in range(5):
        guard.check(_stamp(i, T0 + i), _mac(i), T0)
    assert (len(guard), guard.senders) == (5, 5)
    guard.check(_stamp(9, T0 + 11 * S), _mac(9), T0 + 11 * S)
    assert (len(guard), guard.senders) == (1, 1)
    assert guard.stats() == {"remembered": 1, "capacity": auth.CAPACITY, "senders": 1, "window_ms": 10_000}


def test_a_full_memory_forgets_the_oldest_and_refuses_at_or_below_it() -> None:
    metrics: Counter[str] = Counter()
    guard = auth.ReplayGuard(ME, capacity=3, metrics=metrics)
    for i in range(4):
        guard.check(_stamp(1, T0 + i), _mac(i), T0)
    assert len(guard) == 3 and metrics["auth.replay_evicted"] == 1
    with pytest.raises(auth.Stale, match="replay memory"):
        guard.check(_stamp(1, T0), _mac(0), T0)  # the forgotten message is not accepted again
    with pytest.raises(auth.Stale):
        guard.check(_stamp(1, T0), _mac(99), T0)  # nor anything else at its time
    with pytest.raises(auth.Replayed):
        guard.check(_stamp(1, T0 + 1), _mac(1), T0)
    guard.check(_stamp(2, T0), _mac(0), T0)  # another sender's floor is its own
    assert metrics["auth.replay_evicted"] == 2


def test_too_many_senders_evicts_the_quietest_and_keeps_refusing_its_past() -> None:
    metrics: Counter[str] = Counter()
    guard = auth.ReplayGuard(ME, max_senders=2, metrics=metrics)
    guard.check(_stamp(1, T0 + 1), _mac(1), T0)
    guard.check(_stamp(2, T0 + 5), _mac(2), T0)
    guard.check(_stamp(3, T0 + 6), _mac(3), T0)
    assert guard.senders == 2 and metrics["auth.replay_senders_evicted"] == 1 and len(guard) == 2
    with pytest.raises(auth.Stale):
        guard.check(_stamp(1, T0 + 1), _mac(1), T0)  # sender 1's replay is refused all the same
    guard.check(_stamp(1, T0 + 7), _mac(7), T0)


events = st.lists(
    st.tuples(st.integers(0, 3), st.integers(-40, 40), st.integers(0, 3), st.integers(0, 6)), max_size=60
)


@given(events, st.integers(1, 3), st.integers(1, 3))
def test_guard_against_a_model(evs: list[tuple[int, int, int, int]], capacity: int, senders: int) -> None:
    """Whatever arrives (new messages, and replays of earlier ones): nothing is accepted twice
    or outside the window, memory stays within its bounds, and a fresh message in the window is
    refused only after the bounds forced the guard to forget."""
    metrics: Counter[str] = Counter()
    guard = auth.ReplayGuard(ME, window=30 * S, capacity=capacity, max_senders=senders, metrics=metrics)
    accepted: set[tuple[int, bytes]] = set()
    sent: list[tuple[int, int, bytes]] = []
    now = T0
    for sender, offset, advance, replay in evs:
        now += advance * 10 * S
        if replay < len(sent) and replay % 2:
            sender, time, mac = sent[-1 - replay // 2]
        else:
            time = now + offset * S
            mac = _mac(len(sent))
            sent.append((sender, time, mac))
        in_window = abs(now - time) <= 30 * S
        try:
            guard.check(_stamp(sender, time), mac, now)
        except auth.Replayed:
            assert (sender, mac) in accepted
        except auth.Stale:
            assert not in_window or (sender, mac) in accepted or metrics.total() > 0
        else:
            assert (sender, mac) not in accepted and in_window
            accepted.add((sender, mac))
        assert len(guard) <= capacity and guard.senders <= senders
