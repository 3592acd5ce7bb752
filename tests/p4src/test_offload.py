"""dysco.p4 on the ebpf back end with checksum offload on, as a real NIC's traffic arrives.

A TCP client in a namespace of its own connects through the switch's port 1.  With transmit
checksum offload on (veth's default) its SYN reaches the TC program as CHECKSUM_PARTIAL: the
TCP checksum field holds only the pseudo-header sum, and the device would sum the segment
later.  session_out rewrites the SYN's addresses and ports; the switch side of port 2 has
checksum offload off, so the kernel finishes the checksum in software on the way out, and the
frame caught behind it must carry a right one.  With offload off on the client the SYN arrives
with a full checksum instead; both must come out right.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from .dataplane import Dut, Rewrite, checksums_ok

CLIENT = ("10.0.1.5", 40000)
SERVER = ("10.0.9.9", 80)
TO_NET = Rewrite("10.0.1.5", "10.0.2.1", 50000, 7000)
WAIT_S = 5.0


def _why() -> str | None:
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


WHY = _why()
pytestmark = [pytest.mark.root, pytest.mark.skipif(WHY is not None, reason=WHY or "")]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def client_netns(rig: Any, offload: bool) -> Iterator[str]:
    """Move the host side of port 1 into a namespace with the client's address."""
    name = f"dyoffc{os.getpid()}"
    ip("netns", "add", name)
    try:
        h1 = rig.host_if(1)
        ip("-n", rig.name, "link", "set", h1, "netns", name)
        ip("-n", name, "addr", "add", f"{CLIENT[0]}/16", "dev", h1)
        ip("-n", name, "link", "set", h1, "up")
        ip("-n", name, "neigh", "add", SERVER[0], "lladdr", "02:00:00:00:00:02", "dev", h1)
        if not offload:
            subprocess.run(["ip", "netns", "exec", name, "ethtool", "-K", h1, "tx", "off"], check=True,
                           capture_output=True)  # fmt: skip
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def syn_from_client(netns: str) -> socket.socket:
    from dysco.softswitch.targets.ebpf.netns import in_netns

    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.bind(CLIENT)
    err = s.connect_ex(SERVER)
    assert err == errno.EINPROGRESS, os.strerror(err)
    return s


def first_tcp_frame(sock: socket.socket) -> bytes:
    deadline = time.monotonic() + WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            data = sock.recv(65535)
            if len(data) > 34 and data[12:14] == b"\x08\x00" and data[23] == 6:
                return data
    raise AssertionError(f"no TCP frame on port 2 within {WAIT_S}s")


@pytest.mark.parametrize("offload", [True, False], ids=["offload-on", "offload-off"])
def test_a_rewritten_syn_leaves_with_a_right_checksum(dysco_program: Any, offload: bool) -> None:
    from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig

    with VethRig([1, 2]) as rig:
        # port 2's switch side computes what the device would have: checksums in software
        subprocess.run(["ip", "netns", "exec", rig.name, "ethtool", "-K", rig.switch_if(2), "tx", "off"],
                       check=True, capture_output=True)  # fmt: skip
        sw = EbpfSwitch(
            dysco_program, ports={1: rig.switch_if(1), 2: rig.switch_if(2)}, netns=rig.name, rig=rig
        )
        try:
            dut = Dut(dysco_program, device=sw)
            dut.add_session((CLIENT[0], SERVER[0], CLIENT[1], SERVER[1]), TO_NET)
            with client_netns(rig, offload) as ns:
                client = syn_from_client(ns)
                try:
                    frame = first_tcp_frame(rig.socks[2])
                finally:
                    client.close()
        finally:
            sw.close()
    pkt = Ether(frame)
    assert (pkt[IP].src, pkt[IP].dst, pkt[TCP].sport, pkt[TCP].dport) == ("10.0.1.5", "10.0.2.1", 50000, 7000)
    assert pkt[TCP].flags == "S"
    assert checksums_ok(frame), pkt.show(dump=True)
