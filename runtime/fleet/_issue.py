"""``dysco fleet replace | insert | delete | drain``: write a command (:mod:`._commands`), wait for
every agent that was up to answer, with a progress line, and print a summary per agent and in
all.  ``drain`` first writes ``drained/ADDR`` (agents leave the instance out of new sessions from
then on, and ones that come up later too); ``undrain`` deletes it and waits until every agent
that is up reports the instance back in its choice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from dysco.runtime.fleet._commands import Command, Outcome, new_command
from dysco.runtime.fleet._layout import Layout, Registration


def add_commands(what: Any, common: argparse.ArgumentParser) -> None:
    """The command verbs, under ``dysco fleet``."""
    timing = argparse.ArgumentParser(add_help=False, parents=[common])
    timing.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS",
        help="each session's reconfiguration waits this long (10); the command waits for the agents "
        "twice as long, plus 5 s",
    )  # fmt: skip
    timing.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    timing.add_argument(
        "--match",
        default="",
        metavar="PREDICATE",
        help="only the sessions this pcap-filter predicate selects",
    )
    r = what.add_parser(
        "replace",
        parents=[timing],
        help="every agent replaces INSTANCE by NEW in the sessions it anchors through INSTANCE",
        epilog="example: dysco fleet replace 10.0.2.2 10.0.4.2 --etcd http://127.0.0.1:2379\n"
        "  # fw maintenance: 10.0.4.2 takes over every live session through 10.0.2.2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("instance", metavar="INSTANCE", help="the middlebox instance to take out (its address)")
    r.add_argument("new", metavar="NEW", help="the instance that takes its place")
    r.set_defaults(handler=issue_main, op="replace")
    i = what.add_parser(
        "insert",
        parents=[timing],
        help="every agent puts MIDDLEBOX in front of the sessions --match selects",
        epilog="example: dysco fleet insert --match 'tcp dst port 9005' 10.0.5.2\n"
        "  # a scrubber into every session to port 9005, fleet-wide",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    i.add_argument("instance", metavar="MIDDLEBOX", help="the middlebox instance to insert (its address)")
    i.set_defaults(handler=issue_main, op="insert", new="")
    d = what.add_parser(
        "delete",
        parents=[timing],
        help="every agent takes INSTANCE out of the sessions it anchors through it",
        epilog="example: dysco fleet delete 10.0.5.2 --match 'tcp dst port 9005'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("instance", metavar="INSTANCE", help="the middlebox instance to take out")
    d.set_defaults(handler=issue_main, op="delete", new="")
    dr = what.add_parser(
        "drain",
        parents=[timing],
        help="no new sessions through INSTANCE, and every agent moves its sessions off it",
        epilog="example: dysco fleet drain 10.0.2.2 --etcd http://127.0.0.1:2379\n"
        "  # each agent moves its sessions through 10.0.2.2 to another instance of its type;\n"
        "  # with no instance left, a chain's new sessions are refused (the summary says so)\n"
        "then: dysco fleet undrain 10.0.2.2   # back in service for new sessions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dr.add_argument("instance", metavar="INSTANCE", help="the middlebox instance to drain (its address)")
    dr.set_defaults(handler=issue_main, op="drain", new="")
    un = what.add_parser(
        "undrain",
        parents=[common],
        help="INSTANCE back in the choice for new sessions (after `dysco fleet drain`)",
        epilog="example: dysco fleet undrain 10.0.2.2 --etcd http://127.0.0.1:2379",
    )
    un.add_argument("instance", metavar="INSTANCE", help="the drained middlebox instance")
    un.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="wait this long (10)")
    un.set_defaults(handler=undrain_main)


def issue_main(args: argparse.Namespace) -> int:
    cmd = new_command(args.op, args.instance, args.new, args.match, args.timeout)
    result = asyncio.run(_issue(args, Layout(args.etcd_prefix), cmd))
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(summary_text(result))
    bad = result["no_answer"] or result["failed"] or result["refused"] or result["refused_sessions"]
    return 1 if bad else 0


async def _issue(args: argparse.Namespace, layout: Layout, cmd: Command) -> dict[str, Any]:
    from dysco.runtime.fleet._store import Store, endpoint_of

    async with Store(endpoint_of(args)) as store:
        t0 = time.monotonic()
        _, regs = await store.get_prefix(layout.agents)
        targets = sorted(Registration.decode(e.value).name for e in regs)
        if cmd.op == "drain":  # state first: agents that miss the command still leave it out
            await store.put(
                layout.drained(cmd.addr), json.dumps({"command": cmd.id, "at": cmd.issued}).encode()
            )
        revision = await store.put(layout.command(cmd.id), cmd.encode())
        outcomes: dict[str, Outcome] = {}

        def note(name: str, value: bytes) -> None:
            out = Outcome.decode(value)
            if out.state == "done" and name not in outcomes:
                outcomes[name] = out
                _progress(len(outcomes), len(targets), time.monotonic() - t0)

        folder = layout.results(cmd.id)
        try:
            async with asyncio.timeout(max(0.0, cmd.expires - time.time())):
                async for change in store.watch_prefix(folder, revision):
                    if change.value is not None:
                        note(layout.name_of(change.key, folder), change.value)
                    if set(targets) <= set(outcomes):
                        break
        except TimeoutError:
            pass
        if targets and sys.stderr.isatty():
            print(file=sys.stderr)
    done = [outcomes[n] for n in sorted(outcomes)]
    return {
        "command": {"id": cmd.id, "op": cmd.op, "text": str(cmd), "revision": revision},
        "agents": {o.agent: _as_dict(o) for o in done},
        "no_answer": [n for n in targets if n not in outcomes],
        "moved": sum(o.moved for o in done),
        "failed": sum(o.failed for o in done),
        "skipped": sum(o.skipped for o in done),
        "refused_sessions": sum(o.refused for o in done),
        "refused": sorted(o.agent for o in done if o.errors and o.errors[0].startswith("refused: ")),
        "seconds": round(time.monotonic() - t0, 3),
    }


def _as_dict(o: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(o.encode())
    return out


def _progress(done: int, total: int, seconds: float) -> None:
    if sys.stderr.isatty():
        print(f"\r  {done}/{total} agents done ({seconds:.2f}s)", end="", file=sys.stderr, flush=True)


def summary_text(r: dict[str, Any]) -> str:
    lines = [f"command {r['command']['id']}: {r['command']['text']}"]
    for name, o in sorted(r["agents"].items()):
        line = f"  {name}: {o['moved']} moved, {o['failed']} failed, {o['skipped']} skipped"
        line += (
            f", {o['refused']} refused in {o['seconds']}s"
            if r["command"]["op"] == "drain"
            else f" in {o['seconds']}s"
        )
        lines.append(line)
        lines += [f"    {e}" for e in o["errors"]]
    for name in r["no_answer"]:
        lines.append(f"  {name}: no answer")
    answered = len(r["agents"])
    refused = f", {r['refused_sessions']} refused" if r["command"]["op"] == "drain" else ""
    lines.append(
        f"{answered} of {answered + len(r['no_answer'])} agents answered: {r['moved']} sessions moved, "
        f"{r['failed']} failed, {r['skipped']} skipped{refused} in {r['seconds']}s"
    )
    return "\n".join(lines)


def undrain_main(args: argparse.Namespace) -> int:
    from dysco.runtime.fleet._commands import _address

    addr = _address(args.instance, "undrain")
    result = asyncio.run(_undrain(args, Layout(args.etcd_prefix), addr))
    waiting = result["no_answer"]
    if not result["was_drained"]:
        print(f"{addr} was not drained")
        return 1
    line = f"{addr} back in service at {len(result['done'])} of {len(result['done']) + len(waiting)} agents"
    print(
        line + f" in {result['seconds']}s" + (f"\n  no answer from: {', '.join(waiting)}" if waiting else "")
    )
    return 0 if not waiting else 1


async def _undrain(args: argparse.Namespace, layout: Layout, addr: str) -> dict[str, Any]:
    from dysco.runtime.fleet._layout import Report
    from dysco.runtime.fleet._store import Store, endpoint_of

    async with Store(endpoint_of(args)) as store:
        t0 = time.monotonic()
        _, regs = await store.get_prefix(layout.agents)
        targets = sorted(Registration.decode(e.value).name for e in regs)
        was = await store.delete(layout.drained(addr))
        done: set[str] = set()
        if was and targets:
            start, reports = await store.get_prefix(layout.statuses)

            def note(name: str, value: bytes) -> None:
                if name in targets and addr not in Report.decode(value).drained:
                    done.add(name)
                    _progress(len(done), len(targets), time.monotonic() - t0)

            for e in reports:
                note(layout.name_of(e.key, layout.statuses), e.value)
            with contextlib.suppress(TimeoutError):
                watching = contextlib.aclosing(store.watch_prefix(layout.statuses, start + 1))
                async with asyncio.timeout(args.timeout), watching as watch:
                    while not set(targets) <= done:
                        change = await anext(watch)
                        if change.value is not None:
                            note(layout.name_of(change.key, layout.statuses), change.value)
    return {"was_drained": was, "done": sorted(done), "no_answer": [n for n in targets if n not in done],
            "seconds": round(time.monotonic() - t0, 3)}  # fmt: skip
