"""docs/architecture.md names files that exist, and lists the reconfiguration's phases in the
order the code runs them (Reconfigurer's bases)."""

from __future__ import annotations

import re
from pathlib import Path

from dysco.runtime.core.reconf import Reconfigurer

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
# where a bare file name in the page is looked for (the tables name modules of these folders)
FOLDERS = ("runtime/core", "runtime/core/reconf", "runtime", "p4src", "p4src/include", "compiler")


def test_every_file_the_page_names_exists() -> None:
    names = set(re.findall(r"`([\w/.-]+\.(?:py|p4|md))`", DOC))
    assert len(names) > 30
    missing = []
    for name in sorted(names):
        if "/" in name:
            found = (ROOT / name).exists()
        else:
            found = any((ROOT / folder / name).exists() for folder in FOLDERS)
        if not found:
            missing.append(name)
    assert missing == []


def test_the_phase_table_is_in_the_order_of_the_reconfigurer_bases() -> None:
    table = DOC[DOC.index("| # | phase | module |") :]
    rows = re.findall(r"^\| [-\d] \| [^|]+ \| `(_\w+)\.py`", table, re.M)
    bases = [cls.__module__.rsplit(".", 1)[1] for cls in Reconfigurer.__bases__]
    assert rows == bases
