"""The fleet on the namespace testbed (issue 22): four agents (client, two firewalls, server) take
their policies from a real etcd over TLS with client certificates (``etcd = true``,
``etcd_tls = true``, examples/fleet.toml).  While a session streams
through fw1, ``dysco fleet policies put`` gives the client a policy through fw2: the command
reports it in force at the client, a new session goes through fw2, the live one keeps fw1, and
both arrive byte-exact (digests).  Then five writes of ``policies/all`` measure the time from a
write to being in force at every agent (printed; the issue asks for 1 s)."""

from __future__ import annotations

import json
import statistics
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
    tmp = tmp_path_factory.mktemp("fleet")
    plan = topology("fleet", tmp, etcd_ports=2)
    with Testbed(plan, tmp) as tb:
        yield tb


def chains(tb: Testbed) -> dict[int, list[str]]:
    rows = ctl(tb, "client", "sessions")
    assert isinstance(rows, list)
    return {row["five_tuple"]["sport"]: row["chain"] for row in rows}


def created(tb: Testbed, host: str) -> int:
    """Sessions the host's agent has set up so far."""
    status = ctl(tb, host, "status")
    assert isinstance(status, dict)
    return int(status["core"].get("sessions.created", 0))


def test_a_policy_put_changes_new_sessions_and_leaves_live_ones(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    status = fleet_json(tb, "status")
    agents = {a["name"]: a for a in status["agents"]}
    assert sorted(agents) == ["client", "fw1", "fw2", "server"]
    assert all(a["up"] and a["policy_revision"] > 0 for a in agents.values()), agents
    assert agents["client"]["policy_key"] == "/dysco/policies/agent/client"
    assert agents["fw1"]["policy_key"] == "/dysco/policies/all"

    new = tmp_path / "via-fw2.dysco"
    new.write_text(f"middlebox fw {{ instances {FW2}; }}\npolicy web: tcp dst portrange 80-81 -> fw\n")
    with (
        Process(peer(tb, "server", "stream-server", 80), tmp_path / "server.log", "listening") as s,
        Process(peer(tb, "client", "stream-client", SERVER, 80), tmp_path / "client.log", "connected") as c,
    ):
        c.wait_for("progress ", WAIT_S)
        [(sport, live)] = chains(tb).items()
        assert live == [FW1, SERVER]
        assert (created(tb, "fw1"), created(tb, "fw2")) == (1, 0)

        done = fleet_json(tb, "policies", "put", str(new), "--scope", "agent:client")
        assert (done["in_force"], done["refused"], done["waiting"]) == (["client"], [], []), done
        print(f"policy put -> in force at the client: {done['seconds']}s")
        client = fleet_json(tb, "status")["agents"][0]
        assert (client["name"], client["policy_revision"]) == ("client", done["revision"])

        at = int(c.wait_for("progress ", WAIT_S).split()[1])
        while int(c.wait_for("progress ", WAIT_S).split()[1]) < at + 1:  # still flowing
            pass
        blob(tb, tmp_path, 81, 20000, 20000)  # a new session, with the new policy: through fw2
        assert (created(tb, "fw1"), created(tb, "fw2")) == (1, 1)
        assert chains(tb)[sport] == [FW1, SERVER], "the live session kept its chain"
        c.send_line("stop")
        sent = c.wait_for("client sent", WAIT_S).split()
        got = s.wait_for("server got", WAIT_S).split()
    assert sent[2] == got[2], "the server received other bytes than the client sent"
    assert sent[4] == got[4], "the client received other bytes than the server sent"


def test_a_bad_set_is_refused_by_the_agent_and_the_old_one_stays(testbed: Testbed, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dysco"
    bad.write_text(f"middlebox fw {{ instances {FW1}; }}\npolicy web: tcp dts\n")
    out = fleet(testbed, "policies", "put", str(bad), "--scope", "agent:client")
    assert out.returncode == 2 and f"{bad}:2:17: unexpected 'dts'" in out.stderr, out.stderr
    before = fleet_json(testbed, "status")["agents"][0]
    out = fleet(testbed, "policies", "put", str(bad), "--scope", "agent:client", "--no-check", "--json")
    assert out.returncode == 1, out.stderr
    done = json.loads(out.stdout)
    [(name, error)] = done["refused"]
    assert name == "client" and f"@{done['revision']}:2:17: unexpected 'dts'" in error, error
    after = fleet_json(testbed, "status")["agents"][0]
    assert after["policy_revision"] == before["policy_revision"], "the set in force stays"
    assert after["refused"]["revision"] == done["revision"]


def test_policy_write_to_in_force_at_every_agent(testbed: Testbed, tmp_path: Path) -> None:
    seconds = []
    for i in range(5):
        f = tmp_path / f"all-{i}.dysco"
        f.write_text(
            f"middlebox scrub {{ instances {FW2}; }}\npolicy p{i}: tcp dst port {9000 + i} -> scrub\n"
        )
        done = fleet_json(testbed, "policies", "put", str(f))
        assert sorted(done["in_force"]) == ["fw1", "fw2", "server"], done  # the client has its own
        assert done["shadowed"] == ["client"]
        seconds.append(done["seconds"])
    print(f"policies/all write -> in force at 3 agents: p50 {statistics.median(seconds):.3f}s, "
          f"max {max(seconds):.3f}s ({seconds})")  # fmt: skip
    assert max(seconds) < 5.0


def test_fleet_replace_moves_every_live_session_off_a_firewall(testbed: Testbed, tmp_path: Path) -> None:
    """Two sessions stream through fw1; `dysco fleet replace fw1 fw2` has every agent move the
    sessions it anchors: the client's agent moves both, the others have none; both streams keep
    flowing and arrive byte-exact."""
    tb = testbed
    back = tmp_path / "via-fw1.dysco"
    back.write_text(f"middlebox fw {{ instances {FW1}; }}\npolicy web: tcp dst portrange 80-81 -> fw\n")
    assert fleet_json(tb, "policies", "put", str(back), "--scope", "agent:client")["in_force"] == ["client"]
    with (
        Process(peer(tb, "server", "stream-server", 80), tmp_path / "s80.log", "listening") as s80,
        Process(peer(tb, "server", "stream-server", 81), tmp_path / "s81.log", "listening") as s81,
        Process(peer(tb, "client", "stream-client", SERVER, 80), tmp_path / "c80.log", "connected") as c80,
        Process(peer(tb, "client", "stream-client", SERVER, 81), tmp_path / "c81.log", "connected") as c81,
    ):
        for c in (c80, c81):
            c.wait_for("progress ", WAIT_S)
        assert sorted(chains(tb).values()) == [[FW1, SERVER], [FW1, SERVER]]

        out = fleet(tb, "replace", FW1, FW2, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        done = json.loads(out.stdout)
        moved = {name: o["moved"] for name, o in done["agents"].items()}
        assert moved == {"client": 2, "fw1": 0, "fw2": 0, "server": 0}, done
        assert (done["failed"], done["no_answer"]) == (0, [])
        print(f"fleet replace -> summary: {done['seconds']}s")
        assert sorted(chains(tb).values()) == [[FW2, SERVER], [FW2, SERVER]]

        for c in (c80, c81):  # still flowing, now through fw2
            at = int(c.wait_for("progress ", WAIT_S).split()[1])
            while int(c.wait_for("progress ", WAIT_S).split()[1]) < at + 1:
                pass
            c.send_line("stop")
        for c, s in ((c80, s80), (c81, s81)):
            sent = c.wait_for("client sent", WAIT_S).split()
            got = s.wait_for("server got", WAIT_S).split()
            assert sent[2] == got[2], "the server received other bytes than the client sent"
            assert sent[4] == got[4], "the client received other bytes than the server sent"
    again = fleet(tb, "replace", FW1, FW2)
    assert again.returncode == 0 and "4 of 4 agents answered: 0 sessions moved" in again.stdout, again.stdout


def test_without_etcd_the_agents_keep_serving_and_catch_up(testbed: Testbed, tmp_path: Path) -> None:
    """etcd stops: every agent says so and keeps its policies (a new session is set up through
    the chain in force); etcd comes back: a set written then is in force at every agent."""
    tb = testbed
    assert tb.etcd is not None
    tb.etcd.__exit__()
    for h in tb.hosts():
        tb.agent_of(h.name).wait_for("serving on the policies in force", WAIT_S)
    status = ctl(tb, "client", "status")
    assert isinstance(status, dict) and status["fleet"]["connected"] is False
    before = created(tb, "fw1")
    blob(tb, tmp_path, 80, 5000, 5000)  # the client's last set (put back by the replace test): fw1
    assert created(tb, "fw1") == before + 1

    tb.etcd = tb.etcd.again()
    tb.etcd.__enter__()
    f = tmp_path / "after.dysco"
    f.write_text(f"middlebox scrub {{ instances {FW1}; }}\npolicy late: tcp dst port 9100 -> scrub\n")
    done = fleet_json(tb, "policies", "put", str(f), "--timeout", "30")
    assert sorted(done["in_force"]) == ["fw1", "fw2", "server"], done
    status = ctl(tb, "fw1", "status")
    assert isinstance(status, dict) and status["fleet"]["connected"] is True
