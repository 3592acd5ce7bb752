"""A compiled P4 program: front end + code generation + P4Info, and its device-config bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from dysco.errors import UserError
from dysco.proto.p4.config.v1 import p4info_pb2

from . import p4info as P
from .frontend.parse import parse
from .frontend.preprocess import SourceMap, preprocess
from .targets.python.context import Compiled
from .targets.python.passes import compile_program

FORMAT = "dysco-softswitch-program"
VERSION = 1


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
        """A JSON document holding the preprocessed program (what ``dysco p4c`` writes as ``NAME.json``)."""
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "text": self.source.text,
            "lines": [list(x) for x in self.source.lines],
        }
        return json.dumps(doc, separators=(",", ":")).encode()

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
    try:
        doc = json.loads(bytes(config).decode())
    except (ValueError, TypeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        hint = " (this looks like a bmv2 JSON file)" if isinstance(doc, dict) and "pipelines" in doc else ""
        raise UserError(
            f"the device config is not a softswitch program{hint}: expected the JSON file `dysco p4c` writes"
        )
    if doc.get("version") != VERSION:
        raise UserError(
            f"the device config has version {doc.get('version')!r}; this softswitch reads {VERSION}"
        )
    try:
        name = str(doc["name"])
        lines = tuple((str(f), int(n)) for f, n in doc["lines"])
        text = str(doc["text"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"the device config is corrupt: {exc!r}") from None
    return P4Program(name, SourceMap(text, lines))
