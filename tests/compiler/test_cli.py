"""``dysco compile`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policies.dysco"


def dysco(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dysco", *args], capture_output=True, text=True, input=stdin, check=False
    )


def test_json_has_the_documented_shape() -> None:
    proc = dysco("compile", str(EXAMPLE), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["version"] == 1
    assert set(doc) >= {"version", "classifier", "chains"}
    for entry in doc["classifier"]:
        assert set(entry) >= {"priority", "policy", "action", "match"}
        assert entry["action"] in ("chain", "bypass")
        fields = {"ipv4.src", "ipv4.dst", "ipv4.protocol", "tcp.src_port", "tcp.dst_port"}
        assert set(entry["match"]) == fields
        assert entry["match"]["ipv4.protocol"] == [6, 255]
    prios = [e["priority"] for e in doc["classifier"]]
    assert prios == sorted(prios, reverse=True) and len(set(prios)) == len(prios)
    web = [e for e in doc["classifier"] if e["policy"] == "web"]
    assert {"ipv4.src": ["10.0.1.0", "255.255.255.0"], "tcp.dst_port": [80, 80]}.items() <= web[0][
        "match"
    ].items()
    assert [e["action"] for e in doc["classifier"] if e["policy"] == "ssh"] == ["bypass", "chain"]
    assert doc["chains"] == {
        "web": {
            "id": 1,
            "hops": [
                {"type": "firewall", "instances": ["10.0.2.1", "10.0.2.2"], "select": "round-robin"},
                {"type": "proxy", "instances": ["10.0.3.1"], "select": "round-robin"},
            ],
        },
        "ssh": {
            "id": 2,
            "hops": [{"type": "firewall", "instances": ["10.0.2.1", "10.0.2.2"], "select": "round-robin"}],
        },
        "pinned": {"id": 3, "hops": [{"address": "10.0.4.7"}]},
    }


def test_text_table_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "e.txt"
    proc = dysco("compile", str(EXAMPLE), "--format", "text", "-o", str(out))
    assert proc.returncode == 0 and proc.stdout == ""
    text = out.read_text()
    assert text.startswith("classifier (6 entries")
    assert "10.0.1.0/24" in text and "bypass" in text and "1  web: firewall[" in text


@pytest.mark.parametrize("stage", ["parse", "ast", "normal"])
def test_stage_dumps(stage: str) -> None:
    proc = dysco("compile", str(EXAMPLE), "--stage", stage)
    assert proc.returncode == 0, proc.stderr
    marker = {"parse": "binop", "ast": "policy web @6:", "normal": "policy ssh: (tcp.dst_port = 22"}[stage]
    assert marker in proc.stdout


def test_stdin() -> None:
    proc = dysco("compile", "-", stdin="middlebox m { instances 1.2.3.4; }\npolicy p: port 1 -> m\n")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chains"]["p"]["id"] == 1


def test_user_errors_exit_2(tmp_path: Path) -> None:
    missing = dysco("compile", str(tmp_path / "nope.dysco"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    budget = dysco("compile", str(EXAMPLE), "--budget", "0")
    assert budget.returncode == 2 and "--budget must be at least 1" in budget.stderr
    unwritable = dysco("compile", str(EXAMPLE), "-o", str(tmp_path / "no" / "such" / "dir" / "x"))
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr


def test_help_shows_an_example() -> None:
    proc = dysco("compile", "--help")
    assert proc.returncode == 0 and "dysco compile examples/policies.dysco" in proc.stdout


def test_stats_say_where_the_policies_went_and_what_each_pass_cost() -> None:
    proc = dysco("compile", str(EXAMPLE), "--format", "text", "--stats", "--capacity", "3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("classifier (3 entries")
    lines = proc.stderr.splitlines()
    assert lines[0] == "stats: 3 policies, 3 classifier entries of 3 (2 chain, 0 bypass, 1 software)"
    assert lines[1].split() == ["laid", "out", "in", "the", "NIC", "1", "policies", "(33.3%)"]
    assert "the table full from policy ssh on" in lines[2]
    assert lines[-1].startswith("  seconds per pass     parse+ast ")
    doc = json.loads(dysco("compile", str(EXAMPLE), "--stats", "-o", "/dev/null").stderr)
    assert doc["policies_in_nic"] == 3 and doc["entries_by_action"] == {
        "chain": 5,
        "bypass": 1,
        "software": 0,
    }
    assert doc["entries_per_policy"]["histogram"] == {"2-3": 3}  # web 2, ssh 2, pinned 2
    assert set(doc["seconds"]) == {"parse+ast", "hull", "normal", "entries", "place"}


def test_capacity_from_the_p4info_unless_given(tmp_path: Path) -> None:
    p4info = tmp_path / "p4info.txt"
    p4info.write_text('tables { preamble { id: 1 name: "DyscoIngress.classifier" } size: 3 }\n')
    small = json.loads(dysco("compile", str(EXAMPLE), "--p4info", str(p4info)).stdout)
    assert [e["action"] for e in small["classifier"]] == ["chain", "chain", "software"]
    given = json.loads(dysco("compile", str(EXAMPLE), "--p4info", str(p4info), "--capacity", "100").stdout)
    assert len(given["classifier"]) == 6
    bad = dysco("compile", str(EXAMPLE), "--capacity", "0")
    assert bad.returncode == 2 and "--capacity must be at least 1" in bad.stderr
