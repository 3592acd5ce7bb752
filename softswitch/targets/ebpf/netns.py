"""Network namespaces and veth pairs for driving a TC program from user space (STF, tests).

:class:`VethRig` makes a namespace ``NAME`` and, per switch port ``N``, a veth pair
``s<tag>p<N>`` (the switch side, where the program is attached) / ``h<tag>p<N>`` (the
host side, where raw sockets send and receive).  IPv6 is off in the namespace so the
kernel sends nothing of its own on these links.  :meth:`VethRig.close` deletes the
namespace, which deletes the veths and every qdisc and filter on them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from dysco.errors import UserError

CLONE_NEWNET = 0x40000000
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003


class NetnsError(UserError):
    """A namespace or veth could not be made (not root, no iproute2, ...)."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread in namespace ``name`` (sockets made inside stay there)."""
    libc = ctypes.CDLL(None, use_errno=True)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            raise NetnsError(f"setns {name}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            libc.setns(here, CLONE_NEWNET)
    finally:
        os.close(here)
        os.close(there)


RIG_MTU = 65000
"""The MTU of the rig's veths."""


class VethRig:
    def __init__(self, ports: list[int], tag: str | None = None) -> None:
        self.tag = tag or str(os.getpid())
        self.name = f"dyebpf{self.tag}"
        self.ports = sorted(ports)
        self.socks: dict[int, socket.socket] = {}
        self._made = False
        try:
            if Path(f"/run/netns/{self.name}").exists():
                _ip("netns", "del", self.name)  # left by a crashed run of this pid
            _ip("netns", "add", self.name)
            self._made = True
            _ip("-n", self.name, "link", "set", "lo", "up")
            with in_netns(self.name):
                for key in ("all", "default"):
                    Path(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6").write_text("1")
            for p in self.ports:
                _ip(
                    "-n",
                    self.name,
                    "link",
                    "add",
                    self.switch_if(p),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    self.host_if(p),
                )
                for ifname in (self.switch_if(p), self.host_if(p)):
                    # room for the frames a sender with TSO hands over (GSO packets up to 64 KB)
                    _ip("-n", self.name, "link", "set", ifname, "mtu", str(RIG_MTU), "up")
            with in_netns(self.name):
                for p in self.ports:
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                    s.bind((self.host_if(p), 0))
                    s.setblocking(False)
                    self.socks[p] = s
        except BaseException:
            self.close()
            raise

    def switch_if(self, port: int) -> str:
        return f"s{self.tag}p{port}"

    def host_if(self, port: int) -> str:
        return f"h{self.tag}p{port}"

    def send(self, port: int, frame: bytes) -> None:
        self.socks[port].send(frame)

    def drain(self) -> list[tuple[int, bytes]]:
        """Every frame waiting on the host sides (not the ones they sent), by port."""
        got: list[tuple[int, bytes]] = []
        for p, s in self.socks.items():
            while True:
                try:
                    data, addr = s.recvfrom(65536)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING:
                    got.append((p, data))
        return got

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        if self._made:
            self._made = False
            _ip("netns", "del", self.name)

    def __enter__(self) -> VethRig:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
