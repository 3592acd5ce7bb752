"""The project's error hierarchy.

* :class:`UserError`: the user's input is wrong (a bad policy file, a bad flag).
  The CLI prints it without a traceback and exits with status 2.
* :class:`PeerError`: a remote party broke the protocol (a forged or malformed
  message, a P4Runtime server that answers nonsense).
* :class:`InternalError`: our own bug.

Errors about text carry a :class:`SourcePos` and render as
``FILE:LINE:COL: message``, the offending line and a caret under the column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class DyscoError(Exception):
    """Base class of every error the project raises on purpose."""


class UserError(DyscoError):
    """The user's input or invocation is wrong."""


class PeerError(DyscoError):
    """A peer violated the protocol."""


class InternalError(DyscoError):
    """A bug in dysco itself."""


@dataclass(frozen=True)
class SourcePos:
    """A 1-based position in a named text."""

    file: str
    line: int
    column: int


def caret_context(text: str, line: int, column: int) -> str:
    """The source line ``line`` of ``text`` and a caret under ``column``."""
    lines = text.split("\n")  # lines as parsers count them: only \n ends a line
    if not 1 <= line <= len(lines):
        return ""
    src = lines[line - 1].rstrip("\r").expandtabs(1)
    col = max(1, min(column, len(src) + 1))
    return f"    {src}\n    {' ' * (col - 1)}^"


class SourceError(UserError):
    """A mistake at one place in a text the user wrote."""

    def __init__(self, message: str, pos: SourcePos, text: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.text = text

    def __str__(self) -> str:
        head = f"{self.pos.file}:{self.pos.line}:{self.pos.column}: {self.message}"
        if self.text is None:
            return head
        ctx = caret_context(self.text, self.pos.line, self.pos.column)
        return f"{head}\n{ctx}" if ctx else head


class SourceErrors(UserError):
    """Several :class:`SourceError` found in one run, in file order."""

    def __init__(self, errors: Iterable[SourceError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.pos.file, e.pos.line, e.pos.column))
        if not self.errors:
            raise InternalError("SourceErrors needs at least one error")
        super().__init__(str(self.errors[0]))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
