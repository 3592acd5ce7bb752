"""The agent's fleet client (:class:`FleetAgent`) against a real etcd: it registers under a
lease, puts the most specific policy set in force, refuses a bad one and says so in etcd, and
catches up after being away, by watching from where it was or, when etcd compacted that
history, by reading its keys again.  The policies are applied by a function of the test (the
agent's live reload is exercised with a real agent in test_fleet_agent.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from dysco.errors import UserError
from dysco.runtime.fleet import (
    FleetAgent,
    FleetSettings,
    Layout,
    Registration,
    Report,
    Scope,
    Store,
    parse_url,
)
from dysco.runtime.fleet._commands import Command, Outcome, new_command
from dysco.runtime.fleet._store import Unavailable
from dysco.testbed._etcd import EtcdProcess

WAIT_S = 20.0
BODY_S = 90.0
"""A test's whole conversation with etcd; past it the test fails and shows every task's stack."""
LAYOUT = Layout()
ALL, WEB, MINE = LAYOUT.policy(Scope.ALL), LAYOUT.policy(Scope.GROUP, "web"), LAYOUT.policy(Scope.AGENT, "a1")


def run(etcd: EtcdProcess, body: Callable[[FleetAgent, Store, list[str]], Awaitable[None]]) -> None:
    applied: list[str] = []

    async def apply(text: str, source: str) -> object:
        if text.startswith("bad"):
            raise UserError(f"{source}:1:1: unexpected 'bad'")
        applied.append(text)
        return {}

    async def main() -> None:
        settings = FleetSettings(parse_url(etcd.url), "a1", "10.0.1.2", "web", lease_ttl=2)
        fleet = FleetAgent(settings, apply, lambda: 7, logging.getLogger("test.fleet"))
        async with Store(parse_url(etcd.url)) as store:
            try:
                async with asyncio.timeout(BODY_S):
                    await body(fleet, store, applied)
            except TimeoutError:
                for t in asyncio.all_tasks():
                    t.print_stack()
                raise

    asyncio.run(main())


async def start(fleet: FleetAgent) -> asyncio.Task[None]:
    task = asyncio.create_task(fleet.run(), name="test-fleet")
    await fleet.wait_until(lambda: fleet.connected, WAIT_S)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the client; it must end within the deadline (else its tasks' stacks are shown)."""
    task.cancel()
    await asyncio.wait({task}, timeout=WAIT_S)  # does not wait on a task that cannot end
    if not task.done():
        for t in asyncio.all_tasks():
            t.print_stack()
        pytest.fail("the fleet client did not end when cancelled")
    assert task.cancelled()


def in_force(fleet: FleetAgent, key: bytes, revision: int) -> Callable[[], bool]:
    return lambda: (
        fleet.applied is not None and (fleet.applied.key, fleet.applied.revision) == (key, revision)
    )


async def report(store: Store) -> Report:
    entry = await store.get(LAYOUT.status("a1"))
    assert entry is not None
    return Report.decode(entry.value)


def test_the_most_specific_set_is_in_force_and_a_bad_one_is_refused(etcd: EtcdProcess) -> None:
    async def body(fleet: FleetAgent, store: Store, applied: list[str]) -> None:
        r1 = await store.put(ALL, b"policy for all")
        task = await start(fleet)
        try:
            await fleet.wait_until(in_force(fleet, ALL, r1), WAIT_S)
            entry = await store.get(LAYOUT.agent("a1"))
            assert entry is not None
            reg = Registration.decode(entry.value)
            assert (reg.name, reg.address, reg.group) == ("a1", "10.0.1.2", "web")
            assert (await report(store)).policy_revision == r1

            await store.put(LAYOUT.policy(Scope.AGENT, "a2"), b"another agent's")
            await store.put(LAYOUT.policy(Scope.GROUP, "db"), b"another group's")
            r2 = await store.put(WEB, b"policy for web")
            await fleet.wait_until(in_force(fleet, WEB, r2), WAIT_S)
            r3 = await store.put(ALL, b"policy for all, again")  # less specific: changes nothing
            r4 = await store.put(MINE, b"bad policy")
            await fleet.wait_until(lambda: fleet.refused is not None and fleet.refused.revision == r4, WAIT_S)
            assert fleet.applied is not None and fleet.applied.revision == r2, "the set in force stays"
            assert applied == ["policy for all", "policy for web"]
            got = await report(store)
            assert got.refused is not None and got.refused.key == MINE.decode()
            assert got.refused.error == f"etcd:{MINE.decode()}@{r4}:1:1: unexpected 'bad'"
            assert (got.policy_key, got.policy_revision, got.sessions) == (WEB.decode(), r2, 7)
            assert fleet.status()["policy_revision"] == r2 and r3 > r2

            await store.delete(MINE)  # the group's set is the one wanted again: no refusal
            await fleet.wait_until(lambda: fleet.refused is None, WAIT_S)
            await store.delete(WEB)
            await fleet.wait_until(lambda: fleet.applied is not None and fleet.applied.key == ALL, WAIT_S)
            assert applied[-1] == "policy for all, again"
        finally:
            await stop(task)

    run(etcd, body)


def test_catching_up_by_watch_and_after_a_compaction(etcd: EtcdProcess) -> None:
    async def body(fleet: FleetAgent, store: Store, applied: list[str]) -> None:
        r1 = await store.put(WEB, b"one")
        task = await start(fleet)
        await fleet.wait_until(in_force(fleet, WEB, r1), WAIT_S)
        await stop(task)  # away: what is written meanwhile comes with the watch
        r2 = await store.put(WEB, b"two")
        task = await start(fleet)
        await fleet.wait_until(in_force(fleet, WEB, r2), WAIT_S)
        assert fleet.counters["etcd.full_reads"] == 1 and fleet.counters["etcd.compacted"] == 0
        await stop(task)  # away again, and etcd forgets the history since
        r3 = await store.put(WEB, b"three")
        r4 = await store.put(ALL, b"four")
        await store.compact(r4)
        task = await start(fleet)
        try:
            await fleet.wait_until(in_force(fleet, WEB, r3), WAIT_S)
            assert fleet.counters["etcd.compacted"] == 1 and fleet.counters["etcd.full_reads"] == 2
            assert applied == ["one", "two", "three"]
        finally:
            await stop(task)

    run(etcd, body)


def test_the_registration_goes_with_the_agents_lease(etcd: EtcdProcess) -> None:
    async def body(fleet: FleetAgent, store: Store, applied: list[str]) -> None:
        task = await start(fleet)
        revision, entries = await store.get_prefix(LAYOUT.agents)
        assert [e.key for e in entries] == [LAYOUT.agent("a1")]
        await stop(task)  # no more keep-alives: etcd deletes the key when the 2 s lease ends

        async def gone() -> None:
            async for change in store.watch_prefix(LAYOUT.agents, revision + 1):
                if change.key == LAYOUT.agent("a1") and change.value is None:
                    return

        await asyncio.wait_for(gone(), WAIT_S)
        assert await store.get(LAYOUT.status("a1")) is not None, "the last report stays"

    run(etcd, body)


def test_etcd_away_is_said_and_the_agent_reconnects(etcd: EtcdProcess) -> None:
    async def body(fleet: FleetAgent, store: Store, applied: list[str]) -> None:
        r1 = await store.put(ALL, b"kept")
        task = await start(fleet)
        try:
            await fleet.wait_until(in_force(fleet, ALL, r1), WAIT_S)
            etcd.__exit__()
            await fleet.wait_until(lambda: not fleet.connected, WAIT_S)
            assert "127.0.0.1" in fleet.last_error and fleet.applied is not None, "the set in force stays"
            with pytest.raises(Unavailable, match=f"etcd at {etcd.url}: "):
                await store.put(ALL, b"nobody hears this")
            with etcd.again():
                async with Store(parse_url(etcd.url)) as again:
                    r2 = await again.put(ALL, b"while it was away")
                await fleet.wait_until(in_force(fleet, ALL, r2), WAIT_S)
                assert fleet.connected and fleet.counters["etcd.full_reads"] == 1
        finally:
            await stop(task)
        assert applied == ["kept", "while it was away"]

    run(etcd, body)


def test_an_unreachable_etcd_is_a_clear_error() -> None:
    async def main() -> None:
        with pytest.raises(Unavailable, match=r"etcd at http://127.0.0.1:1: .*(refused|connect)"):
            async with Store(parse_url("http://127.0.0.1:1")):
                pass

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:2379", "expected http://HOST:PORT"),
        ("https://127.0.0.1:2379", "https goes with --etcd-ca"),
        ("ftp://127.0.0.1:2379", "expected http://HOST:PORT"),
        ("http://127.0.0.1:2379/x", "expected http://HOST:PORT"),
        ("http://127.0.0.1:99999", "bad port"),
        ("http://127.0.0.1:2379,http://etcd2:2379", "the members of a cluster are given by IPv4 address"),
        ("http://127.0.0.1:2379,127.0.0.1:2381", "expected http://HOST:PORT"),
    ],
)
def test_a_bad_etcd_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_url(url)


def test_a_command_is_carried_out_once_per_agent(etcd: EtcdProcess) -> None:
    """Claimed in a transaction: a restarted agent (a new client reading the commands afresh)
    does not carry a command out again; an expired or unreadable one is not taken up."""
    done: list[str] = []

    async def execute(cmd: Command) -> Outcome:
        done.append(cmd.id)
        return Outcome("a1", "done", sessions=2, moved=2, seconds=0.01)

    async def main() -> None:
        settings = FleetSettings(parse_url(etcd.url), "a1", "10.0.1.2", lease_ttl=2)

        async def noop(text: str, source: str) -> object:
            return {}

        def agent() -> FleetAgent:
            return FleetAgent(settings, noop, lambda: 0, logging.getLogger("test.fleet"), execute)

        async with Store(parse_url(etcd.url)) as store:
            first = agent()
            task = await start(first)
            cmd = new_command("replace", "10.0.2.2", "10.0.4.2")
            expired = replace(new_command("delete", "10.0.5.2"), expires=time.time() - 1)
            await store.put(LAYOUT.command(expired.id), expired.encode())
            await store.put(LAYOUT.command("garbage"), b"{not json")
            await store.put(LAYOUT.command(cmd.id), cmd.encode())
            await first.wait_until(lambda: first.counters["commands.done"] == 1, WAIT_S)
            entry = await store.get(LAYOUT.result(cmd.id, "a1"))
            assert entry is not None
            assert Outcome.decode(entry.value) == Outcome("a1", "done", sessions=2, moved=2, seconds=0.01)
            assert first.counters["commands.expired"] == 1 and first.counters["commands.unreadable"] == 1
            await stop(task)

            again = agent()  # a restart: reads the open commands whole
            task = await start(again)
            try:
                assert (
                    again.counters["commands.taken_before"] == 1 and again.counters["commands.claimed"] == 0
                )
                assert done == [cmd.id]
            finally:
                await stop(task)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replace", "10.0.2.2", "10.0.2.2"), "the same middlebox"),
        (("replace", "10.0.2", "10.0.4.2"), "replace: '10.0.2' is not an IPv4 address"),
        (("insert", "10.0.5.2"), "insert needs --match PREDICATE"),
        (("drain", "10.0.5.2", "10.0.6.2"), "drain takes no NEW: each agent chooses"),
        (("drain", "10.0.5"), "drain: '10.0.5' is not an IPv4 address"),
        (("undrain", "10.0.5.2"), "unknown fleet command 'undrain'"),
    ],
)
def test_bad_commands_are_refused_before_anything_is_written(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message):
        new_command(*args)


def test_a_bad_predicate_points_into_it() -> None:
    with pytest.raises(UserError, match="--match:1:13: unexpected '80'"):
        new_command("insert", "10.0.5.2", match="tcp dst dts 80")


def test_several_members_are_one_endpoint() -> None:
    e = parse_url("http://127.0.0.1:2379,http://127.0.0.1:2381")
    assert e.members == (("127.0.0.1", 2379), ("127.0.0.1", 2381))
    assert e.target == "ipv4:127.0.0.1:2379,127.0.0.1:2381"
    assert str(e) == "http://127.0.0.1:2379,http://127.0.0.1:2381"
    assert parse_url("http://localhost").target == "localhost:2379"
