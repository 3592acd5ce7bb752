"""The v1model pipeline around the generated code, as bmv2's simple_switch runs it.

parser -> verify checksum -> ingress -> traffic manager (clone, resubmit,
multicast, drop, unicast) -> egress (clone, drop, recirculate) -> compute
checksum -> deparser.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

from dysco.errors import DyscoError, InternalError

from ...api import Clock, CloneSession, Replica
from . import runtime as R
from .context import Compiled
from .externs_rt import CounterArray, MeterArray, RegisterArray
from .tables import ActionSpec, Table

NORMAL, INGRESS_CLONE, EGRESS_CLONE, RECIRC, REPLICATION, RESUBMIT = 0, 1, 2, 4, 5, 6
MAX_PASSES = 16  # resubmit/recirculate/clone generations per injected packet


class Pipeline:
    def __init__(self, compiled: Compiled, name: str, clock: Clock, drop_port: int, seed: int = 0) -> None:
        self.compiled = compiled
        self.drop_port = drop_port
        self.clock = clock
        self.rng = random.Random(seed)
        self.ps = R.PacketState()
        ns: dict[str, Any] = R.helpers()
        ns["DROP_PORT"] = drop_port
        ns["_PS"] = self.ps
        ns["_random"] = lambda lo, hi: self.rng.randint(lo, hi) if lo <= hi else lo
        info = compiled.info
        self.externs: dict[int, Any] = {}
        for e in info.externs.values():
            obj: Any
            if e.kind == "counter":
                obj = CounterArray(e.size, e.unit)
            elif e.kind == "meter":
                obj = MeterArray(e.size, e.unit, clock)
            elif e.kind == "register":
                obj = RegisterArray(e.size, e.width)
            else:
                obj = None
            ns[e.gen] = obj
            self.externs[e.id] = obj
        code = compile(compiled.source, f"<softswitch {name}>", "exec")
        exec(code, ns)
        self.tables: dict[int, Table] = {}
        for t in info.tables.values():
            specs = [
                ActionSpec(a.id, r.name, ns[r.fn], [p.width for p in a.params], r.scope)
                for r in t.actions
                for a in [info.actions[r.name]]
            ]
            table = Table(t, specs, clock, self.ps)
            if t.direct_meter is not None:
                table.meter_bytes = info.externs[t.direct_meter].unit == "bytes"
            ns[t.gen] = table
            self.tables[t.id] = table
        ent = compiled.entry
        self.parser: Callable[..., Any] = ns[ent["PARSER"]]
        self.verify: Callable[..., Any] = ns[ent["VERIFY"]]
        self.ingress: Callable[..., Any] = ns[ent["INGRESS"]]
        self.egress: Callable[..., Any] = ns[ent["EGRESS"]]
        self.compute: Callable[..., Any] = ns[ent["COMPUTE"]]
        self.deparser: Callable[..., Any] = ns[ent["DEPARSER"]]
        self.H: Callable[[], Any] = ns[ent["H"]]
        self.M: Callable[[], Any] = ns[ent["M"]]
        self.SM: Callable[[], Any] = ns[ent["SM"]]
        self.preserved = info.preserved_fields
        self.groups: dict[int, tuple[Replica, ...]] = {}
        self.sessions: dict[int, CloneSession] = {}
        self.digests: list[tuple[str, tuple[int, ...]]] = []
        self.parser_errors = 0  # packets whose parser ended in an error (counted per injected packet)

    # ------------------------------------------------------------ one packet
    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        work: list[tuple[int, bytes, int, dict[str, Any] | None]] = [(port, data, NORMAL, None)]
        passes = 0
        try:
            while work and passes < MAX_PASSES:
                passes += 1
                p, d, itype, kept = work.pop(0)
                self.ingress_pass(p, d, itype, kept, out, work)
        except DyscoError:
            raise
        except RecursionError as exc:
            raise InternalError(f"softswitch: packet processing recursed too deeply: {exc}") from exc
        except Exception as exc:  # a bug in the generated code must not pass silently
            raise InternalError(f"softswitch: internal error while processing a packet: {exc!r}") from exc
        return out

    def parse(self, port: int, data: bytes, itype: int) -> tuple[Any, Any, Any, bytes]:
        hdr, meta, sm = self.H(), self.M(), self.SM()
        sm.ingress_port = port
        sm.instance_type = itype
        sm.ingress_global_timestamp = (self.clock() // 1000) & 0xFFFFFFFFFFFF  # microseconds, as bmv2
        sm.packet_length = len(data)
        pk = R.Cursor(data)
        try:
            self.parser(pk, hdr, meta, sm)
        except R.ParserReject as rej:
            sm.parser_error = rej.code
        return hdr, meta, sm, data[pk.off :]

    def keep(self, meta: Any, index: int | None) -> dict[str, Any] | None:
        if index is None:
            return None
        return {f: getattr(meta, f) for f in self.preserved.get(index, [])}

    def ingress_pass(
        self,
        port: int,
        data: bytes,
        itype: int,
        kept: dict[str, Any] | None,
        out: list[tuple[int, bytes]],
        work: list[tuple[int, bytes, int, dict[str, Any] | None]],
    ) -> None:
        ps = self.ps
        ps.reset()
        ps.length = len(data)
        hdr, meta, sm, payload = self.parse(port, data, itype)
        if sm.parser_error and itype == NORMAL:
            self.parser_errors += 1
        if kept:
            for k, v in kept.items():
                setattr(meta, k, v)
        ps.payload = payload
        with contextlib.suppress(R.PipelineExit):
            self.verify(hdr, meta)
        sm.checksum_error = ps.checksum_error
        with contextlib.suppress(R.PipelineExit):
            self.ingress(hdr, meta, sm)
        clone, clone_fields, resubmit, _, _ = ps.requests()
        self.digests.extend(ps.digests)
        if clone is not None and clone in self.sessions:
            session = self.sessions[clone]
            kept_meta = self.keep(meta, clone_fields)
            for rep in session.replicas:
                h2, m2, s2, pay2 = self.parse(port, data, INGRESS_CLONE)
                if kept_meta:
                    for k, v in kept_meta.items():
                        setattr(m2, k, v)
                self.egress_pass(
                    h2, m2, s2, pay2, rep, INGRESS_CLONE, out, work, 0, session.packet_length_bytes
                )
        if resubmit is not None:
            work.append((port, data, RESUBMIT, self.keep(meta, resubmit)))
            return
        if sm.mcast_grp:
            for rep in self.groups.get(sm.mcast_grp, ()):
                self.egress_pass(
                    hdr._copy(), meta._copy(), sm._copy(), payload, rep, REPLICATION, out, work, 0, 0
                )
            return
        if sm.egress_spec == self.drop_port:
            return
        self.egress_pass(hdr, meta, sm, payload, Replica(sm.egress_spec, 0), itype, out, work, 0, 0)

    def egress_pass(
        self,
        hdr: Any,
        meta: Any,
        sm: Any,
        payload: bytes,
        rep: Replica,
        itype: int,
        out: list[tuple[int, bytes]],
        work: list[tuple[int, bytes, int, dict[str, Any] | None]],
        depth: int,
        trunc: int,
    ) -> None:
        ps = self.ps
        sm.egress_port = rep.port
        sm.egress_spec = 0
        sm.egress_global_timestamp = (self.clock() // 1000) & 0xFFFFFFFFFFFF
        sm.egress_rid = rep.instance
        sm.instance_type = itype
        ps.clone_session = ps.clone_fields = ps.recirculate = None  # truncate() from ingress still applies
        ps.payload = payload
        with contextlib.suppress(R.PipelineExit):
            self.egress(hdr, meta, sm)
        clone, clone_fields, _, recirc, truncate = ps.requests()
        if clone is not None and clone in self.sessions and depth < MAX_PASSES:
            session = self.sessions[clone]
            kept = self.keep(meta, clone_fields)
            for r2 in session.replicas:
                m2 = self.M()  # only the field list's metadata survives an egress clone
                for k, v in (kept or {}).items():
                    setattr(m2, k, v)
                self.egress_pass(hdr._copy(), m2, sm._copy(), payload, r2, EGRESS_CLONE, out, work, depth + 1,
                                 session.packet_length_bytes)  # fmt: skip
        if sm.egress_spec == self.drop_port:
            return
        self.compute(hdr, meta)
        pk = R.Cursor(b"")
        self.deparser(pk, hdr)
        frame = b"".join(pk.out) + payload
        if recirc is not None:
            work.append((sm.ingress_port, frame, RECIRC, self.keep(meta, recirc)))
            return
        if truncate is not None:
            frame = frame[:truncate]
        if trunc:
            frame = frame[:trunc]
        out.append((rep.port, frame))
