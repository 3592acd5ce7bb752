"""Fixtures for the softswitch tests: programs, a loaded router, frame builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.softswitch import P4Program, Switch, load_program

HERE = Path(__file__).parent
PROGRAMS = HERE / "programs"


@pytest.fixture(scope="session")
def router_program() -> P4Program:
    return load_program(PROGRAMS / "router.p4")


@pytest.fixture
def router(router_program: P4Program) -> Switch:
    return Switch(router_program)
