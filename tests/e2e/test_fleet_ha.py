"""The fleet on a three-member etcd cluster with access control and authenticated agents
(examples/fleet-ha.toml; issue 22): four agents (client, two firewalls, server) each on its own
etcd user, the client's chain through either firewall.

* ``dysco fleet drain fw1``: the client moves its session through fw1 to fw2 and sets up new
  ones through fw2 only; with fw2 drained too, a new session is refused (the SYN is dropped and
  counted) and the summary says so; ``undrain`` brings both back.
* ``dysco fleet keys rotate`` while sessions are being set up: every one is set up, none
  refused by authentication, and every agent signs with the new key at the end.
* One etcd member killed: the agents keep serving and the fleet's commands still complete."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.testbed import Process, Testbed

from .conftest import WAIT_S, blob, ctl, fleet, fleet_json, needs_root, peer, topology

pytestmark = pytest.mark.root
FW1, SERVER, FW2 = "10.0.2.2", "10.0.3.2", "10.0.4.2"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    needs_root()
    tmp = tmp_path_factory.mktemp("fleet-ha")
    plan = topology("fleet-ha", tmp, etcd_ports=6)
    with Testbed(plan, tmp) as tb:
        yield tb


def chains(tb: Testbed) -> list[list[str]]:
    rows = ctl(tb, "client", "sessions")
    assert isinstance(rows, list)
    return sorted(row["chain"] for row in rows)


def core(tb: Testbed, host: str) -> dict[str, int]:
    status = ctl(tb, host, "status")
    assert isinstance(status, dict)
    return {k: int(v) for k, v in status["core"].items() if isinstance(v, int)}


def fleet_counters(tb: Testbed, host: str) -> dict[str, int]:
    status = ctl(tb, host, "status")
    assert isinstance(status, dict)
    return dict(status["fleet"]["counters"])


def refused_by_auth(tb: Testbed) -> dict[str, int]:
    """Messages each agent refused for their authentication (SYN payloads, control messages)."""
    kinds = ("bad_mac", "unknown_key", "missing_tag", "misdirected", "stale", "replayed")
    return {
        h.name: sum(v for k, v in core(tb, h.name).items() if k.startswith("drops.") and k.endswith(kinds))
        for h in tb.hosts()
    }


def test_the_agents_are_up_on_their_own_etcd_users(testbed: Testbed) -> None:
    agents = {a["name"]: a for a in fleet_json(testbed, "status")["agents"]}
    assert sorted(agents) == ["client", "fw1", "fw2", "server"]
    assert all(a["up"] for a in agents.values()), agents
    assert agents["client"]["policy_key"] == "/dysco/policies/agent/client"
    for h in testbed.hosts():
        status = ctl(testbed, h.name, "status")
        assert isinstance(status, dict)
        assert status["fleet"]["connected"] and status["fleet"]["keys"]["current"] == 1, status["fleet"]


def test_drain_moves_sessions_off_and_leaves_the_instance_out(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    with (
        Process(peer(tb, "server", "stream-server", 80), tmp_path / "s80.log", "listening") as s80,
        Process(peer(tb, "server", "stream-server", 81), tmp_path / "s81.log", "listening") as s81,
        Process(peer(tb, "client", "stream-client", SERVER, 80), tmp_path / "c80.log", "connected") as c80,
        Process(peer(tb, "client", "stream-client", SERVER, 81), tmp_path / "c81.log", "connected") as c81,
    ):
        for c in (c80, c81):
            c.wait_for("progress ", WAIT_S)
        assert chains(tb) == [[FW1, SERVER], [FW2, SERVER]], "round robin over the two"

        done = fleet_json(tb, "drain", FW1)
        moved = {name: (o["moved"], o["refused"]) for name, o in done["agents"].items()}
        assert moved == {"client": (1, 0), "fw1": (0, 0), "fw2": (0, 0), "server": (0, 0)}, done
        assert (done["failed"], done["no_answer"], done["refused_sessions"]) == (0, [], 0)
        print(f"fleet drain -> summary: {done['seconds']}s")
        assert chains(tb) == [[FW2, SERVER], [FW2, SERVER]]
        before = core(tb, "fw1").get("sessions.created", 0), core(tb, "fw2").get("sessions.created", 0)
        blob(tb, tmp_path, 82, 5000, 5000)  # a new session: fw2 (fw1 is left out)
        blob(tb, tmp_path, 83, 5000, 5000)
        after = core(tb, "fw1").get("sessions.created", 0), core(tb, "fw2").get("sessions.created", 0)
        assert (after[0] - before[0], after[1] - before[1]) == (0, 2), (before, after)

        out = fleet(tb, "drain", FW2)  # the last instance: nowhere to move, new sessions refused
        assert out.returncode == 1, out.stdout + out.stderr
        text = out.stdout
        assert "  client: 0 moved, 0 failed, 0 skipped, 2 refused in " in text, text
        assert f"fw: every instance is drained ({FW1} {FW2}): its chains' new sessions are refused" in text
        assert "refused: no other instance of its type that is not drained" in text
        assert "4 of 4 agents answered: 0 sessions moved, 0 failed, 0 skipped, 2 refused in " in text
        agent = tb.agent_of("client")
        agent.drain()
        argv = peer(tb, "client", "blob-client", SERVER, 82, 100, 100)
        refused = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:  # its SYNs are dropped, and the agent says why
            agent.wait_for("all_instances_drained: ", WAIT_S)
            assert refused.poll() is None, "the client is still trying"
        finally:
            refused.kill()
            refused.wait()
        assert core(tb, "client")["errors.all_instances_drained"] >= 1
        assert ctl(tb, "client", "status")["fleet"]["drained"] == [FW1, FW2]  # type: ignore[index]

        for fw in (FW1, FW2):
            out = fleet(tb, "undrain", fw)
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.startswith(f"{fw} back in service at 4 of 4 agents in "), out.stdout
        out = fleet(tb, "undrain", FW1)
        assert out.returncode == 1 and out.stdout.strip() == f"{FW1} was not drained", out.stdout
        for c in (c80, c81):  # the moved session kept flowing
            at = int(c.wait_for("progress ", WAIT_S).split()[1])
            while int(c.wait_for("progress ", WAIT_S).split()[1]) < at + 1:
                pass
            c.send_line("stop")
        for c, s in ((c80, s80), (c81, s81)):
            sent = c.wait_for("client sent", WAIT_S).split()
            got = s.wait_for("server got", WAIT_S).split()
            assert (sent[2], sent[4]) == (got[2], got[4]), "bytes changed on the way"
    blob(tb, tmp_path, 80, 5000, 5000)  # set up again, through an instance back in service


def test_a_key_rotation_while_sessions_are_set_up_refuses_none(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    before = refused_by_auth(tb)
    created = core(tb, "client").get("sessions.created", 0)
    argv = [sys.executable, "-m", "dysco", "fleet", "keys", "rotate", "--overlap", "1", "--json",
            *tb.plan.etcd_client()]  # fmt: skip
    rotation = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sessions = 0
    t0 = time.monotonic()
    while rotation.poll() is None or sessions < 3:  # sessions set up all along the rotation
        blob(tb, tmp_path, 80 + sessions % 2, 3000, 3000)  # asserts each arrives byte-exact
        sessions += 1
    out, err = rotation.communicate(timeout=WAIT_S)
    assert rotation.returncode == 0, out + err
    done = json.loads(out)
    print(f"key rotation: {done['seconds']}s with {sessions} sessions set up meanwhile "
          f"({time.monotonic() - t0:.1f}s); steps {[s['seconds'] for s in done['steps']]}")  # fmt: skip
    assert [len(s["done"]) for s in done["steps"]] == [4, 4, 4], done
    assert (done["old"], done["new"]) == (1, 2)
    assert core(tb, "client")["sessions.created"] - created == sessions
    assert refused_by_auth(tb) == before, "a message was refused for its authentication"
    for h in tb.hosts():
        keys = ctl(tb, h.name, "status")["fleet"]["keys"]  # type: ignore[index]
        assert keys["current"] == 2 and keys["refused"] == "", (h.name, keys)
    out2 = fleet(tb, "keys", "show")
    assert out2.returncode == 0 and out2.stdout.rstrip().endswith(": current 2, ids 2"), out2.stdout


def test_one_etcd_member_killed_the_fleet_goes_on(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    t0 = time.monotonic()
    lost = {h.name: fleet_counters(tb, h.name).get("etcd.connection_lost", 0) for h in tb.hosts()}
    first = tb.etcd_members[0]
    first.__exit__()  # killed (SIGTERM); the other two keep a quorum
    blob(tb, tmp_path, 80, 5000, 5000)  # the agents serve on
    f = tmp_path / "after.dysco"
    f.write_text(f"middlebox scrub {{ instances {FW1}; }}\npolicy late: tcp dst port 9100 -> scrub\n")
    out = fleet(tb, "policies", "put", str(f), "--json", "--timeout", "30", timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert sorted(done["in_force"]) == ["fw1", "fw2", "server"], done
    replace = fleet_json(tb, "replace", FW1, FW2)
    assert sorted(replace["agents"]) == ["client", "fw1", "fw2", "server"] and not replace["no_answer"]
    status = fleet_json(tb, "status")
    assert all(a["up"] for a in status["agents"]), status
    for h in tb.hosts():  # each was on the first member (gRPC's pick_first) and went on to another
        assert fleet_counters(tb, h.name)["etcd.connection_lost"] > lost[h.name], h.name
    print(f"one member killed -> policy in force at 3 agents {done['seconds']}s, replace answered by 4 "
          f"in {replace['seconds']}s; {time.monotonic() - t0:.1f}s in all")  # fmt: skip
