"""Values every part of the agent shares: five-tuples and address formatting."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

TCP = 6


def ip_str(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


def ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


@dataclass(frozen=True, slots=True, order=True)
class FiveTuple:
    """A TCP five-tuple; IPv4 addresses as integers."""

    src: int
    dst: int
    sport: int
    dport: int
    proto: int = TCP

    def reversed(self) -> FiveTuple:
        return FiveTuple(self.dst, self.src, self.dport, self.sport, self.proto)

    def __str__(self) -> str:
        return f"{ip_str(self.src)}:{self.sport}->{ip_str(self.dst)}:{self.dport}"

    def as_json(self) -> dict[str, object]:
        return {
            "src": ip_str(self.src),
            "dst": ip_str(self.dst),
            "sport": self.sport,
            "dport": self.dport,
            "proto": self.proto,
        }


class Prefixed(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Log records start with ``[host|component]``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        assert self.extra is not None
        return f"[{self.extra['host']}|{self.extra['component']}] {msg}", kwargs


def prefixed(name: str, host: str, component: str) -> Prefixed:
    return Prefixed(logging.getLogger(name), {"host": host, "component": component})
