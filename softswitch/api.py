"""The in-process API of the softswitch.

This is the contract between the executor (front end + pipeline) and everything
that drives it: the P4Runtime server, the STF runner, the simulation adapter and
tests.  Everything here speaks P4Info ids and plain integers; protobuf and byte
strings stay at the edges (the P4Runtime server converts).

Values are unsigned integers of the field's width (``int<W>`` fields carry their
two's-complement bit pattern).  A table entry lists only the fields that are not
don't-care, as P4Runtime does; an absent ternary/lpm/range/optional field matches
anything, an absent exact field is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from dysco.errors import DyscoError

MatchKind = Literal["exact", "lpm", "ternary", "range", "optional"]
WriteOp = Literal["insert", "modify", "delete"]
Clock = Callable[[], int]
"""Monotonic nanoseconds; injected so simulations run on a fake clock."""


class FieldMatch(NamedTuple):
    """One key field of an entry.

    exact / optional: ``value``.  lpm: ``value`` and ``prefix_len``.
    ternary: ``value`` and ``mask`` (value already masked).  range: ``value`` is
    the low end and ``high`` the high end, inclusive.

    An immutable record like the dataclasses here, but a named tuple: a Write of session
    entries builds five per entry, and a tuple is built in a third of a frozen dataclass's time.
    """

    field_id: int
    kind: MatchKind
    value: int
    mask: int = 0
    prefix_len: int = 0
    high: int = 0


class ActionCall(NamedTuple):
    """An action and its arguments, in P4Info parameter order (ids 1..N).  A named tuple, as
    :class:`FieldMatch` is, for the same reason."""

    action_id: int
    params: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A table entry as the control plane sees it.

    ``match`` is sorted by ``field_id`` and omits don't-care fields.  The key of an
    entry (what insert/modify/delete identify it by) is ``(table_id, match, priority)``.
    ``time_since_last_hit_ns`` is filled in by reads only.
    """

    table_id: int
    match: tuple[FieldMatch, ...]
    action: ActionCall
    priority: int = 0
    idle_timeout_ns: int = 0
    controller_metadata: int = 0
    metadata: bytes = b""
    is_default_action: bool = False
    time_since_last_hit_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Replica:
    port: int
    instance: int = 0


@dataclass(frozen=True, slots=True)
class CloneSession:
    session_id: int
    replicas: tuple[Replica, ...]
    class_of_service: int = 0
    packet_length_bytes: int = 0


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """Two-rate three-colour meter settings (rates per second, bursts in units)."""

    cir: int
    cburst: int
    pir: int
    pburst: int


@dataclass(slots=True)
class CounterValue:
    packets: int = 0
    bytes: int = 0


class EntryError(DyscoError):
    """A control-plane write or read the device refuses.

    ``code`` is the google.rpc code name P4Runtime reports for it, e.g.
    ``ALREADY_EXISTS``, ``NOT_FOUND``, ``INVALID_ARGUMENT``, ``RESOURCE_EXHAUSTED``,
    ``OUT_OF_RANGE``, ``UNIMPLEMENTED``, ``FAILED_PRECONDITION``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Program(Protocol):
    """A compiled P4 program, ready to load into a :class:`Device`."""

    @property
    def p4info(self) -> object:
        """The ``p4.config.v1.P4Info`` protobuf message for this program."""
        ...

    def device_config(self) -> bytes:
        """The bytes ``dysco p4c`` writes and SetForwardingPipelineConfig carries."""
        ...


class Device(Protocol):
    """One v1model switch instance.  Not thread-safe: callers serialise access."""

    cpu_port: int | None
    drop_port: int

    @property
    def program(self) -> Program | None: ...

    def load(self, program: Program) -> None:
        """Replace the pipeline; all entries, PRE state, counters, meters and registers are reset."""
        ...

    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        """Run one packet through the pipeline to completion (clones, resubmit,
        recirculation, multicast included) and return what leaves, in order,
        as ``(egress_port, frame)``.  Frames for ``cpu_port`` still carry the
        ``packet_in`` controller header; the caller strips it.  Packets entering
        on ``cpu_port`` must start with the ``packet_out`` header."""
        ...

    # tables
    def write_entry(self, op: WriteOp, entry: TableEntry) -> None: ...
    def write_entries(self, updates: Sequence[tuple[WriteOp, TableEntry]]) -> list[EntryError | None]:
        """The updates in order, each applied (None) or refused (its error) exactly as
        :meth:`write_entry` would one after another; a target may apply them in fewer steps
        (the ebpf one: one system call per run of one table).  :func:`write_each` is the
        one-by-one version."""
        ...

    def read_entries(self, table_id: int = 0) -> list[TableEntry]:
        """Entries of one table (0: every table), without default entries."""
        ...

    def default_entry(self, table_id: int) -> TableEntry: ...
    def set_default_entry(self, entry: TableEntry) -> None:
        """MODIFY of the default entry; ``entry.match`` must be empty."""
        ...

    def reset_default_entry(self, table_id: int) -> None: ...
    def expired_entries(self) -> list[TableEntry]:
        """Entries idle for at least their ``idle_timeout_ns`` (by the device clock)
        that were not reported since their last hit or modification; each is
        reported once per idle period."""
        ...

    # packet replication engine
    def set_multicast_group(self, group_id: int, replicas: Sequence[Replica]) -> None: ...
    def delete_multicast_group(self, group_id: int) -> None: ...
    def multicast_groups(self) -> dict[int, tuple[Replica, ...]]: ...
    def set_clone_session(self, session: CloneSession) -> None: ...
    def delete_clone_session(self, session_id: int) -> None: ...
    def clone_sessions(self) -> dict[int, CloneSession]: ...

    # externs visible to the control plane
    def read_counter(self, counter_id: int, index: int) -> CounterValue: ...
    def write_counter(self, counter_id: int, index: int, value: CounterValue) -> None: ...
    def counter_size(self, counter_id: int) -> int: ...
    def read_direct_counter(self, entry: TableEntry) -> CounterValue: ...
    def write_direct_counter(self, entry: TableEntry, value: CounterValue) -> None: ...
    def set_meter(self, meter_id: int, index: int, config: MeterConfig | None) -> None: ...
    def set_direct_meter(self, entry: TableEntry, config: MeterConfig | None) -> None: ...
    def read_register(self, register_id: int, index: int) -> int: ...
    def write_register(self, register_id: int, index: int, value: int) -> None: ...


def write_each(device: Device, updates: Sequence[tuple[WriteOp, TableEntry]]) -> list[EntryError | None]:
    """:meth:`Device.write_entries` by :meth:`Device.write_entry`, one update at a time; another
    refusal of the device (a :class:`DyscoError`) answers INVALID_ARGUMENT."""
    out: list[EntryError | None] = []
    for op, entry in updates:
        try:
            device.write_entry(op, entry)
        except EntryError as exc:
            out.append(exc)
            continue
        except DyscoError as exc:
            out.append(EntryError("INVALID_ARGUMENT", str(exc)))
            continue
        out.append(None)
    return out


@dataclass
class DeviceStats:
    """Counts a device keeps about itself (reported by servers and tests)."""

    packets_in: int = 0
    packets_out: int = 0
    packets_dropped: int = 0
    malformed: int = 0
    per_port_in: dict[int, int] = field(default_factory=dict)
