"""Sets of outbound TCP SYNs as boxes: one constraint per classifier field.

An IPv4 address field is constrained by a ternary value/mask, a port field by an
inclusive range.  Boxes intersect into boxes (or nothing), which is all the
entry construction needs.  :class:`Ternary` and :class:`PRange` are the
constraints of one field (in entries and formulas); a :data:`Box` packs all four
into one tuple of integers.
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


# ---- boxes --------------------------------------------------------------------

Box = tuple[int, int, int, int, int, int]
"""A ternary on each address and a range on each port:
``(value, mask, sport_low, sport_high, dport_low, dport_high)``, where ``value`` and ``mask``
hold the source address's ternary in their high 32 bits and the destination's in the low 32
(bitwise operations work on both at once).  Plain tuples of integers, because the entry
construction builds, intersects and compares boxes by the hundred for every policy."""

TOP: Box = (0, 0, 0, PORT_MAX, 0, PORT_MAX)


def box_of(field: Field, constraint: Ternary | PRange) -> Box:
    """The box constrained in one field only."""
    if field is Field.SRC_ADDR:
        assert isinstance(constraint, Ternary)
        return (constraint.value << 32, constraint.mask << 32, 0, PORT_MAX, 0, PORT_MAX)
    if field is Field.DST_ADDR:
        assert isinstance(constraint, Ternary)
        return (constraint.value, constraint.mask, 0, PORT_MAX, 0, PORT_MAX)
    assert isinstance(constraint, PRange)
    if field is Field.SRC_PORT:
        return (0, 0, constraint.low, constraint.high, 0, PORT_MAX)
    return (0, 0, 0, PORT_MAX, constraint.low, constraint.high)


def meet(a: Box, b: Box) -> Box | None:
    """The intersection of two boxes, None if it is empty."""
    av, am, asl, ash, adl, adh = a
    bv, bm, bsl, bsh, bdl, bdh = b
    if (av ^ bv) & am & bm:
        return None
    sl = asl if asl > bsl else bsl
    sh = ash if ash < bsh else bsh
    dl = adl if adl > bdl else bdl
    dh = adh if adh < bdh else bdh
    if sl > sh or dl > dh:
        return None
    return (av | bv, am | bm, sl, sh, dl, dh)


def join(a: Box, b: Box) -> Box:
    """The smallest box holding both (each address bit that differs becomes a don't-care)."""
    av, am, asl, ash, adl, adh = a
    bv, bm, bsl, bsh, bdl, bdh = b
    m = am & bm & ~(av ^ bv)
    return (av & m, m, min(asl, bsl), max(ash, bsh), min(adl, bdl), max(adh, bdh))


def within(a: Box, b: Box) -> bool:
    """Whether ``a`` is a subset of ``b``."""
    av, am, asl, ash, adl, adh = a
    bv, bm, bsl, bsh, bdl, bdh = b
    return bsl <= asl and ash <= bsh and bdl <= adl and adh <= bdh and not bm & ~am and av & bm == bv


def intersects(a: Box, b: Box) -> bool:
    av, am, asl, ash, adl, adh = a
    bv, bm, bsl, bsh, bdl, bdh = b
    return not (av ^ bv) & am & bm and asl <= bsh and bsl <= ash and adl <= bdh and bdl <= adh


def box_fields(b: Box) -> tuple[Ternary, Ternary, PRange, PRange]:
    """The box as the constraints of the four classifier fields (src, dst, sport, dport)."""
    v, m, sl, sh, dl, dh = b
    return (
        Ternary(v >> 32, m >> 32),
        Ternary(v & ADDR_ALL, m & ADDR_ALL),
        PRange(sl, sh),
        PRange(dl, dh),
    )


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
