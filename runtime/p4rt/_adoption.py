"""An agent that connects to a NIC already running its pipeline takes over what is in the NIC's
tables: the session entries go to the core, which rebuilds the sessions they describe and
deletes the rest (:func:`dysco.runtime.core.adopt`), and the known_peer entries of a predecessor
are deleted (the new core hands meter cells out anew as agents authenticate).

Only reads happen here; the core's deletes are carried out by the service like any other
actions.
"""

from __future__ import annotations

from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime._nic import Nic
from dysco.runtime.core import Mapping, Table
from dysco.runtime.p4rt._client import Connection
from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry


def entry_read(msg: p4runtime_pb2.TableEntry) -> TableEntry:
    """A table entry a Read returned: its exact match fields, action, idle timeout and metadata."""
    match = tuple(
        FieldMatch(fm.field_id, "exact", int.from_bytes(fm.exact.value, "big"))
        for fm in msg.match
        if fm.WhichOneof("field_match_type") == "exact"
    )
    action = ActionCall(0)
    if msg.action.WhichOneof("type") == "action":
        a = msg.action.action
        params = sorted((p.param_id, int.from_bytes(p.value, "big")) for p in a.params)
        action = ActionCall(a.action_id, tuple(v for _, v in params))
    return TableEntry(
        msg.table_id, match, action, msg.priority, msg.idle_timeout_ns, msg.controller_metadata, msg.metadata
    )


def _wildcard(table_id: int) -> p4runtime_pb2.Entity:
    entity = p4runtime_pb2.Entity()
    entity.table_entry.table_id = table_id
    return entity


async def session_entries(conn: Connection, nic: Nic) -> list[Mapping]:
    """Every entry of the NIC's session tables, as the core's mappings (notes included)."""
    found = await conn.read([_wildcard(nic.table_ids[t]) for t in Table])
    out: list[Mapping] = []
    for e in found:
        if e.WhichOneof("entity") == "table_entry":
            m = nic.mapping(entry_read(e.table_entry))
            if m is not None:
                out.append(m)
    return out


async def remove_peer_entries(conn: Connection, nic: Nic) -> int:
    """Delete the known_peer entries a predecessor wrote; how many went."""
    if nic.peer_table is None:
        return 0
    found = await conn.read([_wildcard(nic.peer_table)])
    updates = [
        conn.table_update("delete", entry_read(e.table_entry))
        for e in found
        if e.WhichOneof("entity") == "table_entry"
    ]
    results = await conn.write(updates)
    return sum(1 for r in results if r is None)
