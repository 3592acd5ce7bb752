"""bench.punt_timeline: the search for one SYN in captured frames and the stages its gaps are
named by, on hand-made frames; and (slow) a short run on the namespace testbed, where the SYN's
way through a one-middlebox chain is found whole and its stages add up to it."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _timeline as tl
from dysco.runtime.core import _packet as pk

ROOT = Path(__file__).resolve().parents[1]
ISN = 0x1234ABCD


def _frame(flags: int, seq: int = ISN, ack: int = 0) -> bytes:
    f = pk.TcpFrame(b"\x02" * 6, b"\x04" * 6, 0x0A000102, 0x0A000602, 40000, 9001, seq, ack, flags)
    return f.to_bytes()


def _at(t_us: int, host: str, where: tl.Where, outgoing: bool, data: bytes) -> tl.Frame:
    return tl.Frame(t_us * 1000, host, where, outgoing, data)


def test_the_syn_is_found_by_its_number_and_flags_anywhere_in_a_frame() -> None:
    syn = _frame(pk.SYN)
    assert tl.carries(syn, ISN, ack=False)
    assert tl.carries(b"\x00" * 17 + syn + b"grpc framing", ISN, ack=False)  # inside a packet-in
    assert not tl.carries(_frame(pk.SYN | pk.ACK), ISN, ack=False)  # a SYN+ACK with that seq
    assert not tl.carries(_frame(pk.ACK), ISN, ack=False)
    assert not tl.carries(_frame(pk.SYN, seq=ISN + 1), ISN, ack=False)
    assert not tl.carries(struct.pack("!I", ISN), ISN, ack=False)  # the number at the very end
    synack = _frame(pk.SYN | pk.ACK, seq=77, ack=ISN + 1)
    assert tl.carries(synack, ISN + 1, ack=True)
    assert [e.host for e in tl.synack_events([_at(1, "server", tl.Where.HOST_PORT, False, synack)], ISN)] == [
        "server"
    ]


def test_a_punt_at_each_end_is_cut_into_its_stages() -> None:
    syn = _frame(pk.SYN)
    H, N, C, G = tl.Where.HOST_PORT, tl.Where.NET_PORT, tl.Where.CPU, tl.Where.GRPC
    frames = [
        _at(0, "client", H, False, syn),  # the client's SYN reaches its NIC
        _at(10, "client", C, False, syn),  # punted
        _at(310, "client", G, False, syn),  # packet-in on the P4Runtime connection
        _at(1310, "client", G, True, syn),  # the agent's packet-out
        _at(1610, "client", C, True, syn),  # injected
        _at(1620, "client", N, True, syn),  # leaves for the network
        _at(1650, "server", N, False, syn),
        _at(1660, "server", C, False, syn),
        _at(1860, "server", G, False, syn),
        _at(2860, "server", G, True, syn),
        _at(3060, "server", C, True, syn),
        _at(3070, "server", H, True, syn),
        _at(3000, "server", G, True, b"a Write: no SYN in it"),
    ]
    events = tl.syn_events(frames, ISN)
    assert len(events) == 12
    way = tl.way(events)
    assert way is not None
    assert way.odd == 0
    assert way.total_ns == 3_070_000
    assert way.stages == {
        "nic_to_cpu": 20_000,
        "switch_packet_in": 500_000,
        "agent": 2_000_000,
        "switch_packet_out": 500_000,
        "cpu_to_nic": 20_000,
        "network": 30_000,
        "fast_path": 0,
    }
    assert sum(way.stages.values()) == way.total_ns
    assert way.punts == {"client": 1, "server": 1}
    per_host = tl.per_host_ms([way], ["client", "server"])
    assert per_host["server"]["network"] == 0.03  # the gap counts where it leads
    assert per_host["client"]["agent"] == 1.0
    assert tl.medians_ms([way])["total"] == 3.07


def test_gaps_that_follow_no_way_a_packet_goes_are_counted_not_named() -> None:
    syn = _frame(pk.SYN)
    H, C, G = tl.Where.HOST_PORT, tl.Where.CPU, tl.Where.GRPC
    frames = [
        _at(0, "client", H, False, syn),
        _at(10, "client", C, False, syn),
        _at(20, "client", H, False, syn),  # a retransmission before the punt went anywhere
        _at(30, "m1", G, False, syn),  # another host's packet-in with no crossing between
    ]
    way = tl.way(tl.syn_events(frames, ISN))
    assert way is not None
    assert way.odd == 2
    assert way.stages["nic_to_cpu"] == 10_000
    assert tl.way(tl.syn_events(frames[:1], ISN)) is None


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, AF_PACKET sockets)"
    if shutil.which("clang-16") is None and shutil.which("clang") is None:
        return "the timeline needs the ebpf back end (clang)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_why_not() is not None, reason=f"punt_timeline run: {_why_not()}")
def test_a_short_timeline_through_one_middlebox(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.punt_timeline", "--connects", "20", "--middleboxes", "1",
         "--logs", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["followed"] >= 15  # the warm-up's three SYNs are not captured
    assert result["punts_per_host"] == {"client": 1, "m1": 2, "server": 1}
    way = result["syn_way_ms"]
    assert way["agent"] > 0 and way["switch_packet_in"] > 0 and way["switch_packet_out"] > 0
    assert set(result["syn_way_by_host_ms"]) == {"client", "m1", "server"}
    # the SYN+ACK finds its entries in every NIC but perhaps the server's: the server's kernel
    # answers the SYN its agent hands it early, usually before the Write is in (one punt there)
    assert result["synack_way_ms"]["fast_path"] > 0
