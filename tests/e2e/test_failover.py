"""Replacing a dead middlebox on real Linux TCP (issue 23; examples/failover.toml: client -> fwd1
-> server, with fwd2 on no chain): fwd1's host goes in the middle of a duplex transfer (its links,
its namespace, its NIC and its agent); the ordinary replacement cannot lock through it, and
``dysco ctl reconfigure SESSION --replace FWD1 FWD2 --failed`` at the client's agent puts fwd2 where
fwd1 was; a second session's ``--replace FWD1 FWD2 --failover`` finds fwd1 silent and goes around it
too.  The transfers complete: both ends' SHA-256 digests agree, neither end saw a reset, and
nothing is left at any live agent or NIC."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dysco.testbed import Testbed

from .conftest import WAIT_S, ctl
from .test_reconfigure import Transfers, reconfigure, rx_bytes

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["failover"], indirect=True)]

FWD1, SERVER, FWD2 = "10.0.2.2", "10.0.3.2", "10.0.4.2"
PORTS = [9000, 9001]


def kill_host(tb: Testbed, name: str) -> None:
    """``name``'s host is gone: its links to the router and to its NIC, then its namespace, its
    NIC (``dysco switch``) and its agent."""
    plan, h = tb.plan, tb.plan.host(name)
    for argv in (
        ["ip", "link", "del", f"{plan.prefix}-{h.key}-net"],  # the router's end goes with it
        ["ip", "link", "del", f"{plan.prefix}-{h.key}-host"],  # and the host's eth0
        ["ip", "netns", "del", plan.ns(h.key)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=WAIT_S)
    tb.agent_of(name).__exit__()
    tb.switches[[n.name for n in plan.with_nic()].index(name)].__exit__()


def test_a_dead_forwarding_middlebox_is_replaced_mid_transfer(testbed: Testbed, tmp_path: Path) -> None:
    """Two sessions through fwd1: the first is replaced with --failed (after the ordinary
    replacement failed), the second with --failover (the ordinary one, going around fwd1 when
    it does not answer)."""
    tb = testbed
    with Transfers(tb, tmp_path, PORTS) as transfers:
        first, second = (transfers.five_tuple(p) for p in PORTS)
        kill_host(tb, "fwd1")
        before = rx_bytes(tb, "fwd2")
        with ThreadPoolExecutor(2) as pool:  # both wait for the control timeouts toward fwd1
            # the ordinary replacement locks along the old path: nobody answers there
            plain_run = pool.submit(reconfigure, tb, first, "--replace", FWD1, FWD2)
            failover = pool.submit(reconfigure, tb, second, "--replace", FWD1, FWD2, "--failover")
            code, plain = plain_run.result()
            assert (code, plain["outcome"]) == (1, "reconfigure_failed"), plain
            assert plain["message"].endswith("lock refused: no answer via 10.0.2.2"), plain
            code, answer = failover.result()
            assert (code, answer["outcome"], answer["chain"]) == (0, "reconfigured", [FWD2, SERVER]), answer
        tb.agent_of("client").wait_for(f"reconfigure_failover: {second}: rid {answer['rid']}: ", WAIT_S)
        code, answer = reconfigure(tb, first, "--replace", FWD1, FWD2, "--failed")
        assert (code, answer["outcome"], answer["chain"], answer["failed"]) == (
            0, "reconfigured", [FWD2, SERVER], FWD1,
        ), answer  # fmt: skip
        transfers.still_running()  # TCP retransmitted what died with fwd1, on the new path
        assert rx_bytes(tb, "fwd2") > before + (1 << 16)
        transfers.check()
    live = [h.name for h in tb.hosts() if h.name != "fwd1"]
    for name in live:
        left = {first, second}
        while left:  # in any order
            line = tb.agent_of(name).wait_for("session_closed: ", WAIT_S)
            left -= {t for t in left if f"session_closed: {t} " in line}
    for name in live:
        status = ctl(tb, name, "status")
        assert isinstance(status, dict)
        assert status["sessions"] == 0, (name, status["states"])
        tables = {t: v["entries"] for t, v in status["tables"].items()}
        assert tables == {"session_out": 0, "subsession_in": 0}, (name, tables)
        errors = [(e["kind"], e["message"]) for e in status["errors"]]
        expected = [("reconfigure_failed", plain["message"])] if name == "client" else []
        assert errors == expected, (name, status["errors"])  # the ordinary replacement's failure only
