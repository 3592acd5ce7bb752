"""Reconfiguration with the client's agent behind an agentless NAT (issue 23; examples/natclient.toml):
the router in front of the client's subnet runs iptables MASQUERADE for it and drops whatever
comes unasked from outside, so the client's address is unreachable and only the session's own
flows come back in.  Insert, delete and replace, all anchored at the client's agent, on one live
session carrying data both ways: both ends' SHA-256 digests agree, and the agents' control
messages crossed the NAT in band (docs/protocol.md §4a)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.testbed import Testbed

from .conftest import WAIT_S, ctl, needs_root, topology
from .test_reconfigure import Transfers, closed_everywhere, reconfigure

pytestmark = pytest.mark.root

MB1, SERVER, SCRUB, MB2 = "10.0.2.2", "10.0.3.2", "10.0.4.2", "10.0.5.2"
# The NAT (on the router, in front of 10.0.1.0/24).  Liberal window tracking: a reconfiguration's
# new-path SYN does not carry the session's window scale yet (examples/reconfig.toml says the
# same of fw2), so strict tracking would refuse the new path's own data; what the in-band
# segments' numbers do against strict tracking is measured and modelled (docs/protocol.md §4a,
# tests/runtime/test_nat_sim.py).  Unsolicited packets are dropped either way.
NAT_RULES = [
    ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_be_liberal=1"],
    ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.0.1.0/24", "!", "-o", "r-c", "-j", "MASQUERADE"],
    ["iptables", "-A", "FORWARD", "-o", "r-c", "-m", "conntrack", "--ctstate", "NEW,INVALID", "-j", "DROP"],
]


def router(tb: Testbed, argv: list[str]) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", tb.plan.ns("r"), *argv],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    )
    return out.stdout


def unsolicited(tb: Testbed) -> int:
    """Packets the NAT dropped as coming unasked from outside."""
    out = router(tb, ["iptables", "-L", "FORWARD", "-v", "-n", "-x"])
    (line,) = [x for x in out.splitlines() if "DROP" in x]
    return int(line.split()[0])


@pytest.fixture(scope="module")
def natbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    needs_root()
    tmp = tmp_path_factory.mktemp("natclient")
    with Testbed(topology("natclient", tmp), tmp) as tb:
        for rule in NAT_RULES:
            router(tb, rule)
        yield tb


def test_insert_delete_replace_behind_a_nat(natbed: Testbed, tmp_path: Path) -> None:
    tb = natbed
    with Transfers(tb, tmp_path, [9000]) as t:
        session = t.five_tuple(9000)
        rows = ctl(tb, "mb1", "sessions")
        assert isinstance(rows, list)
        (left,) = [sub for sub in rows[0]["subsessions"] if sub["side"] == "left"]
        assert left["five_tuple"]["src"] == "10.0.2.1", rows  # mb1 sees the NAT, not the client
        steps = [
            (("--insert", SCRUB), [SCRUB, MB1, SERVER]),
            (("--delete", SCRUB), [MB1, SERVER]),
            (("--replace", MB1, MB2), [MB2, SERVER]),
        ]
        for args, chain in steps:
            code, answer = reconfigure(tb, session, *args)
            why = (answer, f"{unsolicited(tb)} packets dropped at the NAT as unsolicited")
            assert (code, answer["outcome"], answer["chain"]) == (0, "reconfigured", chain), why
            t.still_running()
        status = ctl(tb, "client", "status")
        assert isinstance(status, dict)
        assert status["core"].get("control.inband_received", 0) > 0, status["core"]
        t.check()  # SHA-256 of each direction at both ends
    closed_everywhere(tb, {name: [session] for name in ("client", "mb1", "scrub", "mb2", "server")})
