"""The P4Runtime server's logic, independent of gRPC: one device, its pipeline and controllers.

:class:`SwitchCore` owns the device and serialises every call to it with one lock.
Streams are :class:`StreamHandle` values with an outbox the gRPC adapter drains;
the core only ever puts messages into outboxes, so it never blocks on a slow peer.
Frames leaving on data ports go to a ``transmit`` callback, called with the lock
held, so it must not block for long nor call back into the core.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, cast

from google.rpc import code_pb2

from dysco.errors import DyscoError
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.api import Clock, Device, EntryError, Program, TableEntry, WriteOp
from dysco.softswitch.server import _p4info_check, _pinned
from dysco.softswitch.server._arbitration import Arbiter, Notice
from dysco.softswitch.server._convert import table_entry_to_proto
from dysco.softswitch.server._entities import MeterStore, plain_table_write, read_entity, write_update
from dysco.softswitch.server._errors import P4RuntimeError, no_pipeline, not_primary, rpc_code_value
from dysco.softswitch.server._offload import OffloadError, VnetHdr, finish
from dysco.softswitch.server._packetio import build_packet_out, split_packet_in
from dysco.softswitch.server._schema import Schema

_log = logging.getLogger("dysco.softswitch.server")

API_VERSION = "1.4.1"
OUTBOX_LIMIT = 4096
"""Packet-ins and notifications queued for one stream before new ones are dropped."""
RUN_MAX = 1024
"""Consecutive plain table entries handed to the device at a time: the entries converted for a
run are short-lived objects, and a bounded run frees them before the garbage collector's older
generations have to walk them (a Write of 10,000 entries in one run cost a third more)."""
WRITE_SLICE = 256
"""Updates of a Write applied under one hold of the lock (see :meth:`SwitchCore.write`)."""
IDLE_BACKLOG = 8
"""The idle sweep waits while the primary's stream has this many messages queued: a
controller that does not keep up gets its notifications later rather than dropped, and a
million expiring entries do not pile up in memory as notifications nobody reads."""

T = TypeVar("T")
ProgramLoader = Callable[[bytes], Program]
Transmit = Callable[[int, bytes], None]


class StreamClosed:
    """Outbox sentinel: end the stream normally."""


@dataclass(frozen=True, slots=True)
class StreamAbort:
    """Outbox sentinel: end the stream with this error."""

    error: P4RuntimeError


OutboxItem: TypeAlias = "p4runtime_pb2.StreamMessageResponse | StreamClosed | StreamAbort"


@dataclass(eq=False)
class StreamHandle:
    stream_id: int
    outbox: queue.Queue[OutboxItem] = field(default_factory=queue.Queue)
    dropped: int = 0

    def put(self, msg: p4runtime_pb2.StreamMessageResponse, *, droppable: bool = False) -> None:
        if droppable and self.outbox.qsize() >= OUTBOX_LIMIT:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th ...: said as it happens
                _log.warning(
                    "[p4runtime] stream %d: %d messages dropped so far (slow reader, %d queued)",
                    self.stream_id,
                    self.dropped,
                    OUTBOX_LIMIT,
                )
            return
        self.outbox.put(msg)


@dataclass
class _Pipeline:
    schema: Schema
    config: p4runtime_pb2.ForwardingPipelineConfig


def election_id_of(msg: Any) -> int | None:
    """The 128-bit election id of a request, None when unset."""
    if not msg.HasField("election_id"):
        return None
    eid: int = (msg.election_id.high << 64) | msg.election_id.low
    return eid


class SwitchCore:
    def __init__(
        self,
        device: Device,
        *,
        device_id: int = 0,
        program_loader: ProgramLoader,
        clock: Clock,
        transmit: Transmit | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.device = device
        self.device_id = device_id
        self._load_program = program_loader
        self._clock = clock
        self._on_commit = on_commit
        """Called (with the lock held) once a new pipeline is committed."""
        self._transmit: Transmit = transmit or _discard
        self._lock = threading.Lock()
        self._arbiter = Arbiter(device_id)
        self._streams: dict[int, StreamHandle] = {}
        self._next_stream_id = 1
        self._pipeline: _Pipeline | None = None
        self._saved: tuple[p4runtime_pb2.ForwardingPipelineConfig, Program] | None = None
        self._meters = MeterStore()
        self.offload_drops = 0
        """Packet-ins from the kernel whose offload could not be finished (not IPv4/TCP)."""
        self.stream_drops = 0
        """Packet-ins and notifications dropped for slow readers, by streams already closed."""
        restored = _pinned.restore(device, program_loader)  # a pipeline that outlived a restart
        program = device.program
        if restored is not None:
            self._pipeline = _Pipeline(Schema.from_p4info(restored.config.p4info), restored.config)
            self._meters = restored.meters
        elif program is not None:
            config = p4runtime_pb2.ForwardingPipelineConfig(p4_device_config=program.device_config())
            # api.Program types it as object (protobuf stays out of the executor's contract);
            # CopyFrom refuses anything but a P4Info.
            config.p4info.CopyFrom(cast(p4info_pb2.P4Info, program.p4info))
            self._pipeline = _Pipeline(Schema.from_p4info(config.p4info), config)
            _pinned.remember(device, config)

    def inspect(self, read: Callable[[SwitchCore], T]) -> T:
        """``read(self)`` with the lock held: a consistent view for metrics, between packets."""
        with self._lock:
            return read(self)

    @property
    def schema(self) -> Schema | None:
        """The committed pipeline's schema (None without one); read it under :meth:`inspect`."""
        return self._pipeline.schema if self._pipeline is not None else None

    def stream_state(self) -> tuple[int, bool, int]:
        """Open streams, whether one is primary, and messages dropped for slow readers so far
        (under :meth:`inspect`)."""
        dropped = self.stream_drops + sum(h.dropped for h in self._streams.values())
        return len(self._streams), self._arbiter.primary() is not None, dropped

    def set_transmit(self, transmit: Transmit) -> None:
        self._transmit = transmit

    # --- streams ---------------------------------------------------------------------------------

    def open_stream(self, limit: int | None = None) -> StreamHandle:
        """A new stream; ``limit`` refuses it (RESOURCE_EXHAUSTED) when that many are open."""
        with self._lock:
            if limit is not None and len(self._streams) >= limit:
                raise P4RuntimeError("RESOURCE_EXHAUSTED", "Too many connections")
            handle = StreamHandle(self._next_stream_id)
            self._next_stream_id += 1
            self._streams[handle.stream_id] = handle
            return handle

    def close_stream(self, handle: StreamHandle) -> None:
        with self._lock:
            self._streams.pop(handle.stream_id, None)
            self._send_notices(self._arbiter.remove(handle.stream_id))
            self.stream_drops += handle.dropped
        if handle.dropped:
            _log.warning(
                "[p4runtime] stream %d: %d messages dropped (slow reader)", handle.stream_id, handle.dropped
            )

    def close_all_streams(self) -> None:
        with self._lock:
            for handle in self._streams.values():
                handle.outbox.put(StreamClosed())

    def stream_message(self, handle: StreamHandle, msg: p4runtime_pb2.StreamMessageRequest) -> None:
        """One message from a stream.  Raises P4RuntimeError to end the stream with it."""
        kind = msg.WhichOneof("update")
        with self._lock:
            if kind == "arbitration":
                arb = msg.arbitration
                eid = election_id_of(arb) or 0
                self._send_notices(self._arbiter.update(handle.stream_id, arb.device_id, eid))
            elif kind == "packet":
                self._packet_out(handle, msg.packet)
            else:
                _log.debug("[p4runtime] stream %d: ignoring %s", handle.stream_id, kind)

    def _send_notices(self, notices: list[Notice]) -> None:
        for n in notices:
            handle = self._streams.get(n.stream_id)
            if handle is None:
                continue
            reply = p4runtime_pb2.StreamMessageResponse()
            arb = reply.arbitration
            arb.device_id = n.device_id
            arb.election_id.high = n.election_id >> 64
            arb.election_id.low = n.election_id & ((1 << 64) - 1)
            if n.is_primary:
                arb.status.code = code_pb2.OK
                arb.status.message = "Is primary"
            else:
                arb.status.code = code_pb2.ALREADY_EXISTS
                arb.status.message = "Is backup"
            handle.put(reply)

    def _packet_out(self, handle: StreamHandle, packet: p4runtime_pb2.PacketOut) -> None:
        # As PI: packet-outs before arbitration, from backups or without a pipeline are ignored.
        if self._arbiter.primary() != handle.stream_id or self._pipeline is None:
            _log.debug(
                "[p4runtime] stream %d: packet-out ignored (not primary or no pipeline)", handle.stream_id
            )
            return
        try:
            if self.device.cpu_port is None:
                raise P4RuntimeError("FAILED_PRECONDITION", "The switch has no CPU port (--cpu-port)")
            frame = build_packet_out(self._pipeline.schema.packet_out, packet.metadata, packet.payload)
        except P4RuntimeError as exc:
            err = p4runtime_pb2.StreamMessageResponse()
            err.error.canonical_code = rpc_code_value(exc.code)
            err.error.message = exc.message
            err.error.packet_out.packet_out.CopyFrom(packet)
            handle.put(err)
            return
        outputs = self._process(self.device.cpu_port, frame)
        self._deliver(outputs)

    # --- packets ---------------------------------------------------------------------------------

    def receive(self, port: int, frame: bytes, vnet: VnetHdr | None = None) -> None:
        """A frame arrived on a data port, or from the CPU port's interface: a device in the kernel
        (the ebpf back end) sends its packet-ins there, with the kernel's virtio_net_hdr when the
        ports read that interface with ``vnet_hdr=True``."""
        with self._lock:
            if self._pipeline is None:
                return
            if port == self.device.cpu_port:
                self._packet_in_from_kernel(frame, vnet)
                return
            outputs = self._process(port, frame)
            self._deliver(outputs)

    def _process(self, port: int, frame: bytes) -> list[tuple[int, bytes]]:
        try:
            return self.device.process(port, frame)
        except DyscoError as exc:
            _log.warning("[dataplane] port %d: packet dropped: %s", port, exc)
        except Exception:
            _log.exception("[dataplane] port %d: device failed on a packet (bug)", port)
        return []

    def _deliver(self, outputs: list[tuple[int, bytes]]) -> None:
        """Called with the lock held: packet-ins are queued, data frames transmitted."""
        for port, data in outputs:
            if port == self.device.cpu_port:
                self._packet_in(data)
            else:
                self._transmit(port, data)

    def _packet_in_from_kernel(self, frame: bytes, vnet: VnetHdr | None) -> None:
        """A GSO packet becomes the MTU-sized segments a NIC would have sent, each its own
        PacketIn; a checksum the kernel left to the device is finished (see :mod:`._offload`)."""
        assert self._pipeline is not None
        if vnet is None:
            self._packet_in(frame)
            return
        header = self._pipeline.schema.packet_in
        try:
            frames = finish(vnet, frame, header.nbytes if header is not None else 0)
        except OffloadError as exc:
            self.offload_drops += 1
            _log.warning("[dataplane] packet-in dropped: %s", exc)
            return
        for one in frames:
            self._packet_in(one)

    def _packet_in(self, frame: bytes) -> None:
        assert self._pipeline is not None
        primary = self._arbiter.primary()
        handle = self._streams.get(primary) if primary is not None else None
        if handle is None:
            return
        try:
            msg = split_packet_in(self._pipeline.schema.packet_in, frame)
        except P4RuntimeError as exc:
            _log.warning("[p4runtime] packet-in dropped: %s", exc.message)
            return
        handle.put(p4runtime_pb2.StreamMessageResponse(packet=msg), droppable=True)

    def poll_idle_timeouts(self) -> int:
        """Send one IdleTimeoutNotification for the entries the device reports expired."""
        with self._lock:
            if self._pipeline is None:
                return 0
            primary = self._arbiter.primary()
            handle = self._streams.get(primary) if primary is not None else None
            if handle is not None and handle.outbox.qsize() >= IDLE_BACKLOG:
                return 0  # the entries stay due: a later sweep reports them
            try:
                expired = self.device.expired_entries()
            except Exception:
                _log.exception("[p4runtime] expired_entries failed (bug)")
                return 0
            if not expired:
                return 0
            if handle is None:
                _log.info("[p4runtime] %d idle entries, no primary to tell", len(expired))
                return 0
            note = p4runtime_pb2.StreamMessageResponse()
            note.idle_timeout_notification.timestamp = self._clock()
            schema = self._pipeline.schema
            for entry in expired:
                te = table_entry_to_proto(schema, entry, with_action=False)
                note.idle_timeout_notification.table_entry.append(te)
            handle.put(note, droppable=True)
            return len(expired)

    # --- unary RPCs --------------------------------------------------------------------------------

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RuntimeError("NOT_FOUND", f"Unknown device id {device_id}")

    def write(self, req: p4runtime_pb2.WriteRequest) -> list[P4RuntimeError | None]:
        """Apply a Write; per-update results (None = success), or raises for the whole RPC.

        A big Write is applied in slices of WRITE_SLICE updates with the lock let go in between,
        so packets the device carries in this process (the python back end) get through while it
        runs (CONTINUE_ON_ERROR promises no atomicity).  Each slice checks again that the writer
        is primary and a pipeline is there."""
        self._check_device(req.device_id)
        if req.atomicity != p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR:
            raise P4RuntimeError("UNIMPLEMENTED", "Only CONTINUE_ON_ERROR atomicity is supported")
        results: list[P4RuntimeError | None] = [None] * len(req.updates)
        for start in range(0, max(1, len(req.updates)), WRITE_SLICE):  # an empty Write is checked too
            if start:
                time.sleep(0)  # let a thread that waits for the lock (a packet) take it first
            with self._lock:
                if not self._arbiter.may_write(election_id_of(req)):
                    raise not_primary()
                if self._pipeline is None:
                    raise no_pipeline()
                self._write_slice(req, start, results)
        return results

    def _write_slice(
        self, req: p4runtime_pb2.WriteRequest, start: int, results: list[P4RuntimeError | None]
    ) -> None:
        """Updates ``start`` to ``start + WRITE_SLICE`` of ``req`` (the lock held)."""
        assert self._pipeline is not None
        schema = self._pipeline.schema
        # consecutive plain table entries go to the device together (one system call per
        # run of a table on ebpf); anything else is applied on its own, in order
        run_at: list[int] = []
        run: list[tuple[WriteOp, TableEntry]] = []
        for i in range(start, min(start + WRITE_SLICE, len(req.updates))):
            update = req.updates[i]
            try:
                plain = plain_table_write(schema, update)
            except Exception as exc:
                results[i] = _as_error(exc)
                continue
            if plain is not None:
                run_at.append(i)
                run.append(plain)
                if len(run) == RUN_MAX:
                    self._write_run(run_at, run, results)
                    run_at, run = [], []
                continue
            self._write_run(run_at, run, results)
            run_at, run = [], []

            def apply(u: p4runtime_pb2.Update = update) -> None:
                write_update(self.device, schema, self._meters, u)

            results[i] = self._guard(apply)
        self._write_run(run_at, run, results)

    def _write_run(
        self, at: list[int], run: list[tuple[WriteOp, TableEntry]], results: list[P4RuntimeError | None]
    ) -> None:
        if not run:
            return
        try:
            errors = self.device.write_entries(run)
        except Exception as exc:
            failed = _as_error(exc)
            for i in at:
                results[i] = failed
            return
        for i, error in zip(at, errors, strict=True):
            results[i] = None if error is None else P4RuntimeError(error.code, error.message)

    def _guard(self, fn: Callable[[], object]) -> P4RuntimeError | None:
        try:
            fn()
        except Exception as exc:
            return _as_error(exc)
        return None

    def read(self, req: p4runtime_pb2.ReadRequest) -> p4runtime_pb2.ReadResponse:
        self._check_device(req.device_id)
        with self._lock:
            if self._pipeline is None:
                raise no_pipeline()
            schema = self._pipeline.schema
            reply = p4runtime_pb2.ReadResponse()

            def run() -> None:
                for entity in req.entities:
                    reply.entities.extend(read_entity(self.device, schema, self._meters, entity))

            error = self._guard(run)
            if error is not None:
                raise error
            return reply

    def set_pipeline(self, req: p4runtime_pb2.SetForwardingPipelineConfigRequest) -> None:
        self._check_device(req.device_id)
        action = req.action
        actions = p4runtime_pb2.SetForwardingPipelineConfigRequest
        with self._lock:
            if not self._arbiter.may_write(election_id_of(req)):
                raise not_primary()
            if action == actions.COMMIT:
                if self._saved is None:
                    raise P4RuntimeError(
                        "FAILED_PRECONDITION", "No saved forwarding pipeline config to commit"
                    )
                config, program = self._saved
                self._commit(config, program)
                return
            if action not in (actions.VERIFY, actions.VERIFY_AND_SAVE, actions.VERIFY_AND_COMMIT):
                if action == actions.RECONCILE_AND_COMMIT:
                    raise P4RuntimeError(
                        "UNIMPLEMENTED", "RECONCILE_AND_COMMIT is not supported by softswitch"
                    )
                raise P4RuntimeError("INVALID_ARGUMENT", "Invalid SetForwardingPipelineConfig action")
            program = self._verify(req.config)
            if action == actions.VERIFY_AND_SAVE:
                self._saved = (req.config, program)
            elif action == actions.VERIFY_AND_COMMIT:
                self._commit(req.config, program)

    def _verify(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> Program:
        if not config.HasField("p4info"):
            raise P4RuntimeError("INVALID_ARGUMENT", "Missing P4Info in the forwarding pipeline config")
        try:
            _p4info_check.check_self(config.p4info)
            Schema.from_p4info(config.p4info)
            program = self._load_program(config.p4_device_config)
            _p4info_check.check_against(config.p4info, program.p4info)
            return program
        except P4RuntimeError:
            raise
        except DyscoError as exc:
            raise P4RuntimeError("INVALID_ARGUMENT", f"Invalid device config: {exc}") from exc
        except Exception as exc:
            _log.exception("[p4runtime] loading the device config failed")
            raise P4RuntimeError(
                "INVALID_ARGUMENT", f"Invalid device config: {type(exc).__name__}: {exc}"
            ) from exc

    def _commit(self, config: p4runtime_pb2.ForwardingPipelineConfig, program: Program) -> None:
        try:
            self.device.load(program)
        except DyscoError as exc:
            raise P4RuntimeError("INVALID_ARGUMENT", f"Cannot load the program: {exc}") from exc
        kept = p4runtime_pb2.ForwardingPipelineConfig()
        kept.CopyFrom(config)
        self._pipeline = _Pipeline(Schema.from_p4info(kept.p4info), kept)
        # the first push of the pinned program after a restart keeps the tables (and meters)
        self._meters = _pinned.kept(self.device) or MeterStore()
        _pinned.remember(self.device, kept)
        self._saved = None
        if self._on_commit is not None:
            self._on_commit()
        _log.info("[p4runtime] pipeline committed (%d tables)", len(self._pipeline.schema.tables))

    def get_pipeline(
        self, req: p4runtime_pb2.GetForwardingPipelineConfigRequest
    ) -> p4runtime_pb2.GetForwardingPipelineConfigResponse:
        self._check_device(req.device_id)
        types = p4runtime_pb2.GetForwardingPipelineConfigRequest
        with self._lock:
            if self._pipeline is None:
                raise no_pipeline()
            src = self._pipeline.config
            reply = p4runtime_pb2.GetForwardingPipelineConfigResponse()
            out = reply.config
            if src.HasField("cookie"):
                out.cookie.CopyFrom(src.cookie)
            kind = req.response_type
            if kind in (types.ALL, types.P4INFO_AND_COOKIE):
                out.p4info.CopyFrom(src.p4info)
            if kind in (types.ALL, types.DEVICE_CONFIG_AND_COOKIE):
                out.p4_device_config = src.p4_device_config
            if kind not in (
                types.ALL,
                types.P4INFO_AND_COOKIE,
                types.DEVICE_CONFIG_AND_COOKIE,
                types.COOKIE_ONLY,
            ):
                raise P4RuntimeError("INVALID_ARGUMENT", f"Invalid response type {kind}")
            return reply

    def p4info(self) -> p4info_pb2.P4Info | None:
        with self._lock:
            return None if self._pipeline is None else self._pipeline.schema.p4info


def _as_error(exc: Exception) -> P4RuntimeError:
    """The per-update answer to what applying an update raised."""
    if isinstance(exc, P4RuntimeError):
        return exc
    if isinstance(exc, EntryError):
        return P4RuntimeError(exc.code, exc.message)
    if isinstance(exc, DyscoError):
        return P4RuntimeError("INVALID_ARGUMENT", str(exc))
    _log.exception("[p4runtime] device failed on an update (bug)")
    return P4RuntimeError("INTERNAL", f"softswitch bug: {type(exc).__name__}: {exc}")


def _discard(port: int, frame: bytes) -> None:
    _log.debug("[dataplane] no port %d; %d bytes dropped", port, len(frame))
