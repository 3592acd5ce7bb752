"""A SYN flooder for tests/e2e/test_synflood.py, run inside the attacker's network namespace.

    python flood.py RATE SECONDS TARGET[,TARGET...] [--ports LOW-HIGH] [--kinds K,K,...]
                    [--spoof NET] [--seed N]

Sends about RATE SYNs per second for SECONDS seconds (or until a line or EOF on stdin), round
robin to the TARGETs, through a raw IPv4 socket (IP_HDRINCL) so that every SYN has a spoofed
source address (random in NET, default the /24 of the attacker's own address, .3-.254), a
random source port and a random initial sequence number, and a destination port from the
range (default 9000-9015).  By default every SYN carries a TCP payload that starts with the Dysco
magic, so a Dysco NIC on the way in punts it to its agent as a Dysco SYN (reason 2) unless its
punt meter drops it.  The payloads, by kind (the first four are refused by an agent with the
domain's keys and counted under ``drops.bad_payload.<kind>``):

    missing_tag   a well-formed payload for the target, unsealed (tag type none)
    bad_mac       sealed with the attacker's own key under the id the domain uses (1)
    unknown_key   sealed with a key id nobody has (200)
    garbled       the magic and random bytes
    plain         no payload: an ordinary SYN (not in the default mix; from a host with an agent and
                  a policy that matches it, its own NIC punts it as a policy SYN)

Prints ``flooding ...`` once the socket is open and the payloads are made, and at the end
``flood sent N in T s (R/s), E send errors``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import secrets
import socket
import struct
import sys
import threading
import time

from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._types import FiveTuple, ip_int

KINDS = ("missing_tag", "bad_mac", "unknown_key", "garbled")
VARIANTS = 32
"""Payloads made per target and kind (the five-tuples inside are random)."""
SYN = 0x02
MSS = b"\x02\x04\x05\xb4"  # the MSS option of an ordinary SYN (1460)
BURST = 64
"""At most this many SYNs are sent back to back before the pacing looks at the clock again."""


def _words(data: bytes) -> int:
    """Sum of the 16-bit big-endian words of ``data`` (padded to even length)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def payload(kind: str, target: int, rng: random.Random) -> bytes:
    session = FiveTuple(rng.getrandbits(32), rng.getrandbits(32), rng.randrange(1024, 65536), 9000)
    p = wire.SynPayload(session, (target,))
    now = time.time_ns()
    if kind == "missing_tag":
        return wire.encode(p)
    if kind in ("bad_mac", "unknown_key"):
        key_id = 1 if kind == "bad_mac" else 200
        ring = auth.KeyRing({key_id: secrets.token_bytes(32)}, key_id)
        return wire.encode(p, ring, sender=rng.getrandbits(32), receiver=target, now=now)
    if kind == "garbled":
        return wire.MAGIC.to_bytes(4, "big") + rng.randbytes(rng.randrange(0, 80))
    if kind == "plain":
        return b""
    raise SystemExit(f"flood.py: unknown kind {kind!r} (one of {', '.join(KINDS)}, plain)")


class Template:
    """One SYN without its source address, source port and sequence number: the IPv4 header
    and TCP segment are packed per packet, the checksum from the precomputed sum of the rest."""

    def __init__(self, dst: int, dport: int, data: bytes) -> None:
        self.dst = dst.to_bytes(4, "big")
        self.dport = dport
        self.tail = MSS + data
        tcp_len = 20 + len(self.tail)
        self.total = 20 + tcp_len
        # pseudo header (without the source) + the fixed TCP words (dport, offset/flags, window)
        self.partial = _words(self.dst) + 6 + tcp_len + dport + ((6 << 12) | SYN) + 65535 + _words(self.tail)

    def packet(self, src: int, sport: int, seq: int) -> bytes:
        total = self.partial + (src >> 16) + (src & 0xFFFF) + sport + (seq >> 16) + (seq & 0xFFFF)
        tcp = struct.pack("!HHIIBBHHH", sport, self.dport, seq, 0, 6 << 4, SYN, 65535, _fold(total), 0)
        # the kernel fills in the IPv4 checksum (and the id, left 0) of an IP_HDRINCL packet
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, self.total, 0, 0x4000, 64, 6, 0, src.to_bytes(4, "big"), self.dst
        )
        return ip + tcp + self.tail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rate", type=float, help="SYNs per second")
    ap.add_argument("seconds", type=float, help="how long (a line on stdin stops it earlier)")
    ap.add_argument("targets", help="comma-separated IPv4 addresses")
    ap.add_argument("--ports", default="9000-9015", help="destination ports LOW-HIGH")
    ap.add_argument("--kinds", default=",".join(KINDS), help="payload kinds, comma-separated")
    ap.add_argument("--spoof", help="source addresses are random in this network")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    targets = [ip_int(t) for t in args.targets.split(",")]
    low, _, high = args.ports.partition("-")
    ports = range(int(low), int(high or low) + 1)
    kinds = args.kinds.split(",")
    templates = [
        Template(t, rng.choice(ports), payload(k, t, rng))
        for _ in range(VARIANTS)
        for t in targets
        for k in kinds
    ]
    rng.shuffle(templates)
    if args.spoof:
        net = ipaddress.IPv4Network(args.spoof)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((args.targets.split(",")[0], 9))
            net = ipaddress.IPv4Network(f"{probe.getsockname()[0]}/24", strict=False)
    base, size = int(net.network_address), net.num_addresses
    sources = [base + i for i in range(3, size - 1)] or [base]

    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    dests = {t: (str(ipaddress.IPv4Address(t)), 0) for t in targets}
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()
    print(
        f"flooding {args.targets} at {args.rate:g}/s for {args.seconds:g}s from {net}, "
        f"kinds {','.join(kinds)}, {len(templates)} payloads",
        flush=True,
    )
    sent = errors = 0
    n = len(templates)
    getrandbits, choice = rng.getrandbits, rng.choice
    start = time.monotonic()
    end = start + args.seconds
    now = start
    while now < end and not stop.is_set():
        due = int((now - start) * args.rate) - (sent + errors)
        if due <= 0:
            time.sleep(min(0.001, max(1.0 / args.rate, 0.0002)))
        for _ in range(min(due, BURST)):
            t = templates[(sent + errors) % n]
            pkt = t.packet(choice(sources), 1024 + getrandbits(16) % 64512, getrandbits(32))
            try:
                sock.sendto(pkt, dests[int.from_bytes(t.dst, "big")])
                sent += 1
            except OSError:  # ENOBUFS: the attacker's own queue is full
                errors += 1
        now = time.monotonic()
    elapsed = time.monotonic() - start
    sock.close()
    print(
        f"flood sent {sent} in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s), {errors} send errors",
        flush=True,
    )
    os._exit(0)  # the stdin thread may still be blocked reading


if __name__ == "__main__":
    main()
