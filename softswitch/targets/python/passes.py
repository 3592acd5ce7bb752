"""The python target: AST -> checked program information + generated Python source.

The passes, in order (the only place the order is written):

1. ``declare`` (:mod:`.context`): global types, constants, errors, externs, actions,
   functions, blocks;
2. ``classes`` (:mod:`.classes`): one Python class per header/struct type;
3. ``instantiate`` (:mod:`.blocks`): the ``main`` package's six v1model blocks,
   recursively (sub-controls, sub-parsers), generating a function per parser state,
   action (:mod:`.actions`), table apply (:mod:`.tables_gen`) and control body
   (:mod:`.stmts`, :mod:`.exprs`, :mod:`.externs`), and recording tables and externs
   in :class:`~dysco.softswitch.ir.ProgramInfo`;
4. ``controller headers`` (:mod:`.blocks`): the ``@controller_header`` types for P4Info.

Imports run one way: scope -> exprs -> context -> values -> externs -> stmts ->
actions -> tables_gen -> blocks -> passes.
"""

from __future__ import annotations

from ...frontend import ast as A
from ...frontend.preprocess import SourceMap
from .blocks import BlockCompiler
from .classes import emit_classes
from .context import Compiled


def compile_program(prog: A.Program, sm: SourceMap) -> Compiled:
    c = BlockCompiler(prog, sm)
    c.declare()
    emit_classes(c)
    entry = c.instantiate_main()
    c.controller_headers()
    return Compiled(c.out.text(), c.info, c.types, c.errors, entry)


__all__ = ["compile_program"]
