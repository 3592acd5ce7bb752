"""A SYN flood in the testbed (examples/synflood.toml: client -> mbox -> server, and an attacker
with a NIC but no agent, outside the trust domain).

The attacker floods the server's NIC with SYNs that carry the Dysco magic, so that the NIC
punts them to its agent as Dysco SYNs (tests/e2e/flood.py: spoofed sources, random ports and
sequence numbers; well-formed but unsealed payloads, payloads sealed under a key the domain
does not have or under a key id nobody has, garbage after the magic).  Meanwhile the client
sets up ``SESSIONS`` sessions through the chain at once, and each one carries its bytes exactly.

An off-path attacker reaches other hosts' NICs only from the network side, where the punt
reasons are Dysco SYNs and control messages: a NIC punts a policy SYN only for its own host.
Every agent has the domain's key file (``--keys``), as docs/security.md says a deployment must;
without it an agent takes an unsealed Dysco SYN, and the flood would become sessions.  The
agents log at the default level, not ``-v`` as elsewhere in the testbed: at ``-v`` an agent
logs a line for every Dysco SYN it refuses, most of what a refusal costs it.

Checked: every session set up, and both ends' SHA-256 digests agree; the server's NIC dropped
Dysco-SYN punts in its punt meter (``limits.punts.dysco_syn.dropped`` of ``dysco ctl status``);
the server's agent refused every flood SYN that reached it (``drops.bad_payload.*``, or dropped
it unread from its bounded SYN backlog, ``drops.syn_backlog``) and made no session of one; no
agent fell behind: none had more punts waiting than its SYN backlog holds, and no NIC dropped a
packet-in because its agent read too slowly (the softswitch logs that count as it happens and
when the stream closes); every agent and NIC process lived and no agent reports an error;
afterwards every session, table entry and port is gone.  The numbers are printed (``pytest -s``)
and are in the assertion messages.

By hand: ``SYNFLOOD_AGENT_ARGS="--punt-limit dysco_syn=off"`` gives every agent more arguments
(here: the same flood without the limit; the test then fails), ``SYNFLOOD_RATE=N`` floods at N
SYNs per second (default: one and a half times the default Dysco-SYN limit).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dysco.p4names import Reason
from dysco.runtime._mgmt import request
from dysco.runtime.core._auth import KeyRing
from dysco.runtime.p4rt._intake import SETUP_BOUND
from dysco.runtime.p4rt._limits import DEFAULT_LIMITS
from dysco.testbed import Host, Plan, Process, Testbed

from .conftest import blob, needs_root, topology

pytestmark = pytest.mark.root

FLOOD = Path(__file__).with_name("flood.py")
CLIENT, SERVER = "10.0.1.2", "10.0.3.2"
SESSIONS = 8
PORT = 9000
"""The sessions' ports are PORT, PORT + 1, ... (the policy sends 9000-9015 through the mbox)."""
LIMIT = DEFAULT_LIMITS[Reason.DYSCO_SYN]
assert LIMIT is not None
RATE = int(os.environ.get("SYNFLOOD_RATE", str(LIMIT.rate * 3 // 2)))
"""Flood SYNs per second: above the NIC's Dysco-SYN limit (the default, 1000/s), so that its
meter drops the rest, but not far above.  The meter drops a legitimate Dysco SYN as likely as a
flood SYN, and a session none of whose SYNs passes within the client agent's setup timeout
(10 s) is given up by the client's agent and set up again on the host's next SYN (the mbox's and
the server's agents replace what they held of it, ``sessions.resetup``).  Once the server's agent
has authenticated one of the mbox's SYNs, the mbox has a meter cell of its own and the flood no
longer takes its budget.  The Python NICs forward a few thousand packets per second on a small
machine, and the agents read punts at about 0.2 ms each: a faster flood passes on a quiet
machine (``SYNFLOOD_RATE=5000`` by hand) but makes a NIC drop packet-ins on a busy one."""
SYN_ATTEMPTS = 7
"""Dysco SYNs of one session at most (Linux: a SYN and ``tcp_syn_retries`` = 6 retransmissions)."""
FLOOD_MAX_S = 120.0
TARGET = "server"
FLOOD_KINDS = {
    "missing_tag",
    "bad_mac",
    "unknown_key",
    "garbled",
    "truncated",
    "unknown_version",
    "oversized",
}
"""What an agent with keys calls the flood's payloads (random bytes after the magic are mostly
``garbled``, sometimes another decoding failure)."""
BACKLOG_MAX = SETUP_BOUND + 64
"""Punts an agent may have received and not yet handled or dropped: its SYN backlog full (the
intake keeps no more) and a few others."""
SLOW_READER = re.compile(r"stream \d+: (\d+) messages dropped \(slow reader\)")
"""What a NIC logs when its agent's stream ends, if it dropped packet-ins the agent did not read."""
DRAIN_S = 20.0
POLL_S = 0.5
EXTRA = os.environ.get("SYNFLOOD_AGENT_ARGS", "")


@dataclasses.dataclass(frozen=True)
class KeyedPlan(Plan):
    """The topology's plan with more arguments for every agent (the domain's key file), and
    its agents at the default log level: with ``-v`` an agent logs every Dysco SYN it refuses,
    a line per flood SYN that passes the meter, which costs it most of its time per punt."""

    extra: str = ""

    def agent(self, h: Host) -> str:
        return Plan.agent(self, h).replace(" -v agent ", " agent ", 1) + self.extra


def keyed_plan(tmp: Path) -> KeyedPlan:
    keys = tmp / "keys"
    keys.write_text(KeyRing({1: secrets.token_bytes(32)}, 1).dumps())
    keys.chmod(0o600)
    plan = topology("synflood", tmp)
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    return KeyedPlan(**fields, extra=f" --keys {shlex.quote(str(keys))}" + (f" {EXTRA}" if EXTRA else ""))


def status(tb: Testbed, host: str) -> dict[str, Any]:
    """``dysco ctl status`` of ``host``'s agent, asked from this process (a ``dysco ctl``
    process per poll would take CPU the testbed needs)."""
    answer = request(tb.plan.mgmt(tb.plan.host(host)), "status")
    assert isinstance(answer, dict)
    return answer


def backlog(st: dict[str, Any]) -> int:
    """Punts the agent received from its NIC and has neither handled nor dropped unread yet."""
    adapter, core = st["adapter"], st["core"]
    handled = sum(v for k, v in core.items() if k.startswith("punts."))
    unread = sum(
        adapter.get(k, 0) for k in ("drops.packet_in_port", "drops.syn_backlog", "drops.intake_full")
    )
    return int(adapter.get("packet_in", 0) - unread - handled)


def nic_dropped(st: dict[str, Any]) -> int:
    """Dysco SYNs the agent's NIC dropped in its punt meter."""
    return int(st["limits"]["punts"]["dysco_syn"].get("dropped") or 0)


def flooded(tb: Testbed) -> bool:
    """The flood is on at the target: its NIC's meter drops (its burst is spent), or, with the
    limit off, a burst's worth of punts reached the agent."""
    st = status(tb, TARGET)
    if st["limits"]["punts"]["dysco_syn"]["rate_pps"] is None:
        return bool(st["core"].get("punts.dysco_syn", 0) > BACKLOG_MAX)
    return nic_dropped(st) > 0


def sessions(tb: Testbed, host: str) -> list[dict[str, Any]]:
    answer = request(tb.plan.mgmt(tb.plan.host(host)), "sessions")
    assert isinstance(answer, list)
    return answer


def closed_sessions(tb: Testbed, host: str) -> set[str]:
    """The five-tuples of the sessions ``host``'s agent closed (its ``events`` log)."""
    answer = request(tb.plan.mgmt(tb.plan.host(host)), "events", {"since": 0})
    assert isinstance(answer, dict) and not answer["missed"]
    return {e["message"].split()[0] for e in answer["events"] if e["event"] == "session_closed"}


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(POLL_S)


class Monitor:
    """Polls every agent's status while the flood runs: the most sessions and the largest punt
    backlog each one had, and what went wrong asking."""

    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        self.hosts = [h.name for h in tb.hosts()]
        self.sessions = dict.fromkeys(self.hosts, 0)
        self.backlog = dict.fromkeys(self.hosts, 0)
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synflood-monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for h in self.hosts:
                try:
                    st = status(self.tb, h)
                except Exception as exc:  # the test reports it
                    self.failures.append(f"{h}: {type(exc).__name__}: {exc}")
                    continue
                self.sessions[h] = max(self.sessions[h], int(st["sessions"]))
                self.backlog[h] = max(self.backlog[h], backlog(st))
            self.polls += 1
            self._stop.wait(POLL_S)


@dataclasses.dataclass
class Outcome:
    sent: int
    took: float
    results: list[tuple[list[str], list[str]]]
    final: dict[str, dict[str, Any]]
    served: set[str]
    alive: list[bool]
    sessions: dict[str, int]
    backlog: dict[str, int]
    polls: int
    failures: list[str]


def flood_and_sessions(tb: Testbed, tmp: Path) -> Outcome:
    """Flood the target, set the sessions up through the chain meanwhile, stop the flood and
    wait until every punt is handled and every session gone."""
    target = tb.plan.host(TARGET).address
    argv = tb.netns_argv("attacker", [sys.executable, str(FLOOD), str(RATE), str(FLOOD_MAX_S), target])
    sizes = [(96 << 10) + 4099 * i for i in range(SESSIONS)]  # every session its own bytes
    with Process(argv, tmp / "flood.log", "flooding") as flood, Monitor(tb) as mon:
        wait_for(f"the flood reaching the {TARGET}'s NIC", lambda: flooded(tb), 30.0)
        started = time.monotonic()
        with ThreadPoolExecutor(SESSIONS) as pool:
            runs = [pool.submit(blob, tb, tmp, PORT + i, n, 2 * n + 1) for i, n in enumerate(sizes)]
            results = [r.result() for r in runs]  # each checked both digests and both EOFs
        took = time.monotonic() - started
        flood.send_line("stop")
        sent = int(flood.wait_for("flood sent", 30.0).split()[2])
    hosts = mon.hosts
    try:
        wait_for(
            "every agent handling its punts", lambda: all(backlog(status(tb, h)) == 0 for h in hosts), DRAIN_S
        )
        wait_for("every session gone", lambda: all(status(tb, h)["sessions"] == 0 for h in hosts), DRAIN_S)
    except AssertionError as exc:
        left = {h: [r["five_tuple"] for r in sessions(tb, h)] for h in hosts}
        raise AssertionError(f"{exc}; left: {left}") from None
    return Outcome(
        sent,
        took,
        results,
        {h: status(tb, h) for h in hosts},
        closed_sessions(tb, TARGET),
        [p.proc is not None and p.proc.poll() is None for p in [*tb.agents, *tb.switches]],
        mon.sessions,
        mon.backlog,
        mon.polls,
        mon.failures,
    )


def test_legitimate_sessions_set_up_and_exact_during_a_syn_flood(tmp_path: Path) -> None:
    needs_root()
    failed: Exception | None = None
    with Testbed(keyed_plan(tmp_path), tmp_path) as tb:
        try:
            out = flood_and_sessions(tb, tmp_path)
        except Exception as exc:  # raised again below, with what the NICs logged when they stopped
            failed = exc
    # a NIC logs the packet-ins it dropped for a slow agent when the agent's stream ends
    slow = {
        h.name: sum(int(n) for n in SLOW_READER.findall((tmp_path / f"switch-{h.name}.log").read_text()))
        for h in tb.plan.with_agent()
    }
    if failed is not None:
        raise AssertionError(f"{failed}; packet-ins a NIC dropped for a slow agent: {slow}") from failed

    target = tb.plan.host(TARGET).address
    final, sent = out.final, out.sent
    core = final[TARGET]["core"]
    limit = final[TARGET]["limits"]["punts"]["dysco_syn"]
    dropped = nic_dropped(final[TARGET])
    unread = int(final[TARGET]["adapter"].get("drops.syn_backlog", 0))
    punted = int(core.get("punts.dysco_syn", 0)) + unread
    refused = {
        k.removeprefix("drops.bad_payload."): v for k, v in core.items() if k.startswith("drops.bad_payload.")
    }
    report = (
        f"flood: {sent} SYNs sent to the {TARGET} ({target}) at {RATE}/s; its NIC dropped {dropped} in "
        f"the punt meter (limit {limit['rate_pps']}/s, burst {limit['burst']}) and punted {punted} as Dysco "
        f"SYNs, of which the agent refused {sum(refused.values())} {refused} and dropped {unread} unread "
        f"(its SYN backlog full); {SESSIONS} sessions set up and exact in {out.took:.1f}s; most sessions "
        f"per agent {out.sessions}; largest punt backlog {out.backlog} ({out.polls} polls); packet-ins a "
        f"NIC dropped for a slow agent {slow}"
    )
    resetup = {h: int(st["core"].get("sessions.resetup", 0)) for h, st in final.items()}
    report += f"; sessions set up again after the client's agent gave a setup up {resetup}"
    known = final[TARGET]["limits"]["known_peers"]["agents"]
    report += f"; agents with a meter cell of their own at the {TARGET}: {known}"
    print(f"\n{report}")

    assert sent >= 2 * RATE, report
    assert dropped > 0, f"the {TARGET}'s NIC limited nothing: {report}"
    # the NIC also met the sessions' own Dysco SYNs: each session's first and its host's retransmissions
    assert dropped + punted <= sent + SESSIONS * SYN_ATTEMPTS, report
    assert refused and set(refused) <= FLOOD_KINDS, report
    # the mbox's Dysco SYNs are metered in a cell of their own after its first one authenticated
    assert known == [tb.plan.host("mbox").address], report
    assert all(server[5] == CLIENT for server, _ in out.results), "the server sees the client's address"
    # the agent made a session of no flood SYN: all it had were the client's
    ours = {f"{CLIENT}:{r[1][5]}->{SERVER}:{PORT + i}" for i, r in enumerate(out.results)}
    assert out.served == ours, (
        f"sessions at the {TARGET}: {sorted(out.served - ours)[:5]} not the client's; {report}"
    )
    assert not out.failures, f"{out.failures[:5]}; {report}"
    for h in final:
        assert out.sessions[h] <= SESSIONS < final[h]["limits"]["max_sessions"], report
        assert out.backlog[h] <= BACKLOG_MAX, f"the {h}'s agent fell behind its punts: {report}"
    assert not any(slow.values()), f"a NIC dropped packet-ins its agent did not read in time: {report}"
    assert all(out.alive), f"an agent or NIC ended (alive: {out.alive}); see {tmp_path}"
    for h, st in final.items():
        assert st["errors"] == [], f"{h}: {st['errors']}; {report}"
        assert st["connected"] and "reconnects" not in st["adapter"], f"{h}: {st['adapter']}"
        assert not [k for k in (*st["adapter"], *st["core"]) if k.startswith("errors.")], f"{h}: {st['core']}"
        assert all(t["entries"] == 0 for t in st["tables"].values()), f"{h}: {st['tables']}"
        assert st["ports_in_use"] == 0, f"{h}: {st['ports_in_use']} ports in use"
