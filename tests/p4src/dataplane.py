"""Helpers for the dysco.p4 packet tests: the program, entries by name, packet checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, in4_chksum
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import checksum

from dysco.p4names import PACKET_IN, PACKET_OUT, SESSION_OUT, SessionTableNames
from dysco.softswitch import P4Program, Switch
from dysco.softswitch.api import ActionCall, CloneSession, FieldMatch, Replica, TableEntry

ROOT = Path(__file__).resolve().parents[2]
DYSCO_P4 = ROOT / "p4src" / "dysco.p4"
BASELINE_P4 = ROOT / "p4src" / "baseline.p4"


@dataclass
class FakeClock:
    now: int = 0

    def __call__(self) -> int:
        return self.now


def ids(prog: P4Program) -> dict[str, Any]:
    """Tables and actions of the P4Info by name."""
    info: Any = prog.p4info
    out: dict[str, Any] = {t.preamble.name: t for t in info.tables}
    out.update({a.preamble.name: a for a in info.actions})
    return out


@dataclass
class Rewrite:
    """Parameters of DyscoIngress.rewrite."""

    src_addr: str
    dst_addr: str
    src_port: int
    dst_port: int
    seq_delta: int = 0
    ack_delta: int = 0
    ts_val_delta: int = 0
    ts_ecr_delta: int = 0
    ws_from: int = 0
    ws_to: int = 0
    session_id: int = 0

    def params(self) -> tuple[int, ...]:
        return (
            ip2int(self.src_addr),
            ip2int(self.dst_addr),
            self.src_port,
            self.dst_port,
            self.seq_delta % 2**32,
            self.ack_delta % 2**32,
            self.ts_val_delta % 2**32,
            self.ts_ecr_delta % 2**32,
            self.ws_from,
            self.ws_to,
            self.session_id,
        )


def ip2int(addr: str) -> int:
    a, b, c, d = (int(x) for x in addr.split("."))
    return a << 24 | b << 16 | c << 8 | d


@dataclass
class Dut:
    """dysco.p4 on a softswitch, with helpers to install entries by name.  ``device``: another
    target already running the program (the ebpf back end, on a veth rig); else the python one,
    on the fake clock."""

    prog: P4Program
    clock: FakeClock = field(default_factory=FakeClock)
    device: Any = None
    sw: Any = field(init=False)

    def __post_init__(self) -> None:
        self.sw = (
            self.device if self.device is not None else Switch(self.prog, cpu_port=255, clock=self.clock)
        )
        self.names = ids(self.prog)

    def session_entry(
        self,
        five: tuple[str, str, int, int],
        action: Rewrite | tuple[str, int] | str,
        table: SessionTableNames = SESSION_OUT,
        timeout_ns: int = 0,
    ) -> TableEntry:
        t = self.names[table.table]
        src, dst, sport, dport = five
        match = (
            FieldMatch(1, "exact", ip2int(src)),
            FieldMatch(2, "exact", ip2int(dst)),
            FieldMatch(3, "exact", 6),
            FieldMatch(4, "exact", sport),
            FieldMatch(5, "exact", dport),
        )
        if isinstance(action, Rewrite):
            call = ActionCall(self.names[table.rewrite_action].preamble.id, action.params())
        elif isinstance(action, tuple):
            call = ActionCall(self.names[action[0]].preamble.id, (action[1],))
        else:
            call = ActionCall(self.names[action].preamble.id, ())
        return TableEntry(t.preamble.id, match, call, idle_timeout_ns=timeout_ns)

    def add_session(self, *args: Any, **kw: Any) -> TableEntry:
        entry = self.session_entry(*args, **kw)
        self.sw.write_entry("insert", entry)
        return entry

    def teardown_copies_to_cpu(self, session: int, port: int = 255) -> None:
        self.sw.set_clone_session(CloneSession(session, (Replica(port),)))

    def send(self, port: int, pkt: Packet | bytes) -> list[tuple[int, bytes]]:
        return self.sw.process(port, bytes(pkt))


def packet_out(port: int, mode: int, pkt: Packet | bytes) -> bytes:
    return PACKET_OUT.encode(port=port, mode=mode) + bytes(pkt)


def packet_in(frame: bytes) -> tuple[dict[str, int], Ether]:
    fields, rest = PACKET_IN.decode(frame)
    return fields, Ether(rest)


def show(data: bytes | Packet) -> str:
    pkt = data if isinstance(data, Packet) else Ether(data)
    return str(pkt.show(dump=True))


def assert_frames(got: list[tuple[int, bytes]], want: list[tuple[int, bytes | Packet]]) -> None:
    """Ports and bytes equal, in order per port (the order between ports is not the switch's
    to keep: a kernel target sends a clone and the original out of different ports at once);
    on failure both sides are printed dissected."""
    want_b = sorted(((p, bytes(f)) for p, f in want), key=lambda pf: pf[0])
    got = sorted(got, key=lambda pf: pf[0])
    if got == want_b:
        return
    lines = [f"got ports {[p for p, _ in got]}, expected {[p for p, _ in want_b]}"]
    for i in range(max(len(got), len(want_b))):
        if i < len(got) and i < len(want_b) and got[i] == want_b[i]:
            continue
        lines.append(f"--- packet {i}: got")
        lines.append(_dissect(got[i]) if i < len(got) else "(none)")
        lines.append(f"--- packet {i}: expected")
        lines.append(_dissect(want_b[i]) if i < len(want_b) else "(none)")
    raise AssertionError("\n".join(lines))


def _dissect(item: tuple[int, bytes]) -> str:
    port, frame = item
    if port == 255:
        fields, rest = PACKET_IN.decode(frame)
        return f"port {port} packet_in {fields}\n{show(rest)}"
    return f"port {port} ({len(frame)} bytes)\n{show(frame)}"


def checksums_ok(frame: bytes) -> bool:
    """IPv4 and TCP checksums of ``frame`` are right, recomputed by scapy over the raw bytes
    (not over scapy's re-serialisation, which normalises odd option layouts)."""
    return ip_checksum_ok(frame) and tcp_checksum_ok(frame)


def ip_checksum_ok(frame: bytes) -> bool:
    pkt = Ether(frame)
    if IP not in pkt:
        return True
    ip = pkt[IP]
    start = len(frame) - len(bytes(ip))
    return bool(checksum(frame[start : start + ip.ihl * 4]) == 0)


def tcp_checksum_ok(frame: bytes) -> bool:
    """The TCP checksum is right for the frame's own IPv4 header (its addresses and length)."""
    pkt = Ether(frame)
    if IP not in pkt or TCP not in pkt:
        return True
    ip = pkt[IP]
    start = len(frame) - len(bytes(ip))
    raw_ip = frame[start : start + ip.len]
    segment = raw_ip[ip.ihl * 4 :]
    zeroed = segment[:16] + b"\x00\x00" + segment[18:]
    return bool(in4_chksum(6, ip, zeroed) == int.from_bytes(segment[16:18], "big"))
