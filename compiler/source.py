"""Reading a policy file: UTF-8 text, or a :class:`UserError` that says where it is not."""

from __future__ import annotations

from pathlib import Path

from dysco.errors import UserError


def read_policies(path: str | Path) -> str:
    """The text of the policy file ``path``.  A file that cannot be read is reported with the
    system's reason; bytes that are not UTF-8 with ``FILE:LINE:COL`` of the first of them (the
    column counts characters, as the compiler's other messages do)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise UserError(
            f"{path}:{line}:{column}: not UTF-8 (byte {bad}: {exc.reason}); policy files are UTF-8 text"
        ) from None
