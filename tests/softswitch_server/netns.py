"""Network namespaces and veth pairs for tests, made with iproute2 and always removed.

``host_ports(n)`` yields ``n`` veth pairs (made by :mod:`dysco.bmv2.links`) whose switch ends
stay in this namespace and whose host ends live in a fresh namespace; :func:`raw_socket_in` opens an
AF_PACKET socket on a host end by entering that namespace on the calling thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from dysco.bmv2 import links

CLONE_NEWNET = 0x40000000
ETHERTYPE = b"\x88\xb5"  # IEEE local experimental: nothing else on the link uses it
WAIT_S = 10.0
ETH_P_ALL = 0x0003


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
    veths = [links.Veth(f"dss{tag}s{i}", f"dss{tag}h{i}", netns) for i in range(n)]
    links.create(veths)
    try:
        yield Topology(netns, [VethPair(v.end, v.peer) for v in veths])
    finally:
        links.remove(veths)


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
