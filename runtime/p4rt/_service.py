"""The agent on a P4Runtime target: the sans-IO core driven by one connection, its timers and a
reconnect loop.

Tasks (all named, owned by :meth:`AgentService.run` through one ``TaskGroup`` per connection, so a
failing task cancels its siblings and the connection is made again after a throttled backoff):

* ``stream``: stream messages -> events (packet-in, idle-timeout notifications) in the intake
  (:mod:`dysco.runtime.p4rt._intake`): teardown copies, control messages, two-path punts and
  notifications first, new-session SYNs in a bounded backlog that lets the oldest go;
* ``worker``: takes the events by priority, feeds them to the core in batches and carries out
  the actions: all table writes of a batch in as few ``Write`` RPCs as possible (CONTINUE_ON_ERROR),
  then the packet-outs of the events whose writes all succeeded, then the notifications.  It
  yields to the stream reader after every batch: a reader that falls behind makes the NIC drop
  packet-ins of every kind, teardown copies included, where the intake drops only stale SYNs.

Management requests (:mod:`dysco.runtime.p4rt._management`, the base of :class:`AgentService`)
that change something (:meth:`AgentService.reconfigure`) are events on the intake's first lane,
so the core sees them in order with every punt but new-session SYNs (which wait in their own
lane); the request waits for the core's outcome notification (after that batch's writes are
done) or its timeout.

Timers use the event loop's clock (``loop.time()`` in ns).

Every notification of the core is also kept, numbered and timestamped (CLOCK_MONOTONIC ns, taken
when the service has carried out the batch that raised it: its table writes done, its packets
handed to the target), in a bounded log that management ``events`` reads from a cursor; the
monotonic clock is the same for every process of the machine, whatever its network namespace,
so logs of several agents can be set side by side.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import grpc

from dysco import p4names
from dysco.compiler import Compiled, SoftwareClassifier
from dysco.errors import DyscoError, PeerError, UserError
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime._mgmt import Args
from dysco.runtime._nic import Nic, PacketIn
from dysco.runtime.core import Agent, Config, HookCall, StateHook, adopt, hook_done, run_hook
from dysco.runtime.core._auth import KeyRing
from dysco.runtime.core._events import (
    Action,
    Delete,
    Install,
    Mapping,
    Modify,
    Notify,
    Peer,
    Port,
    Send,
    SetTimer,
    Table,
)
from dysco.runtime.core._types import FiveTuple, ip_int, ip_str, prefixed
from dysco.runtime.p4rt import _adoption, _limits, _policies
from dysco.runtime.p4rt._client import (
    ClientTls,
    Connection,
    Op,
    Pipeline,
    UpdateError,
    clone_session_to_proto,
    entry_from_proto,
)
from dysco.runtime.p4rt._intake import Intake, Lane, flow_key, lane_of
from dysco.runtime.p4rt._management import Event
from dysco.runtime.p4rt._middlebox import MiddleboxRequests
from dysco.softswitch.api import TableEntry

BATCH_LIMIT = 256
"""Events the worker feeds to the core before it writes and sends."""
SETUP_PER_BATCH = 16
"""New-session SYNs in one batch at most: between two batches the stream reader gets the loop, and
it must read faster than the worker takes SYNs, so that an overload piles up in the intake (which
drops the oldest SYNs) and not in the NIC's queue (which drops anything)."""
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
STABLE_S = 10.0
"""A connection that lived this long resets the backoff."""

EVENT_LOG = 16384
"""Notifications kept for management ``events``; older ones go first (a reader is told how many
it missed)."""


@dataclass(frozen=True, slots=True)
class Settings:
    p4runtime: str
    config: Config
    pipeline: Pipeline
    policies: Compiled | None = None
    device_id: int = 0
    election_id: int = 1
    control_port: int = p4names.CONTROL_UDP_PORT
    policies_file: str = ""
    tls: ClientTls | None = None
    """P4Runtime over TLS; plain text when None."""
    limits: dict[p4names.Reason, _limits.Limit | None] = field(
        default_factory=lambda: dict(_limits.DEFAULT_LIMITS)
    )
    """Punt rate limits per reason, written to the NIC's punt meter on every connection."""
    event_log_size: int = EVENT_LOG
    """Notifications kept for management ``events``."""
    state_hook: StateHook | None = None
    """This middlebox's state hook (:mod:`dysco.runtime.core._statehook`); its calls run in a thread."""


class LatencySink(Protocol):
    """Where the worker puts packet-in to packet-out latencies (ns): a list, or a histogram."""

    def append(self, ns: int, /) -> None: ...


class AgentService(MiddleboxRequests):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.log = prefixed(__name__, settings.config.name, "p4rt")
        self.nic = Nic(settings.pipeline.p4info)
        self.nic.check()
        self.drained: frozenset[int] = frozenset()
        """Middlebox instances drained by the fleet (``dysco fleet drain``): left out of new sessions."""
        self.agent = self._new_core()
        self.counters: collections.Counter[str] = collections.Counter()
        self.errors: collections.deque[dict[str, object]] = collections.deque(maxlen=20)
        self.event_log: collections.deque[dict[str, object]] = collections.deque(
            maxlen=settings.event_log_size
        )
        """The latest notifications, oldest first; their ``seq`` numbers have no gaps."""
        self.event_seq = 0
        """The ``seq`` of the latest notification (0: none yet)."""
        self.connected = False
        self.ready = asyncio.Event()
        """Set once the first connection is primary, the pipeline is in and the classifier written."""
        self._conn: Connection | None = None
        self._progress = asyncio.Condition()
        self._reloading = asyncio.Lock()
        self._stale: list[TableEntry] = []
        """Classifier entries a reload that failed half-way may have left on the target."""
        self.intake: Intake[tuple[Event, int]] = Intake(self.counters)
        self.setup_latencies: LatencySink | None = None
        """When a list, the worker appends for every packet-out the ns from the arrival of the
        event that caused it (a packet-in) to the packet-out, table writes included."""
        self.setup_arrivals: list[int] | None = None
        """When a list, the worker appends with each of those the event's arrival (ns, the loop's
        clock): when the stream reader took the packet-in."""
        self._timer: asyncio.TimerHandle | None = None
        self._in_meta: dict[int, str] = {}
        self._out_meta: dict[str, int] = {}
        for cpm in settings.pipeline.p4info.controller_packet_metadata:
            if cpm.preamble.name == "packet_in":
                self._in_meta = {m.id: m.name for m in cpm.metadata}
            elif cpm.preamble.name == "packet_out":
                self._out_meta = {m.name: m.id for m in cpm.metadata}

    async def reload_policies(self, args: Args) -> dict[str, object]:
        """Management ``policies_reload`` (and SIGHUP): the file ``args["file"]`` (default: the
        one the agent runs) in force for new sessions; see :mod:`._policies`."""
        path = args.get("file") or self.settings.policies_file
        if not isinstance(path, str) or not path:
            raise _policies.no_file()
        text = args.get("text")  # the policies themselves (from etcd), ``file`` naming them
        # in a thread: 10,000 policies take about a second, and packet-ins keep being served;
        # a bad file is refused whole, nothing changed
        if isinstance(text, str):
            compiled = await asyncio.to_thread(_policies.compile_source, text, path, self.nic)
        else:
            compiled = await asyncio.to_thread(_policies.compile_file, path, self.nic)
        conn = self.connection
        if conn is None:
            raise UserError("not connected to the NIC; try again when the agent is ready")
        async with self._reloading:
            old = self.settings.policies
            before = [*self._stale, *self.nic.classifier_entries(old.entries if old is not None else ())]

            def swap(new: Compiled) -> None:
                self.settings = replace(self.settings, policies=new, policies_file=path)
                software = SoftwareClassifier.from_compiled(new)
                self._notes(self.agent.policy_update(new.chains.values(), software))

            try:
                done = await _policies.reload(conn, self.nic, before, compiled, swap)
            except PeerError as exc:  # the new file is in force through the agent's evaluator
                self.counters["policies.reload_failed"] += 1
                self._stale = [*before, *self.nic.classifier_entries(compiled.entries)]
                why = f"{exc}; every policy SYN goes to the agent until a reload succeeds"
                raise UserError(why) from None
        self._stale = []
        self.counters["policies.reloads"] += 1
        self.counters["policies.entries_added"] += done.added
        self.counters["policies.entries_removed"] += done.removed
        return done.summary(path)

    def set_keys(self, keys: KeyRing) -> None:
        """A key ring from the fleet in force now, and in every core made later."""
        self._notes(self.agent.set_keys(keys))
        self.settings = replace(self.settings, config=replace(self.settings.config, keys=keys))

    def drain(self, instances: frozenset[str]) -> None:
        """Leave these middlebox instances out of new sessions (now, and in every later core)."""
        self.drained = frozenset(ip_int(a) for a in instances)
        self._notes(self.agent.drain(self.drained))

    def _notes(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Notify):
                self._notify(a)

    def _new_core(self) -> Agent:
        s = self.settings
        sizes = self.nic.table_sizes.values()
        config = s.config if min(sizes) >= s.config.table_size else _with_table_size(s.config, min(sizes))
        if config.peer_cells > self.nic.peer_cells:  # a program with fewer cells, or none
            config = replace(config, peer_cells=self.nic.peer_cells)
        if s.policies is None:
            agent = Agent(config)
        else:  # the evaluator decides the SYNs the classifier's software entries punt
            agent = Agent(config, s.policies.chains.values(), SoftwareClassifier.from_compiled(s.policies))
        agent.wall_offset = time.time_ns() - time.monotonic_ns()  # now() is the loop's monotonic clock
        agent.drain(self.drained)
        agent.rc.mig.enabled = s.state_hook is not None
        return agent

    def now(self) -> int:
        return int(asyncio.get_running_loop().time() * 1e9)

    # ---- the connection loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled; reconnects with exponential backoff when the target goes away."""
        backoff = BACKOFF_MIN_S
        first = True
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                try:
                    await self._connected(first)
                except* (DyscoError, OSError, TimeoutError, grpc.aio.AioRpcError) as group:
                    self.counters["reconnects"] += 1
                    for exc in group.exceptions:
                        self._error("connection", f"{type(exc).__name__}: {exc}")
                        self.log.warning("connection to %s lost: %s", self.settings.p4runtime, exc)
                finally:
                    self.connected = False
                    self._conn = None
                await self._lost()
                if self.ready.is_set():
                    first = False
                if loop.time() - started > STABLE_S:
                    backoff = BACKOFF_MIN_S
                self.log.info("reconnecting in %.1fs", backoff)
                await asyncio.sleep(backoff)  # throttles restarts, not a synchronisation
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def _connected(self, first: bool) -> None:
        s = self.settings
        async with Connection(s.p4runtime, s.device_id, s.election_id, self.log, s.tls) as conn:
            pushed = await conn.ensure_pipeline(s.pipeline)
            if first and not pushed:  # a predecessor's pipeline: its sessions are ours now
                await self._adopt(conn)
            elif pushed and not first:
                n = len(self.agent.sessions)
                self.log.warning("the target lost its pipeline: %d sessions forgotten", n)
                self.counters["sessions.lost"] += n
                self.agent = self._new_core()
                self._chains.clear()
                for p in self._pending:
                    failed = Notify("reconfigure_failed", "the target lost its pipeline", p.sid, True)
                    if not p.done.done():
                        p.done.set_result(failed)
            await self._static_entries(conn)
            self._conn = conn
            self.connected = True
            self.ready.set()
            async with self._progress:
                self._progress.notify_all()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._stream(conn), name=f"{s.config.name}-stream")
                tg.create_task(self._worker(conn), name=f"{s.config.name}-worker")

    async def _adopt(self, conn: Connection) -> None:
        """Take over the target's tables (:mod:`._adoption`): the core rebuilds the sessions the
        session entries describe and deletes the rest; a predecessor's known_peer entries go."""
        found = await _adoption.session_entries(conn, self.nic)
        self.counters["adopt.peer_entries_removed"] += await _adoption.remove_peer_entries(conn, self.nic)
        await self._execute(conn, [adopt(self.agent, self.now(), found)], [])

    async def _static_entries(self, conn: Connection) -> None:
        """The classifier, the teardown clone session and the punt limits; existing ones are
        overwritten.  Session and known_peer entries are the core's: a target that kept its
        pipeline kept them, and one that lost it gets a new core (:meth:`_connected`)."""
        entries = self.nic.classifier_entries(
            self.settings.policies.entries if self.settings.policies else ()
        )
        updates = [conn.table_update("insert", e) for e in entries]
        if self.nic.setup_ports is not None:  # SYN-ACKs that overtake their entries come here
            c = self.agent.config
            updates.append(conn.table_update("insert", self.nic.setup_ports_entry(c.port_low, c.port_high)))
        updates.append(
            conn.entity_update("insert", clone_session_to_proto(self.nic.teardown_clone_session()))
        )
        results = await conn.write(updates)
        again = [
            u for u, r in zip(updates, results, strict=True) if r is not None and r.code == "ALREADY_EXISTS"
        ]
        for u in again:
            u.type = p4runtime_pb2.Update.MODIFY
        bad = [r for r in await conn.write(again) if r is not None]
        bad += [r for r in results if r is not None and r.code != "ALREADY_EXISTS"]
        if bad:
            raise PeerError(f"writing the classifier failed: {bad[0].code} {bad[0].message}")
        meters = _limits.meter_updates(self.nic.p4info, self.settings.limits)
        meters += _limits.peer_meter_updates(self.nic.p4info, self.settings.limits)
        bad = [r for r in await conn.write(meters) if r is not None]
        if bad:
            raise PeerError(f"writing the punt limits failed: {bad[0].code} {bad[0].message}")

    # ---- stream -> events -------------------------------------------------------------------------

    async def _stream(self, conn: Connection) -> None:
        async for msg in conn.messages():
            kind = msg.WhichOneof("update")
            if kind == "packet":
                self.counters["packet_in"] += 1
                fields = {
                    self._in_meta.get(m.metadata_id, ""): int.from_bytes(m.value, "big")
                    for m in msg.packet.metadata
                }
                p = self.nic.packet_in_fields(fields, msg.packet.payload)
                if p.port is None:
                    self.counters["drops.packet_in_port"] += 1
                    continue
                event = (functools.partial(self._packet_in, p), self.now())
                self.intake.put_punt(event, lane_of(p.reason), flow_key(p.frame))
            elif kind == "idle_timeout_notification":
                for te in msg.idle_timeout_notification.table_entry:
                    self.counters["idle_notifications"] += 1
                    key = self.nic.mapping_key(entry_from_proto(te))
                    if key is not None:
                        self.intake.put_punt((functools.partial(self._idle, *key), self.now()), Lane.FIRST)
            elif kind == "error":
                self.counters["stream_errors"] += 1
                self._error("stream", msg.error.message)
            elif kind == "arbitration" and msg.arbitration.status.code != 0:
                raise PeerError(f"lost primary: {msg.arbitration.status.message}")

    def _timer_fired(self) -> None:
        self._timer = None
        self.intake.put((self._timer_event, self.now()))

    # the events: each calls the current core (a new one after the target lost its pipeline)

    def _packet_in(self, p: PacketIn, now: int) -> list[Action]:
        assert p.port is not None
        return self.agent.packet_in(now, p.frame, p.port, p.reason, p.policy_id, p.session_id)

    def _idle(self, table: Table, key: FiveTuple, now: int) -> list[Action]:
        return self.agent.idle_timeout(now, table, key)

    def _timer_event(self, now: int) -> list[Action]:
        return self.agent.timer(now)

    # ---- events -> actions --------------------------------------------------------------------

    async def _worker(self, conn: Connection) -> None:
        while True:
            await self.intake.wait()
            batch = self.intake.take(BATCH_LIMIT, SETUP_PER_BATCH)
            now = self.now()
            await self._execute(conn, [event(now) for event, _ in batch], [t for _, t in batch])
            async with self._progress:
                self._progress.notify_all()
            await asyncio.sleep(0)  # the stream reader's turn (see SETUP_PER_BATCH)

    async def _execute(self, conn: Connection, calls: list[list[Action]], arrived: list[int]) -> None:
        """Carry out the actions of several core calls: writes first (batched), then packet-outs of
        the calls none of whose writes failed.  Refused writes go back to the core.

        Sends the core marks ``early`` (SYNs to the next hop or to the host) leave as soon as the
        writes are issued, without waiting for their answers, when the NIC punts a SYN-ACK that
        overtakes them: from the network through ``setup_ports``, from the host when the
        packet-out told it to expect the answer (``answer_expected``); the worker takes no further
        event before the answers are in, so such a punt reaches the core after the entries did.

        An expectation lives in a hashed cell until another overwrites it: two SYNs to the host of
        one batch on the same cell would leave only the second's, so the later ones wait for the
        writes.  One of an earlier batch may be overwritten: its writes are answered, so its
        answer finds its entry."""
        early_ok = {Port.NET: self.nic.setup_ports is not None, Port.HOST: self.nic.answer_cells is not None}
        while calls:
            writes: list[tuple[Op, Mapping, int]] = []
            sends: list[tuple[Send, int]] = []
            early: list[tuple[Send, int]] = []
            cells: set[int] = set()
            notes: list[Notify] = []
            peers: list[Peer] = []
            for i, actions in enumerate(calls):
                for a in actions:
                    if isinstance(a, Install):
                        writes.append(("insert", a.mapping, i))
                    elif isinstance(a, Modify):
                        writes.append(("modify", a.mapping, i))
                    elif isinstance(a, Delete):
                        writes.append(("delete", a.mapping, i))
                    elif isinstance(a, Send):
                        (
                            early if a.early and early_ok[a.port] and self._cell_free(a, cells) else sends
                        ).append((a, i))
                    elif isinstance(a, SetTimer):
                        self._set_timer(a.at)
                    elif isinstance(a, Notify):
                        notes.append(a)
                    elif isinstance(a, Peer):
                        peers.append(a)
            if peers:
                await self._write_peers(conn, peers)
            if early and writes:
                written = asyncio.create_task(self._write(conn, writes), name=f"{conn.address}-write")
                await asyncio.sleep(0)  # the Write request goes out first
                for send, i in early:
                    self._packet_out(conn, send, i, arrived, early=True)
                    self.counters["packet_out.early"] += 1
                failed, more = await written
                self.counters["packet_out.early_write_failed"] += len({i for _, i in early} & failed)
            else:
                sends = early + sends
                failed, more = await self._write(conn, writes)
            for send, i in sends:
                if i in failed:
                    self.counters["drops.write_failed"] += 1
                    continue
                self._packet_out(conn, send, i, arrived)
            for n in notes:
                self._notify(n)
            for call in self.agent.rc.mig.take():
                self._hook(call)
            calls, arrived = more, []

    def _cell_free(self, send: Send, cells: set[int]) -> bool:
        """Whether ``send`` may leave early as far as the host's expectations go (a SYN to the
        network needs none), taking its cell of answer_expected if so."""
        if send.port is not Port.HOST:
            return True
        cell = self.nic.answer_cell(send.frame)
        if cell is None or cell in cells:
            self.counters["packet_out.early_cell_taken"] += cell is not None
            return False
        cells.add(cell)
        return True

    def _packet_out(
        self, conn: Connection, send: Send, i: int, arrived: list[int], early: bool = False
    ) -> None:
        """``early``: sent before the writes of its call are answered (a SYN to the host then
        leaves an expectation of its answer)."""
        meta = self.nic.packet_out_metadata(send.port, expect_answer=early and send.port is Port.HOST)
        conn.packet_out(send.frame, {self._out_meta[k]: v for k, v in meta.items()})
        self.counters["packet_out"] += 1
        if self.setup_latencies is not None and i < len(arrived):
            self.setup_latencies.append(self.now() - arrived[i])
            if self.setup_arrivals is not None:
                self.setup_arrivals.append(arrived[i])

    async def _write_peers(self, conn: Connection, peers: list[Peer]) -> None:
        """The known_peer entries of agents given a meter cell (a refused one is counted: that
        agent's punts stay metered under their reason)."""
        for p in peers:
            updates = []
            if p.replaces is not None:
                updates.append(conn.table_update("delete", self.nic.peer_entry(p.replaces, p.cell)))
            updates.append(conn.table_update("insert", self.nic.peer_entry(p.address, p.cell)))
            for r in await conn.write(updates):
                if r is not None and r.code != "NOT_FOUND":
                    self.counters[f"errors.peer_write.{r.code}"] += 1
                    self.log.warning("known_peer entry for %s: %s %s", ip_str(p.address), r.code, r.message)

    async def _write(
        self, conn: Connection, writes: list[tuple[Op, Mapping, int]]
    ) -> tuple[set[int], list[list[Action]]]:
        failed: set[int] = set()
        more: list[list[Action]] = []
        idle = self.agent.config.idle_timeout
        start = 0
        while start < len(writes):
            # one Write per run of updates that touch distinct entries (a server may reorder a batch)
            seen: set[tuple[object, FiveTuple]] = set()
            end = start
            while end < len(writes) and (writes[end][1].table, writes[end][1].key) not in seen:
                seen.add((writes[end][1].table, writes[end][1].key))
                end += 1
            chunk = writes[start:end]
            updates = [
                conn.table_update(op, self.nic.entry(m, idle if op != "delete" else 0)) for op, m, _ in chunk
            ]
            self.counters["writes"] += 1
            self.counters["updates"] += len(updates)
            results = await conn.write(updates)
            for (op, m, i), r in zip(chunk, results, strict=True):
                if r is not None:
                    more.extend(self._refused(op, m, i, r, failed))
            start = end
        return failed, more

    def _refused(self, op: Op, m: Mapping, i: int, r: UpdateError, failed: set[int]) -> list[list[Action]]:
        if op == "delete" and r.code == "NOT_FOUND":
            return []  # gone already (e.g. idle-timed out on the target)
        self.counters[f"errors.write.{r.code}"] += 1
        if op == "delete":
            self._error("write", f"delete {m.table.value} {m.key}: {r.code} {r.message}")
            return []
        failed.add(i)
        return [self.agent.write_failed(self.now(), m, r.code, r.message)]

    def _hook(self, call: HookCall) -> None:
        """Run a state hook call in a thread (it does I/O); its outcome is an event for the core
        that queued it (a core made anew meanwhile does not know the call and counts it)."""
        agent = self.agent
        self.counters[f"state_hook.{call.op.value}"] += 1

        def finished(f: asyncio.Future[tuple[bytes, str]]) -> None:
            state, error = f.result()
            if error:
                self.counters[f"state_hook.{call.op.value}_failed"] += 1
            self.intake.put(
                (
                    lambda now: hook_done(agent, now, call.id, state, error) if agent is self.agent else [],
                    self.now(),
                )
            )

        future = asyncio.get_running_loop().run_in_executor(None, run_hook, self.settings.state_hook, call)
        future.add_done_callback(finished)

    def _set_timer(self, at: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at / 1e9, self._timer_fired)

    def _notify(self, n: Notify) -> None:
        self.counters[f"notify.{n.event}"] += 1
        self.event_seq += 1
        self.event_log.append(
            {
                "seq": self.event_seq,
                "t_ns": time.monotonic_ns(),
                "event": n.event,
                "session": n.session_id,
                "message": n.message,
                "error": n.error,
            }
        )
        if self._pending:
            self._outcome(n)
        if self._splices:
            self._splice_outcome(n)
        if self._leaves:
            self._leave_outcome(n)
        if n.error:
            self._error(n.event, n.message)
            self.log.warning("%s: %s", n.event, n.message)
        else:
            self.log.info("%s: %s", n.event, n.message)

    def _error(self, kind: str, message: str) -> None:
        self.errors.append({"kind": kind, "message": message, "at": round(self.now() / 1e9, 3)})

    @property
    def connection(self) -> Connection | None:
        """The live connection (None while reconnecting)."""
        return self._conn

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds after a batch of events or a (re)connection (tests,
        tools); raises TimeoutError."""
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(predicate)

    async def _lost(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    # ---- management -----------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        s = self.settings
        now = self.now()
        core = self.agent.status(now)
        entries: Any = core["entries"]
        punts = _limits.describe(s.limits)
        return {
            "config": {
                "name": s.config.name,
                "address": core["address"],
                "p4runtime": s.p4runtime,
                "device_id": s.device_id,
                "election_id": s.election_id,
                "control_port": s.control_port,
                "policies": s.policies_file,
                "chains": core["chains"],
                "pipeline_cookie": f"{s.pipeline.cookie:#x}",
            },
            "connected": self.connected,
            "sessions": core["sessions"],
            "states": core["states"],
            "tables": {
                t.value: {"entries": entries[t.value], "size": self.nic.table_sizes[t]}
                for t in self.nic.table_sizes
            },
            "limits": {
                "max_sessions": s.config.max_sessions,
                "table_size": self.agent.config.table_size,
                "punts": punts,
                "known_peers": {
                    "agents": [ip_str(a) for a, _ in self.agent.peers.items()],
                    "cells": self.agent.peers.cells,
                    "per_peer": punts.get("dysco_syn"),
                },
            },
            "ports_in_use": core["ports_in_use"],
            "intake": {
                "waiting": self.intake.waiting(),
                "most": {lane.value: n for lane, n in self.intake.most.items()},
                "setup_bound": self.intake.setup_bound,
            },
            "core": core["metrics"],
            "adapter": dict(sorted(self.counters.items())),
            "errors": list(self.errors),
        }

    async def status_with_drops(self) -> dict[str, object]:
        """:meth:`status`, with the punts the NIC dropped per reason read from its drop counter
        (``limits.punts.REASON.dropped``) while connected."""
        out = self.status()
        conn = self._conn
        if conn is not None:
            info = self.settings.pipeline.p4info
            try:
                dropped = _limits.dropped_counts(info, await conn.read([_limits.dropped_read(info)]))
            except grpc.aio.AioRpcError as exc:
                self._error("status", f"reading {p4names.PUNT_DROPPED}: {exc.code().name}")
            else:
                limits: Any = out["limits"]
                limits["punts"] = _limits.describe(self.settings.limits, dropped)
        return out


def _with_table_size(config: Config, size: int) -> Config:
    return replace(config, table_size=size)
