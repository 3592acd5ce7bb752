"""The CPU port of the ebpf target: a veth pair between the TC program and the P4Runtime server.

``dc<tag>s`` is the switch side: the program is attached there like on any port, and a
redirect to the CPU port sends the frame out of it.  ``dc<tag>c`` is the controller side: the
server reads packet-ins there with an AF_PACKET socket (the frame with the ``packet_in``
header in front) and writes packet-outs (the ``packet_out`` header in front), which enter the
program at the switch side as packets from the CPU port.

Why a veth and not a BPF ring buffer: one mechanism carries both directions (a ring buffer
only goes kernel -> user; packet-out would still need a way into the pipeline), frames keep
their full length (a ring-buffer record has a size fixed at reservation, and copying a GSO
packet out of a TC program is bounded by the verifier), and the server reads it with the
raw-socket code it already has for the python back end's ports.  IPv6 is off on both ends
so the kernel never sends router solicitations or MLD reports the server would take for
packet-ins.  Its MTU is 65,535, so a full-sized frame with a controller header in front fits.
A pair left by a switch that died (its pid no longer runs) is deleted when the next one
starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

from .netns import NetnsError, _ip, in_netns

CPU_MTU = 65535


class CpuVeth:
    """The veth pair of one switch's CPU port (in namespace ``netns``, or this one)."""

    def __init__(self, tag: str | None = None, netns: str | None = None) -> None:
        self.tag = tag or str(os.getpid())
        self.netns = netns
        self.switch_if = f"dc{self.tag}s"
        self.controller_if = f"dc{self.tag}c"
        self._made = False
        ns = ["-n", netns] if netns else []
        if self._exists():
            _ip(*ns, "link", "del", self.switch_if)  # left by a crashed switch with this pid
        self._clean_dead(ns)
        _ip(*ns, "link", "add", self.switch_if, "type", "veth", "peer", "name", self.controller_if)
        self._made = True
        try:
            for ifname in (self.switch_if, self.controller_if):
                self._no_ipv6(ifname)
                # a full-sized frame plus the packet_in / packet_out header is more than 1500
                _ip(*ns, "link", "set", ifname, "mtu", str(CPU_MTU), "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _clean_dead(ns: list[str]) -> None:
        """Delete the CPU veths of switches that died without cleaning up (``dc<pid>s`` whose
        process is gone); a live switch's pair is left alone."""
        listing = subprocess.run(
            ["ip", *ns, "-o", "link", "show"], capture_output=True, text=True, check=False
        )
        for m in re.finditer(r"^\d+: dc(\d+)s@", listing.stdout, re.MULTILINE):
            pid = int(m.group(1))
            if not pid_alive(pid):
                with contextlib.suppress(NetnsError):  # another switch may be cleaning it too
                    _ip(*ns, "link", "del", f"dc{pid}s")

    def _exists(self) -> bool:
        ns = ["-n", self.netns] if self.netns else []
        try:
            _ip(*ns, "link", "show", "dev", self.switch_if)
        except NetnsError:
            return False
        return True

    def _no_ipv6(self, ifname: str) -> None:
        path = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
        if self.netns:
            with in_netns(self.netns):
                if path.exists():
                    path.write_text("1")
        elif path.exists():
            path.write_text("1")

    def close(self) -> None:
        """Delete the pair (deleting one end deletes both, and the qdisc on it)."""
        if self._made:
            self._made = False
            # NetnsError: the namespace (and the pair with it) is gone already
            with contextlib.suppress(NetnsError):
                _ip(*(["-n", self.netns] if self.netns else []), "link", "del", self.switch_if)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
