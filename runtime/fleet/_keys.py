"""The trust domain's key ring in etcd (``keys/ring``) and its rotation (``dysco fleet keys``).

The ring is one JSON value, ``{"current": ID, "keys": {"ID": "HEX", ...}}``: the key every agent
signs with and every key it accepts (docs/security.md).  One key, so a step of a rotation is one
atomic write that every agent watching sees whole.  A rotation is three steps, each waited for
at every agent that is up before the next (an agent reports the ring's revision it has in force
in ``status/NAME``):

1. **add** the new key, not current: every agent accepts it, none signs with it yet;
2. **switch**: the new key is current (agents sign with it) and the old ones are still accepted,
   for the overlap window (``--overlap``): messages signed before the switch still verify;
3. **retire**: the old keys go; only the new one is accepted.

Without step 1 an agent that switched first would sign what the others cannot verify yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from typing import TYPE_CHECKING, Any

from dysco.errors import UserError
from dysco.runtime.core._auth import MIN_KEY, KeyRing
from dysco.runtime.fleet._layout import Layout, Registration, Report

if TYPE_CHECKING:
    from dysco.runtime.fleet._store import Store

Ring = KeyRing
OVERLAP_S = 10.0
WAIT_S = 10.0


def encode(ring: KeyRing) -> bytes:
    keys = {str(k): v.hex() for k, v in sorted(ring.keys.items())}
    return json.dumps({"current": ring.current, "keys": keys}, sort_keys=True).encode()


def decode(data: bytes) -> KeyRing:
    """A ring from its JSON; UserError for one that is not a ring (the agent refuses it)."""
    try:
        raw = json.loads(data)
        keys = {int(k): bytes.fromhex(v) for k, v in raw["keys"].items()}
        current = int(raw["current"])
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
        raise UserError(f"not a key ring: {type(exc).__name__}: {exc}") from None
    return KeyRing(keys, current)


setattr(KeyRing, "decode", staticmethod(decode)) if False else None


def add_keys(what: Any, common: argparse.ArgumentParser) -> None:
    """``dysco fleet keys put | rotate | show``."""
    k = what.add_parser("keys", help="the trust domain's key ring in etcd (put, rotate, show)",
                        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    verbs = k.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    put = verbs.add_parser(
        "put",
        parents=[common],
        help="a key file (docs/security.md) becomes the ring",
        epilog="example: dysco fleet keys put keys.txt --etcd http://127.0.0.1:2379",
    )
    put.add_argument("file", metavar="FILE", help="a key file (mode 600): ID HEX-KEY [current] per line")
    put.add_argument("--timeout", type=float, default=WAIT_S, metavar="SECONDS",
                     help=f"wait this long for the agents ({WAIT_S:g})")  # fmt: skip
    put.set_defaults(handler=put_main)
    rot = verbs.add_parser("rotate", parents=[common], help="a new current key, with an overlap window",
                           epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    rot.add_argument("--overlap", type=float, default=OVERLAP_S, metavar="SECONDS",
                     help=f"old keys are still accepted this long after every agent signs with the new one "
                     f"({OVERLAP_S:g})")  # fmt: skip
    rot.add_argument("--timeout", type=float, default=WAIT_S, metavar="SECONDS",
                     help=f"each step waits this long for the agents ({WAIT_S:g})")  # fmt: skip
    rot.add_argument("--json", action="store_true", help="print the summary as JSON")
    rot.set_defaults(handler=rotate_main)
    show = verbs.add_parser("show", parents=[common], help="the ring's ids and current key (never the keys)",
                            epilog="example: dysco fleet keys show --etcd http://127.0.0.1:2379")  # fmt: skip
    show.set_defaults(handler=show_main)


_EPILOG = """\
example: dysco fleet keys rotate --overlap 10 --etcd http://127.0.0.1:2379
  # add key 2: 4 of 4 agents have it (0.05s)
  # switch to key 2: 4 of 4 agents have it (0.04s); overlap 10s
  # retire 1: 4 of 4 agents have it (0.04s)
  # key ring rotated from 1 to 2 in 10.2s

The first ring comes from a key file: dysco fleet keys put keys.txt.  Agents started with --keys
take the ring from etcd (docs/fleet.md, docs/security.md).
"""


def put_main(args: argparse.Namespace) -> int:
    ring = KeyRing.load(args.file)
    return asyncio.run(_put_one(args, ring))


async def _put_one(args: argparse.Namespace, ring: KeyRing) -> int:
    from dysco.runtime.fleet._store import Store, endpoint_of

    layout = Layout(args.etcd_prefix)
    async with Store(endpoint_of(args)) as store:
        t0 = time.monotonic()
        done, missing = await step(store, layout, ring, args.timeout)
    print(_line(f"key ring put: current {ring.current}, ids {_ids(ring)}", done, missing, t0))
    return 0 if not missing else 1


async def step(
    store: Store, layout: Layout, ring: KeyRing, timeout: float
) -> tuple[list[str], dict[str, str]]:
    """Write ``ring`` and wait until every agent that is up has it in force: the agents that do,
    and the others with why (refused, or no answer)."""
    revision = await store.put(layout.keys, encode(ring))
    _, regs = await store.get_prefix(layout.agents)
    targets = sorted(Registration.decode(e.value).name for e in regs)
    done: list[str] = []
    refused: dict[str, str] = {}

    def note(name: str, report: Report) -> None:
        if name in targets and name not in done and name not in refused:
            if report.keys_revision >= revision:
                done.append(name)
            elif report.keys_refused.startswith(f"@{revision}:"):
                refused[name] = report.keys_refused
            if sys.stderr.isatty():
                print(
                    f"\r  {len(done) + len(refused)}/{len(targets)} agents answered", end="", file=sys.stderr
                )

    start, reports = await store.get_prefix(layout.statuses)
    for e in reports:
        note(layout.name_of(e.key, layout.statuses), Report.decode(e.value))
    if len(done) + len(refused) < len(targets):
        try:
            async with asyncio.timeout(timeout):
                async for change in store.watch_prefix(layout.statuses, start + 1):
                    if change.value is not None:
                        note(layout.name_of(change.key, layout.statuses), Report.decode(change.value))
                    if len(done) + len(refused) == len(targets):
                        break
        except TimeoutError:
            pass
    if sys.stderr.isatty() and targets:
        print(file=sys.stderr)
    missing = {**refused, **{n: "no answer" for n in targets if n not in done and n not in refused}}
    return sorted(done), missing


def rotate_main(args: argparse.Namespace) -> int:
    if not 0 <= args.overlap <= 3600:
        raise UserError(f"--overlap {args.overlap:g}: between 0 and 3600 seconds")
    summary = asyncio.run(_rotate(args))
    print(json.dumps(summary, indent=2) if args.json else "\n".join(summary["lines"]))
    return 0 if summary["ok"] else 1


async def _rotate(args: argparse.Namespace) -> dict[str, Any]:
    from dysco.runtime.fleet._store import Store, endpoint_of

    layout = Layout(args.etcd_prefix)
    async with Store(endpoint_of(args)) as store:
        entry = await store.get(layout.keys)
        if entry is None:
            raise UserError(f"no key ring in etcd ({layout.keys.decode()}): put one first with "
                            "`dysco fleet keys put FILE`")  # fmt: skip
        old = decode(entry.value)
        new_id = next((i for i in range(old.current + 1, old.current + 257) if i % 256 not in old.keys), None)
        if new_id is None:
            raise UserError("the ring has 256 keys: no id left for a new one")
        new_id %= 256
        key = secrets.token_bytes(MIN_KEY)
        t0 = time.monotonic()
        lines: list[str] = []
        steps: list[dict[str, Any]] = []
        rings = [
            (f"add key {new_id}", KeyRing({**old.keys, new_id: key}, old.current)),
            (f"switch to key {new_id}", KeyRing({**old.keys, new_id: key}, new_id)),
            (f"retire {' '.join(str(i) for i in sorted(old.keys))}", KeyRing({new_id: key}, new_id)),
        ]
        for n, (what, ring) in enumerate(rings):
            if n == 2 and args.overlap:
                await asyncio.sleep(args.overlap)  # the overlap window itself, not a synchronisation
            t = time.monotonic()
            done, missing = await step(store, layout, ring, args.timeout)
            steps.append(
                {"step": what, "done": done, "missing": missing, "seconds": round(time.monotonic() - t, 3)}
            )
            lines.append(_line(what, done, missing, t) + (f"; overlap {args.overlap:g}s" if n == 1 else ""))
            if missing:
                lines.append(f"stopped: the ring stays at step '{what}' (run `dysco fleet keys rotate` again "
                             "once every agent answers)")  # fmt: skip
                break
        ok = all(not s["missing"] for s in steps) and len(steps) == 3
        seconds = round(time.monotonic() - t0, 3)
        if ok:
            lines.append(f"key ring rotated from {old.current} to {new_id} in {seconds}s")
        return {
            "old": old.current,
            "new": new_id,
            "steps": steps,
            "ok": ok,
            "seconds": seconds,
            "lines": lines,
        }


def show_main(args: argparse.Namespace) -> int:
    from dysco.runtime.fleet._store import Store, endpoint_of

    async def main() -> int:
        layout = Layout(args.etcd_prefix)
        async with Store(endpoint_of(args)) as store:
            entry = await store.get(layout.keys)
            if entry is None:
                print(f"no key ring in etcd ({layout.keys.decode()})")
                return 1
            ring = decode(entry.value)
            print(f"{layout.keys.decode()}@{entry.revision}: current {ring.current}, ids {_ids(ring)}")
            return 0

    return asyncio.run(main())


def _ids(ring: KeyRing) -> str:
    return " ".join(str(i) for i in sorted(ring.keys))


def _line(what: str, done: list[str], missing: dict[str, str], t0: float) -> str:
    line = f"{what}: {len(done)} of {len(done) + len(missing)} agents have it ({time.monotonic() - t0:.2f}s)"
    for name, why in sorted(missing.items()):
        line += f"\n  {name}: {why}"
    return line
