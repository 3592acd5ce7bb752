"""bench._veth on a tiny run: the C generator builds and sends, a real ``dysco switch`` on the ebpf
back end forwards router.p4's 64-byte frames, and the kernel's counter sees them come out of
port 2 (the frames the benchmark's ebpf figure rests on).  Root and the ebpf back end needed."""

from __future__ import annotations

import os

import pytest

from bench._veth import DMAC, blaster, measure, route_10_8
from bench.softswitch_pps import PROGRAM, frame_64


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TC programs)"
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=f"bench veth run: {_why_not()}")


def test_a_short_veth_run_forwards_what_the_c_generator_sends() -> None:
    assert blaster() is not None, "clang is there (the ebpf back end needs it), so the generator builds"
    result = measure(PROGRAM, frame_64(), 0.3, route_10_8, DMAC, backend="ebpf")
    assert result["backend"] == "ebpf"
    assert result["generator"] == "c"
    assert result["sent"] > 1000
    # every frame is a routed copy of what was sent: no more out than in, and most of it through
    assert 0.5 * result["sent"] <= result["received"] <= result["sent"]


@pytest.mark.parametrize("mechanism", ["veth", "ring"])
def test_both_punt_paths_hand_every_packet_to_the_reader(mechanism: str) -> None:
    from bench.punt_path import build, run

    gen = blaster()
    assert gen is not None
    result = run(mechanism, 64, 0.2, gen, build())
    assert result["handed_over_pps"] > 0
    # what the program handed over, the reader read: nothing lost between kernel and Python
    # beyond what the kernel itself counted as refused
    assert 0 < result["read_pps"] <= result["handed_over_pps"] <= result["sent_pps"]


def test_the_program_alone_is_timed_in_the_kernel_and_forwards() -> None:
    from bench.dataplane_pps import in_kernel

    out = in_kernel(1000)  # raises unless every timed frame was redirected (verdict 7)
    for name in ("baseline", "dysco", "dysco_no_entry"):
        assert set(out[name]) == {"64", "1514", "1514_timestamps"}
        assert all(0 < ns < 1_000_000 for ns in out[name].values())
