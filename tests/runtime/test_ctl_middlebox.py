"""The middlebox API's refusals through a real AgentService on a real ``dysco switch`` process
(no root; the test plays the host through packet-outs), from ``dysco ctl hops`` / ``delta``, the
library calls and raw management requests.  What each call does when it is honoured is shown on
the namespace testbed (tests/e2e/test_middlebox_api.py) and in the simulation
(tests/runtime/test_middlebox_api.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.runtime import declare_delta, leave, prepend_hops
from dysco.runtime._mbcall import session_text
from dysco.runtime._mgmt import ManagementServer, request
from dysco.runtime.p4rt import AgentService
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .test_ctl_service import ctl, session
from .test_p4rt import _running, _stop, free_port, settings

LEFT_SESSION = "10.0.1.2:40000->10.0.3.2:80"


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


def test_the_middlebox_requests_refused_by_the_agent(
    dysco_program: Program,
    switch: SwitchProcess,
    tmp_path: Path,
) -> None:
    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        sock = tmp_path / "agent.sock"
        handlers = {"hops": service.hops, "delta": service.delta, "leave": service.leave}
        server = ManagementServer(str(sock), handlers)  # type: ignore[arg-type]
        await server.start()
        task = await _running(service)
        try:
            await session(service, established=True)  # the host's own session: a left end
            code, _out, err = await ctl(sock, "hops", LEFT_SESSION, "10.0.4.2")
            assert (
                code == 2 and "no session 10.0.1.2:40000->10.0.3.2:80 being set up through a middlebox" in err
            )
            code, _out, err = await ctl(sock, "delta", LEFT_SESSION, "--delta-rev", "24")
            assert code == 2 and "delta: no session 10.0.1.2:40000->10.0.3.2:80 reaching a middlebox" in err
            code, _out, err = await ctl(sock, "delta", LEFT_SESSION, "--delta", str(1 << 31))
            assert code == 2 and "delta must be an integer of magnitude below 2**31" in err
            code, _out, err = await ctl(sock, "hops", "10.0.1.2->10.0.3.2:80", "10.0.4.2")
            assert code == 2 and "expected SRC:SPORT->DST:DPORT" in err
            assert service.counters["mgmt.hops_refused"] == 1 and service.counters["mgmt.delta_refused"] == 1
            # raw requests: what the library never sends
            path = str(sock)
            for args, message in (
                ({"session": LEFT_SESSION, "hops": []}, "hops must be a non-empty list of addresses"),
                ({"session": LEFT_SESSION, "hops": ["10.0.4"]}, "hops: '10.0.4' is not an IPv4 address"),
                ({"session": 7, "hops": ["10.0.4.2"]}, "session 7: expected SRC:SPORT->DST:DPORT"),
            ):
                with pytest.raises(UserError, match=message):
                    await asyncio.to_thread(request, path, "hops", args)
            with pytest.raises(UserError, match="delta_rev must be an integer"):
                await asyncio.to_thread(request, path, "delta", {"session": LEFT_SESSION, "delta_rev": "1"})
            # the library calls: the agent's refusal is theirs (leave answers an outcome, as splice)
            left = await asyncio.to_thread(lambda: leave(LEFT_SESSION, mgmt=path, timeout=2))
            assert (left.ok, left.outcome) == (False, "right_request_refused")
            assert "only a middlebox can leave" in left.message
            with pytest.raises(UserError, match="reaching a middlebox or proxy on this host"):
                await asyncio.to_thread(lambda: declare_delta(LEFT_SESSION, 0, delta_rev=3, mgmt=path))
        finally:
            await _stop(task)
            await server.close()

    asyncio.run(main())


def test_the_library_calls_refuse_bad_arguments_before_asking() -> None:
    nowhere = "/nonexistent/agent.sock"
    with pytest.raises(UserError, match=r"prepend_hops: '10\.0\.4' is not an IPv4 address"):
        prepend_hops(LEFT_SESSION, ["10.0.4"], mgmt=nowhere)
    with pytest.raises(UserError, match=r"delta must be an integer of magnitude below 2\*\*31"):
        declare_delta(LEFT_SESSION, 1 << 31, mgmt=nowhere)
    with pytest.raises(UserError, match="expected SRC:SPORT->DST:DPORT"):
        declare_delta("10.0.1.2:0->10.0.3.2:80", 1, mgmt=nowhere)
    with pytest.raises(UserError, match=r"no agent at /nonexistent/agent\.sock"):
        declare_delta(LEFT_SESSION, 1, mgmt=nowhere)
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6,
        pytest.raises(UserError, match="not a TCP socket over IPv4"),
    ):
        session_text(s6)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4,
        pytest.raises(UserError, match="the socket is not connected"),
    ):
        session_text(s4)
    # an accepted socket names its connection peer -> local
    with socket.create_server(("127.0.0.1", 0)) as ls, socket.create_connection(ls.getsockname()) as c:
        accepted, _ = ls.accept()
        with accepted:
            port = c.getsockname()[1]
            assert session_text(accepted) == f"127.0.0.1:{port}->127.0.0.1:{ls.getsockname()[1]}"


def test_a_request_the_core_does_not_take_in_time(dysco_program: Program, switch: SwitchProcess) -> None:
    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))  # not running: nobody takes it
        service.answer_timeout_s = 0.2
        with pytest.raises(UserError, match=r"hops: the agent did not take the request in 0\.2s"):
            await service.hops({"session": LEFT_SESSION, "hops": ["10.0.4.2"]})

    asyncio.run(main())
