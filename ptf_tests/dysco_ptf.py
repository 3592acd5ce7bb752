"""What every Dysco PTF test shares: a P4Runtime connection (names from the P4Info,
canonical values, entries removed after each test) and packet-in/out helpers."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import ptf
from ptf.base_tests import BaseTest
from ptf.testutils import test_param_get

from dysco.p4names import PACKET_IN, PACKET_OUT
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

WAIT_S = 5.0
ARBITRATION_S = 30.0
"""How long the switch may take to answer the arbitration (a python switch on a loaded machine
took more than 5 s once)."""
MT = p4info_pb2.MatchField


def canonical(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


class P4Runtime:
    """A primary controller on one device: writes, reads, stream packets, idle-timeout notes."""

    def __init__(self, addr: str, device_id: int) -> None:
        self.device_id = device_id
        self.election = p4runtime_pb2.Uint128(high=0, low=1)
        self.channel = grpc.insecure_channel(addr)
        self.stub = p4runtime_pb2_grpc.P4RuntimeStub(self.channel)
        self._out: queue.Queue[p4runtime_pb2.StreamMessageRequest | None] = queue.Queue()
        self.packets: queue.Queue[p4runtime_pb2.PacketIn] = queue.Queue()
        self.idle: queue.Queue[p4runtime_pb2.IdleTimeoutNotification] = queue.Queue()
        arbitration: queue.Queue[p4runtime_pb2.MasterArbitrationUpdate | None] = queue.Queue()
        self.stream_error: grpc.RpcError | None = None
        self._arbitration = arbitration
        self._stream = self.stub.StreamChannel(iter(self._out.get, None))
        self._reader = threading.Thread(target=self._read, name="ptf-p4rt-stream", daemon=True)
        self._reader.start()
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = device_id
        req.arbitration.election_id.CopyFrom(self.election)
        self._out.put(req)
        try:
            reply = arbitration.get(timeout=ARBITRATION_S)
        except queue.Empty:
            raise AssertionError(f"{addr}: no arbitration answer in {ARBITRATION_S}s") from None
        if reply is None:
            err = self.stream_error
            why = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.Call) else str(err)
            raise AssertionError(f"{addr}: the stream ended before the arbitration answer: {why}")
        if reply.status.code != 0:
            raise AssertionError(f"not primary: {reply.status}")
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=device_id)
        self.p4info = self.stub.GetForwardingPipelineConfig(get).config.p4info
        self._written: list[p4runtime_pb2.Entity] = []

    def _read(self) -> None:
        try:
            for msg in self._stream:
                kind = msg.WhichOneof("update")
                if kind == "packet":
                    self.packets.put(msg.packet)
                elif kind == "arbitration":
                    self._arbitration.put(msg.arbitration)
                elif kind == "idle_timeout_notification":
                    self.idle.put(msg.idle_timeout_notification)
        except grpc.RpcError as exc:  # the channel closed (or never opened)
            self.stream_error = exc
            self._arbitration.put(None)

    def close(self) -> None:
        self._out.put(None)
        self.channel.close()

    # -- names -----------------------------------------------------------------

    def _named(self, group: Any, name: str) -> Any:
        for obj in group:
            if obj.preamble.name == name or obj.preamble.alias == name:
                return obj
        raise KeyError(f"no {name!r} in the P4Info")

    def table_entry(
        self,
        table: str,
        match: dict[str, Any],
        action: str,
        params: dict[str, int] | None = None,
        *,
        priority: int = 0,
        idle_timeout_ns: int = 0,
    ) -> p4runtime_pb2.TableEntry:
        """``match`` values: exact ``v``, ternary ``(v, mask)``, range ``(lo, hi)``, lpm ``(v, len)``."""
        t = self._named(self.p4info.tables, table)
        fields = {mf.name: mf for mf in t.match_fields}
        te = p4runtime_pb2.TableEntry(
            table_id=t.preamble.id, priority=priority, idle_timeout_ns=idle_timeout_ns
        )
        for name, value in match.items():
            mf = fields[name]
            fm = te.match.add(field_id=mf.id)
            if mf.match_type == MT.EXACT:
                fm.exact.value = canonical(value)
            elif mf.match_type == MT.TERNARY:
                fm.ternary.value, fm.ternary.mask = canonical(value[0]), canonical(value[1])
            elif mf.match_type == MT.RANGE:
                fm.range.low, fm.range.high = canonical(value[0]), canonical(value[1])
            elif mf.match_type == MT.LPM:
                fm.lpm.value, fm.lpm.prefix_len = canonical(value[0]), value[1]
            else:
                fm.optional.value = canonical(value)
        a = self._named(self.p4info.actions, action)
        te.action.action.action_id = a.preamble.id
        pids = {p.name: p.id for p in a.params}
        for name, value in (params or {}).items():
            te.action.action.params.add(param_id=pids[name], value=canonical(value))
        return te

    # -- writes ----------------------------------------------------------------

    def write(self, op: int, entities: list[p4runtime_pb2.Entity]) -> None:
        req = p4runtime_pb2.WriteRequest(device_id=self.device_id, election_id=self.election)
        for entity in entities:
            req.updates.add(type=op).entity.CopyFrom(entity)
        self.stub.Write(req)

    def insert(self, *entries: p4runtime_pb2.TableEntry) -> None:
        """Insert table entries; they are deleted again by :meth:`cleanup`."""
        for te in entries:
            entity = p4runtime_pb2.Entity(table_entry=te)
            self.write(p4runtime_pb2.Update.INSERT, [entity])
            self._written.append(entity)

    def clone_session(self, session_id: int, port: int) -> None:
        entity = p4runtime_pb2.Entity()
        cs = entity.packet_replication_engine_entry.clone_session_entry
        cs.session_id = session_id
        cs.replicas.add(egress_port=port, instance=0)
        self.write(p4runtime_pb2.Update.INSERT, [entity])
        self._written.append(entity)

    def cleanup(self) -> None:
        while self._written:
            entity = self._written.pop()
            te = entity.table_entry if entity.HasField("table_entry") else None
            if te is not None:
                te.ClearField("action")
                te.idle_timeout_ns = 0
            self.write(p4runtime_pb2.Update.DELETE, [entity])

    # -- packets ----------------------------------------------------------------

    def packet_out(self, payload: bytes, **metadata: int) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.packet.payload = payload
        for (name, _), mid in zip(PACKET_OUT.fields, range(1, len(PACKET_OUT.fields) + 1), strict=True):
            if name in metadata:
                req.packet.metadata.add(metadata_id=mid, value=canonical(metadata[name]))
        self._out.put(req)

    def packet_in(self, timeout: float = WAIT_S) -> tuple[dict[str, int], bytes]:
        """The next packet-in: its metadata by field name, and the frame."""
        msg = self.packets.get(timeout=timeout)
        names = [name for name, _ in PACKET_IN.fields]
        meta = {names[m.metadata_id - 1]: int.from_bytes(m.value, "big") for m in msg.metadata}
        return meta, msg.payload

    def no_packet_in(self, timeout: float = 0.5) -> bool:
        try:
            self.packets.get(timeout=timeout)
        except queue.Empty:
            return True
        return False


class DyscoTest(BaseTest):  # type: ignore[misc]
    """Base of every test: a dataplane, a primary P4Runtime connection, cleanup after."""

    def setUp(self) -> None:
        BaseTest.setUp(self)
        self.dataplane = ptf.dataplane_instance
        self.dataplane.flush()
        self.sw = P4Runtime(str(test_param_get("grpcaddr")), int(test_param_get("device_id")))

    def tearDown(self) -> None:
        self.sw.cleanup()
        self.sw.close()
        BaseTest.tearDown(self)


def frames(*pkts: Any) -> Iterator[bytes]:
    for pkt in pkts:
        yield bytes(pkt)
