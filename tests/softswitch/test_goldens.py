"""Front-end goldens: the P4Info (text format) of every test program, compared with a file.

Update after an intended change with ``pytest tests/softswitch --update-goldens``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format

from dysco.softswitch import load_program

HERE = Path(__file__).parent
PROGRAMS = sorted([*HERE.glob("stf/*.p4"), *HERE.glob("programs/*.p4")])
PROGRAMS = [p for p in PROGRAMS if p.name != "common.p4"]


@pytest.mark.parametrize("path", PROGRAMS, ids=[f"{p.parent.name}/{p.stem}" for p in PROGRAMS])
def test_p4info_golden(path: Path, golden: Any) -> None:
    prog = load_program(path)
    golden(
        HERE / "golden" / f"{path.parent.name}-{path.stem}.p4info.txt",
        text_format.MessageToString(prog.p4info),
    )


def test_ast_golden(golden: Any) -> None:
    from dysco.softswitch.frontend.parse import parse
    from dysco.softswitch.frontend.preprocess import strip_markers

    text = "header h_t { bit<8> a; }\nconst bit<8> K = 8w1 + 2;\nenum bit<4> E { A = 1, B = 2 }\n"
    golden(
        HERE / "golden" / "small.ast.txt",
        "\n".join(map(repr, parse(strip_markers(text, "small.p4")).decls)) + "\n",
    )
