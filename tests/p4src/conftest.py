"""Fixtures for the dysco.p4 packet tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from dysco.softswitch import P4Program, load_program

from .dataplane import BASELINE_P4, DYSCO_P4, Dut


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fake_clock: moves the python target's clock (python back end only)")


@pytest.fixture(scope="session")
def dysco_program() -> P4Program:
    return load_program(DYSCO_P4)


@pytest.fixture(scope="session")
def baseline_program() -> P4Program:
    return load_program(BASELINE_P4)


@pytest.fixture(scope="session")
def ebpf_dysco(dysco_program: P4Program) -> Iterator[Any]:
    """dysco.p4 in the kernel on a veth rig (HOST 1, NET 2, ports 7 and 9, the CPU port 255), for
    the session; each test reloads the program (fresh maps, clang's object reused)."""
    from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig

    # a tag of its own: a rig another test makes meanwhile (named after the pid) would take
    # this one's namespace for a crashed run's leftover and delete it
    with VethRig([1, 2, 7, 9, 255], tag=f"{os.getpid()}d") as rig:
        sw = EbpfSwitch(
            dysco_program,
            ports={p: rig.switch_if(p) for p in rig.ports},
            netns=rig.name,
            rig=rig,
            cpu_port=255,
        )
        try:
            yield sw
        finally:
            sw.close()


def _ebpf_why() -> str | None:
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


EBPF_WHY = _ebpf_why()


@pytest.fixture(
    params=[
        "python",
        pytest.param(
            "ebpf", marks=[pytest.mark.root, pytest.mark.skipif(EBPF_WHY is not None, reason=EBPF_WHY or "")]
        ),
    ]
)
def dut(request: pytest.FixtureRequest, dysco_program: P4Program) -> Dut:
    """The dysco.p4 packet tests run on both back ends (the python one is the oracle).  Tests
    marked ``fake_clock`` move the python target's clock and run on it only."""
    if request.param == "python":
        return Dut(dysco_program)
    sw = request.getfixturevalue("ebpf_dysco")
    sw.load(dysco_program)
    return Dut(dysco_program, device=sw)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``fake_clock`` test moves the python target's clock: it has no ebpf variant (the
    kernel's clock cannot be moved), so that variant is not collected rather than skipped."""
    drop = [
        item
        for item in items
        if item.get_closest_marker("fake_clock") is not None
        and getattr(getattr(item, "callspec", None), "params", {}).get("dut") == "ebpf"
    ]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]
