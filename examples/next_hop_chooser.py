"""A middlebox application that chooses the next hop of the sessions it forwards (paper §2.2; the
middlebox API of dysco.runtime: prepend_hops).

    iptables -I FORWARD -p tcp --syn -j NFQUEUE --queue-num 0
    python examples/next_hop_chooser.py --hop 10.0.5.2 --dport 9000 --mgmt /tmp/dr-fw1.sock

The host forwards the sessions' packets itself (a firewall, a router); the rule above hands it
every SYN it forwards first, through netfilter's queue (NFQUEUE, spoken here over netlink with
no library).  For a SYN to a port in --dport (any port without it) the application asks its agent
to put --hop (repeatable: several, in order) ahead of the rest of the session's chain, with the
SYN's five-tuple, and only then lets the SYN go on: the agent opens the next subsession toward
the chosen hop when it sees the SYN come back out.  A SYN of no Dysco session (or a retransmitted
one whose first copy went on) goes on unchanged.  Lines it prints::

    next_hop_chooser: queue 0
    chose 10.0.1.2:41000->10.0.3.2:9000: on through 10.0.5.2 10.0.3.2
    passed 10.0.1.2:41002->10.0.3.2:22: not a chosen port
    passed 10.0.1.2:41000->10.0.3.2:9000: hops: no session ... (the agent's reason)
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import signal
import socket
import struct
import sys
from collections.abc import Iterator

from dysco.errors import DyscoError
from dysco.runtime import prepend_hops

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_PACKET = 1, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1
NLMSG = struct.Struct("=IHHII")
"""struct nlmsghdr: length, type, flags, sequence number, port id."""
NLA = struct.Struct("=HH")
SYN, ACK = 0x02, 0x10


class Queue:
    """One netfilter queue of this network namespace, over a netlink socket."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0
        self._config(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)))
        self._config(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0xFFFF, NFQNL_COPY_PACKET)))

    def _send(self, msg_type: int, flags: int, family: int, attrs: bytes) -> None:
        self.seq += 1
        body = struct.pack("=BB", family, 0) + struct.pack("!H", self.number) + attrs
        head = NLMSG.pack(NLMSG.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self.seq, 0)
        self.sock.send(head + body)

    def _config(self, attrs: bytes) -> None:
        self._send(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, socket.AF_UNSPEC, attrs)
        data = self.sock.recv(1 << 16)
        _length, kind, _flags, _seq, _pid = NLMSG.unpack_from(data)
        error = struct.unpack_from("=i", data, NLMSG.size)[0] if kind == NLMSG_ERROR else 0
        if error:
            raise OSError(-error, f"binding netfilter queue {self.number}: {errno.errorcode.get(-error)}")

    def packets(self) -> Iterator[tuple[int, bytes]]:
        """(packet id, IP packet) for each packet the kernel queues."""
        while True:
            data = self.sock.recv(1 << 17)
            at = 0
            while at + NLMSG.size <= len(data):
                length, kind, _flags, _seq, _pid = NLMSG.unpack_from(data, at)
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    attrs = dict(_attrs(data[at + NLMSG.size + 4 : at + length]))
                    packet_id = struct.unpack_from("!I", attrs[NFQA_PACKET_HDR])[0]
                    yield packet_id, attrs.get(NFQA_PAYLOAD, b"")
                at += (length + 3) & ~3

    def accept(self, packet_id: int) -> None:
        self._send(NFQNL_MSG_VERDICT, NLM_F_REQUEST, socket.AF_UNSPEC,
                   _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id)))  # fmt: skip


def _attr(kind: int, value: bytes) -> bytes:
    raw = NLA.pack(NLA.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    while at + NLA.size <= len(data):
        length, kind = NLA.unpack_from(data, at)
        if length < NLA.size:
            return
        yield kind & 0x3FFF, data[at + NLA.size : at + length]
        at += (length + 3) & ~3


def syn_tuple(packet: bytes) -> tuple[str, int] | None:
    """``SRC:SPORT->DST:DPORT`` and the destination port of a TCP SYN (no ACK) over IPv4."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != socket.IPPROTO_TCP:
        return None
    tcp = packet[(packet[0] & 0xF) * 4 :]
    if len(tcp) < 20 or tcp[13] & (SYN | ACK) != SYN:
        return None
    src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    sport, dport = struct.unpack_from("!HH", tcp)
    return f"{src}:{sport}->{dst}:{dport}", dport


def run(args: argparse.Namespace) -> None:
    queue = Queue(args.queue)
    print(f"next_hop_chooser: queue {args.queue}", flush=True)
    for packet_id, packet in queue.packets():
        found = syn_tuple(packet)
        try:
            if found is None:
                continue
            session, dport = found
            if args.dport and dport not in args.dport:
                print(f"passed {session}: not a chosen port", flush=True)
                continue
            try:
                chain = prepend_hops(session, args.hop, mgmt=args.mgmt)
            except DyscoError as exc:
                print(f"passed {session}: {exc}", flush=True)
                continue
            print(f"chose {session}: on through {' '.join(chain)}", flush=True)
        finally:  # the SYN goes on only now: after the agent's answer
            queue.accept(packet_id)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Choose the next hop of the sessions this middlebox forwards (NFQUEUE + "
        "dysco.runtime.prepend_hops).",
        epilog="example:\n  iptables -I FORWARD -p tcp --syn -j NFQUEUE --queue-num 0\n"
        "  python examples/next_hop_chooser.py --hop 10.0.5.2 --dport 9000 --mgmt /tmp/dr-fw1.sock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hop", action="append", required=True, metavar="ADDR", help="a hop to add (repeatable)")
    p.add_argument("--dport", type=int, action="append", default=[], metavar="PORT", help="only these ports")
    p.add_argument("--queue", type=int, default=0, metavar="N", help="the NFQUEUE number (0)")
    p.add_argument("--mgmt", default="/tmp/dysco-agent.sock", metavar="SOCKET", help="the agent's socket")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
