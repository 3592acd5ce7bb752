"""Message authentication for Dysco SYN payloads and control messages (docs/protocol.md §5).

Sans-IO like the rest of the agent: nothing here reads a clock; the caller passes ``now``
(ns since the Unix epoch: senders and receivers compare timestamps, so it is wall-clock time,
not a monotonic clock).

* :class:`KeyRing`: the deployment's keys by id; the *current* key signs what this agent sends,
  every key in the ring is accepted when verifying, so keys rotate without downtime.  Loaded
  from a key file (:meth:`KeyRing.load`, format in docs/security.md).
* :func:`tag_value` / :func:`verify`: an HMAC-SHA256 tag, truncated to :data:`MAC_SIZE` bytes, over the
  whole encoded message except the MAC itself.  The tag's value starts with a :class:`Stamp`
  (sender, receiver, time), so those are authenticated too.
* :class:`ReplayGuard`: the receiver's memory of what it accepted: messages older (or newer) than
  the window are refused as stale, exact repeats within it as replayed; memory is bounded.

The codecs (``_wire.py``, ``_ctlwire.py``) call these; every failure is an :class:`AuthError`
subclass whose ``kind`` names the counter it is counted under.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import os
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dysco.errors import PeerError, SourceError, SourcePos, UserError
from dysco.runtime.core._layout import Field, Layout

SECOND = 1_000_000_000
MAC_SIZE = 16
"""Bytes of HMAC-SHA256 output kept in the tag."""
STAMP = Layout(Field("sender", "I"), Field("receiver", "I"), Field("time", "Q"))
"""The authenticated fields at the start of a tag's value."""
TAG_SIZE = STAMP.size + MAC_SIZE
"""Bytes of a HMAC-SHA256 tag's value: the stamp, then the MAC."""
MIN_KEY = 32
MAX_KEY = 64
WINDOW = 30 * SECOND
"""Default replay window: timestamps further than this from the receiver's clock are stale."""
CAPACITY = 65536
"""Default number of accepted messages a :class:`ReplayGuard` remembers."""
MAX_SENDERS = 1024


class AuthError(PeerError):
    """A message failed authentication; ``kind`` names its counter."""

    kind = "auth"


class BadMac(AuthError):
    kind = "bad_mac"


class UnknownKey(AuthError):
    kind = "unknown_key"


class MissingTag(AuthError):
    """Keys are configured but the message carries no MAC."""

    kind = "missing_tag"


class Misdirected(AuthError):
    """The stamp names another receiver (a message copied from one agent to another)."""

    kind = "misdirected"


class Stale(AuthError):
    """The timestamp is outside the window, or older than what the guard still remembers."""

    kind = "stale"


class Replayed(AuthError):
    kind = "replayed"


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who sent a message, to whom, and when (ns since the epoch, the sender's clock)."""

    sender: int
    receiver: int
    time: int

    def pack(self) -> bytes:
        return STAMP.pack({"sender": self.sender, "receiver": self.receiver, "time": self.time})

    @classmethod
    def unpack(cls, value: bytes) -> Stamp:
        """The stamp at the start of a tag value of :data:`TAG_SIZE` bytes (the codec checked it)."""
        f = STAMP.unpack(value)
        return cls(*(v if isinstance(v, int) else int.from_bytes(v, "big") for v in f.values()))


@dataclass(frozen=True)
class KeyRing:
    """Keys by id (0-255, 32-64 bytes each); ``current`` signs, all of them verify."""

    keys: Mapping[int, bytes]
    current: int

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            if not 0 <= key_id <= 255:
                raise UserError(f"key id {key_id}: ids are 0-255")
            if not MIN_KEY <= len(key) <= MAX_KEY:
                raise UserError(f"key {key_id}: {len(key)} bytes (keys are {MIN_KEY}-{MAX_KEY} bytes)")
        if self.current not in self.keys:
            raise UserError(f"current key {self.current} is not in the ring")

    def mac(self, key_id: int, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under key ``key_id``, truncated to :data:`MAC_SIZE` bytes."""
        key = self.keys.get(key_id)
        if key is None:
            raise UnknownKey(f"key id {key_id} is not in this agent's key ring")
        return hmac.new(key, data, hashlib.sha256).digest()[:MAC_SIZE]

    # ---- the key file -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str, file: str = "<keys>") -> KeyRing:
        """A key ring from the text of a key file (format in docs/security.md)."""
        keys: dict[int, bytes] = {}
        current: list[tuple[int, SourcePos]] = []
        for n, raw in enumerate(text.split("\n"), start=1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.split():
                continue
            key_id, key, mark = _key_line(line, SourcePos(file, n, 1), text)
            if key_id in keys:
                raise SourceError(f"key id {key_id} given twice", SourcePos(file, n, _col(line, 0)), text)
            keys[key_id] = key
            if mark:
                current.append((key_id, SourcePos(file, n, _col(line, 2))))
        if not keys:
            raise UserError(f"{file}: no keys")
        if not current:
            raise UserError(f'{file}: no key is marked "current" (the key this agent signs with)')
        if len(current) > 1:
            raise SourceError('a second key marked "current"', current[1][1], text)
        return cls(keys, current[0][0])

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read a key file; refuses one that others than its owner can read or write."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{p}: cannot read the key file: {exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UserError(f"{p}: mode {stat.S_IMODE(mode):04o} lets others read the keys (chmod 600 {p})")
        return cls.parse(text, str(p))

    def dumps(self) -> str:
        """The ring as a key file (:meth:`parse` reads it back)."""
        lines = ["# dysco keys: ID HEX-KEY [current]"]
        for key_id in sorted(self.keys):
            mark = " current" if key_id == self.current else ""
            lines.append(f"{key_id} {self.keys[key_id].hex()}{mark}")
        return "\n".join(lines) + "\n"


def _col(line: str, word: int) -> int:
    """1-based column of the ``word``-th word of ``line`` (the end of the line if there is none)."""
    at = 0
    for i, w in enumerate(line.split()):
        at = line.index(w, at)
        if i == word:
            return at + 1
        at += len(w)
    return len(line) + 1


def _key_line(line: str, pos: SourcePos, text: str) -> tuple[int, bytes, bool]:
    words = line.split()

    def err(message: str, word: int) -> SourceError:
        return SourceError(message, SourcePos(pos.file, pos.line, _col(line, word)), text)

    if len(words) not in (2, 3):
        raise err('expected "ID HEX-KEY" or "ID HEX-KEY current"', min(len(words), 3))
    if len(words) == 3 and words[2] != "current":
        raise err(f'{words[2]!r}: only "current" may follow the key', 2)
    if not (words[0].isdigit() and int(words[0]) <= 255):
        raise err(f"key id {words[0]!r}: a number 0-255", 0)
    try:
        key = bytes.fromhex(words[1])
    except ValueError:
        raise err("the key is not hexadecimal", 1) from None
    if not MIN_KEY <= len(key) <= MAX_KEY:
        raise err(f"key of {len(key)} bytes: keys are {MIN_KEY}-{MAX_KEY} bytes", 1)
    return int(words[0]), key, len(words) == 3


def tag_value(keys: KeyRing, stamp: Stamp, head: bytes) -> bytes:
    """The value of a HMAC-SHA256 tag: ``stamp`` and the MAC over ``head`` (the encoded message
    up to and including its tag header, which names ``keys.current`` and length
    :data:`TAG_SIZE`) followed by the stamp."""
    s = stamp.pack()
    return s + keys.mac(keys.current, head + s)


def verify(
    keys: KeyRing, key_id: int, signed: bytes, value: bytes, guard: ReplayGuard | None, now: int
) -> Stamp:
    """Check a tag of :data:`TAG_SIZE` bytes (``value``) over ``signed`` (the message up to the
    MAC); with a guard, also the receiver, the window and repeats.  The guard remembers the
    message only when everything else passed."""
    mac = value[STAMP.size :]
    if not hmac.compare_digest(keys.mac(key_id, signed), mac):
        raise BadMac(f"MAC under key {key_id} does not match")
    stamp = Stamp.unpack(value)
    if guard is not None:
        guard.check(stamp, mac, now)
    return stamp


@dataclass(slots=True)
class _Sender:
    seen: dict[bytes, int] = field(default_factory=dict)
    """MAC -> timestamp of the messages accepted within the window."""
    floor: int = -1
    """Timestamps at or below this are refused: the guard gave up remembering them."""
    newest: int = -1


class ReplayGuard:
    """What one receiver (``me``) accepted within the window, per sender, at most ``capacity``
    messages and ``max_senders`` senders.

    A message is refused as stale if its time is more than ``window`` from ``now`` (either way),
    and as replayed if the same MAC from the same sender was accepted within the window.  When
    the memory is full the oldest message is forgotten and its sender's floor raised to its
    time, so nothing at or below it is accepted again (conservative: a legitimate message
    reordered behind it is refused as stale, never a replay accepted).  ``metrics`` counts
    ``auth.replay_evicted`` and ``auth.replay_senders_evicted``."""

    def __init__(
        self,
        me: int,
        window: int = WINDOW,
        capacity: int = CAPACITY,
        max_senders: int = MAX_SENDERS,
        metrics: Counter[str] | None = None,
    ) -> None:
        if window <= 0 or capacity <= 0 or max_senders <= 0:
            raise UserError("replay window, capacity and sender bound must be positive")
        self.me = me
        self.window = window
        self.capacity = capacity
        self.max_senders = max_senders
        self.metrics: Counter[str] = metrics if metrics is not None else Counter()
        self._senders: dict[int, _Sender] = {}
        self._heap: list[tuple[int, int, bytes]] = []
        """(time, sender, MAC) of every remembered message: the oldest first."""
        self._orphan_floor = -1
        """The floor for senders the guard has no record of (raised when one is evicted)."""

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def senders(self) -> int:
        return len(self._senders)

    def stats(self) -> dict[str, int]:
        return {
            "remembered": len(self._heap),
            "capacity": self.capacity,
            "senders": len(self._senders),
            "window_ms": self.window // 1_000_000,
        }

    def check(self, stamp: Stamp, mac: bytes, now: int) -> None:
        """Refuse (raise) or remember one authenticated message."""
        if stamp.receiver != self.me:
            raise Misdirected(f"stamped for receiver {stamp.receiver:#010x}, this agent is {self.me:#010x}")
        self._expire(now)
        age = now - stamp.time
        if age > self.window:
            raise Stale(f"sent {age / SECOND:.3f} s ago, window {self.window / SECOND:g} s")
        if -age > self.window:
            raise Stale(f"sent {-age / SECOND:.3f} s in the future, window {self.window / SECOND:g} s")
        s = self._senders.get(stamp.sender)
        floor = s.floor if s is not None else self._orphan_floor
        if stamp.time <= floor:
            raise Stale("older than what the replay memory still holds")
        if s is not None and mac in s.seen:
            raise Replayed(f"sender {stamp.sender:#010x} sent this message {age / SECOND:.3f} s ago")
        if s is None:
            s = self._new_sender(stamp.sender, now)
        s.seen[mac] = stamp.time
        s.newest = max(s.newest, stamp.time)
        heapq.heappush(self._heap, (stamp.time, stamp.sender, mac))
        while len(self._heap) > self.capacity:
            t, sender, old = heapq.heappop(self._heap)
            victim = self._senders[sender]
            del victim.seen[old]
            victim.floor = max(victim.floor, t)
            self.metrics["auth.replay_evicted"] += 1

    def _expire(self, now: int) -> None:
        limit = now - self.window
        while self._heap and self._heap[0][0] < limit:
            _, sender, mac = heapq.heappop(self._heap)
            s = self._senders[sender]
            del s.seen[mac]
            if not s.seen and s.floor < limit:
                del self._senders[sender]

    def _new_sender(self, sender: int, now: int) -> _Sender:
        if len(self._senders) >= self.max_senders:
            limit = now - self.window
            for k in [k for k, v in self._senders.items() if not v.seen and v.floor < limit]:
                del self._senders[k]
        if len(self._senders) >= self.max_senders:
            victim = min(self._senders, key=lambda k: self._senders[k].newest)
            gone = self._senders.pop(victim)
            self._orphan_floor = max(self._orphan_floor, gone.newest, gone.floor)
            self._heap = [e for e in self._heap if e[1] != victim]
            heapq.heapify(self._heap)
            self.metrics["auth.replay_senders_evicted"] += 1
        s = _Sender(floor=self._orphan_floor)
        self._senders[sender] = s
        return s
