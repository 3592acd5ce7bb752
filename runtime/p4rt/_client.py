"""One P4Runtime connection (grpc.aio): arbitration, pipeline, batched writes, the stream channel.

The client knows P4Runtime, not Dysco: the values it takes and gives are
:mod:`dysco.softswitch.api` dataclasses (plain integers, P4Info ids) and stream messages.
Per-update Write errors come back as :class:`UpdateError` values, one per update, decoded from
the ``grpc-status-details-bin`` trailer as P4Runtime servers (PI, bmv2, ``dysco switch``) send it.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import grpc
from google.rpc import code_pb2, status_pb2

from dysco.errors import PeerError
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.runtime.core._types import Prefixed
from dysco.softswitch.api import ActionCall, CloneSession, FieldMatch, TableEntry

STATUS_DETAILS_KEY = "grpc-status-details-bin"
RPC_TIMEOUT_S = 30.0
MAX_RECEIVE_BYTES = 256 * 1024 * 1024
"""The largest reply the agent takes: a Read of full session tables (an agent that restarts reads
them back; about 200 bytes per entry) is far beyond gRPC's default of 4 MB."""
Op = Literal["insert", "modify", "delete"]
_OPS = {
    "insert": p4runtime_pb2.Update.INSERT,
    "modify": p4runtime_pb2.Update.MODIFY,
    "delete": p4runtime_pb2.Update.DELETE,
}


class NotPrimary(PeerError):
    """Another controller with a higher election id is primary for the device."""


@dataclass(frozen=True, slots=True)
class UpdateError:
    code: str
    """google.rpc code name, e.g. ``RESOURCE_EXHAUSTED``."""
    message: str


@dataclass(frozen=True, slots=True)
class Pipeline:
    p4info: p4info_pb2.P4Info
    device_config: bytes

    @property
    def cookie(self) -> int:
        """Identifies the pipeline: a target that reports this cookie already runs it."""
        h = hashlib.sha256(self.p4info.SerializeToString(deterministic=True) + self.device_config)
        return int.from_bytes(h.digest()[:8], "big") or 1


def encode_value(value: int) -> bytes:
    """P4Runtime's canonical bytestring of a non-negative value."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def entry_to_proto(entry: TableEntry) -> p4runtime_pb2.TableEntry:
    msg = p4runtime_pb2.TableEntry(
        table_id=entry.table_id,
        priority=entry.priority,
        idle_timeout_ns=entry.idle_timeout_ns,
        metadata=entry.metadata,
    )
    for fm in entry.match:
        out = msg.match.add(field_id=fm.field_id)
        if fm.kind == "exact":
            out.exact.value = encode_value(fm.value)
        elif fm.kind == "ternary":
            out.ternary.value = encode_value(fm.value)
            out.ternary.mask = encode_value(fm.mask)
        elif fm.kind == "range":
            out.range.low = encode_value(fm.value)
            out.range.high = encode_value(fm.high)
        elif fm.kind == "lpm":
            out.lpm.value = encode_value(fm.value)
            out.lpm.prefix_len = fm.prefix_len
        else:
            out.optional.value = encode_value(fm.value)
    if entry.action.action_id:
        action = msg.action.action
        action.action_id = entry.action.action_id
        for pid, value in enumerate(entry.action.params, start=1):
            action.params.add(param_id=pid, value=encode_value(value))
    return msg


def entry_from_proto(msg: p4runtime_pb2.TableEntry) -> TableEntry:
    """The match of an entry a server reported (idle timeouts); exact fields only are kept."""
    match = tuple(
        FieldMatch(fm.field_id, "exact", int.from_bytes(fm.exact.value, "big"))
        for fm in msg.match
        if fm.WhichOneof("field_match_type") == "exact"
    )
    return TableEntry(msg.table_id, match, ActionCall(0))


def clone_session_to_proto(session: CloneSession) -> p4runtime_pb2.Entity:
    entity = p4runtime_pb2.Entity()
    cs = entity.packet_replication_engine_entry.clone_session_entry
    cs.session_id = session.session_id
    for r in session.replicas:
        cs.replicas.add(egress_port=r.port, instance=r.instance)
    return entity


WRITE_CHUNK = 100
"""Updates per Write: a server reports one error detail per update in trailing metadata, which
gRPC caps (8-16 KB): 100 fit, compact as ``dysco switch`` sends them or in full as PI does."""


def update_errors(exc: grpc.aio.AioRpcError, n: int) -> list[UpdateError | None]:
    """Per-update results of a failed Write (None: that update succeeded)."""
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            out: list[UpdateError | None] = []
            for detail in status.details:
                err = p4runtime_pb2.Error()
                detail.Unpack(err)
                if err.canonical_code == code_pb2.OK:
                    out.append(None)
                else:
                    out.append(UpdateError(code_pb2.Code.Name(err.canonical_code), err.message))
            return out + [None] * (n - len(out))
    # no per-update details: the whole batch failed the same way
    return [UpdateError(exc.code().name, exc.details() or "")] * n


@dataclass(frozen=True, slots=True)
class ClientTls:
    """P4Runtime over TLS: the CA certificates to trust the switch by (PEM), and optionally this
    agent's certificate and key for switches that require client authentication."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


class Connection:
    """A primary P4Runtime session to one device.  ``async with Connection(...)`` opens the channel,
    arbitrates and closes everything again."""

    def __init__(
        self, address: str, device_id: int, election_id: int, log: Prefixed, tls: ClientTls | None = None
    ) -> None:
        self.address = address
        self.tls = tls
        self.device_id = device_id
        self.election_id = election_id
        self.log = log
        self._channel: Any = None
        self._stub: Any = None
        self._call: Any = None
        self._outbox: asyncio.Queue[p4runtime_pb2.StreamMessageRequest | None] = asyncio.Queue()

    async def __aenter__(self) -> Connection:
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(self.address, self.tls.credentials(), options=options)
        self._stub = p4runtime_pb2_grpc.P4RuntimeStub(self._channel)
        self._call = self._stub.StreamChannel(self._requests())
        try:
            await self._arbitrate()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            await self._channel.close(grace=None)
        self._channel = self._call = None

    def _election(self) -> p4runtime_pb2.Uint128:
        e = self.election_id
        return p4runtime_pb2.Uint128(high=e >> 64, low=e & ((1 << 64) - 1))

    async def _requests(self) -> AsyncIterator[p4runtime_pb2.StreamMessageRequest]:
        while True:
            msg = await self._outbox.get()
            if msg is None:
                return
            yield msg

    async def _arbitrate(self) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = self.device_id
        req.arbitration.election_id.CopyFrom(self._election())
        self._outbox.put_nowait(req)
        while True:
            msg = await self._call.read()
            if msg is grpc.aio.EOF:
                raise PeerError(f"{self.address}: the stream ended during arbitration")
            if msg.WhichOneof("update") != "arbitration":
                continue
            code = msg.arbitration.status.code
            if code == code_pb2.OK:
                self.log.info("primary for device %d (election id %d)", self.device_id, self.election_id)
                return
            raise NotPrimary(
                f"{self.address}: not primary for device {self.device_id} with election id "
                f"{self.election_id}: {msg.arbitration.status.message}"
            )

    # ---- pipeline -------------------------------------------------------------------------------

    async def target_cookie(self) -> int | None:
        """The cookie of the pipeline the target runs (None: no pipeline)."""
        req = p4runtime_pb2.GetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            response_type=p4runtime_pb2.GetForwardingPipelineConfigRequest.COOKIE_ONLY,
        )
        try:
            reply = await self._stub.GetForwardingPipelineConfig(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return None
            raise
        if not reply.config.HasField("cookie"):
            return 0
        cookie: int = reply.config.cookie.cookie
        return cookie

    async def ensure_pipeline(self, pipeline: Pipeline) -> bool:
        """Push the pipeline unless the target already runs it; True when it was pushed (all
        table state is new)."""
        if await self.target_cookie() == pipeline.cookie:
            self.log.info("the target already runs the pipeline (cookie %#x)", pipeline.cookie)
            return False
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            election_id=self._election(),
        )
        req.config.p4info.CopyFrom(pipeline.p4info)
        req.config.p4_device_config = pipeline.device_config
        req.config.cookie.cookie = pipeline.cookie
        try:
            await self._stub.SetForwardingPipelineConfig(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise PeerError(f"{self.address}: pushing the pipeline failed: {exc.details()}") from None
        self.log.info("pipeline pushed (cookie %#x)", pipeline.cookie)
        return True

    # ---- writes ---------------------------------------------------------------------------------

    async def write(self, updates: Sequence[p4runtime_pb2.Update]) -> list[UpdateError | None]:
        """Writes with CONTINUE_ON_ERROR, one after the other, of at most ``WRITE_CHUNK`` updates
        each (so that every update's result fits in the trailer a server answers with); the
        result of each update, in order."""
        out: list[UpdateError | None] = []
        for start in range(0, len(updates), WRITE_CHUNK):
            out += await self._write_one(updates[start : start + WRITE_CHUNK])
        return out

    async def _write_one(self, updates: Sequence[p4runtime_pb2.Update]) -> list[UpdateError | None]:
        if not updates:
            return []
        req = p4runtime_pb2.WriteRequest(
            device_id=self.device_id,
            election_id=self._election(),
            atomicity=p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR,
        )
        req.updates.extend(updates)
        try:
            await self._stub.Write(req, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
            return update_errors(exc, len(updates))
        return [None] * len(updates)

    async def read(self, entities: Sequence[p4runtime_pb2.Entity]) -> list[p4runtime_pb2.Entity]:
        """Every entity a Read of ``entities`` (wildcards allowed) returns."""
        req = p4runtime_pb2.ReadRequest(device_id=self.device_id, entities=entities)
        out: list[p4runtime_pb2.Entity] = []
        async for reply in self._stub.Read(req):
            out.extend(reply.entities)
        return out

    @staticmethod
    def table_update(op: Op, entry: TableEntry) -> p4runtime_pb2.Update:
        u = p4runtime_pb2.Update(type=_OPS[op])
        u.entity.table_entry.CopyFrom(entry_to_proto(entry))
        return u

    @staticmethod
    def entity_update(op: Op, entity: p4runtime_pb2.Entity) -> p4runtime_pb2.Update:
        u = p4runtime_pb2.Update(type=_OPS[op])
        u.entity.CopyFrom(entity)
        return u

    # ---- stream ---------------------------------------------------------------------------------

    def packet_out(self, payload: bytes, metadata: dict[int, int]) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.packet.payload = payload
        for mid, value in sorted(metadata.items()):
            req.packet.metadata.add(metadata_id=mid, value=encode_value(value))
        self._outbox.put_nowait(req)

    async def messages(self) -> AsyncIterator[p4runtime_pb2.StreamMessageResponse]:
        """Stream messages until the server ends the stream (then :class:`PeerError`)."""
        while True:
            msg = await self._call.read()
            if msg is grpc.aio.EOF:
                raise PeerError(f"{self.address}: the P4Runtime stream ended")
            yield msg
