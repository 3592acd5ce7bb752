"""Run the PTF suite: ``python -m ptf_tests.run [--program P4] [PTF ARGS...]`` (as root).

Everything lives in a network namespace made for the run: the runner re-executes
itself inside it, brings loopback up, creates a veth pair per switch port
(switch end ``swN``, PTF end ``ptfN``), starts the default target for the
program (``dysco.bmv2``: bmv2 when installed, else ``dysco switch``) on
127.0.0.1 there, and runs ``ptf`` on the PTF ends with PTF port N = switch port N.
The namespace, and with it every interface and process, is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PORTS = (1, 2)  # HOST and NET of p4src/dysco.p4
GRPC_ADDR = "127.0.0.1:9559"


def outside(args: argparse.Namespace, extra: list[str]) -> int:
    if os.geteuid() != 0:
        print("ptf_tests.run needs root (network namespaces, veth pairs, raw sockets)", file=sys.stderr)
        return 2
    netns = f"dysco-ptf-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        argv = [sys.executable, "-m", "ptf_tests.run", "--inside", "--program", str(args.program), *extra]
        return subprocess.run(["ip", "netns", "exec", netns, *argv], cwd=ROOT, check=False).returncode
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def inside(args: argparse.Namespace, extra: list[str]) -> int:
    from dysco.bmv2 import Target, TargetSpec, links

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    pairs = [links.Veth(f"sw{n}", f"ptf{n}") for n in PORTS]
    links.create(pairs)
    build = ROOT / "build" / "ptf"
    spec = TargetSpec(
        args.program, ports=tuple((n, f"sw{n}") for n in PORTS), grpc_addr=GRPC_ADDR, build_dir=build
    )
    with Target(spec) as target:
        print(f"ptf_tests: {target.kind} up for {args.program} on {GRPC_ADDR}", flush=True)
        params = f"grpcaddr='{GRPC_ADDR}';device_id=0;cpu_port=255;program='{args.program}'"
        ptf = [
            str(Path(sys.executable).parent / "ptf"),
            "--test-dir", str(HERE),
            "--pypath", str(ROOT),
            "--test-params", params,
            "--log-dir", str(build),
            *[arg for n in PORTS for arg in ("-i", f"{n}@ptf{n}")],
            *extra,
        ]  # fmt: skip
        return subprocess.run(ptf, cwd=ROOT, check=False).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--program", type=Path, default=ROOT / "p4src" / "dysco.p4")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args, extra = ap.parse_known_args()
    return inside(args, extra) if args.inside else outside(args, extra)


if __name__ == "__main__":
    raise SystemExit(main())
