"""``dysco fleet``: the operator's side of the fleet on etcd (docs/fleet.md); the commands that
change sessions (replace, insert, delete) are in :mod:`._issue`.

* ``dysco fleet policies put FILE [--scope all|group:G|agent:N]``: the file (checked here first)
  becomes the scope's policy set; the command then waits until every registered agent that
  wants that key has put it in force or refused it, with a progress line, and prints a summary;
* ``dysco fleet status [--json]``: the agents, up or not, and what each has in force.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dysco.runtime.fleet._issue import add_commands
from dysco.runtime.fleet._keys import add_keys
from dysco.runtime.fleet._layout import Layout, Registration, Report, parse_scope

if TYPE_CHECKING:  # the store (aetcd, grpc) is imported when a command runs, not for --help
    from dysco.runtime.fleet._store import Entry, Store

DEFAULT_ETCD = "http://127.0.0.1:2379"
WAIT_S = 10.0

_EPILOG = """\
examples:
  dysco fleet policies put web.dysco --scope group:web --etcd http://127.0.0.1:2379
  # policies/group/web@57: in force at 2 of 2 agents (client, client2) in 0.21s
  dysco fleet status --etcd http://127.0.0.1:2379
  dysco fleet status --json
  dysco fleet replace 10.0.2.2 10.0.4.2       # every agent moves its sessions off 10.0.2.2
  dysco fleet drain 10.0.2.2                  # ... to instances of its type it chooses; none new
  dysco fleet keys rotate                     # a new key for the agents' messages, with overlap

A set is checked here before it is written; each agent compiles it again and refuses it if its
NIC cannot take it (the refusal is in `dysco fleet status`).  See docs/fleet.md.
"""


def register(subparsers: Any) -> None:
    f: argparse.ArgumentParser = subparsers.add_parser(
        "fleet",
        help="steer and watch a fleet of agents through etcd (policies, replace, insert, delete, drain, "
        "keys, status)",
        description="The fleet's shared state in etcd: policy sets by scope, and what every agent "
        "has in force.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--etcd", default=DEFAULT_ETCD, metavar="URL", help=f"etcd ({DEFAULT_ETCD})")
    common.add_argument(
        "--etcd-prefix", default="/dysco/", metavar="PREFIX", help="the fleet's keys (/dysco/)"
    )
    common.add_argument(
        "--etcd-ca", metavar="PEM", help="etcd over TLS (https://): trust its certificate by these CAs"
    )
    common.add_argument(
        "--etcd-cert", metavar="PEM", help="this client's certificate for etcd (with --etcd-key)"
    )
    common.add_argument("--etcd-key", metavar="PEM", help="this client's private key for etcd")
    common.add_argument("--etcd-user", metavar="NAME", help="the etcd user (etcd with access control)")
    common.add_argument(
        "--etcd-password-file", metavar="FILE", help="that user's password (the file's first line)"
    )
    what = f.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    pol = what.add_parser("policies", help="policy sets", epilog=_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    pol_what = pol.add_subparsers(dest="policies_command", metavar="COMMAND", required=True)
    put = pol_what.add_parser(
        "put",
        parents=[common],
        help="make a policy file the set of a scope, and wait until the agents have it in force",
        epilog="example: dysco fleet policies put web.dysco --scope group:web --timeout 5",
    )
    put.add_argument("file", metavar="FILE", help="a policy file (docs/policy-language.md)")
    put.add_argument("--scope", default="all", help="all (default), group:NAME or agent:NAME")
    put.add_argument(
        "--timeout",
        type=float,
        default=WAIT_S,
        metavar="SECONDS",
        help=f"wait at most this long ({WAIT_S:g})",
    )
    put.add_argument("--no-wait", action="store_true", help="write and return")
    put.add_argument(
        "--no-check",
        action="store_true",
        help="write the file even if it does not compile here (each agent refuses it and says why)",
    )
    put.add_argument("--json", action="store_true", help="print the summary as JSON")
    put.set_defaults(handler=policies_put_main)

    add_commands(what, common)
    add_keys(what, common)

    st = what.add_parser(
        "status",
        parents=[common],
        help="the agents, up or not, and the policy set each has in force",
        epilog="example: dysco fleet status --json --etcd http://127.0.0.1:2379",
    )
    st.add_argument("--json", action="store_true", help="print JSON (the shape is in docs/fleet.md)")
    st.set_defaults(handler=status_main)


# ---- reading the fleet ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    registration: Registration | None
    report: Report | None

    @property
    def up(self) -> bool:
        return self.registration is not None

    @property
    def group(self) -> str:
        return self.registration.group if self.registration else ""

    def as_json(self) -> dict[str, object]:
        r = self.report
        return {
            "name": self.name,
            "address": self.registration.address if self.registration else (r.address if r else ""),
            "up": self.up,
            "group": self.group,
            "policy_key": r.policy_key if r else "",
            "policy_revision": r.policy_revision if r else 0,
            "refused": None
            if r is None or r.refused is None
            else {"key": r.refused.key, "revision": r.refused.revision, "error": r.refused.error},
            "sessions": r.sessions if r else 0,
        }


async def read_fleet(store: Store, layout: Layout) -> tuple[int, list[Member], dict[bytes, Entry]]:
    """The store's revision, every agent that registered or reported, and the policy keys."""
    _, regs = await store.get_prefix(layout.agents)
    _, reports = await store.get_prefix(layout.statuses)
    revision, policies = await store.get_prefix(layout.policies)
    by_reg = {layout.name_of(e.key, layout.agents): Registration.decode(e.value) for e in regs}
    by_rep = {layout.name_of(e.key, layout.statuses): Report.decode(e.value) for e in reports}
    names = sorted(set(by_reg) | set(by_rep))
    members = [Member(n, by_reg.get(n), by_rep.get(n)) for n in names]
    return revision, members, {e.key: e for e in policies}


def wanted_key(layout: Layout, member: Member, policies: dict[bytes, Entry]) -> bytes | None:
    """The key whose set ``member`` wants: its most specific one that exists."""
    return next((k for k in layout.scopes_of(member.name, member.group) if k in policies), None)


# ---- dysco fleet status ----------------------------------------------------------------------


def status_main(args: argparse.Namespace) -> int:
    from dysco.runtime.fleet._store import Store, endpoint_of

    layout = Layout(args.etcd_prefix)

    async def main() -> tuple[int, list[Member]]:
        async with Store(endpoint_of(args)) as store:
            revision, members, _ = await read_fleet(store, layout)
            return revision, members

    revision, members = asyncio.run(main())
    if args.json:
        print(json.dumps({"revision": revision, "agents": [m.as_json() for m in members]}, indent=2))
        return 0
    print(f"etcd {args.etcd} revision {revision}: {len(members)} agents, {sum(m.up for m in members)} up")
    for m in members:
        row = m.as_json()
        key = str(row["policy_key"]).removeprefix(layout.prefix) or "-"
        line = (
            f"  {m.name:16} {row['address']:15} {'up' if m.up else 'DOWN':4} {key}@{row['policy_revision']}"
        )
        line += f"  sessions {row['sessions']}"
        if row["refused"]:
            refused: Any = row["refused"]
            line += (
                f"\n  {'':16} refused {refused['key'].removeprefix(layout.prefix)}@{refused['revision']}: "
            )
            line += refused["error"]
        print(line)
    return 0


# ---- dysco fleet policies put ------------------------------------------------------------------


def policies_put_main(args: argparse.Namespace) -> int:
    from dysco.compiler import compile_text, read_policies

    layout = Layout(args.etcd_prefix)
    scope, name = parse_scope(args.scope)
    key = layout.policy(scope, name)
    text = read_policies(args.file)
    if not args.no_check:
        compile_text(text, args.file)  # a bad file is the operator's mistake: say so here, write nothing
    summary = asyncio.run(_put_and_wait(args, layout, key, text))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_summary_line(summary, layout))
    return 0 if not summary["refused"] and not summary["waiting"] else 1


async def _put_and_wait(args: argparse.Namespace, layout: Layout, key: bytes, text: str) -> dict[str, Any]:
    from dysco.runtime.fleet._store import Store, endpoint_of

    async with Store(endpoint_of(args)) as store:
        t0 = time.monotonic()
        revision = await store.put(key, text.encode())
        summary: dict[str, Any] = {"key": key.decode(), "revision": revision, "in_force": [], "refused": [],
                                   "waiting": [], "shadowed": [], "seconds": 0.0}  # fmt: skip
        if args.no_wait:
            return summary
        _, members, policies = await read_fleet(store, layout)
        targets = [m.name for m in members if m.up and wanted_key(layout, m, policies) == key]
        summary["shadowed"] = sorted(
            m.name
            for m in members
            if m.up and m.name not in targets and key in layout.scopes_of(m.name, m.group)
        )
        done = await _wait(store, layout, targets, revision, t0, args.timeout)
        summary["in_force"] = sorted(n for n, ok in done.items() if ok is True)
        summary["refused"] = sorted((n, ok) for n, ok in done.items() if isinstance(ok, str))
        summary["waiting"] = sorted(n for n in targets if n not in done)
        summary["seconds"] = round(time.monotonic() - t0, 3)
        return summary


async def _wait(
    store: Store, layout: Layout, targets: list[str], revision: int, t0: float, timeout: float
) -> dict[str, bool | str]:
    """Each target's outcome for ``revision``: True (in force) or the refusal's error; a target
    missing from the answer did not report in ``timeout``."""
    done: dict[str, bool | str] = {}

    def note(name: str, report: Report) -> None:
        if name not in targets or name in done:
            return
        if report.policy_revision >= revision:
            done[name] = True
        elif report.refused is not None and report.refused.revision >= revision:
            done[name] = report.refused.error
        else:
            return
        _progress(len(done), len(targets), time.monotonic() - t0)

    start, reports = await store.get_prefix(layout.statuses)
    for e in reports:
        note(layout.name_of(e.key, layout.statuses), Report.decode(e.value))
    if len(done) < len(targets):
        try:
            async with asyncio.timeout(max(0.0, timeout - (time.monotonic() - t0))):
                async for change in store.watch_prefix(layout.statuses, start + 1):
                    if change.value is not None:
                        note(layout.name_of(change.key, layout.statuses), Report.decode(change.value))
                    if len(done) == len(targets):
                        break
        except TimeoutError:
            pass
    if targets and sys.stderr.isatty():
        print(file=sys.stderr)
    return done


def _progress(done: int, total: int, seconds: float) -> None:
    if sys.stderr.isatty():
        print(f"\r  {done}/{total} agents answered ({seconds:.2f}s)", end="", file=sys.stderr, flush=True)


def _summary_line(s: dict[str, Any], layout: Layout) -> str:
    key = f"{s['key'].removeprefix(layout.prefix)}@{s['revision']}"
    if not (s["in_force"] or s["refused"] or s["waiting"]):
        line = f"{key}: written; no agent that is up wants it"
    else:
        total = len(s["in_force"]) + len(s["refused"]) + len(s["waiting"])
        line = f"{key}: in force at {len(s['in_force'])} of {total} agents"
        if s["in_force"]:
            line += f" ({', '.join(s['in_force'])})"
        line += f" in {s['seconds']}s"
    for name, error in s["refused"]:
        line += f"\n  refused by {name}: {error}"
    if s["waiting"]:
        line += f"\n  no answer from: {', '.join(s['waiting'])}"
    if s["shadowed"]:
        line += f"\n  not for: {', '.join(s['shadowed'])} (a more specific set of theirs is in etcd)"
    return line
