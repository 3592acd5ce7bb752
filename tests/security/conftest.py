"""Fixtures for the hostile-input suite: the real data-plane program, compiled once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.softswitch import load_program
from dysco.softswitch.api import Program

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dysco_program() -> Program:
    return load_program(str(ROOT / "p4src" / "dysco.p4"))
