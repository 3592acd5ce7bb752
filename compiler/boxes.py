"""Sets of outbound TCP SYNs as boxes: one constraint per classifier field.

An IPv4 address field is constrained by a ternary value/mask, a port field by an
inclusive range.  Boxes intersect into boxes (or nothing), which is all the
entry construction needs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ADDR_ALL = 0xFFFFFFFF
PORT_MAX = 0xFFFF


class Field(enum.Enum):
    SRC_ADDR = "ipv4.src"
    DST_ADDR = "ipv4.dst"
    SRC_PORT = "tcp.src_port"
    DST_PORT = "tcp.dst_port"

    @property
    def is_addr(self) -> bool:
        return self in (Field.SRC_ADDR, Field.DST_ADDR)


@dataclass(frozen=True, slots=True)
class Ternary:
    """Addresses ``a`` with ``a & mask == value``."""

    value: int
    mask: int

    def meet(self, other: Ternary) -> Ternary | None:
        common = self.mask & other.mask
        if (self.value ^ other.value) & common:
            return None
        return Ternary(self.value | other.value, self.mask | other.mask)

    def within(self, other: Ternary) -> bool:
        return other.mask & ~self.mask == 0 and self.value & other.mask == other.value

    def holds(self, addr: int) -> bool:
        return addr & self.mask == self.value


@dataclass(frozen=True, slots=True)
class PRange:
    """Ports ``p`` with ``low <= p <= high``."""

    low: int
    high: int

    def meet(self, other: PRange) -> PRange | None:
        lo, hi = max(self.low, other.low), min(self.high, other.high)
        return PRange(lo, hi) if lo <= hi else None

    def within(self, other: PRange) -> bool:
        return other.low <= self.low and self.high <= other.high

    def holds(self, port: int) -> bool:
        return self.low <= port <= self.high

    def complement(self) -> list[PRange]:
        out = []
        if self.low > 0:
            out.append(PRange(0, self.low - 1))
        if self.high < PORT_MAX:
            out.append(PRange(self.high + 1, PORT_MAX))
        return out


ANY_ADDR = Ternary(0, 0)
ANY_PORT = PRange(0, PORT_MAX)


@dataclass(frozen=True, slots=True)
class Box:
    src: Ternary = ANY_ADDR
    dst: Ternary = ANY_ADDR
    sport: PRange = ANY_PORT
    dport: PRange = ANY_PORT

    @staticmethod
    def of(field: Field, constraint: Ternary | PRange) -> Box:
        if field is Field.SRC_ADDR:
            assert isinstance(constraint, Ternary)
            return Box(src=constraint)
        if field is Field.DST_ADDR:
            assert isinstance(constraint, Ternary)
            return Box(dst=constraint)
        assert isinstance(constraint, PRange)
        return Box(sport=constraint) if field is Field.SRC_PORT else Box(dport=constraint)

    def meet(self, other: Box) -> Box | None:
        src = self.src.meet(other.src)
        if src is None:
            return None
        dst = self.dst.meet(other.dst)
        if dst is None:
            return None
        sport = self.sport.meet(other.sport)
        if sport is None:
            return None
        dport = self.dport.meet(other.dport)
        if dport is None:
            return None
        return Box(src, dst, sport, dport)

    def within(self, other: Box) -> bool:
        return (
            self.src.within(other.src)
            and self.dst.within(other.dst)
            and self.sport.within(other.sport)
            and self.dport.within(other.dport)
        )

    def intersects(self, other: Box) -> bool:
        return self.meet(other) is not None

    def holds(self, src: int, dst: int, sport: int, dport: int) -> bool:
        return (
            self.src.holds(src)
            and self.dst.holds(dst)
            and self.sport.holds(sport)
            and self.dport.holds(dport)
        )


TOP = Box()


def range_to_prefixes(low: int, high: int, width: int = 16) -> list[Ternary]:
    """Cover ``[low, high]`` exactly with value/mask prefixes (at most ``2*width - 2``)."""
    full = (1 << width) - 1
    out: list[Ternary] = []
    while low <= high:
        # the largest aligned block starting at low that stays within high
        size = low & -low if low else 1 << width
        while size > high - low + 1:
            size >>= 1
        out.append(Ternary(low, full & ~(size - 1)))
        low += size
    return out
