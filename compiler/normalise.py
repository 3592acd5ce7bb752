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


def normalise(pred: Pred) -> Formula:
    return _nnf(pred, negate=False)


def _nnf(pred: Pred, negate: bool) -> Formula:
    match pred:
        case Always():
            return FALSE if negate else TRUE
        case Not(operand=p):
            return _nnf(p, not negate)
        case BoolOp(op=op, left=left, right=right):
            if negate:  # De Morgan
                op = "or" if op == "and" else "and"
            return junction(op, (_nnf(left, negate), _nnf(right, negate)))
        case AddrMatch(dir=d, value=v, mask=m):
            c: Ternary | PRange = Ternary(v, m)
            fields = (Field.SRC_ADDR, Field.DST_ADDR)
        case PortMatch(dir=d, low=lo, high=hi):
            c = PRange(lo, hi)
            fields = (Field.SRC_PORT, Field.DST_PORT)
    if d is Dir.SRC:
        return atom(fields[0], c, negate)
    if d is Dir.DST:
        return atom(fields[1], c, negate)
    op = "or" if d is Dir.SRC_OR_DST else "and"
    if negate:
        op = "or" if op == "and" else "and"
    return junction(op, (atom(fields[0], c, negate), atom(fields[1], c, negate)))


def atom(field: Field, c: Ternary | PRange, negated: bool) -> Formula:
    trivial = (isinstance(c, Ternary) and c.mask == 0) or (isinstance(c, PRange) and c == PRange(0, PORT_MAX))
    if trivial:
        return FALSE if negated else TRUE
    if isinstance(c, Ternary):
        c = Ternary(c.value & c.mask & ADDR_ALL, c.mask & ADDR_ALL)
    return Atom(field, c, negated)


def junction(op: str, terms: tuple[Formula, ...]) -> Formula:
    absorbing, neutral = (FALSE, TRUE) if op == "and" else (TRUE, FALSE)
    flat: list[Formula] = []
    for t in terms:
        if t == absorbing:
            return absorbing
        if t == neutral:
            continue
        # repeated terms are left in: the entry pass drops what they duplicate
        if isinstance(t, Junction) and t.op == op:
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
