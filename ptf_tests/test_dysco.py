"""p4src/dysco.p4, packet by packet, on real interfaces: entries over P4Runtime, frames in
and out through veth pairs, packet-in/out through the P4Runtime stream."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from dysco_ptf import DyscoTest
from ptf.testutils import send_packet, verify_no_other_packets, verify_packet
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from dysco.compiler.p4rt import table_entries
from dysco.compiler.passes import compile_text
from dysco.p4names import (
    CONTROL_UDP_PORT,
    CPU_PORT,
    DYSCO_MAGIC,
    HOST_PORT,
    NET_PORT,
    SESSION_OUT,
    SUBSESSION_IN,
    TEARDOWN_CLONE_SESSION,
    PacketOutMode,
    Reason,
)
from tests.p4src.dataplane import Rewrite, checksums_ok, ip2int
from tests.p4src.test_malformed import CASES as MALFORMED
from tests.p4src.test_sessions import FROM_NET, HOST_SIDE, NET_SIDE, TO_HOST, TO_NET

ROOT = Path(__file__).resolve().parents[1]
M32 = 2**32


def seg(five: tuple[str, str, int, int], flags: str = "A", payload: bytes = b"data", **tcp: Any) -> Ether:
    src, dst, sport, dport = five
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=src, dst=dst, id=7)
        / TCP(sport=sport, dport=dport, flags=flags, window=tcp.pop("window", 1000), **tcp)
        / payload
    )
    return Ether(bytes(pkt))  # checksums computed


def translated(pkt: Ether, rw: Rewrite, **tcp: Any) -> Ether:
    out = Ether(bytes(pkt))
    out[IP].src, out[IP].dst = rw.src_addr, rw.dst_addr
    out[TCP].sport, out[TCP].dport = rw.src_port, rw.dst_port
    for k, v in tcp.items():
        setattr(out[TCP], k, v)
    del out[IP].chksum
    del out[TCP].chksum
    return Ether(bytes(out))


class SessionTest(DyscoTest):
    def session(self, table: Any, five: tuple[str, str, int, int], action: str, params: dict[str, int],
                timeout_ns: int = 0) -> None:  # fmt: skip
        src, dst, sport, dport = five
        match = {
            table.src_addr: ip2int(src), table.dst_addr: ip2int(dst), table.protocol: 6,
            table.src_port: sport, table.dst_port: dport,
        }  # fmt: skip
        self.sw.insert(self.sw.table_entry(table.table, match, action, params, idle_timeout_ns=timeout_ns))

    def rewrite(self, table: Any, five: tuple[str, str, int, int], rw: Rewrite, timeout_ns: int = 0) -> None:
        names = [name for name, _ in table.rewrite_params]
        self.session(
            table, five, table.rewrite_action, dict(zip(names, rw.params(), strict=True)), timeout_ns
        )

    def expect_packet_in(self, reason: Reason, frame: bytes | None = None, **meta: int) -> dict[str, int]:
        got, payload = self.sw.packet_in()
        self.assertEqual(got.get("reason"), int(reason), f"packet-in metadata {got}")
        for k, v in meta.items():
            self.assertEqual(got.get(k, 0), v, f"packet-in {k}: {got}")
        if frame is not None:
            self.assertEqual(payload, frame)
        return got


class PassThrough(SessionTest):
    """Non-Dysco traffic crosses HOST <-> NET unchanged, in both directions."""

    def runTest(self) -> None:
        for pkt in (
            seg(("10.0.1.5", "10.0.9.9", 1234, 80)),
            Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01")
            / ARP(psrc="10.0.0.1", hwsrc="02:00:00:00:00:01", pdst="10.0.0.2"),
            Ether(src="02:00:00:00:00:01")
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / UDP(sport=5, dport=53)
            / b"q",
        ):
            for inp, outp in ((HOST_PORT, NET_PORT), (NET_PORT, HOST_PORT)):
                send_packet(self, inp, bytes(pkt))
                verify_packet(self, bytes(pkt), outp)
        verify_no_other_packets(self)
        self.assertTrue(self.sw.no_packet_in())


class Classifier(SessionTest):
    """Entries from `dysco compile` through the P4Runtime emitter: hits punt with the chain id,
    bypass and misses forward untouched, inbound SYNs are not classified."""

    def runTest(self) -> None:
        compiled = compile_text((ROOT / "examples" / "policies.dysco").read_text(), "policies.dysco")
        self.sw.insert(*table_entries(compiled.entries, self.sw.p4info))
        for src, dst, dport, policy in (("10.0.1.5", "10.0.7.7", 80, 1), ("10.0.1.9", "10.0.9.9", 22, 3),
                                        ("10.0.5.5", "10.0.7.7", 22, 2)):  # fmt: skip
            syn = seg((src, dst, 33000, dport), flags="S", payload=b"")
            send_packet(self, HOST_PORT, bytes(syn))
            self.expect_packet_in(Reason.POLICY_SYN, bytes(syn), policy_id=policy, ingress_port=HOST_PORT)
        for syn, inp, outp in (
            (seg(("10.0.1.9", "10.0.7.7", 33000, 22), flags="S", payload=b""), HOST_PORT, NET_PORT),  # bypass
            (seg(("10.0.1.5", "10.0.7.7", 33000, 25), flags="S", payload=b""), HOST_PORT, NET_PORT),  # miss
            (
                seg(("10.0.7.7", "10.0.1.5", 80, 33000), flags="S", payload=b""),
                NET_PORT,
                HOST_PORT,
            ),  # inbound
        ):
            send_packet(self, inp, bytes(syn))
            verify_packet(self, bytes(syn), outp)
        verify_no_other_packets(self)
        self.assertTrue(self.sw.no_packet_in())


class Punts(SessionTest):
    """A Dysco SYN from NET and a control message are punted, not forwarded."""

    def runTest(self) -> None:
        dysco_syn = seg(
            ("10.0.7.7", "10.0.1.5", 33000, 80), flags="S", payload=DYSCO_MAGIC.to_bytes(4, "big") + b"x"
        )
        send_packet(self, NET_PORT, bytes(dysco_syn))
        self.expect_packet_in(Reason.DYSCO_SYN, bytes(dysco_syn), ingress_port=NET_PORT)
        ctl = (
            Ether(src="02:00:00:00:00:01")
            / IP(src="10.0.2.1", dst="10.0.1.5")
            / UDP(sport=9, dport=CONTROL_UDP_PORT)
        )
        send_packet(self, NET_PORT, bytes(ctl / b"hello"))
        self.expect_packet_in(Reason.CONTROL, bytes(ctl / b"hello"), ingress_port=NET_PORT)
        verify_no_other_packets(self)


class SessionRewrites(SessionTest):
    """session-out subtracts the ack delta (and from SACK edges), subsession-in adds the seq delta
    (across the 2^32 wrap); timestamps move by their offsets; the window is rescaled; checksums hold."""

    def runTest(self) -> None:
        rw = Rewrite(*NET_SIDE, ack_delta=5000, ts_val_delta=1_000_000, ts_ecr_delta=-5, ws_from=7, ws_to=2)
        self.rewrite(SESSION_OUT, HOST_SIDE, rw)
        opts = [("NOP", None), ("NOP", None), ("Timestamp", (M32 - 1, 3)), ("NOP", None), ("NOP", None),
                ("SAck", (M32 - 3000, M32 - 2500))]  # fmt: skip
        out = seg(HOST_SIDE, ack=1000, window=100, options=opts)
        want_opts = [("NOP", None), ("NOP", None), ("Timestamp", (999_999, M32 - 2)), ("NOP", None),
                     ("NOP", None), ("SAck", (M32 - 8000, M32 - 7500))]  # fmt: skip
        want = translated(out, rw, ack=(1000 - 5000) % M32, window=3200, options=want_opts)
        send_packet(self, HOST_PORT, bytes(out))
        verify_packet(self, bytes(want), NET_PORT)
        self.assertTrue(checksums_ok(bytes(want)))

        back = Rewrite(TO_HOST.src_addr, TO_HOST.dst_addr, TO_HOST.src_port, TO_HOST.dst_port, seq_delta=0x20)
        self.rewrite(SUBSESSION_IN, FROM_NET, back)
        inbound = seg(FROM_NET, seq=M32 - 0x10)
        send_packet(self, NET_PORT, bytes(inbound))
        verify_packet(self, bytes(translated(inbound, back, seq=0x10)), HOST_PORT)
        verify_no_other_packets(self)


class PacketOut(SessionTest):
    """DIRECT sends a frame out of a port as it is; PIPELINE runs it as if it came in on a port."""

    def runTest(self) -> None:
        frame = bytes(seg(HOST_SIDE))
        self.sw.packet_out(frame, port=NET_PORT, mode=int(PacketOutMode.DIRECT))
        verify_packet(self, frame, NET_PORT)
        self.rewrite(SESSION_OUT, HOST_SIDE, TO_NET)
        self.sw.packet_out(frame, port=HOST_PORT, mode=int(PacketOutMode.PIPELINE))
        verify_packet(self, bytes(translated(Ether(frame), TO_NET)), NET_PORT)
        verify_no_other_packets(self)


class TeardownCopies(SessionTest):
    """A RST of a session goes on translated, and a copy as received goes to the agent; a FIN
    goes to the agent alone, as received (the agent forwards it)."""

    def runTest(self) -> None:
        self.sw.clone_session(TEARDOWN_CLONE_SESSION, CPU_PORT)
        rw = Rewrite(*NET_SIDE, session_id=42)
        self.rewrite(SESSION_OUT, HOST_SIDE, rw)
        rst = seg(HOST_SIDE, flags="R", payload=b"")
        send_packet(self, HOST_PORT, bytes(rst))
        verify_packet(self, bytes(translated(rst, rw)), NET_PORT)
        self.expect_packet_in(Reason.TEARDOWN, bytes(rst), session_id=42, ingress_port=HOST_PORT)
        fin = seg(HOST_SIDE, flags="FA", payload=b"")
        send_packet(self, HOST_PORT, bytes(fin))
        self.expect_packet_in(Reason.TWO_PATH, bytes(fin), session_id=42, ingress_port=HOST_PORT)
        verify_no_other_packets(self)


class PuntAllAndDrop(SessionTest):
    """punt_session sends every packet of the session to the agent; drop_session drops them."""

    def runTest(self) -> None:
        self.session(SESSION_OUT, HOST_SIDE, SESSION_OUT.punt_action, {SESSION_OUT.punt_param: 7})
        pkt = seg(HOST_SIDE)
        send_packet(self, HOST_PORT, bytes(pkt))
        self.expect_packet_in(Reason.TWO_PATH, bytes(pkt), session_id=7)
        self.session(SUBSESSION_IN, FROM_NET, SUBSESSION_IN.drop_action, {})
        send_packet(self, NET_PORT, bytes(seg(FROM_NET)))
        verify_no_other_packets(self)
        self.assertTrue(self.sw.no_packet_in())


class Malformed(SessionTest):
    """Every malformed case of the in-process suite: with a session entry it is punted with its
    detail; without one, and for truncated headers or a bad IHL, it passes untouched."""

    def runTest(self) -> None:
        untouched = [
            bytes(
                Ether()
                / IP(src=HOST_SIDE[0], dst=HOST_SIDE[1], proto=6, len=30)
                / (b"\x9c\x40\x00\x50" + bytes(6))
            ),
            bytes(Ether() / IP(src=HOST_SIDE[0], dst=HOST_SIDE[1], proto=6)) + b"\x9c\x40",
            bytes(Ether() / IP(ihl=3, src=HOST_SIDE[0], dst=HOST_SIDE[1]) / TCP(sport=40000, dport=80)),
        ]
        for frame in untouched + [frame for frame, _ in MALFORMED.values()]:
            send_packet(self, HOST_PORT, frame)
            verify_packet(self, frame, NET_PORT)
        self.rewrite(SESSION_OUT, HOST_SIDE, TO_NET)
        for name, (frame, detail) in MALFORMED.items():
            send_packet(self, HOST_PORT, frame)
            got = self.expect_packet_in(Reason.UNSUPPORTED, frame)
            self.assertEqual(got.get("detail"), int(detail), name)
        for frame in untouched:
            send_packet(self, HOST_PORT, frame)
            verify_packet(self, frame, NET_PORT)
        verify_no_other_packets(self)


class IdleTimeout(SessionTest):
    """An idle session entry is reported on the stream (and not removed by the switch)."""

    def runTest(self) -> None:
        self.rewrite(SESSION_OUT, HOST_SIDE, TO_NET, timeout_ns=200_000_000)
        try:
            note = self.sw.idle.get(timeout=10)
        except queue.Empty:
            self.fail("no idle-timeout notification within 10 s")
        self.assertEqual(len(note.table_entry), 1)
        send_packet(self, HOST_PORT, bytes(seg(HOST_SIDE)))
        verify_packet(self, bytes(translated(seg(HOST_SIDE), TO_NET)), NET_PORT)
