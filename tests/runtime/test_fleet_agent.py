"""``dysco agent --etcd``: a real agent process on a real ``dysco switch`` takes its policies from
a real etcd, reports the revision in force in ``dysco ctl status`` and in its metrics, refuses a
bad set (written back, the set in force stays), and comes up and serves on its local file when
etcd cannot be reached.  No root (the switch has no interfaces)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dysco.runtime.fleet import Layout, Report, Scope, Store, parse_url
from dysco.testbed import Process, SwitchProcess
from dysco.testbed._etcd import EtcdProcess
from dysco.testbed._process import AGENT_READY

from .conftest import free_port
from .test_metrics import scrape, value
from .test_p4rt import POLICY, WAIT_S

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Layout()
TWO = POLICY + "policy alt: tcp dst port 81 -> fw\n"


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


def agent_argv(switch: SwitchProcess, tmp: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "dysco", "agent", "--p4runtime", switch.address, "--address", "10.0.1.2",
            "--name", "a1", "--p4", str(ROOT / "p4src" / "dysco.p4"), "--mgmt", str(tmp / "a1.sock"),
            *more]  # fmt: skip


def fleet(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dysco", "fleet", *args, "--etcd", url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)


def wait_lines(p: Process, *texts: str) -> None:
    """Until a line with each text was printed, in any order."""
    left = set(texts)
    while left:
        line = p.wait_for("", WAIT_S)
        left -= {t for t in left if t in line}


def status(tmp: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "dysco", "ctl", "status", "--mgmt", str(tmp / "a1.sock")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=WAIT_S)
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def put(etcd: EtcdProcess, key: bytes, text: str) -> int:
    async def main() -> int:
        async with Store(parse_url(etcd.url)) as store:
            return await store.put(key, text.encode())

    return asyncio.run(main())


def report(etcd: EtcdProcess) -> Report:
    async def main() -> Report:
        async with Store(parse_url(etcd.url)) as store:
            entry = await store.get(LAYOUT.status("a1"))
            assert entry is not None
            return Report.decode(entry.value)

    return asyncio.run(main())


def test_policies_come_from_etcd_and_a_bad_set_is_refused(
    etcd: EtcdProcess, switch: SwitchProcess, tmp_path: Path
) -> None:
    r1 = put(etcd, LAYOUT.policy(Scope.ALL), POLICY)
    argv = agent_argv(switch, tmp_path, "--etcd", etcd.url, "--group", "web", "--metrics", "127.0.0.1:0")
    with Process(argv, tmp_path / "agent.log", "dysco agent: metrics on") as agent:
        metrics_url = agent.ready_line.split()[-1]
        agent.wait_for(AGENT_READY, WAIT_S)
        source = f"etcd:/dysco/policies/all@{r1}"
        agent.wait_for(f"etcd: {source} in force", WAIT_S)
        s = status(tmp_path)
        assert (s["config"]["policies"], s["config"]["chains"]) == (source, 1)
        assert (s["fleet"]["connected"], s["fleet"]["policy_revision"], s["fleet"]["group"]) == (
            True,
            r1,
            "web",
        )

        r2 = put(etcd, LAYOUT.policy(Scope.GROUP, "web"), TWO)
        agent.wait_for(f"etcd: etcd:/dysco/policies/group/web@{r2} in force", WAIT_S)
        assert status(tmp_path)["config"]["chains"] == 2

        bad = "middlebox fw { instances 10.0.2.2; }\npolicy x: tcp dts\n"
        r3 = put(etcd, LAYOUT.policy(Scope.AGENT, "a1"), bad)
        line = agent.wait_for("refused", WAIT_S)
        where = f"etcd:/dysco/policies/agent/a1@{r3}:2:15: unexpected 'dts'"
        assert where in line, line
        got = report(etcd)
        assert got.refused is not None and where in got.refused.error
        assert (got.policy_revision, got.sessions) == (r2, 0)
        s = status(tmp_path)
        assert (s["config"]["chains"], s["fleet"]["policy_revision"]) == (2, r2), "the set in force stays"
        assert s["fleet"]["refused"]["revision"] == r3
        out = fleet(etcd.url, "status")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].endswith(": 1 agents, 1 up"), lines
        assert lines[1].split()[:4] == ["a1", "10.0.1.2", "up", f"policies/group/web@{r2}"], lines
        assert f"refused policies/agent/a1@{r3}: {where}" in lines[2], lines
        [row] = json.loads(fleet(etcd.url, "status", "--json").stdout)["agents"]
        assert (row["name"], row["up"], row["policy_revision"], row["sessions"]) == ("a1", True, r2, 0)
        samples = scrape(metrics_url)
        assert value(samples, "dysco_agent_etcd_connected") == 1
        assert value(samples, "dysco_agent_policy_revision") == r2
        assert value(samples, "dysco_agent_fleet_total", counter="policies.refused") == 1


def test_without_etcd_the_agent_serves_its_own_file(switch: SwitchProcess, tmp_path: Path) -> None:
    policy = tmp_path / "policy.dysco"
    policy.write_text(TWO)
    dead = f"http://127.0.0.1:{free_port()}"
    argv = agent_argv(switch, tmp_path, "--policies", str(policy), "--etcd", dead, "--metrics", "127.0.0.1:0")
    with Process(argv, tmp_path / "agent.log", "dysco agent: metrics on") as agent:
        url = agent.ready_line.split()[-1]
        wait_lines(agent, AGENT_READY, "serving on the policies in force")
        s = status(tmp_path)
        assert s["config"]["chains"] == 2 and s["config"]["policies"] == str(policy)
        assert s["fleet"]["connected"] is False and s["fleet"]["policy_revision"] == 0
        assert f"etcd at {dead}: " in s["fleet"]["last_error"]
        samples = scrape(url)
        assert value(samples, "dysco_agent_etcd_connected") == 0
        out = fleet(dead, "status")
        assert out.returncode == 1 and f"dysco fleet: error: etcd at {dead}: " in out.stderr, out.stderr
        assert value(samples, "dysco_agent_fleet_total", counter="etcd.connection_lost") >= 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--group", "web"], "--group, --etcd-prefix, --etcd-ca/cert/key and --etcd-user are for --etcd"),
        (["--etcd-user", "a1"], "--etcd-user are for --etcd"),
        (["--etcd", "http://127.0.0.1:2379", "--etcd-user", "a1"], "--etcd-user needs --etcd-password-file"),
        (["--etcd", "127.0.0.1:2379"], "--etcd '127.0.0.1:2379': expected http://HOST:PORT"),
        (["--etcd", "http://127.0.0.1:2379", "--group", "a/b"], "--group 'a/b': use letters"),
        (["--etcd", "http://127.0.0.1:2379", "--etcd-prefix", "dysco"], "etcd prefix 'dysco': must start"),
    ],
)
def test_bad_fleet_flags_are_refused(flags: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "dysco", "agent", "--address", "10.0.1.2", "--p4", "p4src/dysco.p4", *flags]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr


def test_sighup_reads_the_policies_from_etcd_again(
    etcd: EtcdProcess, switch: SwitchProcess, tmp_path: Path
) -> None:
    """The known bug: SIGHUP made an agent with --etcd re-read a policy file it does not have
    ("cannot read etcd:/dysco/..."); it reads its keys in etcd again, and says so."""
    argv = agent_argv(switch, tmp_path, "--etcd", etcd.url)
    with Process(argv, tmp_path / "agent.log", AGENT_READY) as agent:
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        line = agent.wait_for("SIGHUP: ", WAIT_S).rstrip()
        assert "policies re-read from etcd: no policy set in etcd for this agent" in line, line
        r1 = put(etcd, LAYOUT.policy(Scope.ALL), POLICY)
        agent.wait_for(f"etcd:/dysco/policies/all@{r1} in force", WAIT_S)
        agent.proc.send_signal(signal.SIGHUP)
        line = agent.wait_for("SIGHUP: ", WAIT_S).rstrip()
        want = f"SIGHUP: policies re-read from etcd: etcd:/dysco/policies/all@{r1} in force"
        assert line.endswith(want), line
        assert "cannot read" not in line
        s = status(tmp_path)
        assert (s["config"]["policies"], s["config"]["chains"]) == (f"etcd:/dysco/policies/all@{r1}", 1)
        r2 = put(etcd, LAYOUT.policy(Scope.AGENT, "a1"), "policy x: tcp dts\n")
        agent.wait_for(f"etcd:/dysco/policies/agent/a1@{r2} refused", WAIT_S)
        agent.proc.send_signal(signal.SIGHUP)  # read again: the same set, refused again, said so
        line = agent.wait_for("SIGHUP: ", WAIT_S).rstrip()
        want = f"SIGHUP: policies re-read from etcd: etcd:/dysco/policies/agent/a1@{r2} refused: "
        assert want in line and "unexpected 'dts'" in line, line
        etcd.__exit__()  # etcd gone: nothing to read, and the agent says why
        agent.wait_for("serving on the policies in force", WAIT_S)
        agent.proc.send_signal(signal.SIGHUP)
        line = agent.wait_for("SIGHUP: ", WAIT_S).rstrip()
        assert "SIGHUP: policies not re-read: not connected to etcd (etcd at " in line, line
        assert line.endswith("the policies in force stay"), line
        assert status(tmp_path)["config"]["chains"] == 1


KEYS = "1 " + "11" * 32 + " current\n"


def ring(current: int, *ids: int) -> bytes:
    keys = {str(i): f"{i:02x}" * 32 for i in ids}
    return json.dumps({"current": current, "keys": keys}).encode()


def test_a_key_ring_from_etcd_is_put_in_force_without_restart(
    etcd: EtcdProcess, switch: SwitchProcess, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(KEYS)
    keys.chmod(0o600)
    argv = agent_argv(switch, tmp_path, "--etcd", etcd.url, "--keys", str(keys))
    with Process(argv, tmp_path / "agent.log", AGENT_READY) as agent:
        r1 = put(etcd, LAYOUT.keys, ring(1, 1, 2).decode())
        line = agent.wait_for("dysco agent: etcd: key ring", WAIT_S).rstrip()
        assert line.endswith(f"etcd: key ring @{r1} taken: current 1, ids 1 2"), line
        r2 = put(etcd, LAYOUT.keys, '{"current": 3, "keys": {"2": "22"}}')
        line = agent.wait_for("dysco agent: etcd: key ring", WAIT_S).rstrip()
        assert f"etcd: key ring @{r2} refused: key 2: 1 bytes (keys are 32-64 bytes)" in line, line
        r3 = put(etcd, LAYOUT.keys, "[1]")
        line = agent.wait_for("dysco agent: etcd: key ring", WAIT_S).rstrip()
        assert f"etcd: key ring @{r3} refused: not a key ring: TypeError" in line, line
        s = status(tmp_path)["fleet"]["keys"]
        assert (s["revision"], s["current"]) == (r1, 1) and s["refused"].startswith(f"@{r3}: not a key ring")
        got = report(etcd)
        assert (got.keys_revision, got.keys_current) == (r1, 1)


def test_an_agent_without_keys_leaves_the_ring(
    etcd: EtcdProcess, switch: SwitchProcess, tmp_path: Path
) -> None:
    """An agent that does not authenticate does not start to because a ring is in etcd: the ring
    is for agents started with --keys (it does not watch keys/ring at all)."""
    put(etcd, LAYOUT.keys, ring(1, 1).decode())
    r = put(etcd, LAYOUT.policy(Scope.ALL), POLICY)
    argv = agent_argv(switch, tmp_path, "--etcd", etcd.url)
    with Process(argv, tmp_path / "agent.log", AGENT_READY) as agent:
        agent.wait_for(f"policies/all@{r} in force", WAIT_S)
        s = status(tmp_path)["fleet"]["keys"]
        assert (s["revision"], s["current"], s["refused"]) == (0, -1, "")
