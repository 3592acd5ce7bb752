"""``splice(sock_in, sock_out, delta=0)``: a TCP-terminating proxy steps out of a session.

The proxy gives its two connected TCP sockets — ``sock_in`` the connection it accepted (client
-> proxy), ``sock_out`` the one it opened (proxy -> server) — and the number of bytes it added
to the client's stream before writing it to ``sock_out`` (negative: removed; ``delta_rev`` the
same for the server's stream).  This module collects what the local agent needs from the two
sockets — both four-tuples as the proxy sees them and what the kernel reports about each
(``TCP_INFO``: negotiated SACK, timestamps and window scales, MSS, bytes acked and received; the
bytes queued unread and unsent) — and asks the agent over its management socket.  The agent's
core computes the sequence deltas and removes the proxy (docs/architecture.md, the splice phase); the call
returns its outcome.  Until it returns ``ok`` the proxy keeps relaying; after, it must not touch
the two sockets again (it may close them once the agent is done: their packets are dropped).

``dysco ctl splice`` does the same for sockets of another process, reading the kernel's view
with ``ss -ti``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dysco.errors import UserError
from dysco.runtime._mgmt import DEFAULT_SOCKET, request
from dysco.runtime.core._types import FiveTuple, ip_int

SPLICE_TIMEOUT_S = 10.0
ANSWER_MARGIN_S = 5.0
MAX_DELTA = (1 << 31) - 1

# struct tcp_info (linux/tcp.h) up to tcpi_bytes_received, native alignment
_TCP_INFO = struct.Struct("@8B24I4Q")
_OPT_TIMESTAMPS, _OPT_SACK, _OPT_WSCALE = 1, 2, 4
_TCP_ESTABLISHED = 1
_SIOCINQ, _SIOCOUTQ = 0x541B, 0x5411

Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Kernel:
    """What the kernel says about one of the proxy's TCP connections."""

    sack: bool
    timestamps: bool
    wscale: bool
    snd_wscale: int
    """The peer's window scale: the windows it advertises are shifted by it."""
    rcv_wscale: int
    """The proxy's window scale, for the windows it advertises."""
    snd_mss: int
    rcv_mss: int
    bytes_acked: int
    """Bytes the peer has acknowledged (RFC 4898 HCThruOctetsAcked)."""
    bytes_received: int
    """Bytes received in order (HCThruOctetsReceived)."""
    unread: int
    """Received, not yet read by the proxy."""
    unsent: int
    """Written by the proxy, not yet acknowledged by the peer."""


@dataclass(frozen=True, slots=True)
class Side:
    """One of the two connections: the proxy's own address and port and its peer's."""

    local: Endpoint
    peer: Endpoint
    kernel: Kernel | None = None

    @classmethod
    def bare(cls, local: Endpoint, peer: Endpoint) -> Side:
        return cls(local, peer)

    def as_json(self) -> dict[str, Any]:
        return {
            "local": {"addr": self.local[0], "port": self.local[1]},
            "peer": {"addr": self.peer[0], "port": self.peer[1]},
            "kernel": asdict(self.kernel) if self.kernel is not None else None,
        }


@dataclass(frozen=True, slots=True)
class SpliceResult:
    ok: bool
    outcome: str
    message: str
    details: dict[str, Any]
    """The agent's whole answer."""


def splice(
    sock_in: socket.socket,
    sock_out: socket.socket,
    delta: int = 0,
    *,
    delta_rev: int = 0,
    mgmt: str = DEFAULT_SOCKET,
    timeout: float = SPLICE_TIMEOUT_S,
) -> SpliceResult:
    """Ask the local agent (management socket ``mgmt``) to splice the proxy's connections
    ``sock_in`` (accepted from the client) and ``sock_out`` (opened to the server) and remove
    the proxy from the session; blocks until the agent answers (at most ``timeout`` seconds
    plus a margin).  Raises :class:`UserError` for sockets that are not two established TCP
    connections over IPv4 or when no agent answers."""
    if sock_in.fileno() == sock_out.fileno():
        raise UserError("splice: sock_in and sock_out are the same socket")
    return request_splice(
        side_of(sock_in, "sock_in"), side_of(sock_out, "sock_out"), delta, delta_rev, mgmt, timeout
    )


def side_of(sock: socket.socket, name: str) -> Side:
    """The four-tuple and the kernel's view of a connected TCP socket of this process."""
    if sock.fileno() < 0:
        raise UserError(f"splice: {name} is closed")
    if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
        raise UserError(f"splice: {name} is not a TCP socket over IPv4")
    try:
        local, peer = sock.getsockname(), sock.getpeername()
    except OSError as exc:
        raise UserError(f"splice: {name} is not connected ({exc.strerror})") from None
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
    f = _TCP_INFO.unpack(raw.ljust(_TCP_INFO.size, b"\0"))
    state, options, wscales = f[0], f[5], f[6]
    if state != _TCP_ESTABLISHED:
        raise UserError(f"splice: {name} is not an established connection (TCP state {state})")
    snd_mss, rcv_mss = f[8 + 2], f[8 + 3]
    bytes_acked, bytes_received = f[8 + 24 + 2], f[8 + 24 + 3]
    kernel = Kernel(
        sack=bool(options & _OPT_SACK),
        timestamps=bool(options & _OPT_TIMESTAMPS),
        wscale=bool(options & _OPT_WSCALE),
        snd_wscale=wscales & 0xF,
        rcv_wscale=wscales >> 4,
        snd_mss=snd_mss,
        rcv_mss=rcv_mss,
        bytes_acked=bytes_acked,
        bytes_received=bytes_received,
        unread=_ioctl_int(sock, _SIOCINQ),
        unsent=_ioctl_int(sock, _SIOCOUTQ),
    )
    return Side((local[0], local[1]), (peer[0], peer[1]), kernel)


def _ioctl_int(sock: socket.socket, op: int) -> int:
    value: int = struct.unpack("@i", fcntl.ioctl(sock.fileno(), op, b"\0\0\0\0"))[0]
    return value


def request_splice(
    inbound: Side, outbound: Side, delta: int, delta_rev: int, mgmt: str, timeout: float
) -> SpliceResult:
    for name, value in (("delta", delta), ("delta_rev", delta_rev)):
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_DELTA:
            raise UserError(f"splice: {name} must be an integer of magnitude below 2**31, not {value!r}")
    if inbound.local[0] != outbound.local[0]:
        raise UserError(
            f"splice: the proxy's two connections have different local addresses "
            f"({inbound.local[0]}, {outbound.local[0]})"
        )
    args = {
        "in": inbound.as_json(),
        "out": outbound.as_json(),
        "delta": delta,
        "delta_rev": delta_rev,
        "timeout": timeout,
    }
    answer = request(mgmt, "splice", args, timeout=timeout + ANSWER_MARGIN_S)
    assert isinstance(answer, dict)
    return SpliceResult(
        bool(answer.get("ok")), str(answer.get("outcome")), str(answer.get("message")), answer
    )


# ---- for dysco ctl splice: the command line's four-tuples, the kernel's view through ss -----------


def parse_pair(text: str, flag: str) -> tuple[Endpoint, Endpoint]:
    """``SRC:PORT-DST:PORT`` (or ``->``): a connection from left to right (client -> proxy,
    proxy -> server)."""
    key = text.replace(" ", "").replace("->", "-")
    parts = key.split("-")
    if len(parts) != 2:
        raise UserError(f"{flag} {text!r}: expected SRC:PORT-DST:PORT")
    return _endpoint(parts[0], flag, text), _endpoint(parts[1], flag, text)


def _endpoint(text: str, flag: str, whole: str) -> Endpoint:
    addr, sep, port = text.rpartition(":")
    try:
        ip = str(ipaddress.IPv4Address(addr))
        number = int(port)
    except ValueError:
        raise UserError(f"{flag} {whole!r}: {text!r} is not ADDR:PORT") from None
    if not sep or not 0 < number < 65536:
        raise UserError(f"{flag} {whole!r}: port {port!r} out of range")
    return ip, number


def side_from_ss(local: Endpoint, peer: Endpoint, shown: str = "") -> Side:
    """The kernel's view of an established connection of any process in this network namespace
    (``shown``: the connection as the user wrote it, for the error)."""
    argv = [
        "ss", "-tinoH", "state", "established",
        "src", f"{local[0]}:{local[1]}", "dst", f"{peer[0]}:{peer[1]}",
    ]  # fmt: skip
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"ss failed ({exc}); give --no-kernel-info") from None
    kernel = parse_ss(out)
    if kernel is None:
        shown = shown or f"{local[0]}:{local[1]}-{peer[0]}:{peer[1]}"
        raise UserError(
            f"no established TCP connection {shown} in this network "
            "namespace: run the command where the proxy runs (ip netns exec NS ...) or give --no-kernel-info"
        )
    return Side(local, peer, kernel)


def parse_ss(out: str) -> Kernel | None:
    """The first connection of ``ss -tinoH state established ...`` output, or None."""
    words = out.split()
    if len(words) < 4:
        return None
    unread, unsent = int(words[0]), int(words[1])
    values: dict[str, str] = {}
    for w in words[4:]:
        name, sep, value = w.partition(":")
        values.setdefault(name, value if sep else "")
    snd, _, rcv = values.get("wscale", "0,0").partition(",")
    return Kernel(
        sack="sack" in values,
        timestamps="ts" in values,
        wscale="wscale" in values,
        snd_wscale=int(snd or 0),
        rcv_wscale=int(rcv or 0),
        snd_mss=int(values.get("mss", 0) or 0),
        rcv_mss=int(values.get("rcvmss", 0) or 0),
        bytes_acked=int(values.get("bytes_acked", 0) or 0),
        bytes_received=int(values.get("bytes_received", 0) or 0),
        unread=unread,
        unsent=unsent,
    )


# ---- the agent's side: the request, checked -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpliceRequest:
    """A ``splice`` management request, checked: the two connections left to right as the proxy
    sees them (``inbound`` client -> proxy, ``outbound`` proxy -> server)."""

    inbound: FiveTuple
    outbound: FiveTuple
    delta: int
    delta_rev: int
    kernel_in: Kernel | None
    kernel_out: Kernel | None
    timeout: float


def parse_request(args: Mapping[str, Any]) -> SpliceRequest:
    """The management request's arguments; :class:`UserError` names what is wrong."""
    sides = []
    for name in ("in", "out"):
        side = args.get(name)
        if not isinstance(side, dict):
            raise UserError(f"splice: {name!r} must be an object with local, peer and kernel")
        local, peer = (
            _json_endpoint(side.get("local"), f"{name}.local"),
            _json_endpoint(side.get("peer"), f"{name}.peer"),
        )
        sides.append((local, peer, _json_kernel(side.get("kernel"), f"{name}.kernel")))
    (in_local, in_peer, k_in), (out_local, out_peer, k_out) = sides
    if in_local[0] != out_local[0]:
        raise UserError(f"splice: in.local {in_local[0]} and out.local {out_local[0]} differ")
    deltas = []
    for name in ("delta", "delta_rev"):
        value = args.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_DELTA:
            raise UserError(f"splice: {name} must be an integer of magnitude below 2**31, not {value!r}")
        deltas.append(value)
    timeout = args.get("timeout", SPLICE_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise UserError(f"splice: timeout must be a number of seconds in (0, 600], not {timeout!r}")
    inbound = FiveTuple(ip_int(in_peer[0]), ip_int(in_local[0]), in_peer[1], in_local[1])
    outbound = FiveTuple(ip_int(out_local[0]), ip_int(out_peer[0]), out_local[1], out_peer[1])
    if inbound == outbound.reversed() or inbound == outbound:
        raise UserError("splice: in and out are the same connection")
    return SpliceRequest(inbound, outbound, deltas[0], deltas[1], k_in, k_out, float(timeout))


def _json_endpoint(value: object, where: str) -> Endpoint:
    if not isinstance(value, dict):
        raise UserError(f"splice: {where} must be {{addr, port}}, not {value!r}")
    addr, port = value.get("addr"), value.get("port")
    try:
        ip = str(ipaddress.IPv4Address(addr)) if isinstance(addr, str) else ""
    except ipaddress.AddressValueError:
        ip = ""
    if not ip:
        raise UserError(f"splice: {where}.addr {addr!r} is not an IPv4 address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"splice: {where}.port {port!r} is not a TCP port")
    return ip, port


def _json_kernel(value: object, where: str) -> Kernel | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(f"splice: {where} must be an object or null")
    fields: dict[str, Any] = {}
    for name, kind in Kernel.__annotations__.items():
        v = value.get(name)
        is_int = isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64
        if (kind == "bool" and isinstance(v, bool)) or (kind == "int" and is_int):
            fields[name] = v
        else:
            raise UserError(f"splice: {where}.{name} must be {kind}, not {v!r}")
    if fields["snd_wscale"] > 14 or fields["rcv_wscale"] > 14:
        raise UserError(f"splice: {where}: window scales above 14 (RFC 7323)")
    return Kernel(**fields)
