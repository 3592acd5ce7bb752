"""Chains of two and three middleboxes, iptables firewalls and Linux forwarding mixed
(examples/longchain.toml: client -> fw1 -> relay -> fw2 -> server, every host with an agent):
data exact both ways, every agent on the chain shows the session and its chain while it is
established, the middleboxes' own rulesets see it, and nothing is left after the FINs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, counters, ctl, peer

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["longchain"], indirect=True)]

MB = 1 << 20
SERVER = "10.0.5.2"
# the server's port, then the middleboxes the client's policy sends it through
CHAINS = {"two": (9000, ("relay", "fw2")), "three": (9001, ("fw1", "relay", "fw2"))}
FIREWALL_RULE = {"fw1": "--dport 9001", "fw2": "--dports 9000,9001"}


def accepted(tb: Testbed, fw: str) -> int:
    """SYNs of new sessions the firewall ``fw`` accepted."""
    return next(n for rule, n in counters(tb, fw).items() if FIREWALL_RULE[fw] in rule)


@pytest.mark.parametrize("chain", list(CHAINS))
def test_chain_of_middleboxes(testbed: Testbed, tmp_path: Path, chain: str) -> None:
    tb = testbed
    port, mboxes = CHAINS[chain]
    plan = tb.plan
    hops = [plan.host(m).address for m in mboxes] + [SERVER]
    firewalls = [m for m in mboxes if m in FIREWALL_RULE]
    before = {fw: accepted(tb, fw) for fw in firewalls}
    with Process(peer(tb, "server", "blob-server", port), tmp_path / "server.log", "listening") as server:
        argv = peer(tb, "client", "blob-client", SERVER, port, 3 * MB, 2 * MB, "hold")
        with Process(argv, tmp_path / "client.log", "client sent") as client:
            got = server.wait_for("server got", WAIT_S).split()
            sent = client.ready_line.split()
            assert sent[2] == got[2], "the server received other bytes than the client sent"
            assert sent[4] == got[4], "the client received other bytes than the server sent"
            assert got[5] == "10.0.1.2", "the server sees the client's own address"
            sport = int(sent[5])

            # established: the client, every middlebox of the chain and the server hold it; the
            # client knows the whole chain, each hop the part from itself on
            session = {"src": "10.0.1.2", "sport": sport, "dst": SERVER, "dport": port, "proto": 6}
            on_chain = ["client", *mboxes, "server"]
            for i, name in enumerate(on_chain):
                rows = ctl(tb, name, "sessions")
                assert isinstance(rows, list) and len(rows) == 1, (name, rows)
                row = rows[0]
                role = "left" if i == 0 else "right" if name == "server" else "middle"
                assert row["five_tuple"] == session, (name, row)
                rest = hops[max(i - 1, 0) :]
                assert (row["state"], row["role"], row["chain"]) == ("established", role, rest), (name, row)
            for name in {h.name for h in plan.hosts} - set(on_chain):
                assert ctl(tb, name, "sessions") == [], f"{name} is not on the chain"
            for fw in firewalls:
                assert accepted(tb, fw) == before[fw] + 1, f"{fw}'s ruleset accepted the session's SYN"

            client.send_line("close")
            assert client.wait_for("eof", WAIT_S).strip() == "eof"
            assert server.wait_for("eof", WAIT_S).strip() == "eof"

    # after both FINs and the linger: nothing left at any agent or in any NIC table
    closed = f"session_closed: 10.0.1.2:{sport}->{SERVER}:{port}"
    for name in on_chain:
        tb.agent_of(name).wait_for(closed, WAIT_S)
    for name in (h.name for h in plan.hosts):
        assert ctl(tb, name, "sessions") == [], name
        status = ctl(tb, name, "status")
        assert isinstance(status, dict)
        assert status["sessions"] == 0, (name, status)
        assert {t: v["entries"] for t, v in status["tables"].items()} == {
            "session_out": 0,
            "subsession_in": 0,
        }, name
        assert status["errors"] == [], (name, status["errors"])
