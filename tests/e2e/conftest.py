"""Testbeds from the example topologies, with this run's names, ports and paths; torn down even
when a test fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dysco.testbed import Plan, Process, Testbed, load_topology

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).with_name("peers.py")
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, raw sockets)")


def prefix() -> str:
    return f"e{os.getpid() % 100000}"


def topology(name: str, tmp: Path, etcd_ports: int = 0) -> Plan:
    """examples/NAME.toml with this run's names and ports (``etcd_ports``: how many its etcd
    members take, two each)."""
    path = ROOT / "examples" / f"{name}.toml"
    n = path.read_text().count("[[host]]")
    etcd = {"etcd_ports": tuple(free_port() for _ in range(etcd_ports))} if etcd_ports else {}
    return load_topology(
        path,
        prefix=prefix(),
        ports=tuple(free_port() for _ in range(n)),
        p4=str(ROOT / "p4src" / "dysco.p4"),
        policies=str(tmp / "policy.dysco"),
        linger=0.5,
        **etcd,
    )


@pytest.fixture(scope="module")
def testbed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    needs_root()
    tmp = tmp_path_factory.mktemp(request.param)
    with Testbed(topology(request.param, tmp), tmp) as tb:
        yield tb


def fleet(tb: Testbed, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    """``dysco fleet ARGS`` against the testbed's etcd."""
    argv = [sys.executable, "-m", "dysco", "fleet", *args, *tb.plan.etcd_client()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def fleet_json(tb: Testbed, *args: str, status: int = 0) -> Any:
    out = fleet(tb, *args, "--json")
    assert out.returncode == status, out.stderr + out.stdout
    return json.loads(out.stdout)


def peer(tb: Testbed, host: str, *args: object) -> list[str]:
    """argv of peers.py in ``host``'s namespace."""
    return tb.netns_argv(host, [sys.executable, str(PEERS), *map(str, args)])


def blob(tb: Testbed, tmp: Path, port: int, up: int, down: int) -> tuple[list[str], list[str]]:
    """One session from the client to the server's port: the server's and the client's report
    (``server got SHA sent SHA PEER``, ``client sent SHA got SHA``), both ends seen to close."""
    with Process(peer(tb, "server", "blob-server", port), tmp / f"blob-server-{port}.log", "listening") as s:
        argv = peer(tb, "client", "blob-client", "10.0.3.2", port, up, down)
        with Process(argv, tmp / f"blob-client-{port}.log", "client sent") as c:
            server = s.wait_for("server got", WAIT_S).split()
            client = c.ready_line.split()
            assert c.wait_for("eof", WAIT_S).strip() == "eof"
            assert s.wait_for("eof", WAIT_S).strip() == "eof"
    assert client[2] == server[2], "the server received other bytes than the client sent"
    assert client[4] == server[4], "the client received other bytes than the server sent"
    return server, client


def ctl(tb: Testbed, name: str, what: str) -> object:
    argv = [sys.executable, "-m", "dysco", "ctl", what, "--mgmt", tb.plan.mgmt(tb.plan.host(name)), "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=WAIT_S)
    return json.loads(out.stdout)


def counters(tb: Testbed, host: str) -> dict[str, int]:
    """Packets per FORWARD rule of ``host``'s firewall, by the rule's text (iptables-save -c)."""
    out = subprocess.run(
        tb.netns_argv(host, ["iptables-save", "-c", "-t", "filter"]),
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
    ).stdout
    rules = {}
    for line in out.splitlines():
        if line.startswith("[") and " -A FORWARD " in line:
            count, rule = line.split(" ", 1)
            rules[rule] = int(count.strip("[]").split(":")[0])
    return rules
