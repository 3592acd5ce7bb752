"""Chaos on the namespace testbed (issue 20): sessions stream both ways while, round after round,
one of them is reconfigured (a scrubber in or out, one firewall for the other, asked at the
client's agent whatever stays on the chain) and then a random agent or NIC is SIGKILLed and
started again.  At the end every byte arrived (SHA-256 at both ends), no session was reset, and
nothing is left in any agent or NIC table.

The rounds and the seed come from ``DYSCO_CHAOS_ROUNDS`` (6 here; ``make soak`` runs more) and
``DYSCO_CHAOS_SEED``; the summary line gives both, so a failing run can be repeated.  A kill
comes between reconfigurations, after the last one's old path is gone: an agent restarted in the
middle of a reconfiguration loses it (docs/operations.md says what survives a restart).  NICs are
killed on the ebpf back end only: the python one keeps no data path through a restart.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, ctl
from .test_agent_restart import nic_session_entries
from .test_reconfigure import FW1, FW2, SCRUB, Transfers, closed_everywhere, reconfigure

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["reconfig"], indirect=True)]

PORTS = [9001, 9002]
HOSTS = ("client", "fw1", "fw2", "scrub", "server")
ROUNDS = int(os.environ.get("DYSCO_CHAOS_ROUNDS", "6"))
SEED = int(os.environ.get("DYSCO_CHAOS_SEED", "20"))


def _name(tb: Testbed, address: str) -> str:
    return next(h.name for h in tb.plan.hosts if h.address == address)


def _switch(tb: Testbed, name: str) -> Process:
    names = [h.name for h in tb.plan.with_nic()]
    return tb.switches[names.index(name)]


def _edit(chain: list[str], rng: random.Random) -> list[object]:
    """An edit of a session whose chain is ``chain``: the scrubber out if it is on it, else in
    (anywhere before the server) or fw1 replaced by fw2.  Never fw1 back: its conntrack is strict
    and a firewall that joins mid-session must track windows liberally (examples/reconfig.toml)."""
    if SCRUB in chain:
        return ["--delete", SCRUB]
    if FW1 in chain and rng.random() < 0.5:
        return ["--replace", FW1, FW2]
    return ["--insert", SCRUB, "--at", rng.randrange(len(chain))]


def _kill(tb: Testbed, kind: str, name: str, t: Transfers) -> None:
    """SIGKILL ``kind`` (agent or switch) on host ``name``; the sessions go on while it is down;
    start it again and wait until its agent serves again."""
    proc = tb.agent_of(name) if kind == "agent" else _switch(tb, name)
    sessions = ctl(tb, name, "status")
    assert isinstance(sessions, dict)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGKILL)
    assert tb.wait_exit(WAIT_S) is proc
    t.still_running()  # the NIC carries the sessions (its kernel program, when the switch died)
    tb.restart(f"{kind} {name}")  # an agent is ready once connected, its sessions adopted
    if kind == "switch":  # the agent reconnects to the new switch, which has kept the pipeline
        tb.agent_of(name).wait_for("the target already runs the pipeline", WAIT_S)
    status = ctl(tb, name, "status")
    assert isinstance(status, dict)
    assert status["sessions"] == sessions["sessions"], (kind, name, status["states"], status["core"])


def test_reconfigurations_and_random_kills_lose_nothing(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    rng = random.Random(SEED)
    kinds = ["agent", "switch"] if tb.plan.backend == "ebpf" else ["agent"]
    done: Counter[str] = Counter()
    with Transfers(tb, tmp_path, PORTS) as t:
        sessions = {p: t.five_tuple(p) for p in PORTS}
        for r in range(ROUNDS):
            port = rng.choice(PORTS)
            rows = ctl(tb, "client", "sessions")
            assert isinstance(rows, list)
            (row,) = [x for x in rows if x["five_tuple"]["dport"] == port]
            edit = _edit(row["chain"], rng)
            code, answer = reconfigure(tb, sessions[port], *edit)
            assert (code, answer["outcome"]) == (0, "reconfigured"), (r, edit, answer)
            # the right anchor reports once the TEARDOWN freed the old path: nothing in flight
            line = tb.agent_of(_name(tb, answer["right"])).wait_for("(right anchor)", WAIT_S)
            assert sessions[port] in line, (r, line)
            done[f"reconfigure {edit[0]}"] += 1
            t.still_running()
            kind, name = rng.choice(kinds), rng.choice(HOSTS)
            _kill(tb, kind, name, t)
            done[f"{kind} restarts"] += 1
        rows = ctl(tb, "client", "sessions")
        assert isinstance(rows, list)
        final = {row["five_tuple"]["dport"]: row["chain"] for row in rows}
        got = t.check()
    # the agents on each session's last chain close it now; the others let go of it before
    holders: dict[str, list[str]] = {"client": list(sessions.values())}
    for port, chain in final.items():
        for address in chain:
            holders.setdefault(_name(tb, address), []).append(sessions[port])
    closed_everywhere(tb, holders, errors_ok=("connection",))
    entries = {h.name: nic_session_entries(tb, h.name) for h in tb.hosts()}
    assert entries == {h.name: 0 for h in tb.hosts()}
    carried = sum(a + b for a, b in got.values())
    print(
        f"chaos: seed {SEED}, {ROUNDS} rounds, {len(PORTS)} sessions, {dict(sorted(done.items()))}, "
        f"{carried} bytes carried and checked, sessions lost: 0, entries left: {sum(entries.values())}"
    )
