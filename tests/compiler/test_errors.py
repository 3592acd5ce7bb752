"""Bad policy files: every message, its position and caret, several per run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dysco.compiler.passes import MAX_POLICIES, compile_text
from dysco.errors import SourceError, SourceErrors

HERE = Path(__file__).parent
CASES = sorted((HERE / "mustfail").glob("*.dysco"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_must_fail(case: Path, golden: Callable[[Path, str], None]) -> None:
    with pytest.raises(SourceErrors) as info:
        compile_text(case.read_text(), f"mustfail/{case.name}")
    text = str(info.value) + "\n"
    golden(case.with_suffix(".err"), text)
    # every error names a real position of the file and shows a caret
    lines = case.read_text().splitlines()
    for err in info.value.errors:
        assert 1 <= err.pos.line <= len(lines)
        assert 1 <= err.pos.column <= len(lines[err.pos.line - 1]) + 1
        assert "^" in str(err)


def test_several_errors_reported_in_one_run() -> None:
    with pytest.raises(SourceErrors) as info:
        compile_text((HERE / "mustfail" / "several-errors.dysco").read_text(), "f")
    assert [e.pos.line for e in info.value.errors] == [2, 3, 4, 5]


def test_cli_exit_status_2_without_traceback() -> None:
    case = HERE / "mustfail" / "several-errors.dysco"
    proc = subprocess.run(
        [sys.executable, "-m", "dysco", "compile", str(case)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{case}:2:11: 'udp' can never match")


def test_more_policies_than_the_policy_id_has_room_for() -> None:
    text = "middlebox fw { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: port 80 -> fw\n" for i in range(MAX_POLICIES + 1)
    )
    with pytest.raises(SourceError) as info:
        compile_text(text, "huge.dysco")
    assert (info.value.pos.line, info.value.pos.column) == (MAX_POLICIES + 2, 8)
    assert f"more than {MAX_POLICIES} policies" in str(info.value)


@pytest.mark.parametrize(
    "deep",
    [
        lambda n: " or ".join(f"port {i}" for i in range(n + 1)),
        lambda n: "not " * n + "port 80",
        lambda n: "(" * n + "port 80" + ")" * n,
    ],
    ids=["or", "not", "parentheses"],
)
def test_predicates_nest_at_most_500_deep(deep: Callable[[int], str]) -> None:
    head = "middlebox fw { instances 10.0.2.1; }\n"
    compile_text(f"{head}policy p: {deep(500)} -> fw\n", "deep.dysco")
    with pytest.raises(SourceErrors) as info:  # not a RecursionError in a later pass
        compile_text(f"{head}policy p: {deep(5000)} -> fw\n", "deep.dysco")
    (err,) = info.value.errors
    assert err.pos.line == 2
    assert "more than 500 operators and parentheses; split it into several policies" in err.message


def test_the_chain_limit_is_the_syn_payloads() -> None:
    """The compiler's limit follows the agent's wire format: 16 hops, one of them the server."""
    from dysco.compiler.build import MAX_CHAIN, SYN_HOPS
    from dysco.runtime.core._syn_payload import MAX_HOPS

    assert (SYN_HOPS, MAX_CHAIN) == (MAX_HOPS, MAX_HOPS - 1)


def test_a_file_that_is_not_utf8_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin1.dysco"
    path.write_bytes(b"middlebox fw { instances 10.0.2.1; }\npolicy web: tcp -> fw # \xc3\xa9 caf\xe9\n")
    proc = subprocess.run(
        [sys.executable, "-m", "dysco", "compile", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # line 2, column 30: the lone byte of "caf\xe9" (the valid é before it is one character, not two)
    assert f"{path}:2:30: not UTF-8 (byte e9" in proc.stderr


def test_the_cycle_collector_is_on_again_after_a_compilation_good_or_bad() -> None:
    import gc

    assert gc.isenabled()
    compile_text("middlebox fw { instances 10.0.2.1; }\npolicy p: port 80 -> fw\n", "ok.dysco")
    assert gc.isenabled()
    with pytest.raises(SourceErrors):
        compile_text("policy p: udp -> nowhere\n", "bad.dysco")
    assert gc.isenabled()
    gc.disable()
    try:
        compile_text("middlebox fw { instances 10.0.2.1; }\npolicy p: port 80 -> fw\n", "ok.dysco")
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
