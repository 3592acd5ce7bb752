"""Live policy changes: an agent swaps its policies without a restart and without touching a live
session (``dysco ctl policies reload FILE``, SIGHUP).

The new file is read and compiled first, for the classifier the pipeline has; a file with an
error is refused whole (FILE:LINE:COL) and the old policies stay.  Then, so that no SYN is
classified by half of one set and half of the other:

1. the core takes the new chains and the new software evaluator (new sessions get them; a live
   session keeps the chain it was set up with);
2. one entry above every other sends every SYN to the agent's evaluator (a "software" entry from
   the file's first policy on): from here on every new session gets the new file's verdict;
3. the entries only the old set has are deleted, then those only the new set has are inserted;
   entries both have stay;
4. the catch-all entry goes, and the NIC decides alone again.

Between 2 and 4 every policy SYN is classified by the agent, more slowly but exactly.  A Write the
target refuses stops the reload where it is, reported; the catch-all stays until a reload succeeds,
so what the target holds never decides a SYN on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dysco.compiler import SOFTWARE_FLAG, Compiled, Options, compile_text, read_policies
from dysco.compiler.p4rt import classifier_capacity
from dysco.errors import PeerError, UserError
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime._nic import Nic
from dysco.runtime.p4rt._client import Connection
from dysco.softswitch.api import ActionCall, TableEntry


@dataclass(frozen=True, slots=True)
class Reloaded:
    compiled: Compiled
    added: int
    removed: int
    kept: int
    seconds: float

    def summary(self, path: str) -> dict[str, object]:
        return {
            "file": path,
            "policies": len(self.compiled.source.policies),
            "entries": len(self.compiled.entries),
            "added": self.added,
            "removed": self.removed,
            "kept": self.kept,
            "seconds": round(self.seconds, 3),
        }


def compile_file(path: str, nic: Nic) -> Compiled:
    """The file's policies, placed within the pipeline's classifier; UserError on bad input."""
    return compile_text(read_policies(path), path, Options(capacity=classifier_capacity(nic.p4info)))


def compile_source(text: str, name: str, nic: Nic) -> Compiled:
    """:func:`compile_file` for policies that are not in a file (etcd); ``name`` in messages."""
    return compile_text(text, name, Options(capacity=classifier_capacity(nic.p4info)))


def catch_all(nic: Nic, priority: int) -> TableEntry:
    """The classifier entry above all others that leaves every SYN to the agent's evaluator."""
    return TableEntry(nic.classifier_id, (), ActionCall(nic.chain_action, (SOFTWARE_FLAG | 1,)), priority)


async def reload(
    conn: Connection,
    nic: Nic,
    before: list[TableEntry],
    new: Compiled,
    swap: Callable[[Compiled], None],
) -> Reloaded:
    """Put ``new`` in force in place of the classifier entries ``before`` (what the target may
    hold: the old set's, and what a reload that failed half-way may have left), steps 1-4 of the
    module's text.  Deleting an entry that is not there, or inserting one that is, is no error."""
    t0 = time.monotonic()
    after = nic.classifier_entries(new.entries)
    kept = set(before) & set(after)
    gone = [e for e in before if e not in kept]
    added = [e for e in after if e not in kept]
    swap(new)
    top = max((e.priority for e in (*before, *after)), default=0) + 1
    guard = catch_all(nic, top)
    await _write(conn, [conn.table_update("insert", guard)], "the catch-all entry")
    await _write(conn, [conn.table_update("delete", e) for e in gone], "deleting the old entries")
    await _write(conn, [conn.table_update("insert", e) for e in added], "inserting the new entries")
    await _write(conn, [conn.table_update("delete", guard)], "removing the catch-all entry")
    return Reloaded(new, len(added), len(gone), len(kept), time.monotonic() - t0)


async def _write(conn: Connection, updates: list[p4runtime_pb2.Update], what: str) -> None:
    if not updates:
        return
    results = await conn.write(updates)
    again = [u for u, r in zip(updates, results, strict=True) if r is not None and r.code == "ALREADY_EXISTS"]
    for u in again:
        u.type = p4runtime_pb2.Update.MODIFY
    bad = [r for r in results if r is not None and r.code not in ("ALREADY_EXISTS", "NOT_FOUND")]
    bad += [r for r in await conn.write(again) if r is not None] if again else []
    if bad:
        raise PeerError(
            f"policy reload: {what}: the target refused {len(bad)}: {bad[0].code} {bad[0].message}"
        )


def no_file() -> UserError:
    return UserError("no policy file to reload: give one (the agent was started without --policies)")
