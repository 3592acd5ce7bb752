"""The ``dysco`` command: one entry point, one subcommand per job.

Each subpackage contributes its subcommands through a ``register(subparsers)``
function in its own ``cli`` module, so adding a command touches one package.
Only this module configures logging and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from dysco import __version__
from dysco.errors import DyscoError, SourceError, SourceErrors, UserError

# Modules whose ``register`` adds subcommands; imported lazily-cheap (no heavy imports at top).
_COMMAND_MODULES = (
    "dysco.compiler.cli",
    "dysco.softswitch.cli",
    "dysco.softswitch.server.cli",
    "dysco.runtime.cli",
    "dysco.testbed.cli",
    "dysco.testbed.demo",
    "dysco.bmv2.cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dysco",
        description="Dysco: dynamic service chaining of TCP sessions, offloaded to P4.",
        epilog="example: dysco compile examples/policies.dysco --format text",
    )
    parser.add_argument("--version", action="version", version=f"dysco {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name + ".").startswith(exc.name + "."):
                # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as exc:
        # Errors about a text start with FILE:LINE:COL and print as they are.
        located = isinstance(exc, SourceError | SourceErrors)
        print(str(exc) if located else f"dysco {args.command}: {exc}", file=sys.stderr)
        return 2
    except DyscoError as exc:
        print(f"dysco {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
