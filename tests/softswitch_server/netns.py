"""Network namespaces and veth pairs for tests, made with iproute2 and always removed.

``host_ports(n)`` yields ``n`` veth pairs whose switch ends stay in this namespace
and whose host ends live in a fresh namespace; :func:`raw_socket_in` opens an
AF_PACKET socket on a host end by entering that namespace on the calling thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
ETHERTYPE = b"\x88\xb5"  # IEEE local experimental: nothing else on the link uses it
WAIT_S = 10.0
ETH_P_ALL = 0x0003


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _sysctl_ipv6_off(iface: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run(
        [*prefix, "sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1"],
        check=False,
        capture_output=True,
    )


@dataclass(frozen=True)
class VethPair:
    switch_end: str
    host_end: str


@dataclass(frozen=True)
class Topology:
    netns: str
    pairs: list[VethPair]


@contextlib.contextmanager
def host_ports(n: int) -> Iterator[Topology]:
    tag = f"{os.getpid() % 100000}"
    netns = f"dysco-ss-{tag}"
    pairs = [VethPair(f"dss{tag}s{i}", f"dss{tag}h{i}") for i in range(n)]
    ip("netns", "add", netns)
    try:
        for p in pairs:
            ip("link", "add", p.switch_end, "type", "veth", "peer", "name", p.host_end)
            ip("link", "set", p.host_end, "netns", netns)
            _sysctl_ipv6_off(p.switch_end)
            _sysctl_ipv6_off(p.host_end, netns)
            ip("link", "set", p.switch_end, "up")
            ip("-n", netns, "link", "set", p.host_end, "up")
        yield Topology(netns, pairs)
    finally:
        for p in pairs:
            subprocess.run(["ip", "link", "del", p.switch_end], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def raw_socket_in(netns: str, iface: str) -> socket.socket:
    """An AF_PACKET socket bound to ``iface`` inside ``netns`` (only this thread switches)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((iface, 0))
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)
    return sock


def frame(tag: bytes) -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ETHERTYPE + tag + bytes(max(0, 46 - len(tag)))


def expect_frame(sock: socket.socket, tag: bytes) -> bytes:
    """The first frame on ``sock`` with our ethertype; others (none expected) are skipped."""
    deadline = time.monotonic() + WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            data = sock.recv(65535)
            if data[12:14] == ETHERTYPE:
                assert data[14 : 14 + len(tag)] == tag, data.hex()
                return data
    raise AssertionError(f"no frame with tag {tag!r} within {WAIT_S}s")
