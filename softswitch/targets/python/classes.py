"""Pass 2: a Python class per header and struct type (fields, copy, header extract/emit)."""

from __future__ import annotations

from ...frontend import types as T
from .context import Compiler
from .scope import fattr, pyname


def emit_classes(c: Compiler) -> None:
    """One Python class per header/struct type, with extract/emit codecs for headers."""
    em = c.out
    for name, t in c.types.items():
        if not isinstance(t, T.Struct) or t.name != name:
            continue
        cls = pyname("S", name)
        attrs = [fattr(f) for f, _ in t.fields]
        vb = [f for f, ft in t.fields if isinstance(ft, T.Varbit)]
        slots = (["_v"] if t.is_header else []) + attrs + [fattr(f) + "__w" for f in vb]
        em(f"class {cls}:")
        # Scalar fields start as class attributes, so making a struct per packet costs one
        # allocation and only the fields a packet writes land in the instance (no __slots__).
        composite = [(a, ft) for (_, ft), a in zip(t.fields, attrs, strict=True) if T.is_composite(ft)]
        em(f"    _fields = {tuple(slots)!r}")
        if t.is_header:
            em("    _v = False")
        for (_, ft), a in zip(t.fields, attrs, strict=True):
            if not T.is_composite(ft):
                em(f"    {a} = {c.zero(ft)}")
        for f in vb:
            em(f"    {fattr(f)}__w = 0")
        if composite:
            em("    def __init__(self):")
            for a, ft in composite:
                em(f"        self.{a} = {c.zero(ft)}")
        em("    def _copy(self):")
        em(f"        o = {cls}.__new__({cls})")
        em("        o.__dict__.update(self.__dict__)")
        for a, _ in composite:
            em(f"        o.{a} = self.{a}._copy()")
        em("        return o")
        if t.is_header:
            _header_codecs(c, t, cls)
        em("")


def _header_codecs(c: Compiler, t: T.Struct, cls: str) -> None:
    em = c.out
    fixed = all(not isinstance(ft, T.Varbit) for _, ft in t.fields)
    widths = [(fattr(f), ft) for f, ft in t.fields]
    if fixed:
        nbits = sum(T.bit_width(ft) for _, ft in widths)
        nbytes = nbits // 8
        em("    def _ex(self, pk, too_short):")
        em("        o = pk.off")
        em(f"        e = o + {nbytes}")
        em("        if e > pk.n:")
        em("            raise ParserReject(too_short)")
        em("        pk.off = e")
        em("        x = int.from_bytes(pk.data[o:e], 'big')")
        shift = nbits
        for a, ft in widths:
            w = T.bit_width(ft)
            shift -= w
            v = f"(x >> {shift})" if shift else "x"
            v = f"({v} & {(1 << w) - 1})" if shift + w < nbits else v
            em(f"        self.{a} = {'bool(' + v + ')' if ft == T.BOOL else v}")
        em("        self._v = True")
        em("    def _bits(self):")
        parts = []
        shift = nbits
        for a, ft in widths:
            shift -= T.bit_width(ft)
            val = f"int(self.{a})" if ft == T.BOOL else f"self.{a}"
            parts.append(f"({val} << {shift})" if shift else val)
        em(f"        return {' | '.join(parts) or '0'}")
        em("    def _em(self, pk):")
        em("        if self._v:")
        em(f"            pk.out.append(self._bits().to_bytes({nbytes}, 'big'))")
        em(f"    _nbits = {nbits}")
        return
    # a header with one varbit field
    em("    def _ex_var(self, pk, too_short, vbits, bad_arg):")
    fixed_bits = sum(T.bit_width(ft) for _, ft in widths if not isinstance(ft, T.Varbit))
    vmax = next(ft.max_width for _, ft in widths if isinstance(ft, T.Varbit))
    em(f"        if vbits > {vmax} or vbits % 8:")
    em("            raise ParserReject(bad_arg)")
    em(f"        nbits = {fixed_bits} + vbits")
    em("        o = pk.off")
    em("        e = o + nbits // 8")
    em("        if e > pk.n:")
    em("            raise ParserReject(too_short)")
    em("        pk.off = e")
    em("        x = int.from_bytes(pk.data[o:e], 'big')")
    for a, ft in reversed(widths):
        if isinstance(ft, T.Varbit):
            em(f"        self.{a} = x & ((1 << vbits) - 1)")
            em(f"        self.{a}__w = vbits")
            em("        x >>= vbits")
        else:
            w = T.bit_width(ft)
            em(f"        self.{a} = x & {(1 << w) - 1}")
            em(f"        x >>= {w}")
    em("        self._v = True")
    em("    def _em(self, pk):")
    em("        if not self._v:")
    em("            return")
    em("        x = 0")
    em("        n = 0")
    for a, ft in widths:
        if isinstance(ft, T.Varbit):
            em(f"        x = (x << self.{a}__w) | self.{a}")
            em(f"        n += self.{a}__w")
        else:
            em(f"        x = (x << {T.bit_width(ft)}) | self.{a}")
            em(f"        n += {T.bit_width(ft)}")
    em("        pk.out.append(x.to_bytes(n // 8, 'big'))")
