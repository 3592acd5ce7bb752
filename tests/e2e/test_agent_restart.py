"""An agent restarts without losing a session (issue 20), on real Linux TCP (examples/reconfig.toml:
client -> fw1 -> server, fw2 spare): the agents of the client (the session's left end), of the
firewall (a middle) and of the server (the right end) are SIGKILLed in the middle of a transfer
both ways; their NICs carry the session while no agent runs; each agent is started again with
the same command, finds its pipeline in the NIC and rebuilds the session from the NIC's entries
(``dysco ctl status``/``sessions`` list it); the restarted client's agent then replaces the
restarted firewall by fw2 in that session, and the transfer ends with both ends' SHA-256 digests
equal, every agent empty and no session entry left in any NIC; a new session through the same
agents then works."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest

from dysco import p4names
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.testbed import Testbed

from .conftest import WAIT_S, blob, ctl
from .test_reconfigure import FW1, FW2, SERVER, Transfers, closed_everywhere, reconfigure

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["reconfig"], indirect=True)]

PORT = 9007
RESTARTED = ("client", "fw1", "server")


def nic_session_entries(tb: Testbed, name: str) -> int:
    """Entries of the session tables in ``name``'s NIC, read over P4Runtime (not the agent's count)."""
    address = f"127.0.0.1:{tb.plan.host(name).grpc_port}"
    with grpc.insecure_channel(address) as channel:
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        kind = p4runtime_pb2.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=0, response_type=kind)
        p4info = stub.GetForwardingPipelineConfig(get, timeout=WAIT_S).config.p4info
        names = {p4names.SESSION_OUT.table, p4names.SUBSESSION_IN.table}
        req = p4runtime_pb2.ReadRequest(device_id=0)
        for t in p4info.tables:
            if t.preamble.name in names:
                req.entities.add().table_entry.table_id = t.preamble.id
        assert len(req.entities) == 2
        return sum(len(reply.entities) for reply in stub.Read(req, timeout=WAIT_S))


def test_killed_agents_rebuild_their_session_reconfigure_and_close_it(
    testbed: Testbed, tmp_path: Path
) -> None:
    tb = testbed
    with Transfers(tb, tmp_path, [PORT]) as t:
        session = t.five_tuple(PORT)
        before = {name: ctl(tb, name, "sessions") for name in RESTARTED}
        for name in RESTARTED:
            agent = tb.agent_of(name)
            assert agent.proc is not None
            agent.proc.send_signal(signal.SIGKILL)
            assert tb.wait_exit(WAIT_S) is agent and agent.returncode == -signal.SIGKILL
        t.still_running()  # no agent on the client's and the firewall's host: the NICs carry it
        for name in RESTARTED:
            again = tb.restart(f"agent {name}")
            assert "dysco agent: ready" in again.ready_line
        for name, role in zip(RESTARTED, ("left", "middle", "right"), strict=True):
            status = ctl(tb, name, "status")
            assert isinstance(status, dict)
            assert (status["sessions"], status["states"]) == (1, {"established": 1}), (name, status)
            core = status["core"]
            assert core["sessions.adopted"] == 1 and core.get("entries.orphans_removed", 0) == 0, core
            rows = ctl(tb, name, "sessions")
            assert isinstance(rows, list) and isinstance(before[name], list)
            keep = ("id", "role", "five_tuple", "chain", "subsessions", "state")
            assert [{k: r[k] for k in keep} for r in rows] == [
                {k: r[k] for k in keep}
                for r in before[name]  # type: ignore[union-attr]
            ], name
            assert rows[0]["role"] == role
        t.still_running()
        # the restarted left end replaces the restarted firewall in the session it adopted
        code, answer = reconfigure(tb, session, "--replace", FW1, FW2)
        assert (code, answer["outcome"], answer["chain"]) == (0, "reconfigured", [FW2, SERVER]), answer
        t.still_running()
        t.check()
    closed_everywhere(tb, {name: [session] for name in ("client", "fw1", "fw2", "server")})
    # a new session through the restarted agents (what they held was freed, nothing clashes)
    blob(tb, tmp_path, PORT + 1, 300_000, 200_000)
    for name in ("client", "fw1", "server"):
        assert "session_closed: " in tb.agent_of(name).wait_for(f"->{SERVER}:{PORT + 1} (", WAIT_S)
    assert {h.name: nic_session_entries(tb, h.name) for h in tb.hosts()} == {h.name: 0 for h in tb.hosts()}
