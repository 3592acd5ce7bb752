"""Pass 2: parse trees -> :class:`~dysco.compiler.ast.PolicyFile`.

Resolves pcap-filter qualifiers exactly as libpcap's grammar does: a primitive's
head sets all three qualifiers (protocol, direction, address kind) at once; a
bare value after ``and``/``or``/``not`` repeats the qualifiers of the primitive
before it; a parenthesised expression passes on the qualifiers that were in force
before the parenthesis; ``tcp`` or ``ip`` on its own leaves none to repeat.
Then checks names: duplicates, unknown middleboxes, bad addresses and ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lark import Token, Tree

from dysco.compiler.ast import (
    AddressHop,
    AddrMatch,
    Always,
    BoolOp,
    Dir,
    Hop,
    Loc,
    Middlebox,
    Not,
    Policy,
    PolicyFile,
    PortMatch,
    Pred,
    Select,
    TypeHop,
)
from dysco.compiler.boxes import format_ip
from dysco.compiler.parse import Statement
from dysco.errors import SourceError, SourcePos


@dataclass(slots=True)  # not frozen: one per primitive, and never changed
class _Quals:
    proto: str | None  # "tcp" | "ip" | None
    dir: Dir | None
    addr: str | None  # "host" | "net" | "port" | "portrange" | "proto" | None
    tokens: tuple[Token, ...]  # the head as written

    @property
    def text(self) -> str:
        """The head as written, for messages."""
        return " ".join(" ".join(str(t).split()) for t in self.tokens)


class _StatementError(Exception):
    """Stops building one statement; the message is already recorded."""


class Builder:
    """Turns the statements of one file into a PolicyFile, collecting every error it can."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self.text = text
        self.errors: list[SourceError] = []
        self._offset = 0
        self._chunk = ""

    # -- errors --------------------------------------------------------------

    def _loc(self, tok: Token) -> Loc:
        return Loc((tok.line or 1) + self._offset, tok.column or 1)

    def _fail(self, message: str, at: Token | Loc) -> _StatementError:
        loc = at if isinstance(at, Loc) else self._loc(at)
        self.errors.append(SourceError(message, SourcePos(self.filename, loc.line, loc.column), self.text))
        return _StatementError(message)

    # -- file ----------------------------------------------------------------

    def build(self, statements: Iterable[Statement]) -> PolicyFile:
        middleboxes: dict[str, Middlebox] = {}
        policies: dict[str, Policy] = {}
        for st in statements:
            self._offset = st.first_line - 1
            self._chunk = st.text
            try:
                if st.tree.data == "middlebox":
                    mb = self._middlebox(st.tree)
                    if mb.name in middleboxes:
                        first = middleboxes[mb.name].loc.line
                        self._fail(f"middlebox '{mb.name}' is declared twice (first at line {first})", mb.loc)
                    else:
                        middleboxes[mb.name] = mb
                else:
                    pol = self._policy(st.tree)
                    if pol.name in policies:
                        first = policies[pol.name].loc.line
                        self._fail(f"policy '{pol.name}' is declared twice (first at line {first})", pol.loc)
                    else:
                        policies[pol.name] = pol
            except _StatementError:
                continue
        for pol in policies.values():
            for hop in pol.hops:
                if isinstance(hop, TypeHop) and hop.name not in middleboxes:
                    known = ", ".join(sorted(middleboxes)) or "none"
                    self._fail(f"unknown middlebox '{hop.name}' (declared: {known})", hop.loc)
        return PolicyFile(self.filename, tuple(middleboxes.values()), tuple(policies.values()))

    def _middlebox(self, tree: Tree[Token]) -> Middlebox:
        name = tree.children[0]
        assert isinstance(name, Token)
        instances: tuple[str, ...] | None = None
        select: Select | None = None
        for item in tree.children[1:]:
            assert isinstance(item, Tree)
            first = item.children[0]
            assert isinstance(first, Token)
            if item.data == "instances":
                if instances is not None:
                    raise self._fail(f"middlebox '{name}' lists its instances twice", first)
                seen: list[str] = []
                for tok in item.children:
                    assert isinstance(tok, Token)
                    addr = self._full_address(tok, "an instance")
                    if addr in seen:
                        raise self._fail(f"instance {addr} is listed twice", tok)
                    seen.append(addr)
                instances = tuple(seen)
            else:
                if select is not None:
                    raise self._fail(f"middlebox '{name}' sets its selection twice", first)
                try:
                    select = Select(str(first))
                except ValueError:
                    raise self._fail(
                        f"unknown select mode '{first}'; expected round-robin, hash or least-loaded", first
                    ) from None
        if not instances:
            raise self._fail(f"middlebox '{name}' has no instances", name)
        return Middlebox(str(name), instances, select or Select.ROUND_ROBIN, self._loc(name))

    def _policy(self, tree: Tree[Token]) -> Policy:
        name, expr, *hop_trees = tree.children
        assert isinstance(name, Token) and isinstance(expr, Tree)
        pred, _ = self._walk(expr, None)
        hops: list[Hop] = []
        for h in hop_trees:
            assert isinstance(h, Tree)
            tok = h.children[0]
            assert isinstance(tok, Token)
            if tok.type == "ADDR":
                hops.append(AddressHop(self._full_address(tok, "a hop"), self._loc(tok)))
            else:
                hops.append(TypeHop(str(tok), self._loc(tok)))
        first_hop = hop_trees[0]
        assert isinstance(first_hop, Tree)
        return Policy(str(name), pred, tuple(hops), self._loc(name), self._source(name, first_hop))

    def _source(self, name: Token, first_hop: Tree[Token]) -> str:
        """The predicate as written: between the ':' after the name and the '->'."""
        hop_tok = first_hop.children[0]
        assert isinstance(hop_tok, Token)
        start = self._chunk.index(":", name.end_pos or 0) + 1
        body = self._chunk[start : self._chunk.rindex("->", start, hop_tok.start_pos)]
        return " ".join(ln.split("#", 1)[0].strip() for ln in body.split("\n")).strip()

    # -- predicates ----------------------------------------------------------

    def _walk(self, tree: Tree[Token], quals: _Quals | None) -> tuple[Pred, _Quals | None]:
        kind, children = tree.data, tree.children
        if kind == "primitive":
            q = self._quals(children)
            value = children[-1]
            assert isinstance(value, Token)
            return self._primitive(q, value), q
        if kind == "binop":
            left, op, right = children
            lp, q1 = self._walk(left, quals)  # type: ignore[arg-type]
            rp, q2 = self._walk(right, q1)  # type: ignore[arg-type]
            return BoolOp("and" if op.type == "AND" else "or", lp, rp), q2  # type: ignore[union-attr]
        if kind == "bare":
            value = children[0]
            assert isinstance(value, Token)
            if quals is None:
                hint = {"NUMBER": "port", "PORTRANGE": "portrange", "ADDR": "host"}.get(value.type, "net")
                text = _value_text(value)
                raise self._fail(
                    f"'{text}' has no qualifiers to repeat: write e.g. '{hint} {text}' "
                    "(a bare value repeats the qualifiers of the primitive before it)",
                    value,
                )
            return self._primitive(quals, value), quals
        if kind == "negation":
            not_tok, operand = children
            p, q_after = self._walk(operand, quals)  # type: ignore[arg-type]
            return Not(p, self._loc(not_tok)), q_after  # type: ignore[arg-type]
        if kind == "group":
            p, _ = self._walk(children[0], quals)  # type: ignore[arg-type]
            return p, quals
        if kind == "proto_name":
            tok = children[0]
            assert isinstance(tok, Token)
            return Always(str(tok), self._loc(tok)), None
        raise AssertionError(kind)  # pragma: no cover

    def _quals(self, children: list[Tree[Token] | Token]) -> _Quals:
        """The qualifiers of a primitive: its tokens before the value."""
        proto: str | None = None
        d: Dir | None = None
        addr: str | None = None
        for tok in children[:-1]:
            assert isinstance(tok, Token)
            if tok.type == "PQUAL":
                proto = str(tok)
            elif tok.type == "DIR":
                d = _DIRS.get(tok) or _DIRS.get(" ".join(tok.split()))
                if d is None:  # the lexer takes any two of src/dst joined by and/or
                    raise self._fail(
                        f"'{' '.join(tok.split())}' is not a direction; "
                        "write 'src', 'dst', 'src or dst' or 'src and dst'",
                        tok,
                    )
            else:  # AQUAL or PROTO
                addr = str(tok)
        return _Quals(proto, d, addr, tuple(children[:-1]))  # type: ignore[arg-type]

    def _primitive(self, q: _Quals, tok: Token) -> Pred:
        loc = self._loc(tok)
        vkind = tok.type
        d = q.dir or Dir.SRC_OR_DST
        addr = q.addr
        if addr == "proto":
            return self._proto(q, tok)
        if addr is None:
            if vkind == "NUMBER":
                raise self._fail(
                    f"'{q.text} {tok}' is ambiguous: write '{q.text} port {tok}' for a port "
                    f"(libpcap would read {tok} as an IPv4 address)",
                    tok,
                )
            addr = "host" if vkind == "ADDR" and str(tok).count(".") == 3 else "net"
        if addr in ("host", "net"):
            if q.proto == "tcp":
                raise self._fail(
                    f"'tcp {addr}' is not valid: 'tcp' qualifies ports; write '{addr}' or 'ip {addr}'", tok
                )
            v, m = self._address_value(addr, tok)
            return AddrMatch(d, v, m, "host" if addr == "host" else "net", loc)
        if q.proto == "ip":
            raise self._fail(f"'ip {addr}' is not valid: ports belong to 'tcp'; write 'tcp {addr}'", tok)
        lo, hi = self._port_value(addr, tok)
        return PortMatch(d, lo, hi, "port" if addr == "port" else "portrange", loc)

    def _proto(self, q: _Quals, tok: Token) -> Pred:
        if q.proto == "tcp":
            raise self._fail("'tcp proto' is not valid; write 'ip proto tcp'", tok)
        text = str(tok).lstrip("\\")
        if tok.type == "NUMBER":
            number = self._number(tok)
            if number == 6:
                return Always("ip proto tcp", self._loc(tok))
            if number > 255:
                raise self._fail(f"protocol number {number} is out of range (0-255)", tok)
            raise self._fail(
                f"'ip proto {number}' can never match: the classifier only sees outbound TCP SYNs", tok
            )
        if tok.type in ("WORD", "ESCAPED"):
            if text == "tcp":
                return Always("ip proto tcp", self._loc(tok))
            raise self._fail(
                f"'ip proto {text}' can never match: the classifier only sees outbound TCP SYNs", tok
            )
        raise self._fail(f"'proto' takes a protocol number or name, not '{_value_text(tok)}'", tok)

    # -- values --------------------------------------------------------------

    def _address_value(self, addr: str, tok: Token) -> tuple[int, int]:
        vkind = tok.type
        if vkind == "WORD":
            raise self._fail(
                f"host names such as '{tok}' are not supported (no DNS lookups); use an IPv4 address", tok
            )
        if vkind in ("NUMBER", "PORTRANGE", "ESCAPED"):
            raise self._fail(f"'{addr}' needs an IPv4 address, not '{_value_text(tok)}'", tok)
        parts = _parts(tok)
        base, octets = self._dotted(parts[0])
        if addr == "host":
            if vkind != "ADDR":
                raise self._fail(
                    f"'host' takes one address, not '{_value_text(tok)}'; use 'net' for a prefix", tok
                )
            if octets != 4:
                raise self._fail(f"'host' needs a full address (four octets), not '{tok}'", tok)
            return base, 0xFFFFFFFF
        if vkind == "ADDR":
            return base, (0xFFFFFFFF << (32 - 8 * octets)) & 0xFFFFFFFF
        if vkind == "PREFIX":
            length = self._number(parts[1])
            if length > 32:
                raise self._fail(f"prefix length {length} is out of range (0-32)", parts[1])
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        else:  # ADDR_MASK
            mask, mask_octets = self._dotted(parts[1])
            if mask_octets != 4:
                raise self._fail(f"a mask needs four octets, not '{parts[1]}'", parts[1])
        if base & ~mask & 0xFFFFFFFF:
            raise self._fail(f"non-network bits set in '{_value_text(tok)}'", tok)
        return base, mask

    def _port_value(self, addr: str, tok: Token) -> tuple[int, int]:
        if tok.type == "WORD":
            raise self._fail(f"service names such as '{tok}' are not supported; use the port number", tok)
        if tok.type == "NUMBER":
            port = self._number(tok)
            if port > 65535:
                raise self._fail(f"port {port} is out of range (0-65535)", tok)
            return port, port
        if tok.type == "PORTRANGE":
            if addr == "port":
                raise self._fail(f"'port' takes one number; write 'portrange {tok}' for a range", tok)
            lo_text, hi_text = str(tok).split("-")
            lo, hi = self._decimal(lo_text, tok), self._decimal(hi_text, tok)
            for p in (lo, hi):
                if p > 65535:
                    raise self._fail(f"port {p} is out of range (0-65535)", tok)
            if lo > hi:
                raise self._fail(f"port range {tok} is empty: its low end is above its high end", tok)
            return lo, hi
        raise self._fail(f"'{addr}' needs a port number, not '{_value_text(tok)}'", tok)

    def _number(self, tok: Token) -> int:
        text = str(tok)
        if text[:2] in ("0x", "0X"):
            return int(text, 16)
        return self._decimal(text, tok)

    def _decimal(self, text: str, tok: Token) -> int:
        if len(text) > 1 and text.startswith("0"):
            raise self._fail(f"'{text}' has a leading zero, which libpcap reads as octal; drop the zero", tok)
        if len(text) > 10:
            raise self._fail(f"number '{text}' is too large", tok)
        return int(text)

    def _dotted(self, tok: Token) -> tuple[int, int]:
        parts = str(tok).split(".")
        value = 0
        for part in parts:
            if len(part) > 1 and part.startswith("0"):
                raise self._fail(
                    f"'{tok}' has an octet with a leading zero, which libpcap reads as octal; drop the zero",
                    tok,
                )
            octet = int(part) if len(part) <= 3 else 256
            if octet > 255:
                raise self._fail(f"'{tok}' is not an IPv4 address: octet '{part}' is above 255", tok)
            value = value << 8 | octet
        return value << 8 * (4 - len(parts)), len(parts)

    def _full_address(self, tok: Token, what: str) -> str:
        value, octets = self._dotted(tok)
        if octets != 4:
            raise self._fail(f"{what} needs a full IPv4 address (four octets), not '{tok}'", tok)
        return format_ip(value)


_DIRS = {
    "src": Dir.SRC,
    "dst": Dir.DST,
    **dict.fromkeys(("src or dst", "dst or src", "src || dst", "dst || src"), Dir.SRC_OR_DST),
    **dict.fromkeys(("src and dst", "dst and src", "src && dst", "dst && src"), Dir.SRC_AND_DST),
}


def _parts(tok: Token) -> list[Token]:
    """An address, and for a prefix or an address with a mask also the length or mask, as tokens
    at their own columns (so errors point at the part that is wrong)."""
    text = str(tok)
    if tok.type == "ADDR":
        return [tok]
    sep = "/" if tok.type == "PREFIX" else "mask"
    head, tail = text.split(sep, 1)
    second = tail.strip()
    offset = len(head) + len(sep) + (len(tail) - len(tail.lstrip()))
    column = (tok.column or 1) + offset
    start = (tok.start_pos or 0) + offset
    return [
        Token("ADDR", head.strip(), tok.start_pos, tok.line, tok.column),
        Token("X", second, start, tok.line, column),
    ]


def _value_text(tok: Token) -> str:
    if tok.type == "PREFIX":
        return "".join(str(tok).split())
    return " ".join(str(tok).split())
