"""``events`` through the management socket of a real AgentService on a real ``dysco switch``
process (no root): the core's notifications, numbered and timestamped on the monotonic clock,
read from a cursor; the bounded log says how many were dropped unread; bad cursors are refused;
``dysco ctl events`` prints them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.runtime._mgmt import ManagementServer
from dysco.runtime.p4rt import AgentService
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .test_ctl_service import ctl, session
from .test_p4rt import _running, _stop, free_port, settings


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


KEY = "10.0.1.2:40000->10.0.3.2:80"


def test_events_are_numbered_timestamped_and_read_from_a_cursor(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    async def main() -> None:
        s = dataclasses.replace(settings(dysco_program, switch.address), event_log_size=3)
        service = AgentService(s)
        sock = tmp_path / "agent.sock"
        server = ManagementServer(str(sock), {"events": service.events})
        await server.start()
        task = await _running(service)
        try:
            empty = service.events({})
            assert (empty["events"], empty["next"], empty["last"], empty["missed"]) == ([], 0, 0, 0)
            assert empty["now_ns"] == pytest.approx(time.monotonic_ns(), abs=1e9)
            await session(service, established=False)
            before = time.monotonic_ns()
            for _ in range(5):  # each refused: the session is not established
                answer = await service.reconfigure({"session": 1, "right": "10.0.2.2"})
                assert answer["outcome"] == "reconfigure_refused"
            after = time.monotonic_ns()
            await check(service, sock, before, after)
        finally:
            await _stop(task)
            await server.close()

    asyncio.run(main())


async def check(service: AgentService, sock: Path, before: int, after: int) -> None:
    every = service.events({})
    assert (every["last"], every["next"], every["missed"]) == (5, 5, 2), every
    rows = every["events"]
    assert isinstance(rows, list) and [e["seq"] for e in rows] == [3, 4, 5]
    assert {e["event"] for e in rows} == {"reconfigure_refused"}
    assert all(e["session"] == 1 and e["error"] and e["message"].startswith(KEY) for e in rows)
    stamps = [e["t_ns"] for e in rows]
    assert before < stamps[0] <= stamps[1] <= stamps[2] < after, "CLOCK_MONOTONIC, in order"

    # from a cursor: only what came after it; an old cursor learns what it missed
    assert [e["seq"] for e in service.events({"since": 4})["events"]] == [5]  # type: ignore[union-attr]
    assert service.events({"since": 5})["events"] == [] and service.events({"since": 5})["next"] == 5
    one = service.events({"since": 1, "limit": 1})
    assert ([e["seq"] for e in one["events"]], one["next"], one["missed"]) == ([3], 3, 1)  # type: ignore[union-attr]

    for bad, message in [
        ({"since": 6}, "since 6 is after the latest event 5"),
        ({"since": -1}, "since must be a whole number at least 0"),
        ({"since": "3"}, "since must be a whole number"),
        ({"since": True}, "since must be a whole number"),
        ({"limit": 0}, "limit must be a whole number between 1 and 10000"),
        ({"limit": 10001}, "limit must be a whole number between 1 and 10000"),
    ]:
        with pytest.raises(UserError, match=message):
            service.events(bad)

    # the same through the socket, as dysco ctl prints it
    code, out, err = await ctl(sock, "events", "--since", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert lines[0].split()[0] == "4" and " reconfigure_refused ERROR session 1: " + KEY in lines[0]
    assert float(lines[0].split()[1]) == pytest.approx(stamps[1] / 1e9, abs=1e-5)
    assert lines[-1] == "2 events; next --since 5"
    code, out, err = await ctl(sock, "events", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert [e["seq"] for e in answer["events"]] == [3, 4, 5] and answer["missed"] == 2
    code, out, _ = await ctl(sock, "events")
    assert (
        out.splitlines()[-1]
        == "3 events; next --since 5; 2 earlier events were dropped before they were read"
    )
    code, out, err = await ctl(sock, "events", "--since", "9")
    assert code == 2 and "since 9 is after the latest event 5 (did the agent restart?)" in err, (code, err)
    assert service.counters["mgmt.events"] == 9, "answered requests are counted"
