"""``dysco ctl``: a running agent's management API from the command line.

``status``, ``sessions`` and ``events`` (the agent's timestamped notifications) read;
``reconfigure`` changes the middleboxes of one session or of many (every session through a
middlebox, every session a pcap-filter predicate selects) and waits for each outcome; ``splice``
hands a proxy's two TCP connections to the agent (:func:`dysco.runtime.splice` is the same from a
program).  A middlebox's own verbs (``leave``, ``hops``, ``delta``) are :mod:`._ctl_mbox`, which
adds them to the parsers :func:`register` returns.  The agent does the work; this module only
chooses sessions, turns an edit (insert, delete, replace) into the right anchor and new
middlebox list the core takes, and reports.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dysco.errors import DyscoError, SourceError, SourceErrors, SourcePos, UserError
from dysco.runtime._mgmt import DEFAULT_SOCKET, request

RECONFIGURE_TIMEOUT_S = 10.0
POLICY_RELOAD_TIMEOUT_S = 120.0  # 10,000 policies compile in about a second; the Writes take the rest
ANSWER_MARGIN_S = 5.0
"""How much longer than the reconfiguration's timeout the command waits for the agent's answer."""
ANCHORABLE = ("established", "half_closed")

_EPILOG = """\
examples:
  dysco ctl status --mgmt /tmp/dy-client.sock
  dysco ctl sessions --mgmt /tmp/dy-client.sock --json
  dysco ctl events --since 120 --mgmt /tmp/dy-client.sock
  dysco ctl reconfigure 3 --insert 10.0.4.2 --mgmt /tmp/dy-client.sock
  dysco ctl reconfigure --all --replace 10.0.2.2 10.0.4.2 --mgmt /tmp/dy-client.sock
  dysco ctl splice --in 10.0.1.2:41000-10.0.2.2:9000 --out 10.0.2.2:42000-10.0.3.2:9000 \\
      --mgmt /tmp/dy-proxy.sock

See docs/operations.md.
"""

_RECONFIGURE_EPILOG = """\
examples (on the client's agent, the left anchor of its sessions):
  dysco ctl reconfigure 3 --insert 10.0.4.2             # a scrubber in front of the chain
  dysco ctl reconfigure 3 --delete 10.0.4.2             # and out again
  dysco ctl reconfigure '10.0.1.2:41000->10.0.3.2:80' --replace 10.0.2.2 10.0.4.2
  dysco ctl reconfigure 3 --right 10.0.3.2 --hops 10.0.4.2,10.0.2.2   # the new list, as it is
  dysco ctl reconfigure 3 --right 10.0.3.2 --hops ''    # no middlebox up to 10.0.3.2
  dysco ctl reconfigure --all --replace 10.0.2.2 10.0.4.2        # in every session through it
  dysco ctl reconfigure --match 'tcp dst port 80' --insert 10.0.4.2   # pcap-filter predicate
  dysco ctl reconfigure --all --replace 10.0.2.2 10.0.4.2 --failed   # 10.0.2.2's host is gone

SESSION is an id or a five-tuple as `dysco ctl sessions` prints them.  An edit changes the
session's path from this agent to the right: the right anchor is the first hop after the change
(--right overrides it for --hops; default: the session's right end).  Exit status 0 only when
every reconfiguration succeeded.  --failed: the middlebox --replace or --delete names is dead
(its host is gone); the agents on both sides of it set the new path up without it.  Only a
middlebox that does not change the byte stream's length (deltas 0) is replaced exactly; a
stateful one's state is lost with it (docs/operations.md).  --failover: the ordinary edit, but
if that middlebox never answers the lock request (about 6 s) it is gone around as with --failed.
"""

_SPLICE_EPILOG = """\
example (on the proxy's host, in its network namespace):
  ip netns exec dy-m dysco ctl splice --in 10.0.1.2:41000-10.0.2.2:9000 \\
      --out 10.0.2.2:42000-10.0.3.2:9000 --mgmt /tmp/dy-proxy.sock

--in is the connection the proxy accepted (client -> proxy), --out the one it opened (proxy ->
server), each as the proxy sees it.  The command reads what the kernel knows of both sockets
(`ss -ti`: window scale, SACK, timestamps, byte counters); --no-kernel-info skips that.
"""


_EVENTS_EPILOG = """\
examples:
  dysco ctl events --mgmt /tmp/dy-client.sock              # every event the agent still keeps
  dysco ctl events --since 120 --json --mgmt /tmp/dy-client.sock

Each line is SEQ, the time (CLOCK_MONOTONIC seconds, the same clock for every agent of the
machine), the event, the core's session id and the message.  The last line gives the --since of
the next call, which prints only what came after; the agent keeps a bounded number of events and
says how many it dropped unread.
"""


def register(subparsers: Any) -> tuple[Any, argparse.ArgumentParser]:
    """``dysco ctl`` and its verbs; returns its subparsers and their common options, for the
    middlebox's verbs (:mod:`._ctl_mbox`)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--mgmt", default=DEFAULT_SOCKET, metavar="SOCKET", help=f"management socket ({DEFAULT_SOCKET})"
    )
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    c: argparse.ArgumentParser = subparsers.add_parser(
        "ctl",
        help="ask a running agent (status, sessions, events, reconfigure, splice, leave, hops, delta, ...)",
        description="Query or drive a running `dysco agent` over its management socket.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = c.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, text in (("status", "counters, table fill, recent errors"), ("sessions", "the sessions")):
        p = sub.add_parser(name, parents=[common], help=text, description=f"Show {text}.")
        p.set_defaults(handler=ctl_main)

    e = sub.add_parser(
        "events",
        parents=[common],
        help="the agent's notifications, timestamped (reconfigurations, splices, sessions)",
        description="Show the notifications the agent logged after a sequence number.",
        epilog=_EVENTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--since", type=int, default=0, metavar="SEQ", help="only events after SEQ (default 0)")
    e.add_argument("--limit", type=int, metavar="N", help="at most N events (default: the agent's maximum)")
    e.set_defaults(handler=events_main)

    r = sub.add_parser(
        "reconfigure",
        parents=[common],
        help="insert, delete or replace middleboxes of live sessions",
        description="Change the middleboxes of one live session, or of many, and wait for the outcome.",
        epilog=_RECONFIGURE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("session", nargs="?", metavar="SESSION", help="id or SRC:SPORT->DST:DPORT")
    which = r.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every session this agent anchors on the left")
    which.add_argument("--match", metavar="PREDICATE", help="the sessions a pcap-filter predicate selects")
    edit = r.add_mutually_exclusive_group(required=True)
    edit.add_argument("--insert", metavar="ADDR", help="add this middlebox")
    edit.add_argument("--delete", metavar="ADDR", help="remove this middlebox")
    edit.add_argument("--replace", nargs=2, metavar=("OLD", "NEW"), help="put NEW where OLD is")
    edit.add_argument("--hops", metavar="A,B,...", help="the new middleboxes up to --right ('' for none)")
    r.add_argument("--at", type=int, metavar="N", help="--insert before the N-th hop (0: first, default)")
    r.add_argument("--right", metavar="ADDR", help="the right anchor for --hops (default: the right end)")
    dead = r.add_mutually_exclusive_group()
    dead.add_argument(
        "--failed",
        action="store_true",
        help="the middlebox --replace or --delete names is dead: go around it (docs/operations.md)",
    )
    dead.add_argument(
        "--failover",
        action="store_true",
        help="go around that middlebox if it does not answer the lock request (its host is gone)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=RECONFIGURE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"per session (default {RECONFIGURE_TIMEOUT_S:g})",
    )
    r.add_argument("--parallel", type=int, default=8, metavar="N", help="sessions at a time (default 8)")
    r.set_defaults(handler=reconfigure_main)

    s = sub.add_parser(
        "splice",
        parents=[common],
        help="splice a proxy's two connections into one session (the proxy steps out)",
        description="Ask the proxy host's agent to splice two TCP connections and remove the proxy.",
        epilog=_SPLICE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--in", dest="inbound", required=True, metavar="SRC:PORT-DST:PORT", help="client -> proxy")
    s.add_argument(
        "--out", dest="outbound", required=True, metavar="SRC:PORT-DST:PORT", help="proxy -> server"
    )
    s.add_argument("--delta", type=int, default=0, help="bytes written to --out minus bytes read from --in")
    s.add_argument("--delta-rev", type=int, default=0, help="the same for the other direction")
    s.add_argument("--no-kernel-info", action="store_true", help="do not look the sockets up with ss")
    s.add_argument("--timeout", type=float, default=RECONFIGURE_TIMEOUT_S, metavar="SECONDS")
    s.set_defaults(handler=splice_main)

    p = sub.add_parser(
        "policies",
        parents=[common],
        help="reload the agent's policy file, live (new sessions get the new policies)",
        description="Put a policy file in force at a running agent without restarting it. Live "
        "sessions keep their chains; new SYNs get the new file's verdict from the moment the "
        "reload starts. A file with an error is refused whole and the old policies stay.",
        epilog="example:\n  dysco ctl policies reload examples/policies.dysco --mgmt /tmp/dysco-client.sock",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("reload",), help="reload: compile FILE and put it in force")
    p.add_argument("file", nargs="?", metavar="FILE", help="the policy file (default: the agent's own)")
    p.set_defaults(handler=policies_main)
    return sub, common


# ---- status, sessions --------------------------------------------------------------------------


def ctl_main(args: argparse.Namespace) -> int:
    result = request(args.mgmt, args.what)
    if args.json or args.what == "status":
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    assert isinstance(result, list)
    print(f"{'ID':>6} {'STATE':<12} {'ROLE':<7} {'AGE_S':>8}  FIVE-TUPLE / CHAIN / SUBSESSIONS")
    for s in result:
        print(f"{s['id']:>6} {s['state']:<12} {s['role']:<7} {s['age_s']:>8}  {tuple_text(s['five_tuple'])}")
        print(f"{'':>36}chain {' '.join(s['chain']) or '-'}")
        for sub in s["subsessions"]:
            print(f"{'':>36}{sub['side']:<5} {tuple_text(sub['five_tuple'])} {sub['state']}")
    print(f"{len(result)} sessions")
    return 0


def policies_main(args: argparse.Namespace) -> int:
    query = {"file": str(Path(args.file).resolve())} if args.file else {}
    result = request(args.mgmt, "policies_reload", query, timeout=POLICY_RELOAD_TIMEOUT_S)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    assert isinstance(result, dict)
    r = result
    print(
        f"{r['file']}: {r['policies']} policies, {r['entries']} classifier entries in force "
        f"({r['added']} added, {r['removed']} removed, {r['kept']} kept) in {r['seconds']} s"
    )
    return 0


def events_main(args: argparse.Namespace) -> int:
    query: dict[str, int] = {"since": args.since}
    if args.limit is not None:
        query["limit"] = args.limit
    result = request(args.mgmt, "events", query)
    assert isinstance(result, dict)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return 0
    for e in result["events"]:
        what = f"{e['event']}{' ERROR' if e['error'] else ''} session {e['session']}"
        print(f"{e['seq']:>7} {e['t_ns'] / 1e9:.6f} {what}: {e['message']}")
    tail = f"{len(result['events'])} events; next --since {result['next']}"
    if result["missed"]:
        tail += f"; {result['missed']} earlier events were dropped before they were read"
    print(tail)
    return 0


def tuple_text(t: Mapping[str, Any]) -> str:
    """A five-tuple as `sessions` prints it and SESSION takes it: ``SRC:SPORT->DST:DPORT``."""
    return f"{t['src']}:{t['sport']}->{t['dst']}:{t['dport']}"


# ---- reconfigure: what to change ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to a session's path: ``op`` insert, delete, replace or hops."""

    op: str
    addr: str = ""
    new: str = ""
    at: int = 0
    hops: tuple[str, ...] = ()
    right: str = ""
    failed: bool = False
    """``addr`` (delete, replace) is dead: the reconfiguration goes around it."""
    failover: bool = False
    """``addr`` (delete, replace) is gone around if it does not answer."""

    def __str__(self) -> str:
        if self.failed or self.failover:
            return self._text() + f" ({self.addr} {'dead' if self.failed else 'or around it'})"
        return self._text()

    def _text(self) -> str:
        if self.op == "insert":
            return f"insert {self.addr}" + (f" at {self.at}" if self.at else "")
        if self.op == "delete":
            return f"delete {self.addr}"
        if self.op == "replace":
            return f"replace {self.addr} by {self.new}"
        return f"hops [{' '.join(self.hops)}] up to {self.right or 'the right end'}"


def edit_from_args(args: argparse.Namespace) -> Edit:
    if args.at is not None and args.insert is None:
        raise UserError("--at goes with --insert")
    if args.right is not None and args.hops is None:
        raise UserError("--right goes with --hops (the edits find their right anchor)")
    for flag, on in (("--failed", args.failed), ("--failover", args.failover)):
        if on and args.replace is None and args.delete is None:
            raise UserError(
                f"{flag} goes with --replace DEAD NEW or --delete DEAD: it is about that middlebox"
            )
    if args.insert is not None:
        if args.at is not None and args.at < 0:
            raise UserError(f"--at {args.at}: positions count from 0")
        return Edit("insert", _addr(args.insert, "--insert"), at=args.at or 0)
    if args.delete is not None:
        return Edit("delete", _addr(args.delete, "--delete"), failed=args.failed, failover=args.failover)
    if args.replace is not None:
        old, new = (_addr(a, "--replace") for a in args.replace)
        if old == new:
            raise UserError(f"--replace {old} {new}: the same middlebox")
        return Edit("replace", old, new, failed=args.failed, failover=args.failover)
    hops = tuple(_addr(h.strip(), "--hops") for h in args.hops.split(",")) if args.hops.strip() else ()
    right = _addr(args.right, "--right") if args.right is not None else ""
    return Edit("hops", hops=hops, right=right)


def _addr(text: str, flag: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ipaddress.AddressValueError:
        raise UserError(f"{flag}: {text!r} is not an IPv4 address") from None


def path_right_of(row: Mapping[str, Any], me: str) -> list[str]:
    """The hops of a session to the right of this agent, the right end last."""
    chain: list[str] = list(row["chain"])
    return chain[chain.index(me) + 1 :] if me in chain else chain


ME = ""
"""The left anchor a plan gives when it is this agent."""


def plan(path: Sequence[str], edit: Edit) -> tuple[str, str, list[str]]:
    """The left anchor, the right anchor and the new middleboxes between them that make
    ``edit``: the shortest part of the path that changes.  The left anchor is the hop in front
    of it: this agent (:data:`ME`) or one of ``path``, which the agent asks to anchor the edit
    (a new path from further left would run through the middleboxes that stay, which hold the
    session on the old path already)."""
    shown = " ".join(path) or "-"
    if not path:
        raise UserError("the session has no hop to the right of this agent")
    if edit.op == "hops":
        right = edit.right or path[-1]
        if right not in path:
            raise UserError(f"--right {right} is not on the session's path ({shown})")
        if right in edit.hops:
            raise UserError(f"--hops names the right anchor {right}")
        return ME, right, list(edit.hops)
    if edit.op == "insert":
        if edit.addr in path:
            raise UserError(f"{edit.addr} is on the session's path already ({shown})")
        if edit.at > len(path) - 1:
            raise UserError(f"--at {edit.at}: the path has {len(path) - 1} middleboxes ({shown})")
        return _left(path, edit.at), path[edit.at], [edit.addr]
    if edit.addr not in path:
        raise UserError(f"{edit.addr} is not on the session's path ({shown})")
    i = path.index(edit.addr)
    if i == len(path) - 1:
        raise UserError(f"{edit.addr} is the session's right end ({shown}); it cannot be {edit.op}d")
    if edit.op == "replace" and edit.new in path:
        raise UserError(f"{edit.new} is on the session's path already ({shown})")
    return _left(path, i), path[i + 1], [edit.new] if edit.op == "replace" else []


def dead(edit: Edit) -> str:
    """The middlebox the edit goes around ('': none)."""
    return edit.addr if edit.failed else ""


def _left(path: Sequence[str], i: int) -> str:
    """The hop in front of ``path[i]``."""
    return path[i - 1] if i > 0 else ME


# ---- reconfigure: which sessions --------------------------------------------------------------


def predicate(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """A test of a session's five-tuple by a pcap-filter predicate of the policy language,
    evaluated by dysco.compiler's own evaluator; errors point into ``text``."""
    from dysco.compiler.evaluate import Syn, holds
    from dysco.compiler.passes import front
    from dysco.runtime.core._types import ip_int

    if not text.strip():
        raise UserError("--match: the predicate is empty")
    if "\n" in text:
        raise UserError("--match: the predicate is one line")
    try:
        _, pf = front(f"policy match:\n{text}\n-> 127.0.0.1\n", "--match")
    except SourceErrors as exc:
        raise SourceErrors(
            SourceError(e.message, SourcePos("--match", 1, e.pos.column), text)
            if e.pos.line == 2
            else SourceError(f"not a predicate: {e.message}", SourcePos("--match", 1, 1), text)
            for e in exc.errors
        ) from None
    if len(pf.policies) != 1 or pf.middleboxes:
        raise UserError(f"--match {text!r}: one predicate, not policy statements")
    pred = pf.policies[0].predicate

    def test(t: Mapping[str, Any]) -> bool:
        return holds(pred, Syn(ip_int(t["src"]), ip_int(t["dst"]), t["sport"], t["dport"]))

    return test


@dataclass(frozen=True, slots=True)
class Job:
    row: Mapping[str, Any]
    left: str = ME
    right: str = ""
    hops: tuple[str, ...] = ()
    failed: str = ""
    """The dead middlebox the reconfiguration goes around ('': none)."""
    failover: bool = False
    skip: str = ""
    """Why this session is left alone (the edit does not apply to it)."""


def select(
    rows: Sequence[Mapping[str, Any]], me: str, edit: Edit, test: Callable[[Mapping[str, Any]], bool] | None
) -> list[Job]:
    """The sessions this agent anchors on the left that ``test`` selects (all without one),
    for --delete and --replace only those through the middlebox, each with its plan."""
    jobs = []
    for row in rows:
        path = path_right_of(row, me)
        if row["state"] not in ANCHORABLE or not any(s["side"] == "right" for s in row["subsessions"]):
            continue
        if test is not None and not test(row["five_tuple"]):
            continue
        if edit.op in ("delete", "replace") and edit.addr not in path:
            continue
        try:
            left, right, hops = plan(path, edit)
        except UserError as exc:
            jobs.append(Job(row, skip=str(exc)))
            continue
        jobs.append(Job(row, left, right, tuple(hops), dead(edit), edit.failover))
    return jobs


# ---- reconfigure: doing it ---------------------------------------------------------------------


def reconfigure_main(args: argparse.Namespace) -> int:
    if (args.session is None) == (not (args.all or args.match)):
        raise UserError("give one SESSION, or --all or --match PREDICATE for many")
    if not 0 < args.timeout <= 600:
        raise UserError(f"--timeout {args.timeout:g}: between 0 and 600 seconds")
    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel}: at least 1")
    edit = edit_from_args(args)
    if args.session is None and edit.op == "hops":
        raise UserError("--hops is for one SESSION; many sessions take --insert, --delete or --replace")
    test = predicate(args.match) if args.match else None
    me = _me(args.mgmt)
    rows = request(args.mgmt, "sessions")
    assert isinstance(rows, list)
    if args.session is not None:
        row = find_session(rows, args.session)
        left, right, hops = plan(path_right_of(row, me), edit)
        result = _reconfigure(
            args.mgmt, row["id"], left, right, hops, args.timeout, dead(edit), edit.failover
        )
        if args.json:
            print(json.dumps(result, indent=2, sort_keys=True))
        else:
            print(_line(row, result))
        return 0 if result["ok"] else 1
    return _many(args, select(rows, me, edit, test), edit)


def _me(mgmt: str) -> str:
    status = request(mgmt, "status")
    assert isinstance(status, dict)
    address: str = status["config"]["address"]
    return address


def find_session(rows: Sequence[Mapping[str, Any]], session: str) -> Mapping[str, Any]:
    key = session.replace(" ", "")
    for row in rows:
        if key == str(row["id"]) or key == tuple_text(row["five_tuple"]):
            return row
    if not key.isdigit() and "->" not in key:
        raise UserError(f"SESSION {session!r}: an id or SRC:SPORT->DST:DPORT as `dysco ctl sessions` shows")
    raise UserError(f"no session {session!r} at this agent (see `dysco ctl sessions`)")


def _reconfigure(
    mgmt: str,
    sid: int,
    left: str,
    right: str,
    hops: Sequence[str],
    timeout: float,
    failed: str = "",
    failover: bool = False,
) -> dict[str, Any]:
    args: dict[str, Any] = {"session": sid, "right": right, "hops": list(hops), "timeout": timeout}
    if left != ME:
        args["left"] = left
    if failed:
        args["failed"] = failed
    if failover:
        args["failover"] = True
    result = request(mgmt, "reconfigure", args, timeout=timeout + ANSWER_MARGIN_S)
    assert isinstance(result, dict)
    return result


def _line(row: Mapping[str, Any], result: Mapping[str, Any]) -> str:
    head = f"session {row['id']} {tuple_text(row['five_tuple'])}: {result['outcome']}"
    if result["ok"]:
        return f"{head} in {result['seconds']:g}s, chain {' '.join(result['chain'])}"
    return f"{head}: {result['message']}"


def _many(args: argparse.Namespace, jobs: list[Job], edit: Edit) -> int:
    todo = [j for j in jobs if not j.skip]
    out = sys.stderr if args.json else sys.stdout
    for j in jobs:
        if j.skip:
            print(f"session {j.row['id']} {tuple_text(j.row['five_tuple'])}: skipped: {j.skip}", file=out)
    results: list[dict[str, Any]] = []
    for done, (job, result) in enumerate(_run(args.mgmt, todo, args.timeout, args.parallel), start=1):
        results.append({"id": job.row["id"], "five_tuple": job.row["five_tuple"], **result})
        print(f"[{done}/{len(todo)}] {_line(job.row, result)}", file=out, flush=True)
    ok = sum(1 for r in results if r["ok"])
    summary = {
        "edit": str(edit),
        "sessions": len(jobs),
        "ok": ok,
        "failed": len(results) - ok,
        "skipped": len(jobs) - len(todo),
    }
    if args.json:
        print(json.dumps({"summary": summary, "results": results}, indent=2, sort_keys=True))
    else:
        print(
            f"{edit}: {len(jobs)} sessions, {ok} ok, {summary['failed']} failed, {summary['skipped']} skipped"
        )
    return 0 if summary["failed"] == 0 else 1


def _run(mgmt: str, jobs: list[Job], timeout: float, parallel: int) -> Iterator[tuple[Job, dict[str, Any]]]:
    """The jobs' outcomes as they come, ``parallel`` requests at a time (one connection each)."""

    def one(job: Job) -> dict[str, Any]:
        try:
            return _reconfigure(
                mgmt, job.row["id"], job.left, job.right, job.hops, timeout, job.failed, job.failover
            )
        except DyscoError as exc:  # e.g. the session ended since it was listed
            return {"ok": False, "outcome": "refused", "message": str(exc), "chain": []}

    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="reconfigure") as pool:
        futures = {pool.submit(one, job): job for job in jobs}
        for f in as_completed(futures):
            yield futures[f], f.result()


# ---- splice ------------------------------------------------------------------------------------


def splice_main(args: argparse.Namespace) -> int:
    from dysco.runtime._splicecall import Side, parse_pair, request_splice, side_from_ss

    client, proxy_in = parse_pair(args.inbound, "--in")  # both left to right
    proxy_out, server = parse_pair(args.outbound, "--out")
    if args.no_kernel_info:
        sides = (Side.bare(proxy_in, client), Side.bare(proxy_out, server))
    else:
        sides = (side_from_ss(proxy_in, client, args.inbound), side_from_ss(proxy_out, server, args.outbound))
    result = request_splice(sides[0], sides[1], args.delta, args.delta_rev, args.mgmt, args.timeout)
    if args.json:
        print(json.dumps(result.details, indent=2, sort_keys=True))
    else:
        print(f"splice {args.inbound} + {args.outbound}: {result.outcome}: {result.message}")
    return 0 if result.ok else 1
