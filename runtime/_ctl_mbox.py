"""``dysco ctl leave``, ``hops`` and ``delta``: the middlebox API (:mod:`dysco.runtime._mbcall`)
from a shell, for a middlebox application that is a script, or an operator standing in for one."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dysco.errors import UserError
from dysco.runtime._ctl import ANSWER_MARGIN_S, RECONFIGURE_TIMEOUT_S, find_session, tuple_text
from dysco.runtime._mbcall import declare_delta, parse_session, prepend_hops
from dysco.runtime._mgmt import request

_HOPS_EPILOG = """\
example (at the middlebox's host, while it holds the session's SYN):
  dysco ctl hops '10.0.1.2:41000->10.0.3.2:80' 10.0.4.2 --mgmt /tmp/dr-fw1.sock
  # 10.0.1.2:41000->10.0.3.2:80: on through 10.0.4.2 10.0.3.2

SESSION is the five-tuple of the SYN the middlebox got (tagged with TCP option 253).  The
middlebox sends the SYN on after the answer: the agent opens the next subsession toward the
first of HOPS when it comes back out.  Exit status 2 when the agent has no such session waiting
for its SYN (not a Dysco session, not through a middlebox here, or its SYN already went on).
"""

_DELTA_EPILOG = """\
example (a proxy that put a 24-byte header in front of every response, after the third):
  dysco ctl delta '10.0.1.2:41000->10.0.2.2:9000' --delta-rev 72 --mgmt /tmp/ds-proxy.sock

SESSION is the middlebox's inbound connection, peer to local (at a middle: the session's
five-tuple; at a proxy: client -> the address and port it accepted on).  The numbers are totals
so far and replace what was declared before; a later removal of the middlebox (dysco ctl
leave, a reconfiguration that deletes it, a splice) takes them into the sequence numbers.
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    lv = sub.add_parser(
        "leave",
        parents=[common],
        help="the middlebox on this host steps out of a live session",
        description="Ask this host's agent to take its middlebox out of SESSION: the agent on its "
        "left reconnects the session to the agent on its right (a rightRequest), the session goes "
        "on without this host. Exit status 0 once the old path through this host is gone.",
        epilog="example:\n  dysco ctl leave '10.0.1.2:41000->10.0.3.2:80' --mgmt /tmp/dr-fw1.sock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lv.add_argument("session", metavar="SESSION", help="an id or SRC:SPORT->DST:DPORT (dysco ctl sessions)")
    lv.add_argument("--timeout", type=float, default=RECONFIGURE_TIMEOUT_S, metavar="SECONDS")
    lv.set_defaults(handler=leave_main)

    h = sub.add_parser(
        "hops",
        parents=[common],
        help="a middlebox chooses the next hops of a session being set up",
        description="Put HOPS ahead of the rest of SESSION's chain, before the middlebox on this "
        "host sends the session's SYN on.  Prints the chain from this host on.",
        epilog=_HOPS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    h.add_argument("session", metavar="SESSION", help="SRC:SPORT->DST:DPORT of the SYN the middlebox got")
    h.add_argument("hops", nargs="+", metavar="HOP", help="an agent's IPv4 address (a middlebox)")
    h.set_defaults(handler=hops_main)

    d = sub.add_parser(
        "delta",
        parents=[common],
        help="a middlebox declares the bytes it added to a session's stream",
        description="Declare the bytes the middlebox on this host added so far to SESSION's "
        "stream (negative: removed), for its removal later.",
        epilog=_DELTA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("session", metavar="SESSION", help="SRC:SPORT->DST:DPORT, the inbound connection")
    d.add_argument("--delta", type=int, default=0, metavar="BYTES", help="added to the stream from the left")
    d.add_argument(
        "--delta-rev", type=int, default=0, metavar="BYTES", help="added to the stream from the right"
    )
    d.set_defaults(handler=delta_main)


def leave_main(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 600:
        raise UserError(f"--timeout {args.timeout:g}: between 0 and 600 seconds")
    rows = request(args.mgmt, "sessions")
    assert isinstance(rows, list)
    row = find_session(rows, args.session)
    answer = {"session": row["id"], "timeout": args.timeout}
    result = request(args.mgmt, "leave", answer, timeout=args.timeout + ANSWER_MARGIN_S)
    assert isinstance(result, dict)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        head = f"session {row['id']} {tuple_text(row['five_tuple'])}: {result['outcome']}"
        print(f"{head} in {result['seconds']:g}s" if result["ok"] else f"{head}: {result['message']}")
    return 0 if result["ok"] else 1


def hops_main(args: argparse.Namespace) -> int:
    session = parse_session(args.session)
    chain = prepend_hops(session, args.hops, mgmt=args.mgmt)
    if args.json:
        print(json.dumps({"session": str(session), "chain": chain}, indent=2))
    else:
        print(f"{session}: on through {' '.join(chain)}")
    return 0


def delta_main(args: argparse.Namespace) -> int:
    session = parse_session(args.session)
    declare_delta(session, args.delta, delta_rev=args.delta_rev, mgmt=args.mgmt)
    if args.json:
        print(json.dumps({"session": str(session), "delta": args.delta, "delta_rev": args.delta_rev}))
    else:
        print(f"{session}: {args.delta:+d} bytes from the left, {args.delta_rev:+d} from the right")
    return 0
