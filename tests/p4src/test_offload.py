"""dysco.p4 on the ebpf back end with checksum offload and GSO on, as a real NIC's traffic arrives.

A TCP client in a namespace of its own connects through the switch's port 1.  With transmit
checksum offload on (veth's default) its SYN reaches the TC program as CHECKSUM_PARTIAL: the
TCP checksum field holds only the pseudo-header sum, and the device would sum the segment
later.  session_out rewrites the SYN's addresses and ports; the switch side of port 2 has
checksum offload off, so the kernel finishes the checksum in software on the way out, and the
frame caught behind it must carry a right one.  With offload off on the client the SYN arrives
with a full checksum instead; both must come out right.

Then a whole TCP transfer through both session tables, the senders with TSO/GSO and checksum
offload on (the program rewrites 64 KB GSO packets), the receivers verifying every checksum in
software (receive checksum offload off, so veth does not mark them as checked).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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

from dysco.p4names import SUBSESSION_IN

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


FROM_NET = ("10.0.2.1", "10.0.1.5", 7000, 50000)
TO_HOST = Rewrite("10.0.9.9", "10.0.1.5", 80, 40000)
SERVER_REAL = ("10.0.2.1", 7000)


def ethtool(netns: str, iface: str, *args: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "ethtool", "-K", iface, *args], check=True, capture_output=True
    )


def mac(netns: str, iface: str) -> str:
    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link", "show", iface], check=True, capture_output=True, text=True
    )
    return out.stdout.split("link/ether ")[1].split()[0]


def test_a_tcp_transfer_through_both_session_tables_with_gso(dysco_program: Any) -> None:
    from dysco.softswitch.targets.ebpf import EbpfSwitch, VethRig
    from dysco.softswitch.targets.ebpf.netns import in_netns

    data = os.urandom(4 << 20)
    with VethRig([1, 2]) as rig:
        sw = EbpfSwitch(
            dysco_program, ports={1: rig.switch_if(1), 2: rig.switch_if(2)}, netns=rig.name, rig=rig
        )
        cns, sns = f"dyoffc{os.getpid()}", f"dyoffs{os.getpid()}"
        try:
            dut = Dut(dysco_program, device=sw)
            dut.add_session((CLIENT[0], SERVER[0], CLIENT[1], SERVER[1]), TO_NET)
            dut.add_session(FROM_NET, TO_HOST, table=SUBSESSION_IN)
            h1, h2 = rig.host_if(1), rig.host_if(2)
            for ns, h, addr in ((cns, h1, CLIENT[0]), (sns, h2, SERVER_REAL[0])):
                ip("netns", "add", ns)
                ip("-n", rig.name, "link", "set", h, "netns", ns)
                ip("-n", ns, "addr", "add", f"{addr}/16", "dev", h)
                ip("-n", ns, "link", "set", h, "up")
                ethtool(ns, h, "rx", "off")  # the receiver checks every TCP checksum itself
            for s_if in (rig.switch_if(1), rig.switch_if(2)):
                ethtool(rig.name, s_if, "tx", "off", "tso", "off", "gso", "off")  # segment in software
            ip("-n", cns, "neigh", "add", SERVER[0], "lladdr", mac(sns, h2), "dev", h1)
            ip("-n", sns, "neigh", "add", CLIENT[0], "lladdr", mac(cns, h1), "dev", h2)
            with in_netns(rig.name):  # what reaches the program at port 1: GSO packets, we check
                tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
                tap.bind((rig.switch_if(1), 0))
            with in_netns(sns):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with in_netns(cns):
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind(SERVER_REAL)
                listener.listen(1)
                client.settimeout(WAIT_S)
                listener.settimeout(WAIT_S)
                client.bind(CLIENT)
                client.connect(SERVER)  # through session_out, the SYN-ACK through subsession_in
                conn, peer = listener.accept()
                assert peer == (CLIENT[0], TO_NET.src_port)  # the server sees the subsession
                conn.settimeout(WAIT_S)
                got = bytearray()
                client.setblocking(False)
                sent = 0
                biggest = 0
                deadline = time.monotonic() + 4 * WAIT_S
                while len(got) < len(data) and time.monotonic() < deadline:
                    want_w = [client] if sent < len(data) else []
                    r, w, _ = select.select([conn, tap], want_w, [], max(0.0, deadline - time.monotonic()))
                    if tap in r:
                        biggest = max(biggest, len(tap.recv(1 << 17)))
                        r.remove(tap)
                    if w:
                        sent += client.send(data[sent : sent + (256 << 10)])
                    if r:
                        chunk = conn.recv(1 << 20)
                        assert chunk, "the server's side closed early"
                        got += chunk
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), (
                    f"{len(got)} of {len(data)} bytes"
                )
                assert biggest > 1514, "no GSO packet went through the program"
                conn.close()
            finally:
                tap.close()
                client.close()
                listener.close()
        finally:
            sw.close()
            for ns in (cns, sns):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
