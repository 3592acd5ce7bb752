"""An agent's side of the fleet (``dysco agent --etcd URL``): it registers under a lease, watches
its policy keys and puts the most specific set in force through the agent's live reload, and
reports what it did (:mod:`._layout` has the keys).

One task, :meth:`FleetAgent.run`, owns a connection at a time and, in a ``TaskGroup``, its
tasks: ``lease`` (keeps the registration alive, registers again if the lease was lost), one
watch per range it reads (its three policy keys one by one, ``commands/``, ``drained/``,
``keys/ring``: with etcd's access control on, an agent may read nothing else) and ``apply`` (the
local copy of the policy keys -> the agent, one set at a time, the latest wins).  A failure of
any of them ends the connection; :meth:`run` connects again after a throttled backoff.
Meanwhile the agent keeps serving on the policies, drained instances and keys it has.

Catching up: the first connection reads the ranges whole; a later one watches each from the
revision after the last one it saw there, so nothing written while etcd was out of reach is
missed; when etcd has compacted that history away they are read whole again.
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
from dysco.runtime.fleet._keys import Ring
from dysco.runtime.fleet._keys import decode as decode_ring
from dysco.runtime.fleet._layout import Layout, Refusal, Registration, Report
from dysco.runtime.fleet._store import Change, Compacted, Endpoint, Store, Unavailable

LEASE_TTL_S = 5
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
APPLY_WAIT_S = 60.0
"""SIGHUP waits this long at most for the set it read to be in force or refused."""
REPORT_EVERY_S = 2.0
"""How often the session count in the agent's report is brought up to date (when it changed)."""

Apply = Callable[[str, str], Awaitable[object]]
"""Put a policy text in force (text, its name for messages); raises UserError to refuse it."""
Execute = Callable[[Command], Awaitable[Outcome]]
"""Carry a fleet command out on this agent's sessions."""
Drain = Callable[[frozenset[str]], None]
"""Leave these middlebox instances (addresses) out of new sessions (all of them: the set)."""
SetKeys = Callable[[Ring], None]
"""Put a key ring from etcd in force (raises UserError to refuse it)."""


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
    keys: bool = False
    """The agent authenticates its messages (``--keys``): it takes the key ring from etcd."""


@dataclass(slots=True)
class _Range:
    """What the agent reads of etcd: one key (``end`` empty) or a prefix; what it does with
    each change (also the entries of a whole read) and the last revision it saw there."""

    name: str
    key: bytes
    end: bytes
    take: Callable[[Change], Awaitable[None]]
    clear: Callable[[], None]
    """Before a whole read: forget what the range held."""
    seen: int = 0


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
        drain: Drain | None = None,
        set_keys: SetKeys | None = None,
    ) -> None:
        self.settings = settings
        self.probe = settings.layout.status(settings.name)
        """The key the connection is tried on: one this agent may always read (its report)."""
        self._apply = apply
        self._execute = execute
        self._drain = drain
        self._set_keys = set_keys
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
        """etcd no longer has the history after a range's cursor: read them whole."""
        self.drained: dict[str, int] = {}
        """Drained middlebox instances (``drained/ADDR``) and the revisions that drained them."""
        self.keys: tuple[int, int, str] = (0, -1, "")
        """The key ring from etcd: the revision in force (0: none), its current key, a refusal."""
        self._ranges = self._what_to_read()
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
            "drained": sorted(self.drained),
            "keys": {"revision": self.keys[0], "current": self.keys[1], "refused": self.keys[2]},
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
            keys_revision=self.keys[0],
            keys_current=self.keys[1],
            keys_refused=self.keys[2],
            drained=sorted(self.drained),
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
                async with Store(self.settings.endpoint, self.probe) as store:
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

    def _what_to_read(self) -> list[_Range]:
        lay = self.settings.layout
        ranges = [_Range(f"policy {k.decode()}", k, b"", self._policy_change, self._forget(k))
                  for k in self.scopes]  # fmt: skip
        if self._execute is not None:
            ranges.append(_Range("commands", lay.commands, _end(lay.commands), self._command, _nothing))
        if self._drain is not None:
            ranges.append(_Range("drained", lay.drained_all, _end(lay.drained_all), self._drained_change,
                                 self.drained.clear))  # fmt: skip
        if self._set_keys is not None:
            ranges.append(_Range("keys", lay.keys, b"", self._keys_change, _nothing))
        return ranges

    def _forget(self, key: bytes) -> Callable[[], None]:
        def forget() -> None:
            self._copy.pop(key, None)

        return forget

    async def _connected(self, store: Store) -> None:
        """One connection: read (or catch up), register, then watch, apply and keep the lease.
        Returns after a compaction (read again); raises when the connection fails."""
        s = self.settings
        oldest = min(r.seen for r in self._ranges) + 1
        if self.revision and not self._compacted and not await store.history_kept(oldest):
            self.counters["etcd.compacted"] += 1
            self.log.warning("etcd: compacted past revision %d while away: reading the keys again", oldest)
            self._compacted = True
        self._store = store
        if self.revision == 0 or self._compacted:
            await self._read(store)
        lease = await self._register(store)
        await self._flush()
        await self._set_connected(True)
        self.last_error = ""
        self.log.info("etcd: connected to %s, watching from revision %d", s.endpoint, oldest)
        compacted = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._keep_lease(store, lease), name=f"{s.name}-fleet-lease")
                tg.create_task(self._applier(store), name=f"{s.name}-fleet-apply")
                for r in self._ranges:
                    tg.create_task(self._watch(store, r), name=f"{s.name}-fleet-watch-{r.name}")
        except* Compacted as group:
            self.counters["etcd.compacted"] += 1
            self.log.warning("etcd: %s: reading the keys again", group.exceptions[0])
            compacted = True
        self._compacted = compacted

    async def _read(self, store: Store) -> None:
        """Every range read whole (first connection, after a compaction, on SIGHUP)."""
        revision, _ = await store.get_keys([])
        for r in self._ranges:
            r.clear()
            if r.end:
                at, entries = await store.get_prefix(r.key)
            else:
                at, entries = await store.get_keys([r.key])
            for e in entries:
                await r.take(Change(e.key, e.value, e.revision))
            r.seen = at
            revision = max(revision, at)
        self.revision = revision
        self._compacted = False
        self.counters["etcd.full_reads"] += 1
        self._wake.set()

    async def reread(self) -> str:
        """SIGHUP with ``--etcd``: the policy keys read again and the set they give put in force
        (when it is not in force already); a line saying what is in force."""
        store = self._store
        if store is None:
            raise UserError(
                f"not connected to etcd ({self.last_error or 'connecting'}); the policies in force stay"
            )
        _, entries = await store.get_keys(list(self.scopes))
        self._copy.clear()
        for e in entries:
            await self._policy_change(Change(e.key, e.value, e.revision))
        want = self.wanted()

        def settled() -> bool:
            a, r = self.applied, self.refused
            if want is None:
                return a is None or a.key == b""
            return (a is not None and (a.key, a.revision) == (want.key, want.revision)) or (
                r is not None and (r.key, r.revision) == (want.key.decode(), want.revision)
            )

        if not settled():
            await self.wait_until(settled, APPLY_WAIT_S)
        a, r = self.applied, self.refused
        if want is not None and r is not None and (r.key, r.revision) == (want.key.decode(), want.revision):
            return f"etcd:{r.key}@{r.revision} refused: {r.error}"
        if a is None or not a.key:
            return "no policy set in etcd for this agent; the policies in force stay"
        return f"etcd:{a.key.decode()}@{a.revision} in force"

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

    async def _watch(self, store: Store, r: _Range) -> None:
        async for change in store.watch(r.key, r.seen + 1, r.end):
            r.seen = max(r.seen, change.revision)
            self.revision = max(self.revision, change.revision)
            await r.take(change)
        raise Unavailable("etcd ended the watch")

    async def _policy_change(self, change: Change) -> None:
        self.counters["etcd.policy_changes"] += 1
        if change.value is None:
            self._copy.pop(change.key, None)
        else:
            self._copy[change.key] = _Set(
                change.key, change.value.decode("utf-8", "replace"), change.revision
            )
        self._wake.set()

    async def _drained_change(self, change: Change) -> None:
        assert self._drain is not None
        addr = change.key.decode().rsplit("/", 1)[-1]
        if change.value is None:
            self.drained.pop(addr, None)
        else:
            self.drained[addr] = change.revision
        self._drain(frozenset(self.drained))
        self.counters["drain.changes"] += 1
        await self._write_report()

    async def _keys_change(self, change: Change) -> None:
        assert self._set_keys is not None
        if change.value is None or change.revision == self.keys[0]:  # none, or in force already
            return
        try:
            ring = decode_ring(change.value)
            self._set_keys(ring)
        except UserError as exc:
            self.counters["keys.refused"] += 1
            self.log.warning("etcd: key ring @%d refused, the keys in force stay: %s", change.revision, exc)
            self.keys = (self.keys[0], self.keys[1], f"@{change.revision}: {exc}")
            self._say(f"etcd: key ring @{change.revision} refused: {exc}")
        else:
            self.counters["keys.applied"] += 1
            self.keys = (change.revision, ring.current, "")
            self._say(f"etcd: key ring @{change.revision} taken: current {ring.current}, "
                      f"ids {' '.join(map(str, sorted(ring.keys)))}")  # fmt: skip
        await self._write_report()

    async def _write_report(self) -> None:
        store = self._store
        if store is not None:
            await store.put(self.settings.layout.status(self.settings.name), self._report().encode())
        await self._changed()

    # ---- commands ----------------------------------------------------------------------------

    async def _command(self, change: Change) -> None:
        if change.value is not None and self._store is not None:
            await self._take(self._store, change.value)

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
        if cmd.op == "drain" and self._drain is not None and cmd.addr not in self.drained:
            # new sessions leave it out before the old ones move, whichever watch comes first
            # (unless it was undrained since: then the moves are all the command does)
            entry = await store.get(self.settings.layout.drained(cmd.addr))
            if entry is not None:
                self.drained[cmd.addr] = entry.revision
                self._drain(frozenset(self.drained))
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


def _end(prefix: bytes) -> bytes:
    """The end of the range of the keys under ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def _nothing() -> None:
    pass


def _refusal(r: Refusal) -> dict[str, object]:
    return {"key": r.key, "revision": r.revision, "error": r.error}
