"""Pass 2: the :class:`~dysco.compiler.ast.PolicyFile`, built while pass 1 parses.

The parser calls an action of this module at each reduction, so the AST grows
with the parse and no parse tree is made.  Qualifiers are resolved exactly as
libpcap's grammar does: a primitive's head sets all three qualifiers (protocol,
direction, address kind) at once; a bare value after ``and``/``or``/``not``
repeats the qualifiers of the primitive before it; a parenthesised expression
passes on the qualifiers that were in force before the parenthesis; ``tcp`` or
``ip`` on its own leaves none to repeat.  The parser reduces left to right, so
"the primitive before it" is the last one reduced; the qualifiers in force at a
``(`` are saved when it is shifted and restored when its group is reduced.

Then, per file: duplicate names and unknown middleboxes.  Values are checked as
they are reduced (bad addresses, masks and ranges).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dysco.compiler import lalr
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
from dysco.compiler.lexer import Tok
from dysco.compiler.parse import StatementError, check_syntax, parse, tables
from dysco.errors import SourceError, SourcePos

Statement = Middlebox | Policy


@dataclass(slots=True)  # not frozen: one per primitive, and never changed
class _Quals:
    proto: str | None  # "tcp" | "ip" | None
    dir: Dir | None
    addr: str | None  # "host" | "net" | "port" | "portrange" | "proto" | None
    tokens: tuple[Tok, ...]  # the head as written

    @property
    def text(self) -> str:
        """The head as written, for messages."""
        return " ".join(" ".join(t[1].split()) for t in self.tokens)


class _Problem(Exception):
    """Stops building one statement."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


class _Context:
    """What the actions of one statement share."""

    __slots__ = ("chunk", "nesting", "offset", "quals")

    def __init__(self, chunk: str, first_line: int) -> None:
        self.chunk = chunk
        self.offset = first_line - 1
        self.quals: _Quals | None = None  # in force for the next bare value
        self.nesting = 0  # operators and groups so far


MAX_NESTING = 500
"""Most operators and parenthesised groups in one predicate: the passes after this one
recurse into the predicate, and this keeps them well inside Python's recursion limit."""


def _nest(c: _Context, at: Tok) -> None:
    c.nesting += 1
    if c.nesting > MAX_NESTING:
        raise _fail(
            c,
            f"the predicate has more than {MAX_NESTING} operators and parentheses; "
            "split it into several policies",
            at,
        )


def _loc(c: _Context, tok: Tok) -> Loc:
    return Loc(tok[3] + c.offset, tok[4])


def _fail(c: _Context, message: str, at: Tok) -> _Problem:
    return _Problem(message, _loc(c, at))


# ---- the file ---------------------------------------------------------------

SYN_HOPS = 16
"""Hops a Dysco SYN payload carries (docs/protocol.md; ``MAX_HOPS`` of the agent's wire format)."""
MAX_CHAIN = SYN_HOPS - 1
"""Middleboxes in one policy's chain: the SYN's hops less the server's."""


def build(chunks: list[tuple[int, str]], filename: str, text: str) -> tuple[PolicyFile, list[SourceError]]:
    """The file's AST from its statements (``split_statements``), and every error found."""
    errors: list[SourceError] = []

    def error(message: str, line: int, column: int) -> None:
        errors.append(SourceError(message, SourcePos(filename, line, column), text))

    middleboxes: dict[str, Middlebox] = {}
    policies: dict[str, Policy] = {}
    for first_line, chunk in chunks:
        try:
            st = statement(chunk, first_line)
        except StatementError as exc:
            error(exc.message, exc.line, exc.column)
            continue
        if isinstance(st, Middlebox):
            if st.name in middleboxes:
                first = middleboxes[st.name].loc.line
                error(f"middlebox '{st.name}' is declared twice (first at line {first})", *_at(st.loc))
            else:
                middleboxes[st.name] = st
        elif st.name in policies:
            first = policies[st.name].loc.line
            error(f"policy '{st.name}' is declared twice (first at line {first})", *_at(st.loc))
        else:
            policies[st.name] = st
    for pol in policies.values():
        if len(pol.hops) > MAX_CHAIN:
            error(
                f"a chain holds at most {MAX_CHAIN} middleboxes (a Dysco SYN carries {SYN_HOPS} hops, "
                f"the server's included); policy '{pol.name}' lists {len(pol.hops)}",
                *_at(pol.hops[MAX_CHAIN].loc),
            )
        for hop in pol.hops:
            if isinstance(hop, TypeHop) and hop.name not in middleboxes:
                known = ", ".join(sorted(middleboxes)) or "none"
                error(f"unknown middlebox '{hop.name}' (declared: {known})", *_at(hop.loc))
    return PolicyFile(filename, tuple(middleboxes.values()), tuple(policies.values())), errors


def _at(loc: Loc) -> tuple[int, int]:
    return loc.line, loc.column


@functools.lru_cache(maxsize=256)
def statement(chunk: str, first_line: int) -> Statement:
    """One statement's AST; raises :class:`StatementError` at its first problem.

    Statements repeat (a shared declaration, an edited file read again): each is built
    once per text and first line.  The AST is never changed, so sharing it is safe."""
    context = _Context(chunk, first_line)
    try:
        st: Statement = parse(chunk, first_line, _actions(), context, _ON_SHIFT)
    except _Problem as exc:
        check_syntax(chunk, first_line)  # a syntax error later in the statement comes first
        raise StatementError(exc.message, exc.loc.line, exc.loc.column) from None
    return st


# ---- the actions --------------------------------------------------------------


def _middlebox(c: _Context, kept: list[Any]) -> Middlebox:
    name, *items = kept
    instances: tuple[str, ...] | None = None
    select: Select | None = None
    for kind, toks in items:
        first = toks[0]
        if kind == "instances":
            if instances is not None:
                raise _fail(c, f"middlebox '{name[1]}' lists its instances twice", first)
            seen: list[str] = []
            for tok in toks:
                addr = _full_address(c, tok, "an instance")
                if addr in seen:
                    raise _fail(c, f"instance {addr} is listed twice", tok)
                seen.append(addr)
            instances = tuple(seen)
        else:
            if select is not None:
                raise _fail(c, f"middlebox '{name[1]}' sets its selection twice", first)
            try:
                select = Select(first[1])
            except ValueError:
                raise _fail(
                    c, f"unknown select mode '{first[1]}'; expected round-robin, hash or least-loaded", first
                ) from None
    if not instances:
        raise _fail(c, f"middlebox '{name[1]}' has no instances", name)
    return Middlebox(name[1], instances, select or Select.ROUND_ROBIN, _loc(c, name))


def _instances(_c: _Context, kept: list[Tok]) -> tuple[str, list[Tok]]:
    return "instances", kept


def _select(_c: _Context, kept: list[Tok]) -> tuple[str, list[Tok]]:
    return "select", kept


def _policy(c: _Context, ch: list[Any]) -> Policy:
    # POLICY NAME COLON expr _ARROW hop [more hops]
    name, colon, pred, arrow, hop = ch[1], ch[2], ch[3], ch[4], ch[5]
    hops: tuple[Hop, ...] = (hop, *ch[6]) if len(ch) > 6 else (hop,)
    return Policy(name[1], pred, hops, _loc(c, name), _source(c.chunk, colon, arrow))


def _source(chunk: str, colon: Tok, arrow: Tok) -> str:
    """The predicate as written: between the ':' after the name and the '->'."""
    body = chunk[colon[2] + 1 : arrow[2]]
    return " ".join(ln.split("#", 1)[0].strip() for ln in body.split("\n")).strip()


def _hop(c: _Context, ch: list[Tok]) -> Hop:
    tok = ch[0]
    if tok[0] == "ADDR":
        return AddressHop(_full_address(c, tok, "a hop"), _loc(c, tok))
    return TypeHop(tok[1], _loc(c, tok))


def _binop(c: _Context, ch: list[Any]) -> Pred:
    _nest(c, ch[1])
    return BoolOp("and" if ch[1][0] == "AND" else "or", ch[0], ch[2])


def _negation(c: _Context, ch: list[Any]) -> Pred:
    _nest(c, ch[0])
    return Not(ch[1], _loc(c, ch[0]))


def _open_group(c: _Context, _tok: Tok) -> _Quals | None:
    return c.quals


def _group(c: _Context, ch: list[Any]) -> Pred:
    _nest(c, ch[2])
    c.quals = ch[0]  # what _open_group saved: a group passes on the qualifiers before it
    pred: Pred = ch[1]
    return pred


def _primitive(c: _Context, ch: list[Any]) -> Pred:
    q = _quals(c, ch)
    c.quals = q
    return _resolve(c, q, ch[-1])


def _proto_name(c: _Context, ch: list[Tok]) -> Pred:
    c.quals = None
    tok = ch[0]
    return Always(tok[1], _loc(c, tok))


def _bare(c: _Context, ch: list[Tok]) -> Pred:
    value = ch[0]
    if c.quals is None:
        hint = {"NUMBER": "port", "PORTRANGE": "portrange", "ADDR": "host"}.get(value[0], "net")
        text = _value_text(value)
        raise _fail(
            c,
            f"'{text}' has no qualifiers to repeat: write e.g. '{hint} {text}' "
            "(a bare value repeats the qualifiers of the primitive before it)",
            value,
        )
    return _resolve(c, c.quals, value)


_ON_SHIFT: dict[str, Callable[[Any, Tok], Any]] = {"LPAR": _open_group}

# Actions by rule label (lark's alias or rule name).  Positional ones take the values of
# every symbol of the rule (tokens included); the others the children lark would keep,
# with lists spliced in.  A unit rule not named here passes its child up.
_POSITIONAL: dict[str, lalr.Action] = {
    "policy": _policy,
    "hop": _hop,
    "binop": _binop,
    "negation": _negation,
    "group": _group,
    "primitive": _primitive,
    "proto_name": _proto_name,
    "bare": _bare,
}
_SHAPED: dict[str, lalr.Action] = {"middlebox": _middlebox, "instances": _instances, "select": _select}
# How the positional actions expect their rules to begin (checked when the tables load).
_EXPECTED = {
    "policy": ("POLICY", "NAME", "COLON", "expr", "_ARROW", "hop"),
    "binop": ("expr", "", "unary"),
    "negation": ("NOT", "unary"),
    "group": ("LPAR", "expr", "RPAR"),
}


@functools.cache
def _actions() -> tuple[lalr.Action | None, ...]:
    return tuple(_action(rule) for rule in tables().rules)


def _action(rule: lalr.Rule) -> lalr.Action | None:
    if rule.label in _POSITIONAL:
        expected = _EXPECTED.get(rule.label, ())
        got = rule.expansion[: len(expected)]
        if len(got) < len(expected) or any(e and e != g for e, g in zip(expected, got, strict=True)):
            # only if someone changes the grammar and not this module
            raise AssertionError(f"{rule.label}: the grammar changed, {got} is not {expected}")
        return _POSITIONAL[rule.label]
    if rule.label in _SHAPED:
        return _shaped(rule, _SHAPED[rule.label])
    if rule.origin.startswith("__"):  # lark's rule for a repetition: a list
        return _shaped(rule, _list)
    if len(rule.expansion) == 1:
        return None
    raise AssertionError(f"no action for {rule}")  # pragma: no cover - the grammar changed


def _list(_c: _Context, kept: list[Any]) -> list[Any]:
    return kept


def _shaped(rule: lalr.Rule, action: lalr.Action) -> lalr.Action:
    keep, splice = rule.keep, rule.splice

    def shaped(c: _Context, ch: list[Any]) -> Any:
        kept: list[Any] = []
        for i in keep:
            if i in splice:
                kept.extend(ch[i])
            else:
                kept.append(ch[i])
        return action(c, kept)

    return shaped


# ---- primitives -----------------------------------------------------------


def _quals(c: _Context, ch: list[Any]) -> _Quals:
    """The qualifiers of a primitive: its tokens before the value."""
    proto: str | None = None
    d: Dir | None = None
    addr: str | None = None
    head: tuple[Tok, ...] = tuple(ch[:-1])
    for tok in head:
        kind, text = tok[0], tok[1]
        if kind == "PQUAL":
            proto = text
        elif kind == "DIR":
            d = _DIRS.get(text) or _DIRS.get(" ".join(text.split()))
            if d is None:  # the lexer takes any two of src/dst joined by and/or
                raise _fail(
                    c,
                    f"'{' '.join(text.split())}' is not a direction; "
                    "write 'src', 'dst', 'src or dst' or 'src and dst'",
                    tok,
                )
        else:  # AQUAL or PROTO
            addr = text
    return _Quals(proto, d, addr, head)


def _resolve(c: _Context, q: _Quals, tok: Tok) -> Pred:
    """The primitive that qualifiers ``q`` and the value ``tok`` make."""
    loc = _loc(c, tok)
    vkind, text = tok[0], tok[1]
    d = q.dir or Dir.SRC_OR_DST
    addr = q.addr
    if addr == "proto":
        return _proto(c, q, tok)
    if addr is None:
        if vkind == "NUMBER":
            raise _fail(
                c,
                f"'{q.text} {text}' is ambiguous: write '{q.text} port {text}' for a port "
                f"(libpcap would read {text} as an IPv4 address)",
                tok,
            )
        addr = "host" if vkind == "ADDR" and text.count(".") == 3 else "net"
    if addr == "host" or addr == "net":
        if q.proto == "tcp":
            raise _fail(
                c, f"'tcp {addr}' is not valid: 'tcp' qualifies ports; write '{addr}' or 'ip {addr}'", tok
            )
        v, m = _address_value(c, addr, tok)
        return AddrMatch(d, v, m, "host" if addr == "host" else "net", loc)
    if q.proto == "ip":
        raise _fail(c, f"'ip {addr}' is not valid: ports belong to 'tcp'; write 'tcp {addr}'", tok)
    lo, hi = _port_value(c, addr, tok)
    return PortMatch(d, lo, hi, "port" if addr == "port" else "portrange", loc)


def _proto(c: _Context, q: _Quals, tok: Tok) -> Pred:
    if q.proto == "tcp":
        raise _fail(c, "'tcp proto' is not valid; write 'ip proto tcp'", tok)
    kind = tok[0]
    text = tok[1].lstrip("\\")
    if kind == "NUMBER":
        number = _number(c, tok)
        if number == 6:
            return Always("ip proto tcp", _loc(c, tok))
        if number > 255:
            raise _fail(c, f"protocol number {number} is out of range (0-255)", tok)
        raise _fail(
            c, f"'ip proto {number}' can never match: the classifier only sees outbound TCP SYNs", tok
        )
    if kind == "WORD" or kind == "ESCAPED":
        if text == "tcp":
            return Always("ip proto tcp", _loc(c, tok))
        raise _fail(c, f"'ip proto {text}' can never match: the classifier only sees outbound TCP SYNs", tok)
    raise _fail(c, f"'proto' takes a protocol number or name, not '{_value_text(tok)}'", tok)


# ---- values -----------------------------------------------------------------


def _address_value(c: _Context, addr: str, tok: Tok) -> tuple[int, int]:
    vkind = tok[0]
    if vkind == "WORD":
        raise _fail(
            c, f"host names such as '{tok[1]}' are not supported (no DNS lookups); use an IPv4 address", tok
        )
    if vkind in ("NUMBER", "PORTRANGE", "ESCAPED"):
        raise _fail(c, f"'{addr}' needs an IPv4 address, not '{_value_text(tok)}'", tok)
    parts = _parts(tok)
    base, octets = _dotted(c, parts[0])
    if addr == "host":
        if vkind != "ADDR":
            raise _fail(c, f"'host' takes one address, not '{_value_text(tok)}'; use 'net' for a prefix", tok)
        if octets != 4:
            raise _fail(c, f"'host' needs a full address (four octets), not '{tok[1]}'", tok)
        return base, 0xFFFFFFFF
    if vkind == "ADDR":
        return base, (0xFFFFFFFF << (32 - 8 * octets)) & 0xFFFFFFFF
    if vkind == "PREFIX":
        length = _number(c, parts[1])
        if length > 32:
            raise _fail(c, f"prefix length {length} is out of range (0-32)", parts[1])
        mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    else:  # ADDR_MASK
        mask, mask_octets = _dotted(c, parts[1])
        if mask_octets != 4:
            raise _fail(c, f"a mask needs four octets, not '{parts[1][1]}'", parts[1])
    if base & ~mask & 0xFFFFFFFF:
        raise _fail(c, f"non-network bits set in '{_value_text(tok)}'", tok)
    return base, mask


def _port_value(c: _Context, addr: str, tok: Tok) -> tuple[int, int]:
    kind, text = tok[0], tok[1]
    if kind == "WORD":
        raise _fail(c, f"service names such as '{text}' are not supported; use the port number", tok)
    if kind == "NUMBER":
        port = _number(c, tok)
        if port > 65535:
            raise _fail(c, f"port {port} is out of range (0-65535)", tok)
        return port, port
    if kind == "PORTRANGE":
        if addr == "port":
            raise _fail(c, f"'port' takes one number; write 'portrange {text}' for a range", tok)
        lo_text, hi_text = text.split("-")
        lo, hi = _decimal(c, lo_text, tok), _decimal(c, hi_text, tok)
        for p in (lo, hi):
            if p > 65535:
                raise _fail(c, f"port {p} is out of range (0-65535)", tok)
        if lo > hi:
            raise _fail(c, f"port range {text} is empty: its low end is above its high end", tok)
        return lo, hi
    raise _fail(c, f"'{addr}' needs a port number, not '{_value_text(tok)}'", tok)


def _number(c: _Context, tok: Tok) -> int:
    text = tok[1]
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    return _decimal(c, text, tok)


def _decimal(c: _Context, text: str, tok: Tok) -> int:
    if len(text) > 1 and text[0] == "0":
        raise _fail(c, f"'{text}' has a leading zero, which libpcap reads as octal; drop the zero", tok)
    if len(text) > 10:
        raise _fail(c, f"number '{text}' is too large", tok)
    return int(text)


def _dotted(c: _Context, tok: Tok) -> tuple[int, int]:
    parts = tok[1].split(".")
    value = 0
    for part in parts:
        if len(part) > 1 and part[0] == "0":
            raise _fail(
                c,
                f"'{tok[1]}' has an octet with a leading zero, which libpcap reads as octal; drop the zero",
                tok,
            )
        octet = int(part) if len(part) <= 3 else 256
        if octet > 255:
            raise _fail(c, f"'{tok[1]}' is not an IPv4 address: octet '{part}' is above 255", tok)
        value = value << 8 | octet
    return value << 8 * (4 - len(parts)), len(parts)


def _full_address(c: _Context, tok: Tok, what: str) -> str:
    value, octets = _dotted(c, tok)
    if octets != 4:
        raise _fail(c, f"{what} needs a full IPv4 address (four octets), not '{tok[1]}'", tok)
    return format_ip(value)


_DIRS = {
    "src": Dir.SRC,
    "dst": Dir.DST,
    **dict.fromkeys(("src or dst", "dst or src", "src || dst", "dst || src"), Dir.SRC_OR_DST),
    **dict.fromkeys(("src and dst", "dst and src", "src && dst", "dst && src"), Dir.SRC_AND_DST),
}


def _parts(tok: Tok) -> list[Tok]:
    """An address, and for a prefix or an address with a mask also the length or mask, as tokens
    at their own columns (so errors point at the part that is wrong)."""
    kind, text, start, line, column = tok
    if kind == "ADDR":
        return [tok]
    sep = "/" if kind == "PREFIX" else "mask"
    head, tail = text.split(sep, 1)
    second = tail.strip()
    offset = len(head) + len(sep) + (len(tail) - len(tail.lstrip()))
    return [("ADDR", head.strip(), start, line, column), ("X", second, start + offset, line, column + offset)]


def _value_text(tok: Tok) -> str:
    if tok[0] == "PREFIX":
        return "".join(tok[1].split())
    return " ".join(tok[1].split())
