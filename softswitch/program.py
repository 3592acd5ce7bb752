"""A compiled P4 program: front end + code generation + P4Info, and its device-config bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from p4.config.v1 import p4info_pb2

from dysco.errors import UserError

from . import p4info as P
from .backend.compile import Compiled, compile_program
from .frontend.parse import parse
from .frontend.preprocess import SourceMap, preprocess

MAGIC = b"DYSCO-SOFTSWITCH-PROGRAM/1\n"


class P4Program:
    """Implements :class:`dysco.softswitch.api.Program`."""

    def __init__(self, name: str, source: SourceMap) -> None:
        self.name = name
        self.source = source
        self.ast = parse(source)
        self.compiled: Compiled = compile_program(self.ast, source)
        P.number(self.compiled.info)
        self._p4info = P.build(self.compiled.info)

    @property
    def p4info(self) -> p4info_pb2.P4Info:
        return self._p4info

    @property
    def python_source(self) -> str:
        """The generated Python code (for ``dysco p4c --emit-python`` and debugging)."""
        return self.compiled.source

    def device_config(self) -> bytes:
        doc = {"name": self.name, "text": self.source.text, "lines": [list(x) for x in self.source.lines]}
        return MAGIC + json.dumps(doc, separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"<P4Program {self.name}>"


def load_program(
    path: str | os.PathLike[str], *, include_dirs: Sequence[str] = (), defines: Sequence[str] = ()
) -> P4Program:
    """Preprocess, parse, check and compile a P4_16 v1model program."""
    sm = preprocess(path, include_dirs, defines)
    return P4Program(Path(path).name, sm)


def program_from_device_config(config: bytes) -> P4Program:
    """The program a device config (as written by ``dysco p4c``) holds."""
    if not isinstance(config, bytes | bytearray) or not config.startswith(MAGIC):
        raise UserError(
            "the device config is not a softswitch program (expected the file `dysco p4c` writes, "
            f"starting with {MAGIC.strip().decode()!r})"
        )
    try:
        doc = json.loads(bytes(config[len(MAGIC) :]).decode())
        name = str(doc["name"])
        lines = tuple((str(f), int(n)) for f, n in doc["lines"])
        text = str(doc["text"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the device config is corrupt: {exc}") from None
    return P4Program(name, SourceMap(text, lines))
