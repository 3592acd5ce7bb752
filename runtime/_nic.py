"""What the core's intents become for p4src/dysco.p4: the one place that knows the program.

Table entries are :class:`dysco.softswitch.api.TableEntry` values (P4Info ids, plain integers);
the simulation hands them to an in-process switch, the P4Runtime adapter turns them into
protobuf.  Names, ports and reason codes come from :mod:`dysco.p4names`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dysco import p4names
from dysco.compiler.boxes import Ternary
from dysco.compiler.entries import Entry
from dysco.errors import InternalError, PeerError, UserError
from dysco.runtime.core._events import Mapping, Port, Reason, Table
from dysco.runtime.core._packet import MalformedFrame, parse
from dysco.runtime.core._types import TCP, FiveTuple
from dysco.softswitch.api import ActionCall, CloneSession, FieldMatch, Replica, TableEntry

_REASONS = {
    p4names.Reason.POLICY_SYN: Reason.POLICY_SYN,
    p4names.Reason.DYSCO_SYN: Reason.DYSCO_SYN,
    p4names.Reason.TAGGED_SYN: Reason.TAGGED_SYN,
    p4names.Reason.TWO_PATH: Reason.SESSION_PUNT,
    p4names.Reason.TEARDOWN: Reason.TEARDOWN,
    p4names.Reason.UNSUPPORTED: Reason.UNSUPPORTED,
    p4names.Reason.IP_UNSUPPORTED: Reason.UNSUPPORTED,
    p4names.Reason.CONTROL: Reason.CONTROL,
    p4names.Reason.INBAND: Reason.INBAND,
    p4names.Reason.SETUP_MISS: Reason.SETUP_MISS,
}
_TABLE_NAMES = {Table.OUT: p4names.SESSION_OUT, Table.IN: p4names.SUBSESSION_IN}


@dataclass(frozen=True, slots=True)
class PacketIn:
    port: Port | None
    reason: Reason
    policy_id: int
    session_id: int
    frame: bytes


def _by_name(objs: Any, name: str, what: str) -> Any:
    for o in objs:
        if o.preamble.name == name:
            return o
    raise UserError(f"the P4 program has no {what} {name} (is it p4src/dysco.p4?)")


class Nic:
    """The binding, resolved once against a program's P4Info."""

    def __init__(self, p4info: Any, cpu_port: int = p4names.CPU_PORT) -> None:
        self.p4info = p4info
        self.cpu_port = cpu_port
        self.ports = {Port.HOST: p4names.HOST_PORT, Port.NET: p4names.NET_PORT}
        self._port_of = {v: k for k, v in self.ports.items()}
        self.table_ids: dict[Table, int] = {}
        self.table_sizes: dict[Table, int] = {}
        self._fields: dict[Table, tuple[int, ...]] = {}
        self._rewrite: dict[Table, int] = {}
        self._punt: dict[Table, int] = {}
        self._drop: dict[Table, int] = {}
        self._table_of: dict[int, Table] = {}
        for table, names in _TABLE_NAMES.items():
            t = _by_name(p4info.tables, names.table, "table")
            self.table_ids[table] = t.preamble.id
            self.table_sizes[table] = int(t.size) or 65536
            self._table_of[t.preamble.id] = table
            fids = {f.name: f.id for f in t.match_fields}
            self._fields[table] = tuple(fids[n] for n in names.key)
            self._rewrite[table] = _by_name(p4info.actions, names.rewrite_action, "action").preamble.id
            self._punt[table] = _by_name(p4info.actions, names.punt_action, "action").preamble.id
            self._drop[table] = _by_name(p4info.actions, names.drop_action, "action").preamble.id
        c = p4names.CLASSIFIER
        ct = _by_name(p4info.tables, c.table, "table")
        self.classifier_id = ct.preamble.id
        cf = {f.name: f.id for f in ct.match_fields}
        self._cfields = (cf[c.src_addr], cf[c.dst_addr], cf[c.protocol], cf[c.src_port], cf[c.dst_port])
        self._chain_action = _by_name(p4info.actions, c.chain_action, "action").preamble.id
        self.chain_action = self._chain_action
        """The classifier's punt-with-a-policy action (its one parameter: the policy id)."""
        self._bypass_action = _by_name(p4info.actions, c.bypass_action, "action").preamble.id
        self.peer_table: int | None = None
        """The known_peer table (None: a program without it, which meters per reason only)."""
        self.peer_cells = self._peer_field = self._peer_action = 0
        peers = next((t for t in p4info.tables if t.preamble.name == p4names.KNOWN_PEER), None)
        if peers is not None:
            self.peer_table, self.peer_cells = peers.preamble.id, int(peers.size)
            self._peer_field = peers.match_fields[0].id
            self._peer_action = _by_name(p4info.actions, p4names.PEER_ACTION, "action").preamble.id
        self.setup_ports: int | None = None
        """The setup_ports table (None: a program without it; then the agent must not send a SYN
        on before the writes of its entries are answered: nothing would punt an early SYN-ACK)."""
        self._setup_field = self._setup_action = 0
        setup = next((t for t in p4info.tables if t.preamble.name == p4names.SETUP_PORTS), None)
        if setup is not None:
            self.setup_ports = setup.preamble.id
            self._setup_field = setup.match_fields[0].id
            self._setup_action = _by_name(p4info.actions, p4names.SETUP_PORTS_ACTION, "action").preamble.id
        self.answer_cells: int | None = None
        """Cells of the answer_expected register (None: a program without it; then the agent must
        not hand a SYN to its host before the writes of its entries are answered: nothing would
        punt the host's SYN-ACK, which would leave untranslated)."""
        answers = next((r for r in p4info.registers if r.preamble.name == p4names.ANSWER_EXPECTED), None)
        if answers is not None and answers.size > 0 and answers.type_spec.bitstring.bit.bitwidth == 64:
            self.answer_cells = int(answers.size)

    # ---- entries ------------------------------------------------------------------------------------

    def _match(self, table: Table, key: FiveTuple) -> tuple[FieldMatch, ...]:
        values = (key.src, key.dst, key.proto, key.sport, key.dport)
        pairs = sorted(zip(self._fields[table], values, strict=True))
        return tuple(FieldMatch(fid, "exact", v) for fid, v in pairs)

    def entry(self, m: Mapping, idle_timeout_ns: int = 0) -> TableEntry:
        if m.drop:
            action = ActionCall(self._drop[m.table], ())
        elif m.target is None or m.punt:
            action = ActionCall(self._punt[m.table], (m.session_id,))
        else:
            t = m.target
            action = ActionCall(
                self._rewrite[m.table],
                (
                    t.src,
                    t.dst,
                    t.sport,
                    t.dport,
                    m.seq_delta % 2**32,
                    m.ack_delta % 2**32,
                    m.ts_val_delta % 2**32,
                    m.ts_ecr_delta % 2**32,
                    m.ws[0],
                    m.ws[1],
                    m.session_id,
                ),
            )
        return TableEntry(
            self.table_ids[m.table],
            self._match(m.table, m.key),
            action,
            idle_timeout_ns=idle_timeout_ns,
            metadata=m.note,
        )

    def mapping(self, entry: TableEntry) -> Mapping | None:
        """The core's view of a session table's entry read back from the NIC (None: not a session
        table's, or an action this binding does not write), its metadata as the note."""
        found = self.mapping_key(entry)
        if found is None:
            return None
        table, key = found
        aid, params = entry.action
        if aid == self._rewrite[table] and len(params) == 11:
            src, dst, sport, dport, seq, ack, ts_val, ts_ecr, ws0, ws1, sid = params
            target = FiveTuple(src, dst, sport, dport, key.proto)
            return Mapping(table, key, target, sid, seq, ack, ts_val, ts_ecr, (ws0, ws1), note=entry.metadata)
        if aid == self._punt[table] and len(params) == 1:
            return Mapping(table, key, None, params[0], punt=True, note=entry.metadata)
        if aid == self._drop[table]:
            return Mapping(table, key, None, 0, drop=True, note=entry.metadata)
        return None

    def mapping_key(self, entry: TableEntry) -> tuple[Table, FiveTuple] | None:
        """Which session entry an idle-timeout notification is about (None: not a session table)."""
        table = self._table_of.get(entry.table_id)
        if table is None:
            return None
        by_id = {fm.field_id: fm.value for fm in entry.match}
        src, dst, proto, sport, dport = (by_id.get(fid, 0) for fid in self._fields[table])
        return table, FiveTuple(src, dst, sport, dport, proto)

    def classifier_entries(self, entries: Iterable[Entry]) -> list[TableEntry]:
        out = []
        for e in entries:
            fields = []
            for fid, c in zip(self._cfields, (e.src, e.dst, None, e.sport, e.dport), strict=True):
                if c is None:
                    fields.append(FieldMatch(fid, "ternary", TCP, mask=0xFF))
                elif isinstance(c, Ternary):
                    if c.mask:
                        fields.append(FieldMatch(fid, "ternary", c.value & c.mask, mask=c.mask))
                elif not (c.low == 0 and c.high == 0xFFFF):
                    fields.append(FieldMatch(fid, "range", c.low, high=c.high))
            if e.action == "bypass":
                action = ActionCall(self._bypass_action, ())
            else:  # a chain, or a software entry (its policy id has the software flag)
                action = ActionCall(self._chain_action, (e.policy_id,))
            out.append(
                TableEntry(
                    self.classifier_id, tuple(sorted(fields, key=lambda f: f.field_id)), action, e.priority
                )
            )
        return out

    def peer_entry(self, address: int, cell: int) -> TableEntry:
        """The known_peer entry that meters ``address``'s punts in cell ``cell``."""
        if self.peer_table is None:
            raise InternalError(f"the program has no table {p4names.KNOWN_PEER}")
        match = (FieldMatch(self._peer_field, "exact", address),)
        return TableEntry(self.peer_table, match, ActionCall(self._peer_action, (cell,)))

    def setup_ports_entry(self, low: int, high: int) -> TableEntry:
        """The setup_ports entry for the subsession ports ``low``-``high``."""
        if self.setup_ports is None:
            raise InternalError(f"the program has no table {p4names.SETUP_PORTS}")
        match = (FieldMatch(self._setup_field, "range", low, high=high),)
        return TableEntry(self.setup_ports, match, ActionCall(self._setup_action, ()), priority=1)

    def teardown_clone_session(self) -> CloneSession:
        return CloneSession(p4names.TEARDOWN_CLONE_SESSION, (Replica(self.cpu_port),))

    # ---- packet-in / packet-out ---------------------------------------------------------------------

    def packet_out(self, frame: bytes, port: Port) -> bytes:
        """The frame with the packet_out header for a direct send (in-process targets)."""
        return self.packet_out_header(port) + frame

    def packet_out_header(self, port: Port) -> bytes:
        return p4names.PACKET_OUT.encode(port=self.ports[port], mode=p4names.PacketOutMode.DIRECT)

    def packet_out_metadata(self, port: Port, expect_answer: bool = False) -> dict[str, int]:
        """The packet_out fields by name (P4Runtime carries them as metadata); ``expect_answer``:
        a SYN whose answer the NIC is to punt should it miss session_out (needs ``answer_cells``)."""
        if expect_answer:
            if self.answer_cells is None:
                raise InternalError(f"the program has no register {p4names.ANSWER_EXPECTED}")
            return {"port": self.ports[port], "mode": int(p4names.PacketOutMode.EXPECT_ANSWER)}
        return {"port": self.ports[port], "mode": int(p4names.PacketOutMode.DIRECT)}

    def answer_cell(self, syn: bytes) -> int | None:
        """The cell of answer_expected that a packet-out of the SYN ``syn`` marks (the cell of its
        answer's five-tuple, the SYN's reversed); None: not a TCP frame, or no such register."""
        if self.answer_cells is None:
            return None
        try:
            t = parse(syn).five_tuple
        except MalformedFrame:
            return None
        return p4names.answer_cell(t.dst, t.src, t.dport, t.sport, self.answer_cells)

    def packet_in(self, data: bytes) -> PacketIn:
        """Split a frame from the CPU port of an in-process target."""
        try:
            fields, frame = p4names.PACKET_IN.decode(data)
        except ValueError as exc:
            raise PeerError(f"packet-in: {exc}") from None
        return self.packet_in_fields(fields, frame)

    def packet_in_fields(self, fields: dict[str, int], frame: bytes) -> PacketIn:
        try:
            reason = _REASONS.get(p4names.Reason(fields.get("reason", 0)), Reason.OTHER)
        except ValueError:
            reason = Reason.OTHER
        return PacketIn(
            self._port_of.get(fields.get("ingress_port", 0)),
            reason,
            fields.get("policy_id", 0),
            fields.get("session_id", 0),
            frame,
        )

    def check(self) -> None:
        if set(self.table_ids) != set(Table):
            raise InternalError("session tables missing from the binding")
