"""client -> NAT (iptables MASQUERADE) -> server, set up with ``dysco testbed up`` and removed with
``dysco testbed down`` (examples/nat.toml): the server sees the NAT's address; data exact."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.testbed import Testbed, load_topology

from .conftest import ROOT, blob, ctl, free_port, needs_root, prefix

pytestmark = pytest.mark.root


def dysco_testbed(action: str, topology: Path, logs: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dysco", "testbed", action, str(topology), "--logs", str(logs)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def nat(tmp_path: Path) -> Iterator[Testbed]:
    """The NAT topology under this run's prefix, up through the CLI; down again on exit."""
    needs_root()
    base = free_port()
    text = (ROOT / "examples" / "nat.toml").read_text()
    text = text.replace('prefix = "dy"', f'prefix = "{prefix()}"\ngrpc_port = {base}\nlinger = 0.5')
    topology = tmp_path / "nat.toml"
    topology.write_text(text)
    try:
        up = dysco_testbed("up", topology, tmp_path)
        assert up.returncode == 0, up.stderr + (tmp_path / "testbed.log").read_text()[-3000:]
        assert "dysco testbed: up" in up.stdout
        # a handle for the helpers; the keeper owns the processes
        yield Testbed(load_topology(topology), tmp_path)
    finally:
        down = dysco_testbed("down", topology, tmp_path)
        assert down.returncode == 0, down.stderr
        assert f"{prefix()}-" not in namespaces(), "dysco testbed down left a namespace"


def test_nat_in_the_chain(nat: Testbed, tmp_path: Path) -> None:
    server, _ = blob(nat, tmp_path, 9000, 2 << 20, 2 << 20)
    assert server[5] == "10.0.2.2", "the server sees the NAT's address"
    for name in ("client", "nat", "server"):
        status = ctl(nat, name, "status")
        assert isinstance(status, dict) and status["errors"] == [], (name, status)


def test_down_after_a_failed_up(tmp_path: Path) -> None:
    """A topology whose NIC cannot start (a program that does not exist): up fails and cleans up,
    and down still succeeds."""
    needs_root()
    text = (ROOT / "examples" / "nat.toml").read_text().replace('prefix = "dy"', f'prefix = "{prefix()}x"')
    text = text.replace('kind = "nat"', 'kind = "nat"\nagent = false\np4 = "no/such.p4"')
    topology = tmp_path / "broken.toml"
    topology.write_text(text)
    up = dysco_testbed("up", topology, tmp_path)
    assert up.returncode == 2 and "did not come up" in up.stderr, up.stderr
    assert f"{prefix()}x-" not in namespaces()
    down = dysco_testbed("down", topology, tmp_path)
    assert down.returncode == 0, down.stderr
    assert not Path(f"/tmp/dysco-testbed-{prefix()}x.json").exists()
