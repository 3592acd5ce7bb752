"""Live reconfiguration driven with ``dysco ctl reconfigure`` on real Linux TCP (examples/reconfig.toml:
client -> fw1 -> server, with fw2 and the scrubber scrub on no chain): a scrubber goes into a
session mid-transfer and out again, a firewall is replaced by another in all its sessions, and a
predicate picks the sessions a scrubber joins; both ends' SHA-256 digests agree, the middleboxes
see the traffic while they are on the path and not after, and every agent ends empty."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, counters, ctl, peer

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["reconfig"], indirect=True)]

FW1, SERVER, FW2, SCRUB = "10.0.2.2", "10.0.3.2", "10.0.4.2", "10.0.5.2"
MB = 1 << 20


def reconfigure(tb: Testbed, *args: object) -> tuple[int, Any]:
    """``dysco ctl reconfigure ARGS --json`` on the client's agent: exit status and answer."""
    mgmt = tb.plan.mgmt(tb.plan.host("client"))
    argv = [sys.executable, "-m", "dysco", "ctl", "reconfigure", *map(str, args), "--mgmt", mgmt, "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def rx_bytes(tb: Testbed, host: str) -> int:
    """Bytes the host's own interface received (its middlebox application's traffic)."""
    out = subprocess.run(
        tb.netns_argv(host, ["cat", "/sys/class/net/eth0/statistics/rx_bytes"]),
        capture_output=True, text=True, check=True, timeout=WAIT_S,
    )  # fmt: skip
    return int(out.stdout)


def accepted(tb: Testbed, host: str) -> int:
    """Packets the host's firewall accepted (every FORWARD rule)."""
    return sum(n for rule, n in counters(tb, host).items() if "-j ACCEPT" in rule)


class Transfers:
    """Duplex transfers client <-> server, one per port, running while the test reconfigures and
    until :meth:`check` ends them (peers.py ``stream-client``): a transfer of a fixed size ended on
    its own when the Python NICs were fast and the reconfiguration slow, so the session a test was
    about to list or edit had closed (a listing without the scrubbed session, seen in CI)."""

    def __init__(self, tb: Testbed, tmp: Path, ports: list[int]) -> None:
        self.tb, self.tmp, self.ports = tb, tmp, ports
        self.stack = ExitStack()
        self.servers: dict[int, Process] = {}
        self.clients: dict[int, Process] = {}

    def __enter__(self) -> Transfers:
        with self.stack:
            for port in self.ports:
                argv = peer(self.tb, "server", "stream-server", port)
                self.servers[port] = self.stack.enter_context(
                    Process(argv, self.tmp / f"server-{port}.log", "listening")
                )
            for port in self.ports:
                argv = peer(self.tb, "client", "stream-client", SERVER, port)
                self.clients[port] = self.stack.enter_context(
                    Process(argv, self.tmp / f"client-{port}.log", "connected")
                )
            for c in self.clients.values():
                c.wait_for("progress 1", WAIT_S)  # each session carries data both ways
            self.stack = self.stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def five_tuple(self, port: int) -> str:
        return f"10.0.1.2:{self.clients[port].ready_line.split()[1]}->{SERVER}:{port}"

    def still_running(self) -> None:
        """No transfer has ended (none is told to before :meth:`check`), and each goes on (a
        progress line comes after now)."""
        for port, c in self.clients.items():
            ended = [line for line in c.drain() if "client sent" in line or "unexpected eof" in line]
            assert not ended, f"port {port} ended before the test ended it: {ended}"
        for c in self.clients.values():
            c.wait_for("progress", WAIT_S)

    def check(self) -> dict[int, tuple[int, int]]:
        """The transfers end (the clients' FINs, then the servers'); both ends' digests agree and
        both saw the other's FIN.  Returns the bytes each end received, by port."""
        got: dict[int, tuple[int, int]] = {}
        for c in self.clients.values():
            c.send_line("stop")
        for port in self.ports:
            client = self.clients[port].wait_for("client sent", WAIT_S).split()
            server = self.servers[port].wait_for("server got", WAIT_S).split()
            assert client[2] == server[2], (
                f"port {port}: the server received other bytes than the client sent"
            )
            assert client[4] == server[4], (
                f"port {port}: the client received other bytes than the server sent"
            )
            assert server[5] == "10.0.1.2"
            assert self.clients[port].wait_for("eof", WAIT_S).strip() == "eof"  # not "unexpected eof"
            assert self.servers[port].wait_for("eof", WAIT_S).strip() == "eof"
            got[port] = (int(client[5]), int(server[6]))
        return got


def closed_everywhere(tb: Testbed, sessions: dict[str, list[str]], errors_ok: tuple[str, ...] = ()) -> None:
    """Every agent reports the sessions it carried closed (agent name -> five-tuples), and then
    nothing is left at any agent; no agent reports an error (but of the kinds ``errors_ok``)."""
    for name, tuples in sessions.items():
        left = set(tuples)
        while left:  # in any order
            line = tb.agent_of(name).wait_for("session_closed: ", WAIT_S)
            left -= {t for t in left if f"session_closed: {t} " in line}
    for h in tb.hosts():
        status = ctl(tb, h.name, "status")
        assert isinstance(status, dict)
        assert status["sessions"] == 0, (h.name, status["states"])
        assert {t: v["entries"] for t, v in status["tables"].items()} == {
            "session_out": 0,
            "subsession_in": 0,
        }
        errors = [e for e in status["errors"] if e["kind"] not in errors_ok]
        assert errors == [], (h.name, errors)


@pytest.fixture
def transfers(testbed: Testbed, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Transfers]:
    with Transfers(testbed, tmp_path, request.param) as t:
        yield t


@pytest.mark.parametrize("transfers", [[9000]], indirect=True)
def test_insert_a_scrubber_mid_transfer_and_delete_it(testbed: Testbed, transfers: Transfers) -> None:
    tb, t = testbed, transfers
    session = t.five_tuple(9000)
    before = rx_bytes(tb, "scrub")
    code, ins = reconfigure(tb, session, "--insert", SCRUB)
    assert (code, ins["outcome"], ins["chain"]) == (0, "reconfigured", [SCRUB, FW1, SERVER]), ins
    rows = ctl(tb, "scrub", "sessions")
    assert isinstance(rows, list)
    assert [(r["role"], r["five_tuple"]["dport"]) for r in rows] == [("middle", 9000)], rows
    t.still_running()
    code, rm = reconfigure(tb, ins["session"], "--delete", SCRUB)
    assert (code, rm["outcome"], rm["chain"]) == (0, "reconfigured", [FW1, SERVER]), rm
    through = rx_bytes(tb, "scrub") - before
    assert through > MB, f"only {through} bytes crossed the scrubber while it was on the path"
    t.still_running()  # the session goes on without it
    t.check()
    after = rx_bytes(tb, "scrub") - before - through
    assert after < through // 10, f"{after} bytes reached the scrubber after it left the path"
    closed_everywhere(tb, {name: [session] for name in ("client", "fw1", "scrub", "server")})


@pytest.mark.parametrize("transfers", [[9001, 9002, 9003]], indirect=True)
def test_replace_a_firewall_in_all_its_sessions(testbed: Testbed, transfers: Transfers) -> None:
    tb, t = testbed, transfers
    fw2_before = accepted(tb, "fw2")
    code, answer = reconfigure(tb, "--all", "--replace", FW1, FW2)
    assert code == 0, answer
    assert answer["summary"] == {
        "edit": f"replace {FW1} by {FW2}", "sessions": 3, "ok": 3, "failed": 0, "skipped": 0,
    }  # fmt: skip
    assert sorted(r["five_tuple"]["dport"] for r in answer["results"]) == [9001, 9002, 9003]
    assert all(r["chain"] == [FW2, SERVER] for r in answer["results"])
    fw1_then = accepted(tb, "fw1")
    t.still_running()
    t.check()
    assert accepted(tb, "fw2") - fw2_before > 1000, "the new firewall passed the sessions' segments"
    left = accepted(tb, "fw1") - fw1_then
    assert left < 200, f"the old firewall still passed {left} packets after it was replaced"
    sessions = [t.five_tuple(p) for p in t.ports]
    closed_everywhere(tb, {name: sessions for name in ("client", "fw1", "fw2", "server")})


@pytest.mark.parametrize("transfers", [[9004, 9005]], indirect=True)
def test_a_predicate_picks_the_sessions_a_scrubber_joins(testbed: Testbed, transfers: Transfers) -> None:
    tb, t = testbed, transfers
    code, ins = reconfigure(tb, "--match", "tcp dst port 9005", "--insert", SCRUB)
    assert code == 0 and ins["summary"]["ok"] == 1 and ins["summary"]["sessions"] == 1, ins
    assert [r["five_tuple"]["dport"] for r in ins["results"]] == [9005]
    rows = ctl(tb, "client", "sessions")
    assert isinstance(rows, list)
    chains = {r["five_tuple"]["dport"]: r["chain"] for r in rows if r["state"] == "established"}
    assert chains == {9004: [FW1, SERVER], 9005: [SCRUB, FW1, SERVER]}, rows
    # a second insert finds the scrubber there already and changes nothing
    code, again = reconfigure(tb, "--match", "tcp dst port 9005", "--insert", SCRUB)
    assert code == 0 and again["summary"] == {**again["summary"], "ok": 0, "skipped": 1}, again
    t.still_running()
    code, rm = reconfigure(tb, "--match", "tcp dst portrange 9000-9009", "--delete", SCRUB)
    assert code == 0 and rm["summary"]["ok"] == 1 and rm["summary"]["sessions"] == 1, rm
    t.check()
    both = [t.five_tuple(p) for p in t.ports]
    closed_everywhere(tb, {"client": both, "fw1": both, "server": both, "scrub": [t.five_tuple(9005)]})


@pytest.mark.parametrize("transfers", [[9006]], indirect=True)
def test_every_edit_asked_at_the_client_whatever_stays_on_the_chain(
    testbed: Testbed, transfers: Transfers
) -> None:
    """Three edits of one live session, all asked at the client's agent: a scrubber behind the
    firewall (anchored by fw1), fw1 replaced by fw2 (by the client), the scrubber deleted
    behind fw2 (anchored by fw2).  Anchored by the client, the first and the last would set up a
    new path through the firewall that stays, which holds the session already."""
    tb, t = testbed, transfers
    session = t.five_tuple(9006)
    counted = ("reconf.completed", "reconf.delegate_done")
    before = {name: _core(tb, name, counted) for name in ("client", "fw1", "fw2")}
    code, ins = reconfigure(tb, session, "--insert", SCRUB, "--at", 1)
    assert (code, ins["outcome"], ins["chain"], ins["left"]) == (
        0,
        "reconfigured",
        [FW1, SCRUB, SERVER],
        FW1,
    ), ins
    t.still_running()
    code, rep = reconfigure(tb, session, "--replace", FW1, FW2)
    assert (code, rep["outcome"], rep["chain"], rep["left"]) == (
        0,
        "reconfigured",
        [FW2, SCRUB, SERVER],
        "10.0.1.2",
    ), rep
    t.still_running()
    code, rm = reconfigure(tb, session, "--delete", SCRUB)
    assert (code, rm["outcome"], rm["chain"], rm["left"]) == (0, "reconfigured", [FW2, SERVER], FW2), rm
    gone = rx_bytes(tb, "scrub")
    t.still_running()
    t.check()
    after = rx_bytes(tb, "scrub") - gone
    assert after < MB // 4, f"{after} bytes reached the scrubber after it left the path"
    metrics = {
        name: {k: n - before[name][k] for k, n in _core(tb, name, counted).items()} for name in before
    }  # what this test's edits added (the testbed serves the module's tests)
    assert metrics == {
        "client": {"reconf.completed": 1, "reconf.delegate_done": 2},  # it anchored the replace
        "fw1": {"reconf.completed": 1, "reconf.delegate_done": 0},  # the insert
        "fw2": {"reconf.completed": 1, "reconf.delegate_done": 0},  # the delete
    }, metrics
    closed_everywhere(tb, {name: [session] for name in ("client", "fw1", "fw2", "scrub", "server")})


def _core(tb: Testbed, name: str, keys: tuple[str, ...]) -> dict[str, int]:
    status = ctl(tb, name, "status")
    assert isinstance(status, dict)
    return {k: int(status["core"].get(k, 0)) for k in keys}


@pytest.mark.parametrize("transfers", [[9008]], indirect=True)
def test_a_middlebox_leaves_a_live_session_at_its_own_request(testbed: Testbed, transfers: Transfers) -> None:
    """``dysco ctl leave`` at the firewall's agent: the client's agent reconnects the session to
    the server (a rightRequest), and the firewall sees none of its segments after that."""
    tb, t = testbed, transfers
    session = t.five_tuple(9008)
    mgmt = tb.plan.mgmt(tb.plan.host("fw1"))
    argv = [sys.executable, "-m", "dysco", "ctl", "leave", session, "--mgmt", mgmt, "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)
    answer = json.loads(out.stdout)
    assert (out.returncode, answer["outcome"]) == (0, "left"), (answer, out.stderr)
    assert any(n.startswith("right_request_accepted") for n in answer["notes"]), answer
    rows = ctl(tb, "client", "sessions")
    assert isinstance(rows, list)
    assert [r["chain"] for r in rows if r["five_tuple"]["dport"] == 9008] == [[SERVER]], rows
    fw1_then = accepted(tb, "fw1")
    t.still_running()
    t.check()
    left = accepted(tb, "fw1") - fw1_then
    assert left < 200, f"the firewall still passed {left} packets after it left"
    closed_everywhere(tb, {name: [session] for name in ("client", "fw1", "server")})
    # a session it is not on: refused before anything is sent
    bad = subprocess.run(
        [*argv[:5], "10.0.1.2:1->10.0.3.2:2", *argv[6:]], capture_output=True, text=True, timeout=WAIT_S
    )
    assert bad.returncode == 2 and "no session" in bad.stderr, bad
