"""``dysco demo``: the end-to-end story.  A client sends to a server through a TCP-terminating
proxy in several concurrent sessions, both ways; mid-transfer the proxy is spliced out of each
session in turn (a staggered wave of reconfigurations) and the sessions go on without it.  The
demo shows progress once a second, then a summary (sessions, bytes verified by SHA-256 at both
ends, reconfiguration times, goodput before and after, the proxy's work before and after) and
draws goodput.png and reconfig_cdf.png.

As root it runs on the namespace testbed of examples/splice.toml (:mod:`._demo_net`); otherwise,
or with ``--sim``, the same story runs in the in-process simulation (:mod:`._demo_sim`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from dysco.errors import UserError
from dysco.testbed._demo_story import AFTER_S, MB, Story

SESSIONS = 4
MAX_SESSIONS = 32
SIZE_MB = {"testbed": 8.0, "sim": 1.5}
"""By default: on the testbed the splices are spread over each session's first 8 MB (the
sessions then go on until shortly after the last splice); the simulation sends 1.5 MB each way."""
MAX_SIZE_MB = {"testbed": 1024.0, "sim": 32.0}

_EPILOG = """\
examples:
  make demo                                 # the same as: dysco demo --out demo-out
  sudo .venv/bin/dysco demo --sessions 8    # as root: on network namespaces, real Linux TCP
  dysco demo --sim --out /tmp/demo          # in the simulation, whoever runs it

Writes OUT/goodput.png (goodput over time, the splice requests marked), OUT/reconfig_cdf.png
(the CDF of reconfiguration times), OUT/summary.txt, and on the testbed OUT/logs/ (every
process's output).  Exit status 0 when every session was verified and spliced.
"""


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="the end-to-end story: a proxy spliced out of live TCP sessions, with plots",
        description="Run concurrent transfers through a TCP-terminating proxy, splice the proxy out "
        "of each session mid-transfer, verify every byte, summarise and draw the goodput and the "
        "reconfiguration times.  As root on network namespaces, else in the simulation.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR", help="(default: demo-out)")
    p.add_argument(
        "--sessions",
        type=int,
        default=SESSIONS,
        metavar="N",
        help=f"concurrent sessions (default {SESSIONS})",
    )
    p.add_argument(
        "--size",
        type=float,
        metavar="MB",
        help=f"testbed: the splices are spread over each session's first MB (default "
        f"{SIZE_MB['testbed']:g}), the sessions end {AFTER_S:g} s after the last splice; "
        f"simulation: MB each way (default {SIZE_MB['sim']:g})",
    )
    p.add_argument("--sim", action="store_true", help="run in the simulation even as root")
    p.add_argument("--prefix", default="demo", help="the testbed's namespace and link names (default demo)")
    p.add_argument("--seed", type=int, default=1, help="the simulation's seed (default 1)")
    p.add_argument(
        "--tcp-timestamps",
        action="store_true",
        help="leave TCP timestamps on in the testbed, as Linux has them (off by default)",
    )
    p.set_defaults(handler=demo_main)


def repository() -> Path:
    """The clone this module runs from: the demo needs its examples and P4 program."""
    root = Path(__file__).resolve().parents[1]
    for need in ("examples/splice.toml", "examples/splice_proxy.py", "p4src/dysco.p4"):
        if not (root / need).is_file():
            raise UserError(f"the demo runs from a clone of the repository; {root / need} is missing")
    return root


def _say(text: str) -> None:
    print(text, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def demo_main(args: argparse.Namespace) -> int:
    sim = bool(args.sim) or os.geteuid() != 0
    kind = "sim" if sim else "testbed"
    if not 1 <= args.sessions <= MAX_SESSIONS:
        raise UserError(f"--sessions {args.sessions}: give 1 to {MAX_SESSIONS}")
    size_mb = SIZE_MB[kind] if args.size is None else args.size
    if not 0 < size_mb <= MAX_SIZE_MB[kind]:
        raise UserError(f"--size {size_mb:g}: give more than 0 and at most {MAX_SIZE_MB[kind]:g} MB here")
    size = int(size_mb * MB)
    root = repository()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.sim:  # asked for, whoever asks
        _say("dysco demo: --sim: the story runs in the in-process simulation")
    elif os.geteuid() != 0:
        _say(
            "dysco demo: not root, so no network namespaces: the same story runs in the in-process simulation"
        )
    much = f"{size_mb:g} MB each way" if sim else "both ways"
    _say(
        f"dysco demo: {args.sessions} sessions send {much} between a client and a server through a "
        "TCP-terminating proxy (examples/splice_proxy.py); mid-transfer the proxy is spliced out of one "
        "session after the other, and the sessions go on without it."
    )
    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _interrupt)  # torn down as on Ctrl-C
    try:
        story = _run(root, args, sim, size, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
    story.wall_s = time.monotonic() - began
    text = story.summary(out)
    (out / "summary.txt").write_text(text)
    story.draw(out)
    _say("")
    _say(text.rstrip("\n"))
    _say(f"\n(done in {story.wall_s:.0f} s)")
    return 0 if story.ok else 1


def _run(root: Path, args: argparse.Namespace, sim: bool, size: int, out: Path) -> Story:
    from dysco.testbed._topology import load_topology

    if sim:
        from dysco.testbed import _demo_sim

        plan = load_topology(
            root / "examples" / "splice.toml", p4=str(root / "p4src" / "dysco.p4"), linger=0.5
        )
        return _demo_sim.run(plan, args.sessions, size, size, _say, seed=args.seed)
    from dysco.testbed import _demo_net

    return _demo_net.run(root, args.prefix, out / "logs", args.sessions, size, _say, args.tcp_timestamps)


if __name__ == "__main__":  # python -m dysco.testbed.demo ARGS: the same as dysco demo ARGS
    from dysco.cli import main

    raise SystemExit(main(["demo", *sys.argv[1:]]))
