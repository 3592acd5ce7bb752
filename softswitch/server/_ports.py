"""Packet ports: AF_PACKET raw sockets bound to interfaces, and in-memory ports.

Both deliver received frames to a ``receive(port, frame, vnet)`` callback (the core) and
take frames to send through :meth:`transmit`.  The raw-socket ports run one
receive thread (``ports-rx``) owned by :class:`RawSocketPorts`, which multiplexes
all sockets with a selector and a wake-up socket pair for shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
from collections.abc import Callable, Mapping

from dysco.softswitch.server._drops import Drops, receive_overruns
from dysco.softswitch.server._offload import VNET_HDR_LEN, OffloadError, VnetHdr

_log = logging.getLogger("dysco.softswitch.server.ports")

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_VNET_HDR = 15
MAX_FRAME = 256 * 1024
"""Room for a GSO packet (64 KB, or more with BIG TCP) behind its headers."""

Receive = Callable[[int, bytes, VnetHdr | None], None]


class PortError(OSError):
    """An interface cannot be opened."""


class RawSocketPorts:
    """``port number -> interface`` with one AF_PACKET socket each.

    ``vnet_hdr=True`` sets ``PACKET_VNET_HDR`` on every socket: the kernel's ``virtio_net_hdr``
    in front of each frame received (see :mod:`._offload`) says whether it is a GSO packet or
    its checksum is still to be finished, and goes to ``receive`` parsed; each frame sent gets
    an empty one."""

    def __init__(self, interfaces: Mapping[int, str], *, vnet_hdr: bool = False) -> None:
        self._interfaces = dict(interfaces)
        self._vnet = b"\0" * VNET_HDR_LEN if vnet_hdr else b""
        self._sockets: dict[int, socket.socket] = {}
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self.drops = Drops()
        """Frames lost in the kernel on these ports (:meth:`poll_drops` reads the sockets)."""
        try:
            for port, iface in self._interfaces.items():
                self._sockets[port] = _open(iface, vnet_hdr)
        except OSError:
            self.close()
            raise

    @property
    def interfaces(self) -> dict[int, str]:
        return dict(self._interfaces)

    def start(self, receive: Receive) -> None:
        self._thread = threading.Thread(target=self._run, args=(receive,), name="ports-rx", daemon=True)
        self._thread.start()

    def transmit(self, port: int, frame: bytes) -> None:
        sock = self._sockets.get(port)
        if sock is None:
            _log.debug("[ports] no port %d; %d bytes dropped", port, len(frame))
            return
        try:
            sock.send(self._vnet + frame if self._vnet else frame)
        except OSError as exc:
            self.drops.add(f"port {port} ({self._interfaces[port]}): send failed ({exc.strerror or exc})")
            _log.debug("[ports] port %d (%s): send failed: %s", port, self._interfaces[port], exc)

    def poll_drops(self) -> None:
        """Add what the kernel dropped at each socket's full receive queue since the last call."""
        for port, sock in list(self._sockets.items()):
            self.drops.add(
                f"port {port} ({self._interfaces[port]}): receive queue full", receive_overruns(sock)
            )

    def _run(self, receive: Receive) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            for port, sock in self._sockets.items():
                sel.register(sock, selectors.EVENT_READ, port)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.data is None:
                        return
                    self._read_one(key.data, self._sockets[key.data], receive)

    def _read_one(self, port: int, sock: socket.socket, receive: Receive) -> None:
        try:
            frame, addr = sock.recvfrom(MAX_FRAME)
        except BlockingIOError:
            return
        except OSError as exc:
            _log.warning("[ports] port %d: receive failed: %s", port, exc)
            return
        if addr[2] == PACKET_OUTGOING:
            return
        vnet = None
        if self._vnet:
            try:
                vnet, frame = VnetHdr.split(frame)
            except OffloadError as exc:
                _log.warning("[ports] port %d: %s", port, exc)
                return
        try:
            receive(port, frame, vnet)
        except Exception:
            _log.exception("[ports] port %d: frame handling failed", port)

    def close(self) -> None:
        """Stop the receive thread and close every socket.  Idempotent."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                _log.error("[ports] receive thread did not stop")
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._wake_r.close()
        self._wake_w.close()


def _open(iface: str, vnet_hdr: bool = False) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as exc:
        raise PortError(f"cannot open a raw socket for {iface} (needs root or CAP_NET_RAW): {exc}") from exc
    try:
        sock.bind((iface, 0))
        # Older kernels lack this option; outgoing frames are then filtered by packet type.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        if vnet_hdr:
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise PortError(f"cannot bind a raw socket to interface {iface!r}: {exc}") from exc
    return sock


class MemoryPorts:
    """In-memory ports for tests and simulation.

    :meth:`inject` hands a frame to the switch as if it arrived on a port (in the
    caller's thread); frames the switch sends out are queued per port and read with
    :meth:`get`.
    """

    def __init__(self) -> None:
        self._receive: Receive | None = None
        self._out: dict[int, queue.Queue[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, receive: Receive) -> None:
        self._receive = receive

    def inject(self, port: int, frame: bytes) -> None:
        if self._receive is None:
            raise RuntimeError("MemoryPorts.inject before the switch started")
        self._receive(port, frame, None)

    def transmit(self, port: int, frame: bytes) -> None:
        self._queue(port).put(frame)

    def get(self, port: int, timeout: float = 5.0) -> bytes:
        """The next frame sent on ``port``; raises ``queue.Empty`` after ``timeout`` seconds."""
        return self._queue(port).get(timeout=timeout)

    def pending(self, port: int) -> int:
        return self._queue(port).qsize()

    def _queue(self, port: int) -> queue.Queue[bytes]:
        with self._lock:
            return self._out.setdefault(port, queue.Queue())

    def close(self) -> None:
        self._receive = None
