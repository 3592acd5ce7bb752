"""A free TCP port on 127.0.0.1 for a benchmark's P4Runtime servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the kernel just handed out and took back (free unless something takes it first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
