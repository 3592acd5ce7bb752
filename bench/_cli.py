"""What the testbed benchmarks' ``main`` functions share: run the work in a directory the user
keeps or a temporary one, say a user error in one line, print the JSON."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dysco.errors import UserError


def run_in_dir(prog: str, keep: Path | None, work: Callable[[Path], dict[str, Any]]) -> None:
    """``work(directory)`` in ``keep`` (made if missing) or in a temporary directory removed
    afterwards; its result printed as JSON, a :class:`~dysco.errors.UserError` as
    ``prog: message`` with exit status 1."""
    try:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            result = work(keep)
        else:
            with tempfile.TemporaryDirectory(prefix=f"dysco-{prog.replace('_', '-')}-") as tmp:
                result = work(Path(tmp))
    except UserError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(result, indent=2))
