"""veth pairs (and a namespace for their far ends) for targets and tests, always removed.

Made with iproute2 commands; nothing parses their output.  IPv6 is switched off on
every end so the kernel sends nothing on them by itself (router solicitations).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from dysco.errors import UserError


class LinkError(UserError):
    """An interface or namespace could not be made."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LinkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _quiet(iface: str, netns: str | None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run(
        [*prefix, "sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1"],
        capture_output=True,
        check=False,
    )


def exists(iface: str) -> bool:
    return subprocess.run(["ip", "link", "show", iface], capture_output=True, check=False).returncode == 0


@dataclass(frozen=True, slots=True)
class Veth:
    """One pair: ``end`` stays here (the switch port), ``peer`` is the host side."""

    end: str
    peer: str
    peer_netns: str | None = None


def create(pairs: Sequence[Veth]) -> None:
    """Create the pairs (and the peers' namespaces); on failure remove what was made."""
    made: list[Veth] = []
    namespaces: list[str] = []
    try:
        for pair in pairs:
            if pair.peer_netns and pair.peer_netns not in namespaces:
                _ip("netns", "add", pair.peer_netns)
                namespaces.append(pair.peer_netns)
            _ip("link", "add", pair.end, "type", "veth", "peer", "name", pair.peer)
            made.append(pair)
            if pair.peer_netns:
                _ip("link", "set", pair.peer, "netns", pair.peer_netns)
            _quiet(pair.end, None)
            _quiet(pair.peer, pair.peer_netns)
            _ip("link", "set", pair.end, "up")
            if pair.peer_netns:
                _ip("-n", pair.peer_netns, "link", "set", pair.peer, "up")
            else:
                _ip("link", "set", pair.peer, "up")
    except BaseException:
        remove(made, namespaces)
        raise


def remove(pairs: Sequence[Veth], namespaces: Sequence[str] = ()) -> None:
    """Remove pairs and namespaces; missing ones are fine (removal must always finish)."""
    for pair in pairs:
        subprocess.run(["ip", "link", "del", pair.end], capture_output=True, check=False)
    for ns in dict.fromkeys([*namespaces, *(p.peer_netns for p in pairs if p.peer_netns)]):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
