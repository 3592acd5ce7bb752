"""``dysco agent --keys FILE``: bad key files stop the agent before it connects, with a located
error (the key ring itself is tested in tests/security/test_auth.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _agent(keys: Path) -> list[str]:
    return ["agent", "--address", "10.0.0.1", "--p4", str(ROOT / "p4src" / "dysco.p4"), "--keys", str(keys)]


def test_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_agent(tmp_path / "none.keys")) == 2
    assert "cannot read the key file" in capsys.readouterr().err


def test_bad_key_line_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "domain.keys"
    keys.write_text("1 zz current\n")
    keys.chmod(0o600)
    assert main(_agent(keys)) == 2
    err = capsys.readouterr().err
    assert f"{keys}:1:3: the key is not hexadecimal" in err
    assert "      ^" in err
