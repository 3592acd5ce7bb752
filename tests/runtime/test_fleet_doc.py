"""docs/fleet.md: every ``dysco`` command of the walk-through parses as written (the end-to-end
test, tests/e2e/test_fleet.py, runs the same commands on the same topology), and the commands'
help shows an example."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dysco.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def commands(name: str = "fleet") -> list[list[str]]:
    """The walk-through's dysco commands, ``$E`` expanded as the shell would."""
    text = DOC.read_text()
    block = text.split(f"<!-- {name}:begin -->\n```sh\n", 1)[1].split(f"```\n<!-- {name}:end -->")[0]
    [e] = [shlex.split(line)[0].removeprefix("E=") for line in block.splitlines() if line.startswith("E=")]
    return [
        shlex.split(line.replace("$E", e), comments=True)
        for line in block.splitlines()
        if line.startswith("dysco ")
    ]


def test_the_walk_through_parses() -> None:
    parser = build_parser()
    seen = set()
    for argv in commands() + commands("fleet-ha"):
        args = parser.parse_args(argv[1:])
        seen.add(argv[1] if argv[1] != "fleet" else f"fleet {argv[2]}")
        assert callable(args.handler), argv
    assert seen >= {
        "testbed",
        "fleet status",
        "fleet policies",
        "fleet replace",
        "fleet insert",
        "fleet delete",
        "fleet drain",
        "fleet undrain",
        "fleet keys",
    }


@pytest.mark.parametrize("name", ["fleet", "fleet-ha"])
def test_the_walk_through_uses_the_testbeds_etcd(name: str) -> None:
    from dysco.testbed import load_topology

    plan = load_topology(DOC.parents[1] / "examples" / f"{name}.toml")
    fleet = [argv for argv in commands(name) if argv[1] == "fleet"]
    assert fleet and all(argv[-len(plan.etcd_client()) :] == plan.etcd_client() for argv in fleet)


@pytest.mark.parametrize(
    "verb",
    [["policies", "put"], ["status"], ["replace"], ["insert"], ["delete"], ["drain"], ["undrain"],
     ["keys", "put"], ["keys", "rotate"], ["keys", "show"]],
)  # fmt: skip
def test_help_shows_an_example(verb: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fleet", *verb, "--help"])
    assert "example: dysco fleet " in capsys.readouterr().out
