"""``dysco target up|down``: bring a P4 target up for a program, and down again."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from dysco.errors import UserError

EPILOG = """\
examples:
  dysco target up p4src/dysco.p4 -i 1@veth0 -i 2@veth2 --cpu-port 255
  dysco target up p4src/dysco.p4 --veth 1@sw1:host1 --veth 2@sw2:host2 --peer-netns dyscohosts
  DYSCO_TARGET=bmv2 dysco target up p4src/dysco.p4 -i 1@veth0 --p4c /opt/p4c/bin/p4c
  dysco target down

The target is bmv2's simple_switch_grpc when it is on PATH and a p4c is found (--p4c PATH,
else $DYSCO_P4C, else p4c on PATH), or when DYSCO_TARGET=bmv2; otherwise `dysco switch`.
`up` returns once the program is loaded and P4Runtime answers; the target keeps running
until `down`.
"""

STATE = "target.json"
STOP_WAIT_S = 10.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "target",
        help="start or stop a P4 target (bmv2 or the softswitch) for a program",
        description="Start a P4 target for a program and an interface map, or stop it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="build the program, start the target, push the pipeline", epilog=EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    up.add_argument("program", help="the P4 program (v1model)")
    up.add_argument("-i", dest="ports", action="append", default=[], metavar="N@IFACE",
                    help="bind port N to an existing interface (repeatable)")  # fmt: skip
    up.add_argument("--veth", action="append", default=[], metavar="N@END:PEER",
                    help="create a veth pair END/PEER and bind port N to END (repeatable)")  # fmt: skip
    up.add_argument("--peer-netns", help="move the veth peers into this (new) network namespace")
    up.add_argument("--cpu-port", type=int, default=255, help="CPU port (default 255)")
    up.add_argument("--grpc-server-addr", default="127.0.0.1:9559", help="P4Runtime address")
    up.add_argument("--device-id", type=int, default=0)
    up.add_argument("--p4c", metavar="PATH", help="the p4c to compile with for bmv2 (default: $DYSCO_P4C, "
                    "else p4c on PATH); the driver or p4c-bm2-ss")  # fmt: skip
    up.add_argument("--state-dir", type=Path, default=Path("build/target"), help="where state and logs go")
    up.set_defaults(handler=run_up)
    down = verbs.add_parser("down", help="stop the target and remove the veths it made")
    down.add_argument("--state-dir", type=Path, default=Path("build/target"))
    down.set_defaults(handler=run_down)


def run_up(args: argparse.Namespace) -> int:
    from dysco.bmv2 import links
    from dysco.bmv2.launcher import Target, TargetSpec, parse_port

    state_file = args.state_dir / STATE
    if state_file.exists():
        raise UserError(f"a target is already up ({state_file}); run 'dysco target down' first")
    ports = [parse_port(p) for p in args.ports]
    veths: list[links.Veth] = []
    for text in args.veth:
        number, end_peer = parse_port(text)
        end, sep, peer = end_peer.partition(":")
        if not sep or not peer:
            raise UserError(f"bad --veth {text!r}: expected N@END:PEER")
        veths.append(links.Veth(end, peer, args.peer_netns))
        ports.append((number, end))
    spec = TargetSpec(
        program=Path(args.program),
        ports=tuple(ports),
        cpu_port=args.cpu_port,
        grpc_addr=args.grpc_server_addr,
        device_id=args.device_id,
        build_dir=args.state_dir,
        p4c=args.p4c,
    )
    links.create(veths)
    try:
        target = Target(spec)
        target.start(detach=True)
    except BaseException:
        links.remove(veths)
        raise
    assert target.process is not None
    state = {
        "kind": target.kind,
        "pid": target.process.pid,
        "grpc_addr": spec.grpc_addr,
        "veths": [[v.end, v.peer, v.peer_netns] for v in veths],
        "log": str(target.log_path),
    }
    state_file.write_text(json.dumps(state, indent=1) + "\n")
    print(f"target up: {target.kind} on {spec.grpc_addr} (pid {target.process.pid}), log {target.log_path}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from dysco.bmv2 import links

    state_file = args.state_dir / STATE
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise UserError(f"no target is up ({state_file} does not exist)") from None
    pid = int(state["pid"])
    _stop(pid)
    links.remove([links.Veth(end, peer, ns) for end, peer, ns in state["veths"]])
    state_file.unlink()
    print(f"target down: {state['kind']} (pid {pid})")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _stop(pid: int) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_WAIT_S."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # not a child of this process: there is nothing to wait on
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
