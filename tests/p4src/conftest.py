"""Fixtures for the dysco.p4 packet tests."""

from __future__ import annotations

import pytest

from dysco.softswitch import P4Program, load_program

from .dataplane import BASELINE_P4, DYSCO_P4, Dut


@pytest.fixture(scope="session")
def dysco_program() -> P4Program:
    return load_program(DYSCO_P4)


@pytest.fixture(scope="session")
def baseline_program() -> P4Program:
    return load_program(BASELINE_P4)


@pytest.fixture
def dut(dysco_program: P4Program) -> Dut:
    return Dut(dysco_program)
