"""scripts/check_import_cycles.py: `make lint` fails on any import cycle in the dysco package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_import_cycles.py"


def _check(*dirs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, dirs)], capture_output=True, text=True, check=False
    )


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


def test_a_package_without_cycles_passes(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "from pkg.a import A\n",
            "a.py": "from pkg import b\nfrom pkg.sub.c import C\nA = 1\n",
            "b.py": "import os\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..b import *\nC = 2\n",
        },
    )
    result = _check(pkg)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_cycle_round_three_modules_fails_and_names_them(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import f\n",
            "b.py": "from . import c\n",
            # an import only for type checking, or inside a function, is a dependency all the same
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import X\n",
            "d.py": "import pkg.a\n",
        },
    )
    result = _check(pkg)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "import cycle between 3 modules: pkg.a, pkg.b, pkg.c",
        "  for example: pkg.a -> pkg.b -> pkg.c -> pkg.a",
    ]


def test_two_modules_importing_each_other_inside_functions_fail(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "x.py": "def f():\n    from pkg.y import g\n",
            "y.py": "def g():\n    import pkg.x\n",
        },
    )
    result = _check(pkg)
    assert result.returncode == 1
    assert "pkg.x -> pkg.y -> pkg.x" in result.stdout


def test_a_package_importing_its_own_modules_is_no_cycle(tmp_path: Path) -> None:
    # pkg/__init__ re-exports a, and a imports a sibling through the package: the parents a dotted
    # import runs on its way are not edges
    pkg = _package(
        tmp_path,
        {"__init__.py": "from pkg.a import A\n", "a.py": "from pkg.b import B\nA = 1\n", "b.py": "B = 2\n"},
    )
    assert _check(pkg).returncode == 0


def test_not_a_package_is_a_usage_error(tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result.returncode == 2
    assert "is not a package directory" in result.stderr


def test_the_dysco_package_bench_and_ptf_tests_have_no_cycles() -> None:
    # what `make lint` runs
    result = _check(ROOT / "dysco", ROOT / "bench", ROOT / "ptf_tests")
    assert (result.returncode, result.stdout) == (0, "")
