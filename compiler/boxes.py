"""Sets of outbound TCP SYNs as boxes: one constraint per classifier field.

An IPv4 address field is constrained by a ternary value/mask, a port field by an
inclusive range.  Boxes intersect into boxes (or nothing), which is all the
entry construction needs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Not frozen: these are built in bulk, and constructing a frozen dataclass costs about five
# times as much. They are never mutated after construction.

ADDR_ALL = 0xFFFFFFFF


def format_ip(v: int) -> str:
    """Dotted-quad text of an IPv4 address (or mask) held as an integer."""
    return f"{v >> 24 & 0xFF}.{v >> 16 & 0xFF}.{v >> 8 & 0xFF}.{v & 0xFF}"


PORT_MAX = 0xFFFF


class Field(enum.Enum):
    SRC_ADDR = "ipv4.src"
    DST_ADDR = "ipv4.dst"
    SRC_PORT = "tcp.src_port"
    DST_PORT = "tcp.dst_port"

    @property
    def is_addr(self) -> bool:
        return self in (Field.SRC_ADDR, Field.DST_ADDR)


@dataclass(slots=True)
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


@dataclass(slots=True)
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


@dataclass(slots=True)
class Box:
    """A ternary on each address and a range on each port, kept as plain integers
    because the entry construction intersects and compares boxes a great deal."""

    sv: int = 0  # source address value / mask
    sm: int = 0
    dv: int = 0  # destination address value / mask
    dm: int = 0
    spl: int = 0  # source port range
    sph: int = PORT_MAX
    dpl: int = 0  # destination port range
    dph: int = PORT_MAX

    @staticmethod
    def of(field: Field, constraint: Ternary | PRange) -> Box:
        if isinstance(constraint, Ternary):
            if field is Field.SRC_ADDR:
                return Box(sv=constraint.value, sm=constraint.mask)
            assert field is Field.DST_ADDR
            return Box(dv=constraint.value, dm=constraint.mask)
        if field is Field.SRC_PORT:
            return Box(spl=constraint.low, sph=constraint.high)
        assert field is Field.DST_PORT
        return Box(dpl=constraint.low, dph=constraint.high)

    @property
    def src(self) -> Ternary:
        return Ternary(self.sv, self.sm)

    @property
    def dst(self) -> Ternary:
        return Ternary(self.dv, self.dm)

    @property
    def sport(self) -> PRange:
        return PRange(self.spl, self.sph)

    @property
    def dport(self) -> PRange:
        return PRange(self.dpl, self.dph)

    def meet(self, o: Box) -> Box | None:
        if (self.sv ^ o.sv) & self.sm & o.sm or (self.dv ^ o.dv) & self.dm & o.dm:
            return None
        spl, sph = max(self.spl, o.spl), min(self.sph, o.sph)
        dpl, dph = max(self.dpl, o.dpl), min(self.dph, o.dph)
        if spl > sph or dpl > dph:
            return None
        return Box(self.sv | o.sv, self.sm | o.sm, self.dv | o.dv, self.dm | o.dm, spl, sph, dpl, dph)

    def within(self, o: Box) -> bool:
        return (
            o.spl <= self.spl
            and self.sph <= o.sph
            and o.dpl <= self.dpl
            and self.dph <= o.dph
            and not o.sm & ~self.sm
            and not o.dm & ~self.dm
            and self.sv & o.sm == o.sv
            and self.dv & o.dm == o.dv
        )

    def intersects(self, o: Box) -> bool:
        return not (
            (self.sv ^ o.sv) & self.sm & o.sm
            or (self.dv ^ o.dv) & self.dm & o.dm
            or max(self.spl, o.spl) > min(self.sph, o.sph)
            or max(self.dpl, o.dpl) > min(self.dph, o.dph)
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
