"""``reconfigure`` through the management socket of a real AgentService on a real ``dysco switch``
process (no root: the switch has no interfaces, the test plays the host through packet-outs).
The outcomes the service reports are the core's: refused, failed (nobody answers the lock
request), timed out; ``dysco ctl`` prints them and sets its exit status."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.runtime._mgmt import ManagementServer
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import ip_int
from dysco.runtime.p4rt import AgentService
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .test_p4rt import WAIT_S, _running, _stop, free_port, from_host, settings, syn


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


def ack(sport: int = 40000) -> bytes:
    """The host's third handshake segment: the left end's session is established."""
    f = pk.TcpFrame(
        b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01", ip_int("10.0.1.2"), ip_int("10.0.3.2"),
        sport, 80, 1001, 5001, pk.ACK,
    )  # fmt: skip
    return f.to_bytes()


async def ctl(sock: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dysco", "ctl", *args, "--mgmt", str(sock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def run(
    program: Program, switch: SwitchProcess, tmp: Path, body: Callable[[AgentService, Path], Awaitable[None]]
) -> None:
    async def main() -> None:
        service = AgentService(settings(program, switch.address))
        sock = tmp / "agent.sock"
        server = ManagementServer(
            str(sock),
            {"status": lambda _: service.status(), "sessions": lambda _: service.sessions(),
             "reconfigure": service.reconfigure, "splice": service.splice},
        )  # fmt: skip
        await server.start()
        task = await _running(service)
        try:
            await body(service, sock)
        finally:
            await _stop(task)
            await server.close()

    asyncio.run(main())


async def session(service: AgentService, established: bool) -> None:
    from_host(service, syn())
    await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
    if established:
        from_host(service, ack())
        await service.wait_until(lambda: service.counters["packet_out"] >= 2, WAIT_S)


def test_a_session_not_yet_established_is_refused(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    async def body(service: AgentService, sock: Path) -> None:
        await session(service, established=False)
        code, out, err = await ctl(sock, "reconfigure", "1", "--delete", "10.0.2.2")
        assert code == 1, err
        assert out.startswith("session 1 10.0.1.2:40000->10.0.3.2:80: reconfigure_refused: "), out
        assert "not established" in out
        code, out, err = await ctl(sock, "reconfigure", "9", "--delete", "10.0.2.2")
        assert code == 2 and "no session '9' at this agent" in err, err
        # the service checks what it is sent, whoever sends it
        with pytest.raises(UserError, match="no session 9"):
            await service.reconfigure({"session": 9, "right": "10.0.3.2"})
        for bad, message in [
            ({"session": 1, "right": "10.0.3"}, "right: '10.0.3' is not an IPv4 address"),
            ({"session": 1, "right": "10.0.3.2", "hops": "10.0.5.2"}, "hops must be a list"),
            ({"session": 1, "right": "10.0.3.2", "timeout": -1}, "timeout must be a number"),
            ({"session": True, "right": "10.0.3.2"}, "session must be an id or a five-tuple"),
            ({"session": "10.0.1.2:1->10.0.3.2:80", "right": "10.0.3.2"}, "no session"),
            (
                {"session": 1, "right": "10.0.3.2", "failed": "10.0.2"},
                "failed: '10.0.2' is not an IPv4 address",
            ),
            ({"session": 1, "right": "10.0.3.2", "failover": "yes"}, "failover must be true or false"),
        ]:
            with pytest.raises(UserError, match=message):
                await service.reconfigure(bad)
        assert service.counters["mgmt.reconfigure_refused"] == 1

    run(dysco_program, switch, tmp_path, body)


def test_outcomes_timeout_busy_and_failed(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    """Nobody answers the lock request (the switch has no ports): the first request times out
    while the core retransmits, a second one meanwhile is refused as busy, and a third waits for
    the core to give up."""

    async def body(service: AgentService, sock: Path) -> None:
        await session(service, established=True)
        key = "10.0.1.2:40000->10.0.3.2:80"
        code, out, _ = await ctl(
            sock, "reconfigure", key, "--insert", "10.0.5.2", "--timeout", "0.3", "--json"
        )
        first = json.loads(out)
        assert (code, first["outcome"], first["ok"], first["rid"] is not None) == (
            1, "reconfigure_timeout", False, True,
        )  # fmt: skip
        busy = await service.reconfigure({"session": key, "right": "10.0.2.2", "hops": ["10.0.5.2"]})
        assert busy["outcome"] == "reconfigure_refused" and "already being reconfigured" in str(
            busy["message"]
        )
        # the first one ends (the core gives up) before a new one can start
        await service.wait_until(lambda: service.agent.metrics["reconf.failed"] == 1, WAIT_S)
        code, out, err = await ctl(sock, "reconfigure", "1", "--insert", "10.0.5.2", "--timeout", "30")
        assert code == 1, err
        assert "reconfigure_failed" in out and "lock refused" in out, out
        assert service.sessions()[0]["chain"] == ["10.0.2.2", "10.0.3.2"], "a failed change changes nothing"
        c = service.counters
        assert (c["mgmt.reconfigure"], c["mgmt.reconfigure_timeout"], c["mgmt.reconfigure_failed"]) == (
            3,
            1,
            1,
        )

    run(dysco_program, switch, tmp_path, body)


def test_a_splice_of_sockets_that_are_no_dysco_sessions_is_refused(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    async def body(service: AgentService, sock: Path) -> None:
        await session(service, established=True)
        args = ["splice", "--in", "10.0.3.2:80-10.0.1.2:9000", "--out", "10.0.1.2:41000-10.0.3.2:9000"]
        code, out, err = await ctl(sock, *args, "--no-kernel-info", "--json")
        answer = json.loads(out)
        assert (code, answer["outcome"], answer["ok"]) == (1, "splice_refused", False), err
        assert "10.0.3.2:80->10.0.1.2:9000 is not a Dysco session ending at this agent" in answer["message"]
        assert service.counters["mgmt.splice_refused"] == 1

    run(dysco_program, switch, tmp_path, body)


def test_a_replacement_around_a_dead_middlebox_asks_the_right_anchor_directly(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    """``--replace DEAD NEW --failed`` reaches the core with the dead hop: the lock request goes
    to the right anchor (the server's agent, which does not answer here), not through DEAD; with
    ``--failover`` it goes to DEAD first, and to the right anchor when DEAD does not answer."""

    async def body(service: AgentService, sock: Path) -> None:
        await session(service, established=True)
        code, out, err = await ctl(sock, "reconfigure", "1", "--replace", "10.0.9.9", "10.0.5.2", "--failed")
        assert code == 2 and "10.0.9.9 is not on the session's path (10.0.2.2 10.0.3.2)" in err, err
        code, out, err = await ctl(
            sock, "reconfigure", "1", "--replace", "10.0.2.2", "10.0.5.2", "--failed", "--timeout", "30",
            "--json",
        )  # fmt: skip
        answer = json.loads(out)
        assert (code, answer["outcome"], answer["failed"]) == (1, "reconfigure_failed", "10.0.2.2"), answer
        assert answer["message"].endswith("lock refused: no answer from 10.0.3.2"), answer
        assert service.agent.metrics["reconf.around_started"] == 1
        assert service.sessions()[0]["chain"] == ["10.0.2.2", "10.0.3.2"], "a failed change changes nothing"
        # --failover: the ordinary lock request to 10.0.2.2 goes unanswered, then around it
        code, out, err = await ctl(
            sock, "reconfigure", "1", "--replace", "10.0.2.2", "10.0.5.2", "--failover", "--timeout", "30",
            "--json",
        )  # fmt: skip
        answer = json.loads(out)
        assert (code, answer["outcome"]) == (1, "reconfigure_failed"), answer
        assert answer["message"].endswith("lock refused: no answer from 10.0.3.2"), answer
        assert service.agent.metrics["reconf.failover"] == 1
        assert service.agent.metrics["reconf.around_started"] == 2

    run(dysco_program, switch, tmp_path, body)
