"""Semantic types of the P4_16 subset (what names resolve to after typedefs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bits:
    """``bit<W>`` (unsigned) or ``int<W>`` (signed, stored as its two's-complement pattern)."""

    width: int
    signed: bool = False

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    def __str__(self) -> str:
        return f"{'int' if self.signed else 'bit'}<{self.width}>"


@dataclass(frozen=True)
class Varbit:
    max_width: int

    def __str__(self) -> str:
        return f"varbit<{self.max_width}>"


@dataclass(frozen=True)
class Simple:
    """``bool``, ``error``, ``string``, ``int`` (arbitrary-precision constants), ``void``,
    ``match_kind``, ``packet_in``/``packet_out`` are externs."""

    name: str

    def __str__(self) -> str:
        return self.name


BOOL = Simple("bool")
ERROR = Simple("error")
STRING = Simple("string")
INT = Simple("int")
VOID = Simple("void")
MATCH_KIND = Simple("match_kind")


@dataclass(frozen=True)
class Enum:
    name: str
    members: tuple[str, ...]
    underlying: Bits | None = None
    values: tuple[int, ...] = ()

    def value(self, member: str) -> int:
        i = self.members.index(member)
        return self.values[i] if self.underlying is not None else i

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Struct:
    """``header``, ``header_union`` or ``struct`` (``kind``)."""

    kind: str
    name: str
    fields: tuple[tuple[str, Type], ...]
    annotations: tuple[tuple[str, tuple[object, ...]], ...] = ()

    def field(self, name: str) -> Type | None:
        for n, t in self.fields:
            if n == name:
                return t
        return None

    @property
    def is_header(self) -> bool:
        return self.kind == "header"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Stack:
    elem: Struct
    size: int

    def __str__(self) -> str:
        return f"{self.elem.name}[{self.size}]"


@dataclass(frozen=True)
class Tuple:
    items: tuple[Type, ...]

    def __str__(self) -> str:
        return "tuple<" + ", ".join(map(str, self.items)) + ">"


@dataclass(frozen=True)
class Extern:
    name: str
    args: tuple[Type, ...] = ()

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TypeVar:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Block:
    """A parser, control or package type (``kind``) named ``name``."""

    kind: str
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TableResult:
    """What ``t.apply()`` returns (``hit``, ``miss``, ``action_run``)."""

    table: str

    def __str__(self) -> str:
        return f"apply result of {self.table}"


@dataclass(frozen=True)
class ActionEnum:
    table: str

    def __str__(self) -> str:
        return f"action_list({self.table})"


Type = (
    Bits
    | Varbit
    | Simple
    | Enum
    | Struct
    | Stack
    | Tuple
    | Extern
    | TypeVar
    | Block
    | TableResult
    | ActionEnum
)


def bit_width(t: Type) -> int:
    """Width in bits of a fixed-width type (headers and structs: the sum of their fields)."""
    if isinstance(t, Bits):
        return t.width
    if isinstance(t, Simple) and t.name == "bool":
        return 1
    if isinstance(t, Enum) and t.underlying is not None:
        return t.underlying.width
    if isinstance(t, Struct):
        return sum(bit_width(ft) for _, ft in t.fields)
    if isinstance(t, Stack):
        return t.size * bit_width(t.elem)
    raise TypeError(f"{t} has no fixed width")


def is_composite(t: Type) -> bool:
    return isinstance(t, Struct | Stack)
