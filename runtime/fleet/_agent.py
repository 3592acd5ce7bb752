"""An agent's side of the fleet (``dysco agent --etcd URL``): it registers under a lease, watches
its policy keys and puts the most specific set in force through the agent's live reload, and
reports what it did (:mod:`._layout` has the keys).

One task, :meth:`FleetAgent.run`, owns a connection at a time and, in a ``TaskGroup``, its three
tasks: ``lease`` (keeps the registration alive, registers again if the lease was lost), ``watch``
(changes of the policy keys -> the local copy) and ``apply`` (the local copy -> the agent, one set
at a time, the latest wins).  A failure of any of them ends the connection; :meth:`run` connects
again after a throttled backoff.  Meanwhile the agent keeps serving on the policies it has.

Catching up: the first connection reads the keys whole; a later one watches from the revision
after the last one seen, so nothing written while etcd was out of reach is missed; when etcd has
compacted that history away the keys are read whole again.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from dysco import metrics as m
from dysco.errors import DyscoError, UserError
from dysco.runtime.fleet._commands import Command, Outcome
from dysco.runtime.fleet._layout import Layout, Refusal, Registration, Report
from dysco.runtime.fleet._store import Compacted, Endpoint, Store, Unavailable

LEASE_TTL_S = 5
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
REPORT_EVERY_S = 2.0
"""How often the session count in the agent's report is brought up to date (when it changed)."""

Apply = Callable[[str, str], Awaitable[object]]
"""Put a policy text in force (text, its name for messages); raises UserError to refuse it."""
Execute = Callable[[Command], Awaitable[Outcome]]
"""Carry a fleet command out on this agent's sessions."""


@dataclass(frozen=True, slots=True)
class FleetSettings:
    endpoint: Endpoint
    name: str
    address: str
    group: str = ""
    layout: Layout = field(default_factory=Layout)
    metrics: str = ""
    version: str = ""
    lease_ttl: int = LEASE_TTL_S


@dataclass(frozen=True, slots=True)
class _Set:
    """A policy set from etcd: its key, its text and the revision of that text."""

    key: bytes
    text: str
    revision: int


class FleetAgent:
    def __init__(
        self,
        settings: FleetSettings,
        apply: Apply,
        sessions: Callable[[], int],
        log: logging.Logger | logging.LoggerAdapter[logging.Logger],
        execute: Execute | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._apply = apply
        self._execute = execute
        self._say = say or (lambda _: None)
        """Told one line per set put in force or refused, once it is published."""
        self._sessions = sessions
        self.log = log
        self.scopes = settings.layout.scopes_of(settings.name, settings.group)
        self.counters: collections.Counter[str] = collections.Counter()
        self.connected = False
        self.revision = 0
        """The last etcd revision seen (0: never connected)."""
        self.last_error = ""
        self.applied: _Set | None = None
        """The set in force (None: none from etcd yet)."""
        self.refused: Refusal | None = None
        self.changed = asyncio.Condition()
        """Notified after every set put in force or refused, and on (dis)connection."""
        self._copy: dict[bytes, _Set] = {}
        """The values of this agent's policy keys, as last read or watched."""
        self._wake = asyncio.Event()
        self._compacted = False
        """etcd no longer has the history after :attr:`revision`: read the keys whole."""
        self._commands_seen = 0
        """The revision of the last change under ``commands/`` seen (its watch's own cursor)."""
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        """Commands claimed, waiting to be carried out."""
        self._unsent: dict[bytes, bytes] = {}
        """Outcomes not written yet (etcd was away when they were ready)."""
        self._store: Store | None = None

    # ---- what the agent reports -------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """``fleet`` in ``dysco ctl status``."""
        a = self.applied
        return {
            "etcd": str(self.settings.endpoint),
            "connected": self.connected,
            "group": self.settings.group,
            "revision": self.revision,
            "policy_key": a.key.decode() if a else "",
            "policy_revision": a.revision if a else 0,
            "refused": None if self.refused is None else _refusal(self.refused),
            "last_error": self.last_error,
            "counters": dict(sorted(self.counters.items())),
        }

    def _report(
        self, applied: _Set | None = None, refused: Refusal | None = None, now: bool = True
    ) -> Report:
        """The report of the state in force (``now``), or of ``applied`` and ``refused``."""
        a, r = (self.applied, self.refused) if now else (applied, refused)
        return Report(
            self.settings.name,
            self.settings.address,
            a.key.decode() if a else "",
            a.revision if a else 0,
            r,
            self._sessions(),
            round(time.time(), 3),
        )

    # ---- the connection loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve the fleet until cancelled: the connections (reconnecting with a throttled
        backoff) and the commands they bring, which are carried out whether etcd stays or not."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._commander(), name=f"{self.settings.name}-fleet-commands")
            tg.create_task(self._connections(), name=f"{self.settings.name}-fleet-connections")

    async def _connections(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with Store(self.settings.endpoint) as store:
                    await self._connected(store)
            except* (Unavailable, OSError, TimeoutError) as group:
                exc = group.exceptions[0]
                self.counters["etcd.connection_lost"] += 1
                if self.last_error != str(exc):
                    self.log.warning("etcd: %s; serving on the policies in force", exc)
                self.last_error = str(exc)
            else:
                backoff = BACKOFF_MIN_S  # compaction: read again at once
                continue
            finally:
                self._store = None
                await self._set_connected(False)
            await asyncio.sleep(backoff)  # throttles reconnection, not a synchronisation
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _connected(self, store: Store) -> None:
        """One connection: read (or catch up), register, then watch, apply and keep the lease.
        Returns after a compaction (read again); raises when the connection fails."""
        s = self.settings
        oldest = min(self.revision, self._commands_seen if self._execute is not None else self.revision) + 1
        if self.revision and not self._compacted and not await store.history_kept(oldest):
            self.counters["etcd.compacted"] += 1
            self.log.warning("etcd: compacted past revision %d while away: reading the keys again", oldest)
            self._compacted = True
        if self.revision == 0 or self._compacted:
            await self._read(store)
        start = self.revision + 1
        lease = await self._register(store)
        self._store = store
        await self._flush()
        await self._set_connected(True)
        self.last_error = ""
        self.log.info("etcd: connected to %s, watching from revision %d", s.endpoint, start)
        compacted = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keep_lease(store, lease), name=f"{s.name}-fleet-lease")
                tg.create_task(self._applier(store), name=f"{s.name}-fleet-apply")
                tg.create_task(self._watch(store, start), name=f"{s.name}-fleet-watch")
                if self._execute is not None:
                    since = self._commands_seen + 1
                    tg.create_task(self._watch_commands(store, since), name=f"{s.name}-fleet-cmd-watch")
        except* Compacted as group:
            self.counters["etcd.compacted"] += 1
            self.log.warning("etcd: %s: reading the keys again", group.exceptions[0])
            compacted = True
        self._compacted = compacted

    async def _read(self, store: Store) -> None:
        """The policy keys read whole (first connection, or after a compaction)."""
        revision, entries = await store.get_prefix(self.settings.layout.policies)
        mine = {e.key: _Set(e.key, e.value.decode("utf-8", "replace"), e.revision) for e in entries}
        self._copy = {k: v for k, v in mine.items() if k in self.scopes}
        self.revision = revision
        self._compacted = False
        self.counters["etcd.full_reads"] += 1
        self._wake.set()
        if self._execute is not None:  # commands still open (each agent takes one at most once)
            since, commands = await store.get_prefix(self.settings.layout.commands)
            for e in commands:
                await self._take(store, e.value)
            self._commands_seen = since

    async def _register(self, store: Store) -> int:
        s = self.settings
        lease = await store.grant(s.lease_ttl)
        reg = Registration(s.name, s.address, s.group, "agent", s.version, s.metrics)
        await store.put(s.layout.agent(s.name), reg.encode(), lease=lease)
        await store.put(s.layout.status(s.name), self._report().encode())
        self.counters["etcd.registrations"] += 1
        return lease

    async def _keep_lease(self, store: Store, lease: int) -> None:
        last_sessions = -1
        every = min(self.settings.lease_ttl / 3, REPORT_EVERY_S)
        while True:
            await asyncio.sleep(every)  # the lease's period, not a synchronisation
            if await store.keep_alive(lease) <= 0:
                self.log.warning("etcd: the registration's lease expired; registering again")
                lease = await self._register(store)
            sessions = self._sessions()
            if sessions != last_sessions:
                await store.put(self.settings.layout.status(self.settings.name), self._report().encode())
                last_sessions = sessions

    async def _watch(self, store: Store, start: int) -> None:
        async for change in store.watch_prefix(self.settings.layout.policies, start):
            self.revision = max(self.revision, change.revision)
            if change.key not in self.scopes:
                continue
            self.counters["etcd.policy_changes"] += 1
            if change.value is None:
                self._copy.pop(change.key, None)
            else:
                self._copy[change.key] = _Set(
                    change.key, change.value.decode("utf-8", "replace"), change.revision
                )
            self._wake.set()
        raise Unavailable("etcd ended the watch")

    # ---- commands ----------------------------------------------------------------------------

    async def _watch_commands(self, store: Store, start: int) -> None:
        async for change in store.watch_prefix(self.settings.layout.commands, start):
            self._commands_seen = max(self._commands_seen, change.revision)
            if change.value is not None:
                await self._take(store, change.value)
        raise Unavailable("etcd ended the watch")

    async def _take(self, store: Store, value: bytes) -> None:
        """Claim a command for this agent (once: see :mod:`._commands`) and queue it."""
        try:
            cmd = Command.decode(value)
        except (UserError, TypeError):
            self.counters["commands.unreadable"] += 1
            return
        if cmd.expires and time.time() > cmd.expires:
            self.counters["commands.expired"] += 1
            return
        name = self.settings.name
        if not await store.create(self.settings.layout.result(cmd.id, name), Outcome(name).encode()):
            self.counters["commands.taken_before"] += 1
            return
        self.counters["commands.claimed"] += 1
        self.log.info("etcd: command %s: %s", cmd.id, cmd)
        self._queue.put_nowait(cmd)

    async def _commander(self) -> None:
        assert self._execute is not None or self._queue.empty()
        while True:
            cmd = await self._queue.get()
            assert self._execute is not None
            try:
                outcome = await self._execute(cmd)
            except DyscoError as exc:
                outcome = Outcome(self.settings.name, "done", errors=[f"refused: {exc}"])
            self.counters["commands.done"] += 1
            self._unsent[self.settings.layout.result(cmd.id, self.settings.name)] = outcome.encode()
            await self._flush()
            await self._changed()

    async def _flush(self) -> None:
        """Write the outcomes not written yet, while connected (else on the next connection)."""
        store = self._store
        for key, value in list(self._unsent.items()):
            if store is None:
                return
            try:
                await store.put(key, value)
            except Unavailable:
                return
            del self._unsent[key]

    # ---- putting sets in force --------------------------------------------------------------

    def wanted(self) -> _Set | None:
        """The most specific set this agent has a key for (None: no key at all)."""
        return next((self._copy[k] for k in self.scopes if k in self._copy), None)

    async def _applier(self, store: Store) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            want = self.wanted()
            if want is None and self.applied is None:
                continue
            if want is None:  # every key went: no policies
                want = _Set(b"", "", self.revision)
            if self.applied is not None and (want.key, want.revision) == (
                self.applied.key,
                self.applied.revision,
            ):
                if self.refused is not None:  # the refused key went: the set in force is wanted again
                    await self._publish(store, self.applied, None)
                continue
            if self.refused is not None and (want.key.decode(), want.revision) == (
                self.refused.key,
                self.refused.revision,
            ):
                continue  # refused already: wait for the next write
            applied, refused, line = await self._put_in_force(want)
            await self._publish(store, applied, refused)
            self._say(line)

    async def _publish(self, store: Store, applied: _Set | None, refused: Refusal | None) -> None:
        """The new state written to ``status/NAME`` first, then taken and announced: whoever
        waits for it (:meth:`wait_until`) can read it in etcd."""
        try:
            report = self._report(applied, refused, now=False)
            await store.put(self.settings.layout.status(self.settings.name), report.encode())
        finally:
            self.applied, self.refused = applied, refused
            await self._changed()

    async def _put_in_force(self, want: _Set) -> tuple[_Set | None, Refusal | None, str]:
        """The set in force and the refusal after trying ``want``, and a line saying so."""
        source = f"etcd:{want.key.decode() or '(none)'}@{want.revision}"
        t0 = time.monotonic()
        done: object = {"unchanged": True}
        try:
            if self.applied is None or want.text != self.applied.text:
                done = await self._apply(want.text, source)
        except UserError as exc:
            self.counters["policies.refused"] += 1
            self.log.warning("etcd: %s refused, the policies in force stay: %s", source, exc)
            return (
                self.applied,
                Refusal(want.key.decode(), want.revision, str(exc)),
                f"etcd: {source} refused: {exc}",
            )
        self.counters["policies.applied"] += 1
        self.counters["policies.apply_ms"] += int((time.monotonic() - t0) * 1000)
        self.log.info("etcd: %s in force", source)
        return want, None, f"etcd: {source} in force: {json.dumps(done, default=str)}"

    async def _set_connected(self, up: bool) -> None:
        self.connected = up
        await self._changed()

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds after a change (tests, tools); TimeoutError."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)


def metric_families(fleet: FleetAgent) -> list[Metric]:
    """The fleet's part of the agent's metrics (built on the agent's event loop)."""
    a = fleet.applied
    return [
        m.gauge("dysco_agent_etcd_connected", "1 while the agent is connected to etcd", fleet.connected),
        m.gauge("dysco_agent_etcd_revision", "The last etcd revision the agent saw", fleet.revision),
        m.gauge(
            "dysco_agent_policy_revision",
            "etcd revision of the policy set in force (0: none from etcd)",
            a.revision if a else 0,
        ),
        m.every("dysco_agent_fleet_total", "Every counter of the agent's fleet client", fleet.counters),
    ]


def _refusal(r: Refusal) -> dict[str, object]:
    return {"key": r.key, "revision": r.revision, "error": r.error}
