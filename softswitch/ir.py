"""What the compiler tells P4Info and the runtime about a program's control-plane objects.

Names are p4c's control-plane names (fully qualified, ``@name`` honoured).  Ids
are filled in by :mod:`dysco.softswitch.p4info` after all objects are known.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ActionParamInfo:
    name: str
    width: int
    id: int = 0


@dataclass
class ActionInfo:
    name: str
    params: list[ActionParamInfo]
    fn: str  # generated function name (per control)
    annotations: dict[str, tuple[object, ...]] = field(default_factory=dict)
    id: int = 0
    published: bool = True  # in P4Info (used by a table that is not @hidden)


@dataclass
class KeyInfo:
    name: str
    width: int
    match_kind: str  # exact lpm ternary range optional
    id: int = 0


@dataclass
class TableActionRef:
    name: str  # ActionInfo.name
    scope: str = ""  # "", "TABLE_ONLY", "DEFAULT_ONLY"
    fn: str = ""


@dataclass
class ConstEntryInfo:
    """One ``const entries`` line, already evaluated: per key ``(kind, value, mask/high/prefix)``."""

    match: list[tuple[str, int, int]]  # (kind, value, extra); kind "dontcare" for _/default
    action: str
    args: tuple[int, ...]
    priority: int


@dataclass
class TableInfo:
    name: str
    gen: str  # generated object name
    keys: list[KeyInfo]
    actions: list[TableActionRef]
    default_action: str
    default_args: tuple[int, ...]
    default_const: bool
    size: int
    support_timeout: bool
    const_entries: list[ConstEntryInfo] | None
    direct_counter: str | None = None
    direct_meter: str | None = None
    annotations: dict[str, tuple[object, ...]] = field(default_factory=dict)
    id: int = 0


@dataclass
class ExternInfo:
    """A counter, direct_counter, meter, direct_meter or register instance."""

    kind: str
    name: str
    gen: str
    size: int = 0
    unit: str = ""  # packets / bytes / packets_and_bytes
    width: int = 0  # registers: value width; meters: colour width
    table: str | None = None  # direct externs: owning table name
    annotations: dict[str, tuple[object, ...]] = field(default_factory=dict)
    id: int = 0


@dataclass
class ControllerHeaderInfo:
    name: str  # annotation value, e.g. "packet_in"
    type_name: str  # hashed for the id
    fields: list[tuple[str, int]]
    id: int = 0


@dataclass
class DigestInfo:
    name: str
    fields: list[tuple[str, int]]
    id: int = 0


@dataclass
class ProgramInfo:
    """All control-plane objects of one program."""

    actions: dict[str, ActionInfo] = field(default_factory=dict)
    tables: dict[str, TableInfo] = field(default_factory=dict)
    externs: dict[str, ExternInfo] = field(default_factory=dict)
    controller_headers: list[ControllerHeaderInfo] = field(default_factory=list)
    digests: dict[str, DigestInfo] = field(default_factory=dict)
    preserved_fields: dict[int, list[str]] = field(default_factory=dict)  # field_list index -> meta fields
