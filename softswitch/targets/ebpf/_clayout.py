"""The C generator's shared vocabulary: map layouts (shared with the device), the unsupported
error, the per-body emitter and small C helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

from dysco.errors import UserError

from ...frontend import ast as A
from ...frontend import types as T

PACKET = ("packet_in", "packet_out")
V1_PARAMS = ("parser", "verify", "ingress", "egress", "compute", "deparser")
MAX_WIDTH = 64
STAT_IN, STAT_OUT, STAT_DROP, STAT_PASS = 0, 1, 2, 3
MAX_PAYLOAD_CSUMS = 16  # update_checksum_with_payload and l4 update_checksum calls a program may make


@dataclass
class PayloadCsum:
    """One ``update_checksum_with_payload``, or one ``update_checksum`` into a header field whose
    list holds fields of other headers (``l4``: a TCP/UDP checksum fixed up by the program
    itself): applied in the deparser, so checksum-offloaded packets come out right (see
    _cparser)."""

    fields: list[tuple[str, int]]  # (C code, width) of the list, in order
    target: str  # C lvalue of the 16-bit checksum field
    header: str  # C lvalue of the header holding it
    field_name: str  # the checksum field's name in that header
    segment: list[bool] = field(default_factory=list)  # per list element: not in the pseudo-header part
    l4: bool = False  # update_checksum: the program's value lands in c->ckv, not in the field


class Unsupported(UserError):
    """A construct the ebpf back end cannot compile (yet)."""


@dataclass(frozen=True)
class KeyField:
    name: str
    width: int
    match_kind: str  # exact | lpm
    nbytes: int


@dataclass
class TableLayout:
    """How one table is laid out in its maps (shared by the C generator and the device)."""

    name: str  # control-plane name
    index: int
    map_name: str  # entries
    default_map: str  # the default action (ARRAY, one slot)
    kind: str  # hash | lpm
    size: int
    keys: list[KeyField]  # in map-key order (exact first, lpm last)
    actions: list[str]  # control-plane action names; the value's ``action`` is an index here
    max_params: int
    default_action: str = ""
    default_args: tuple[int, ...] = ()
    timeout: bool = False  # support_timeout: the value ends with the last hit (bpf_ktime_get_ns)

    @property
    def key_bytes(self) -> int:
        return sum(k.nbytes for k in self.keys)


@dataclass(frozen=True)
class ExternLayout:
    """A counter (PERCPU_ARRAY of {packets, bytes}), register (ARRAY of __u64) or meter (ARRAY of
    ``struct meter``, a two-rate three-colour meter under a spin lock) instance."""

    name: str  # control-plane name
    kind: str  # counter | register
    map_name: str
    size: int
    width: int = 0  # registers: value width; meters: colour width
    unit: str = ""  # meters: packets | bytes


@dataclass
class CProgram:
    source: str
    tables: dict[str, TableLayout]
    externs: dict[str, ExternLayout] = field(default_factory=dict)
    func: str = "dysco_tc"
    ports_map: str = "ports_in"
    egress_map: str = "ports_out"
    stats_map: str = "stats"


@dataclass
class Blk:
    """Names a block's parameters stand for in C, and its local actions/tables."""

    cname: str
    params: dict[str, tuple[str, T.Type | None]]  # p4 name -> (C lvalue, type)
    actions: dict[str, A.ActionDecl] = field(default_factory=dict)
    tables: dict[str, A.TableDecl] = field(default_factory=dict)
    externs: dict[str, ExternLayout] = field(default_factory=dict)


@dataclass
class Fn:
    """One C body being generated."""

    lines: list[str]
    blk: Blk
    vars: dict[str, tuple[str, T.Type]] = field(default_factory=dict)
    indent: int = 1
    exit_label: str = ""  # where `exit` goes: the end of the control's apply block ("": not here)
    reject: str = ""  # the C statement that ends the parser in reject ("": not in a parser)

    def __call__(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)


def c_ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def mask(w: int) -> str:
    return f"0x{(1 << w) - 1:x}ULL"


def bytes_expr(buf: str, start: int, n: int) -> str:
    parts = [
        f"((__u64){buf}[{start + i}] << {8 * (n - 1 - i)})" if n - 1 - i else f"(__u64){buf}[{start + i}]"
        for i in range(n)
    ]
    return "(" + " | ".join(parts) + ")"
