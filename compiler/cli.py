"""``dysco compile``: policy file -> classifier entries and chains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dysco.compiler.source import read_policies
from dysco.errors import UserError

EPILOG = """\
examples:
  dysco compile examples/policies.dysco --format text
  dysco compile examples/policies.dysco -o entries.json
  dysco compile examples/policies.dysco --stage normal     # dump one pass
  dysco compile examples/policies.dysco --port-match ternary   # no range match on the target
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "compile",
        help="compile a policy file to classifier entries and chains",
        description="Compile a Dysco policy file (pcap-filter predicates and middlebox chains) into "
        "prioritised classifier entries and the chain table the agent uses.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="policy file ('-' for standard input)")
    p.add_argument("--format", choices=("json", "text"), default="json", help="output format (default json)")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.add_argument(
        "--stage",
        choices=("parse", "ast", "normal", "entries"),
        default="entries",
        help="stop after this pass and print its output (default: entries)",
    )
    p.add_argument(
        "--port-match",
        choices=("range", "ternary"),
        default="range",
        help="range: port ranges stay ranges; ternary: expand them into value/mask prefixes",
    )
    p.add_argument(
        "--budget", type=int, default=None, help="most entries a file may expand to (default 4096)"
    )
    p.set_defaults(handler=run)


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    return read_policies(path), path


def run(args: argparse.Namespace) -> int:
    from dysco.compiler.output import to_json, to_text
    from dysco.compiler.passes import DEFAULT_BUDGET, Options, dump_stage

    if args.budget is not None and args.budget < 1:
        raise UserError("--budget must be at least 1")
    text, name = _read(args.file)
    options = Options(budget=args.budget or DEFAULT_BUDGET, port_match=args.port_match)
    result = dump_stage(text, name, args.stage, options)
    if isinstance(result, str):
        out = result
    else:
        out = to_json(result) if args.format == "json" else to_text(result)
    if args.output:
        try:
            Path(args.output).write_text(out)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc}") from None
    else:
        sys.stdout.write(out)
    return 0
