"""``dysco compile`` (policy file -> classifier entries and chains) and ``dysco classify``
(which policy the deployed system gives each SYN of a pcap file)."""

from __future__ import annotations

import argparse
import json
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
  dysco compile policies.dysco --p4info build/dysco.p4info.txt --stats   # the target's table size
"""

CLASSIFY_EPILOG = """\
Each TCP SYN (SYN set, ACK clear, IPv4) of the file gets the policy whose chain it takes,
exactly as the NIC's classifier entries and the agent decide it: the entries are looked up
as a ternary/range table with priorities does, and a SYN a "software" entry punts is
classified by the agent's evaluator. Other packets are skipped; N is the packet's number
in the file (from 1).

examples:
  dysco classify examples/policies.dysco syns.pcap
      packet  policy  where
      1       web     nic
      2       -       nic
  dysco classify policies.dysco syns.pcap --json --capacity 1024
      {"packet": 1, "policy": "web", "where": "nic"}
      {"packet": 2, "policy": null, "where": "software"}
"""


def _placement_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port-match",
        choices=("range", "ternary"),
        default="range",
        help="range: port ranges stay ranges; ternary: expand them into value/mask prefixes",
    )
    p.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="classifier entries the target holds (default: the table size in --p4info, else 4096)",
    )
    p.add_argument(
        "--p4info", help="the target's P4Info (text, or binary if it ends in .bin): its classifier size"
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="most entries one policy may take before it is classified in software (default 64)",
    )


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "compile",
        help="compile a policy file to classifier entries and chains",
        description="Compile a Dysco policy file (pcap-filter predicates and middlebox chains) into "
        "prioritised classifier entries and the chain table the agent uses. What does not fit the "
        "classifier is classified in software by the agent, never refused.",
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
    _placement_flags(p)
    p.add_argument(
        "--stats",
        action="store_true",
        help="also print to standard error: entries per policy, NIC and software shares, seconds per pass "
        "(JSON with --format json)",
    )
    p.set_defaults(handler=run)

    c: argparse.ArgumentParser = sub.add_parser(
        "classify",
        help="the policy the deployed NIC and agent give each TCP SYN of a pcap file",
        description="Compile POLICIES as 'dysco compile' does, then classify each TCP SYN of PCAP "
        "(classic pcap, Ethernet or raw IPv4) and print its policy and where it is decided.",
        epilog=CLASSIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("policies", help="policy file")
    c.add_argument("pcap", help="pcap file of the SYNs")
    c.add_argument("--json", action="store_true", help="one JSON object per SYN and line")
    _placement_flags(c)
    c.set_defaults(handler=run_classify)


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    return read_policies(path), path


def _options(args: argparse.Namespace) -> Any:
    from dysco.compiler.passes import DEFAULT_BUDGET, DEFAULT_CAPACITY, Options

    if args.budget is not None and args.budget < 1:
        raise UserError("--budget must be at least 1")
    if args.capacity is not None and args.capacity < 1:
        raise UserError("--capacity must be at least 1")
    capacity = args.capacity
    if capacity is None and args.p4info:
        from dysco.compiler.p4rt import classifier_capacity, read_p4info

        capacity = classifier_capacity(read_p4info(args.p4info))
    return Options(
        budget=args.budget or DEFAULT_BUDGET,
        capacity=capacity or DEFAULT_CAPACITY,
        port_match=args.port_match,
    )


def _write(args: argparse.Namespace, out: str) -> None:
    if args.output:
        try:
            Path(args.output).write_text(out)
        except OSError as exc:
            raise UserError(f"cannot write {args.output}: {exc}") from None
    else:
        sys.stdout.write(out)


def run(args: argparse.Namespace) -> int:
    from dysco.compiler.output import to_json, to_text
    from dysco.compiler.passes import dump_stage
    from dysco.compiler.stats import stats_json, stats_text

    options = _options(args)
    text, name = _read(args.file)
    result = dump_stage(text, name, args.stage, options)
    if isinstance(result, str):
        _write(args, result)
        return 0
    _write(args, to_json(result) if args.format == "json" else to_text(result))
    if args.stats:
        if args.format == "json":
            sys.stderr.write(json.dumps(stats_json(result)) + "\n")
        else:
            sys.stderr.write(stats_text(result))
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from dysco.compiler.deployed import Deployed
    from dysco.compiler.passes import compile_text
    from dysco.compiler.pcapfile import read_syns

    options = _options(args)
    text, name = _read(args.policies)
    deployed = Deployed(compile_text(text, name, options))
    out = sys.stdout
    if not args.json:
        out.write("packet  policy  where\n")
    for number, syn in read_syns(args.pcap):
        v = deployed.classify(syn)
        if args.json:
            out.write(json.dumps({"packet": number, "policy": v.policy, "where": v.where}) + "\n")
        else:
            out.write(f"{number:<7} {v.policy or '-':<7} {v.where}\n")
    return 0
