"""docs/operations.md shows the commands the real-process test runs (both come from testbed.Plan)."""

from __future__ import annotations

from pathlib import Path

from dysco.runtime.testbed import Plan

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_operations_doc_matches_the_plan() -> None:
    text = DOC.read_text()
    block = text.split("<!-- testbed:begin -->\n```sh\n", 1)[1].split("```\n<!-- testbed:end -->", 1)[0]
    two, full = Plan.chain(agents="cm"), Plan.chain(agents="cms")
    hint = 'regenerate the block in docs/operations.md from Plan.chain(agents="cm").script()'
    assert block == two.script(), hint
    assert full.agent(full.hosts[2]) in text, "the third agent of the full deployment"
    for cmd in two.teardown():
        assert cmd in text
