"""The reference state hook: a Linux netfilter firewall's connection tracking entry for a session
(``dysco agent --state-hook conntrack``), exported and imported over ctnetlink with pyroute2.

What moves, and why that is enough: the entry's TCP state, each direction's flags (window
scaling and SACK advertised, liberal tracking) and window scale factors, its mark and remaining
timeout.  ctnetlink cannot set an entry's window tracking counters (``td_end``, ``td_maxend``,
``td_maxwin``); an entry created without them picks them up from the first packet it sees each
way, as conntrack does for a connection it takes over in mid-stream, and from then on tracks
windows strictly with the scale factors the original handshake negotiated.  An entry the new
firewall made itself from the new path's handshake (which carries no window scale option, so
its windows would be read unscaled and most segments would fall outside them) is replaced.

The state bytes are this module's own, fixed format (:data:`STATE`); every field is checked when
imported.  No shell and no external program is involved: one netlink socket per call, opened in
the middlebox's network namespace when one is configured.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

from dysco.runtime.core import HookError, View
from dysco.runtime.core._layout import Field, Layout, LayoutMismatch
from dysco.runtime.core._types import TCP, FiveTuple, ip_str

MAGIC = 0x4354
"""``CT``."""
VERSION = 1
STATE = Layout(
    Field("magic", "H", const=MAGIC),
    Field("version", "B", const=VERSION),
    Field("tcp_state", "B"),
    Field("flags_orig", "B"),
    Field("flags_reply", "B"),
    Field("wscale_orig", "B"),
    Field("wscale_reply", "B"),
    Field("mark", "I"),
    Field("timeout", "I"),
)
"""The exported state, 16 bytes, network byte order."""

# linux/netfilter/nf_conntrack_tcp.h, nf_conntrack_common.h
TCP_STATES = {3: "ESTABLISHED", 4: "FIN_WAIT", 5: "CLOSE_WAIT", 6: "LAST_ACK", 7: "TIME_WAIT", 8: "CLOSE"}
"""The states an entry may be migrated in (a half-open connection is not worth moving)."""
FLAGS = 0x01 | 0x02 | 0x04 | 0x08 | 0x10
"""WINDOW_SCALE, SACK_PERM, CLOSE_INIT, BE_LIBERAL, DATA_UNACKNOWLEDGED: what may be set."""
MAX_WSCALE = 14
MAX_TIMEOUT = 5 * 24 * 3600
"""conntrack's ESTABLISHED timeout (nf_conntrack_tcp_timeout_established), seconds."""
IPS_SEEN_REPLY = 0x02
IPS_ASSURED = 0x04
IPS_CONFIRMED = 0x08


@dataclass(frozen=True, slots=True)
class Entry:
    """The part of a conntrack entry that moves."""

    tcp_state: int
    flags: tuple[int, int]
    wscale: tuple[int, int]
    mark: int
    timeout: int

    def to_bytes(self) -> bytes:
        return STATE.pack(
            {
                "tcp_state": self.tcp_state,
                "flags_orig": self.flags[0],
                "flags_reply": self.flags[1],
                "wscale_orig": self.wscale[0],
                "wscale_reply": self.wscale[1],
                "mark": self.mark,
                "timeout": self.timeout,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """The entry in ``data``; :class:`HookError` for anything but a valid one."""
        if len(data) != STATE.size:
            raise HookError(f"conntrack state of {len(data)} bytes (expected {STATE.size})")
        try:
            f = STATE.unpack(data)
        except LayoutMismatch as exc:
            raise HookError(f"conntrack state: {exc.field} is {exc.value!r}") from None
        v = {k: int(x) if isinstance(x, int) else 0 for k, x in f.items()}
        e = cls(
            v["tcp_state"],
            (v["flags_orig"], v["flags_reply"]),
            (v["wscale_orig"], v["wscale_reply"]),
            v["mark"],
            v["timeout"],
        )
        e.check()
        return e

    def check(self) -> None:
        if self.tcp_state not in TCP_STATES:
            raise HookError(
                f"TCP state {self.tcp_state} cannot be migrated (only {', '.join(TCP_STATES.values())})"
            )
        for f in self.flags:
            if f & ~FLAGS:
                raise HookError(f"TCP flags {f:#x} (known: {FLAGS:#x})")
        for w in self.wscale:
            if w > MAX_WSCALE:
                raise HookError(f"window scale {w} > {MAX_WSCALE}")
        if not 1 <= self.timeout <= MAX_TIMEOUT:
            raise HookError(f"timeout {self.timeout} s (1 to {MAX_TIMEOUT})")


CLONE_NEWNET = 0x40000000
NETLINK_NETFILTER = 12


def _netlink_in(netns: str) -> int:
    """A ctnetlink socket of network namespace ``netns`` (its descriptor): this thread enters the
    namespace to open it, then goes back (a socket belongs to the namespace it was made in, and
    setns changes the calling thread's only; no process is forked, the agent's gRPC threads
    live on)."""
    if not netns or "/" in netns or netns in (".", ".."):
        raise HookError(f"network namespace {netns!r}")
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    except OSError as exc:
        os.close(own)
        raise HookError(f"network namespace {netns}: {exc.strerror}") from None
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise HookError(f"cannot enter network namespace {netns}: {os.strerror(ctypes.get_errno())}")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:  # never leave a worker thread in another namespace
                raise SystemError(
                    f"cannot return to the agent's network namespace: {os.strerror(ctypes.get_errno())}"
                )
        return sock.detach()
    finally:
        os.close(own)
        os.close(target)


def _tuple(t: FiveTuple) -> Any:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    return NFCTAttrTuple(saddr=ip_str(t.src), daddr=ip_str(t.dst), proto=TCP, sport=t.sport, dport=t.dport)


def _attr(msg: Any, name: str) -> Any:
    value = msg.get_attr(name)
    if value is None:
        raise HookError(f"the kernel's entry has no {name}")
    return value


class ConntrackHook:
    """Exports and imports conntrack entries in network namespace ``netns`` ("": the agent's)."""

    name = "conntrack"

    def __init__(self, netns: str = "") -> None:
        self.netns = netns

    def _socket(self) -> Any:
        from pyroute2 import NFCTSocket

        try:
            return NFCTSocket(fileno=_netlink_in(self.netns)) if self.netns else NFCTSocket()
        except OSError as exc:
            where = f" in {self.netns}" if self.netns else ""
            raise HookError(f"no ctnetlink socket{where}: {exc.strerror or exc}") from None

    def export_state(self, view: View) -> bytes:
        from pyroute2.netlink.exceptions import NetlinkError

        sock = self._socket()
        try:
            answer = sock.entry("get", tuple_orig=_tuple(view.orig))
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise HookError(f"no conntrack entry for {view.orig}") from None
            raise HookError(f"get {view.orig}: {exc}") from None
        finally:
            sock.close()
        found = [m for m in answer if m.get_attr("CTA_TUPLE_ORIG") is not None]
        if not found:
            raise HookError(f"no conntrack entry for {view.orig}")
        answer = found[0]
        tcp = _attr(_attr(answer, "CTA_PROTOINFO"), "CTA_PROTOINFO_TCP")
        flags = tuple(int(_attr(tcp, f"CTA_PROTOINFO_TCP_FLAGS_{d}")[0]) for d in ("ORIGINAL", "REPLY"))
        wscale = tuple(int(tcp.get_attr(f"CTA_PROTOINFO_TCP_WSCALE_{d}") or 0) for d in ("ORIGINAL", "REPLY"))
        e = Entry(
            int(_attr(tcp, "CTA_PROTOINFO_TCP_STATE")),
            (flags[0] & FLAGS, flags[1] & FLAGS),
            (wscale[0], wscale[1]),
            int(answer.get_attr("CTA_MARK") or 0),
            max(1, int(_attr(answer, "CTA_TIMEOUT"))),
        )
        e.check()
        return e.to_bytes()

    def import_state(self, state: bytes, view: View) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        e = Entry.from_bytes(state)
        tcp = [
            ["CTA_PROTOINFO_TCP_STATE", e.tcp_state],
            ["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", {"value": (e.flags[0], FLAGS)}],
            ["CTA_PROTOINFO_TCP_FLAGS_REPLY", {"value": (e.flags[1], FLAGS)}],
            ["CTA_PROTOINFO_TCP_WSCALE_ORIGINAL", e.wscale[0]],
            ["CTA_PROTOINFO_TCP_WSCALE_REPLY", e.wscale[1]],
        ]
        sock = self._socket()
        try:
            try:  # the entry the new path's handshake made here (its windows unscaled) goes first
                sock.entry("del", tuple_orig=_tuple(view.orig))
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise HookError(f"delete {view.orig}: {exc}") from None
            sock.entry(
                "add",
                tuple_orig=_tuple(view.orig),
                tuple_reply=_tuple(view.reply),
                status=IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED,
                timeout=e.timeout,
                mark=e.mark,
                protoinfo={"attrs": [["CTA_PROTOINFO_TCP", {"attrs": tcp}]]},
            )
        except NetlinkError as exc:
            raise HookError(f"create {view.orig}: {exc}") from None
        finally:
            sock.close()


def entries(netns: str = "") -> list[dict[str, object]]:
    """The TCP conntrack entries of ``netns`` (for tests and ``dysco ctl``-style inspection)."""
    hook = ConntrackHook(netns)
    sock = hook._socket()
    try:
        rows = []
        for msg in sock.dump():
            orig = msg.get_attr("CTA_TUPLE_ORIG")
            if orig is None:
                continue
            ip, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
            if proto is None or proto.get_attr("CTA_PROTO_NUM") != socket.IPPROTO_TCP:
                continue
            info = msg.get_attr("CTA_PROTOINFO")
            tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
            rows.append(
                {
                    "src": ip.get_attr("CTA_IP_V4_SRC"),
                    "dst": ip.get_attr("CTA_IP_V4_DST"),
                    "sport": proto.get_attr("CTA_PROTO_SRC_PORT"),
                    "dport": proto.get_attr("CTA_PROTO_DST_PORT"),
                    "state": TCP_STATES.get(tcp.get_attr("CTA_PROTOINFO_TCP_STATE"), "other") if tcp else "",
                    "wscale": (
                        (
                            tcp.get_attr("CTA_PROTOINFO_TCP_WSCALE_ORIGINAL"),
                            tcp.get_attr("CTA_PROTOINFO_TCP_WSCALE_REPLY"),
                        )
                        if tcp
                        else None
                    ),
                }
            )
        return rows
    finally:
        sock.close()
