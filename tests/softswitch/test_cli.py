"""``dysco p4c``: the files it writes, their formats, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format, text_format

from dysco.cli import main
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.softswitch import load_program, program_from_device_config

ROUTER = Path(__file__).parent / "programs" / "router.p4"


def test_p4c_writes_p4info_and_device_config(tmp_path: Path) -> None:
    txtpb, txt = tmp_path / "r.p4info.txtpb", tmp_path / "r.p4info.txt"
    js, binf = tmp_path / "r.p4info.json", tmp_path / "r.p4info.bin"
    files = ",".join(map(str, (txtpb, txt, js, binf)))
    rc = main(["p4c", str(ROUTER), "--p4runtime-files", files, "-o", str(tmp_path / "out")])
    assert rc == 0
    want = load_program(ROUTER).p4info
    assert txtpb.read_text().startswith(
        "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n"
    )
    assert text_format.Parse(txtpb.read_text(), p4info_pb2.P4Info()) == want
    assert text_format.Parse(txt.read_text(), p4info_pb2.P4Info()) == want
    assert json_format.Parse(js.read_text(), p4info_pb2.P4Info()) == want
    assert p4info_pb2.P4Info.FromString(binf.read_bytes()) == want
    config = (tmp_path / "out" / "router.json").read_bytes()
    assert program_from_device_config(config).p4info == want


def test_p4c_emit_python_and_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = tmp_path / "router.py"
    assert main(["p4c", str(ROUTER), "-o", str(tmp_path), "--emit-python", str(py)]) == 0
    assert "def " in py.read_text()
    assert main(["p4c", str(ROUTER), "--parse"]) == 0
    assert "ParserDecl(name='MyParser'" in capsys.readouterr().out


def test_p4c_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["p4c", str(ROUTER), "-o", str(tmp_path), "--p4runtime-files", str(tmp_path / "x.yaml")]) == 2
    assert "unknown P4Info format" in capsys.readouterr().err
    bad = tmp_path / "bad.p4"
    bad.write_text("header h { bit<8> a }\n")
    assert main(["p4c", str(bad), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:1:21: syntax error: unexpected '}}'")
    assert main(["p4c", str(bad), "-D", "X=1", "-I", str(tmp_path), "-o", str(tmp_path)]) == 2
    capsys.readouterr()
    a_dir = tmp_path / "p4info.txtpb"
    a_dir.mkdir()
    assert main(["p4c", str(ROUTER), "-o", str(tmp_path), "--p4runtime-files", str(a_dir)]) == 2
    assert capsys.readouterr().err == f"dysco p4c: {a_dir}: cannot write: Is a directory\n"
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert main(["p4c", str(ROUTER), "-o", str(a_file / "out")]) == 2
    assert "cannot make the output directory: Not a directory" in capsys.readouterr().err


def test_p4c_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("p4c", "stf"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "example: dysco " + cmd in capsys.readouterr().out
