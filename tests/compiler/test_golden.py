"""Each compiler pass against golden files; ``pytest --update-goldens`` rewrites them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dysco.compiler.output import to_json, to_text
from dysco.compiler.passes import STAGES, Compiled, Options, dump_stage

HERE = Path(__file__).parent
CASES = sorted((HERE / "golden").glob("*.dysco"))


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_stage(case: Path, stage: str, golden: Callable[[Path, str], None]) -> None:
    out = dump_stage(case.read_text(), case.name, stage)  # type: ignore[arg-type]
    if isinstance(out, Compiled):
        golden(case.with_suffix(".entries.json"), to_json(out))
        golden(case.with_suffix(".entries.txt"), to_text(out))
    else:
        golden(case.with_suffix(f".{stage}.txt"), out)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_ternary_ports(case: Path, golden: Callable[[Path, str], None]) -> None:
    out = dump_stage(case.read_text(), case.name, "entries", Options(port_match="ternary"))
    assert isinstance(out, Compiled)
    golden(case.with_suffix(".ternary.txt"), to_text(out))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_a_four_entry_classifier(case: Path, golden: Callable[[Path, str], None]) -> None:
    """The placement under pressure: what fits, and the software entries for the rest."""
    out = dump_stage(case.read_text(), case.name, "entries", Options(capacity=4))
    assert isinstance(out, Compiled)
    golden(case.with_suffix(".capacity4.txt"), to_text(out))
