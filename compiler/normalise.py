"""Pass 3: predicates -> negation normal form over classifier fields.

``src or dst`` / ``src and dst`` become a disjunction / conjunction of the two
fields; ``tcp``, ``ip`` and ``ip proto tcp`` become true; ``and``/``or`` are
flattened, constants folded and negations pushed down to field atoms.
"""

from __future__ import annotations

from dataclasses import dataclass

from dysco.compiler.ast import AddrMatch, Always, BoolOp, Dir, Not, PortMatch, Pred
from dysco.compiler.boxes import ADDR_ALL, PORT_MAX, Field, PRange, Ternary, format_ip

# Not frozen: these are built in bulk, and constructing a frozen dataclass costs about five
# times as much. They are never mutated after construction.


@dataclass(slots=True)
class Atom:
    field: Field
    constraint: Ternary | PRange
    negated: bool = False


@dataclass(slots=True)
class Junction:
    op: str  # "and" | "or"
    terms: tuple[Formula, ...]


@dataclass(slots=True)
class Const:
    value: bool


Formula = Atom | Junction | Const

TRUE = Const(True)
FALSE = Const(False)
# The only two Consts: the passes compare with them by identity.


def normalise(pred: Pred) -> Formula:
    return _nnf(pred, negate=False)


_FIELDS = {
    AddrMatch: (Field.SRC_ADDR, Field.DST_ADDR),
    PortMatch: (Field.SRC_PORT, Field.DST_PORT),
}


def _nnf(pred: Pred, negate: bool) -> Formula:
    kind = type(pred)
    if kind is BoolOp:
        assert isinstance(pred, BoolOp)
        op = pred.op
        if negate:  # De Morgan
            op = "or" if op == "and" else "and"
        return junction(op, (_nnf(pred.left, negate), _nnf(pred.right, negate)))
    if kind is Not:
        assert isinstance(pred, Not)
        return _nnf(pred.operand, not negate)
    if kind is Always:
        return FALSE if negate else TRUE
    c: Ternary | PRange
    if kind is AddrMatch:
        assert isinstance(pred, AddrMatch)
        c = Ternary(pred.value & pred.mask & ADDR_ALL, pred.mask & ADDR_ALL)
        trivial = pred.mask & ADDR_ALL == 0
    else:
        assert isinstance(pred, PortMatch)
        c = PRange(pred.low, pred.high)
        trivial = pred.low == 0 and pred.high == PORT_MAX
    d = pred.dir
    if trivial:  # every SYN has the field in range: true, whatever the direction
        return FALSE if negate else TRUE
    fields = _FIELDS[kind]
    if d is Dir.SRC:
        return Atom(fields[0], c, negate)
    if d is Dir.DST:
        return Atom(fields[1], c, negate)
    op = "or" if d is Dir.SRC_OR_DST else "and"
    if negate:
        op = "or" if op == "and" else "and"
    return Junction(op, (Atom(fields[0], c, negate), Atom(fields[1], c, negate)))


def junction(op: str, terms: tuple[Formula, ...]) -> Formula:
    absorbing, neutral = (FALSE, TRUE) if op == "and" else (TRUE, FALSE)
    flat: list[Formula] = []
    for t in terms:
        if t is absorbing:
            return absorbing
        if t is neutral:
            continue
        # repeated terms are left in: the entry pass drops what they duplicate
        if type(t) is Junction and t.op == op:
            flat.extend(t.terms)
        else:
            flat.append(t)
    if not flat:
        return neutral
    if len(flat) == 1:
        return flat[0]
    return Junction(op, tuple(flat))


def format_formula(f: Formula) -> str:
    match f:
        case Const(value=v):
            return "true" if v else "false"
        case Atom(field=fld, constraint=Ternary(value=v, mask=m), negated=neg):
            text = f"{fld.value} = {format_ip(v)}/{format_ip(m)}"
            return f"!({text})" if neg else text
        case Atom(field=fld, constraint=PRange(low=lo, high=hi), negated=neg):
            text = f"{fld.value} = {lo}" if lo == hi else f"{fld.value} in {lo}..{hi}"
            return f"!({text})" if neg else text
        case Junction(op=op, terms=terms):
            sep = " & " if op == "and" else " | "
            return "(" + sep.join(format_formula(t) for t in terms) + ")"
    raise AssertionError(f)
