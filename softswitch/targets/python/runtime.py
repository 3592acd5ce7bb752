"""Helpers the generated per-packet code calls: packet cursor, control-flow signals, hashes."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dysco.errors import DyscoError


class PipelineExit(Exception):
    """``exit``: leave the current top-level control."""


class ParserReject(Exception):
    """The parser reached ``reject``; ``code`` is the P4 error code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Cursor:
    """The packet being parsed (``packet_in``) or deparsed (``packet_out``)."""

    __slots__ = ("data", "n", "off", "out")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.off = 0
        self.out: list[bytes] = []


@dataclass
class PacketState:
    """Per-packet requests made by externs (clone, resubmit, digest, ...)."""

    clone_session: int | None = None
    clone_fields: int | None = None
    resubmit: int | None = None
    recirculate: int | None = None
    truncate: int | None = None

    digests: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    checksum_error: int = 0
    payload: bytes = b""
    meter_color: int = 0
    length: int = 0

    def requests(self) -> tuple[int | None, int | None, int | None, int | None, int | None]:
        """(clone session, clone field list, resubmit, recirculate, truncate) as the program left them."""
        return self.clone_session, self.clone_fields, self.resubmit, self.recirculate, self.truncate

    def reset(self) -> None:
        self.clone_session = None
        self.clone_fields = None
        self.resubmit = None
        self.recirculate = None
        self.truncate = None
        self.digests = []
        self.checksum_error = 0
        self.payload = b""
        self.meter_color = 0


def to_bytes(value: int, nbits: int) -> bytes:
    """Fields concatenated into ``nbits`` bits, left-aligned and zero-padded to whole bytes."""
    pad = -nbits % 8
    return (value << pad).to_bytes((nbits + pad) // 8, "big")


def csum16(data: bytes) -> int:
    """The Internet checksum (ones' complement of the ones' complement sum)."""
    if len(data) % 2:
        data += b"\x00"
    x = int.from_bytes(data, "big")
    s = x % 0xFFFF
    if s == 0 and x != 0:
        s = 0xFFFF
    return (~s) & 0xFFFF


def csum16_int(x: int, nbytes: int) -> int:
    """:func:`csum16` of an even number of bytes given as a big-endian integer."""
    s = x % 0xFFFF
    if s == 0 and x != 0:
        s = 0xFFFF
    return (~s) & 0xFFFF


def crc16(data: bytes) -> int:
    """CRC-16/ARC: polynomial 0x8005 reflected, initial value 0, as bmv2's crc16."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def xor16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    r = 0
    for i in range(0, len(data), 2):
        r ^= (data[i] << 8) | data[i + 1]
    return r


def compute_hash(algo: str, data: bytes, rand: int = 0) -> int:
    if algo in ("crc32", "crc32_custom"):
        return zlib.crc32(data)
    if algo in ("crc16", "crc16_custom"):
        return crc16(data)
    if algo == "csum16":
        return csum16(data)
    if algo == "xor16":
        return xor16(data)
    if algo == "identity":
        return int.from_bytes(data, "big")
    if algo == "random":
        return rand
    raise ValueError(f"unknown hash algorithm {algo}")


def saturate(value: int, width: int, signed: bool) -> int:
    """Clamp ``value`` to the range of ``bit<width>``/``int<width>``; result as bit pattern."""
    if signed:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        v = min(max(value, lo), hi)
        return v & ((1 << width) - 1)
    return min(max(value, 0), (1 << width) - 1)


def signed(value: int, width: int) -> int:
    """The signed integer an ``int<width>`` bit pattern stands for."""
    return value - (1 << width) if value >> (width - 1) & 1 else value


class HeaderStack:
    """A header stack: elements ``a`` and ``nxt`` (the P4 ``nextIndex``)."""

    __slots__ = ("a", "nxt")

    def __init__(self, elems: list[object]) -> None:
        self.a = elems
        self.nxt = 0

    def _copy(self) -> HeaderStack:
        s = HeaderStack([e._copy() for e in self.a])  # type: ignore[attr-defined]
        s.nxt = self.nxt
        return s

    def push_front(self, count: int, make: object) -> None:
        n = len(self.a)
        count = min(count, n)
        self.a = [make() for _ in range(count)] + self.a[: n - count]  # type: ignore[operator]
        self.nxt = min(self.nxt + count, n)

    def pop_front(self, count: int, make: object) -> None:
        n = len(self.a)
        count = min(count, n)
        self.a = self.a[count:] + [make() for _ in range(count)]  # type: ignore[operator]
        self.nxt = max(self.nxt - count, 0)


class P4AssertionError(DyscoError):
    """A failing ``assert``/``assume`` in the program (bmv2 stops the switch)."""


def reject() -> None:
    raise ParserReject(0)


def make(cls: Callable[[], Any], header: bool, values: tuple[Any, ...]) -> Any:
    """A struct or header built from a list expression (headers become valid)."""
    o = cls()
    names = [s for s in o._fields if s != "_v" and not s.endswith("__w")]
    for n, v in zip(names, values, strict=True):
        setattr(o, n, v)
    if header:
        o._v = True
    return o


def cat(pairs: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """Concatenate ``(value, width)`` pairs into ``(value, total width)``."""
    x = n = 0
    for v, w in pairs:
        x = (x << w) | v
        n += w
    return x, n


def lookahead(pk: Cursor, nbits: int, too_short: int) -> int:
    nbytes = (nbits + 7) // 8
    if pk.off + nbytes > pk.n:
        raise ParserReject(too_short)
    x = int.from_bytes(pk.data[pk.off : pk.off + nbytes], "big")
    return x >> (nbytes * 8 - nbits)


def lookahead_hdr(pk: Cursor, cls: Callable[[], Any], too_short: int) -> Any:
    h = cls()
    saved = pk.off
    h._ex(pk, too_short)
    pk.off = saved
    return h


def advance(pk: Cursor, nbits: int, too_short: int) -> None:
    if nbits % 8:
        raise ParserReject(too_short)
    if pk.off + nbits // 8 > pk.n:
        raise ParserReject(too_short)
    pk.off += nbits // 8


def hash_out(algo: str, base: int, data: bytes, maximum: int, rand: int = 0) -> int:
    h = compute_hash(algo, data, rand)
    return base + h % maximum if maximum else base


def equal(a: Any, b: Any) -> bool:
    """P4 equality of headers, structs and stacks (invalid headers are equal whatever their fields)."""
    if isinstance(a, HeaderStack):
        return len(a.a) == len(b.a) and all(equal(x, y) for x, y in zip(a.a, b.a, strict=True))
    slots = a._fields
    if "_v" in slots:
        if a._v != b._v:
            return False
        if not a._v:
            return True
    for s in slots:
        if s == "_v":
            continue
        x, y = getattr(a, s), getattr(b, s)
        if hasattr(x, "_fields"):
            if not equal(x, y):
                return False
        elif x != y:
            return False
    return True


def helpers() -> dict[str, Any]:
    """The names generated code may use, besides its own definitions."""
    return {
        "ParserReject": ParserReject,
        "PipelineExit": PipelineExit,
        "P4AssertionError": P4AssertionError,
        "HeaderStack": HeaderStack,
        "_reject": reject,
        "_mk": make,
        "_eq": equal,
        "_cat": cat,
        "_lookahead": lookahead,
        "_lookahead_hdr": lookahead_hdr,
        "_advance": advance,
        "_hash_out": hash_out,
        "_hash": compute_hash,
        "_to_bytes": to_bytes,
        "_csum16_int": csum16_int,
        "_sat": saturate,
        "_s": signed,
    }
