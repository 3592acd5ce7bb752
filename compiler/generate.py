"""Random policy predicates and SYNs, for property tests and the benchmark.

Every predicate produced is valid for both dysco and libpcap, uses the whole
supported subset (qualifier repetition included), and draws its values from
small pools so that random packets hit them often.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from dysco.compiler.boxes import format_ip
from dysco.compiler.evaluate import Syn

_BASES = (0x0A000100, 0x0A000200, 0x0A000909, 0x0A010000, 0xC0A80000, 0x0A000105)  # 10.0.1.0, ...
_PORTS = (22, 80, 443, 8080, 1000, 1005, 0, 65535)


@dataclass(frozen=True, slots=True)
class _Q:
    proto: str  # "" | "tcp" | "ip"
    dir: str  # "" | "src" | ...
    addr: str  # "host" | "net" | "port" | "portrange"


class PredicateGenerator:
    """Builds predicate texts from a ``random.Random``."""

    def __init__(self, rng: random.Random, primitives: tuple[int, int] = (1, 6)) -> None:
        self.rng = rng
        self.primitives = primitives

    # -- values --------------------------------------------------------------

    def address(self) -> int:
        r = self.rng
        base = r.choice(_BASES)
        return base | r.choice((0, 0, 1, 5, 9, r.randrange(256)))

    def _net_value(self) -> str:
        r = self.rng
        a = self.address()
        form = r.randrange(4)
        if form == 0:
            length = r.choice((8, 16, 24, 32, r.randrange(33)))
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            return f"{format_ip(a & mask)}/{length}"
        if form == 1:
            mask = r.choice((0xFFFFFF00, 0xFFFF0000, 0xFF00FF00, r.getrandbits(32)))
            return f"{format_ip(a & mask)} mask {format_ip(mask)}"
        if form == 2:
            octets = r.choice((1, 2, 3))
            return ".".join(format_ip(a).split(".")[:octets]) if octets > 1 else f"{a >> 24}.{a >> 16 & 0xFF}"
        return format_ip(a)

    def port(self) -> int:
        r = self.rng
        return r.choice((*_PORTS, (r.choice(_PORTS) + 1) & 0xFFFF, r.randrange(65536)))

    def _port_text(self) -> str:
        p = self.port()
        return f"0x{p:x}" if self.rng.random() < 0.1 else str(p)

    def _range_text(self) -> str:
        a, b = sorted((self.port(), self.port()))
        return f"{a}-{b}"

    def value(self, q: _Q) -> str:
        if q.addr == "host":
            return format_ip(self.address())
        if q.addr == "net":
            return self._net_value()
        if q.addr == "port":
            return self._port_text()
        return self._range_text() if self.rng.random() < 0.8 else self._port_text()

    # -- primitives and expressions -----------------------------------------

    def primitive(self) -> tuple[str, _Q | None]:
        r = self.rng
        kind = r.choice(("host", "net", "port", "portrange", "port", "host", "special"))
        if kind == "special":
            return r.choice(("tcp", "ip", "ip proto \\tcp", "ip proto 6")), None
        d = r.choice(("", "", "src", "dst", "src or dst", "src and dst", "dst or src", "dst and src"))
        if kind in ("host", "net"):
            proto = r.choice(("", "", "ip"))
        else:
            proto = r.choice(("", "tcp"))
        q = _Q(proto, d, kind)
        head = " ".join(w for w in (proto, d, kind) if w)
        return f"{head} {self.value(q)}", q

    def expression(self) -> str:
        """A predicate with a number of primitives (bare repeated values included) drawn
        from ``primitives``."""
        text, _ = self._expr(self.rng.randint(*self.primitives), None, depth=0)
        return text

    def _expr(self, budget: int, q_in: _Q | None, depth: int) -> tuple[str, _Q | None]:
        r = self.rng
        roll = r.random()
        if depth < 4 and roll < 0.1:
            inner, q = self._expr(budget, q_in, depth + 1)
            negation = r.choice(("not ", "!"))
            if budget == 1:
                return f"{negation}{inner}", q
            return f"{negation}({inner})", q_in  # a parenthesis passes on the qualifiers before it
        if depth < 4 and roll < 0.2:
            inner, _ = self._expr(budget, q_in, depth + 1)
            return f"({inner})", q_in
        if budget == 1:
            return self.primitive()
        left_budget = r.randint(1, budget - 1)
        left, q1 = self._expr(left_budget, q_in, depth + 1)
        op = r.choice(("and", "or", "&&", "||"))
        if q1 is not None and budget - left_budget == 1 and r.random() < 0.4:
            bare = self.value(q1)  # repeats the qualifiers of the primitive before it
            if r.random() < 0.2:
                bare = f"not {bare}"
            return f"{left} {op} {bare}", q1
        right, q2 = self._expr(budget - left_budget, q1, depth + 1)
        return f"{left} {op} {right}", q2

    # -- files and packets --------------------------------------------------

    def policy_file(self, policies: int) -> str:
        lines = [
            "middlebox fw { instances 10.0.2.1, 10.0.2.2; }",
            "middlebox px { instances 10.0.3.1; select hash; }",
        ]
        for i in range(policies):
            hops = self.rng.choice(("fw", "px", "fw, px", "10.0.4.7"))
            lines.append(f"policy p{i}: {self.expression()} -> {hops}")
        return "\n".join(lines) + "\n"

    def syn(self) -> Syn:
        r = self.rng
        pick = self.address if r.random() < 0.8 else lambda: r.getrandbits(32)
        return Syn(pick(), pick(), self.port(), self.port())


def disjoint_predicates(rng: random.Random, count: int) -> list[str]:
    """Predicates over wide pools of values (any 10.x.y.z, any port), so that few policies
    shadow or overlap each other: ``(A or B) and not C``, 3-6 primitives, with A and B
    conjunctions of ports, port ranges, source prefixes and destination hosts."""

    def octets(n: int) -> str:
        return ".".join(str(rng.randrange(256)) for _ in range(n))

    def primitive() -> str:
        kind = rng.randrange(4)
        if kind == 0:
            return f"dst port {rng.randrange(1, 65535)}"
        if kind == 1:
            low = rng.randrange(60000)
            return f"dst portrange {low}-{low + rng.randrange(1, 2000)}"
        if kind == 2:
            return f"src net 10.{octets(2)}.0/24"
        return f"dst host 10.{octets(3)}"

    out = []
    for _ in range(count):
        parts = [primitive() for _ in range(rng.randint(2, 5))]
        half = max(1, len(parts) // 2)
        either = f"{' and '.join(parts[:half])} or {' and '.join(parts[half:]) or primitive()}"
        if rng.random() < 0.5:
            negated = f"not src host 10.{octets(3)}"
        else:
            negated = f"not dst portrange {rng.randrange(1000)}-{rng.randrange(1000, 3000)}"
        out.append(f"({either}) and {negated}")
    return out


def syn_frame(p: Syn) -> bytes:
    """An Ethernet/IPv4/TCP SYN frame for ``p`` (checksums zero; filters do not look)."""
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, p.src, p.dst)
    tcp = struct.pack("!HHIIBBHHH", p.sport, p.dport, 1, 0, 0x50, 0x02, 65535, 0, 0)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp
