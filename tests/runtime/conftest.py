"""Fixtures for the agent's tests: the real data-plane program, compiled once; a real etcd."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.softswitch import load_program
from dysco.softswitch.api import Program
from dysco.testbed._etcd import EtcdProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dysco_program() -> Program:
    return load_program(str(ROOT / "p4src" / "dysco.p4"))


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """A real single-node etcd on free loopback ports, its data in the test's directory."""
    with EtcdProcess(tmp_path / "etcd", free_port(), free_port(), log=tmp_path / "etcd.log") as e:
        yield e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
