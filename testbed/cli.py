"""``dysco testbed up|down|run FILE``: the namespace testbed of a TOML topology file.

``run`` carries the plan out in the foreground and keeps it until SIGINT or SIGTERM.  ``up``
starts ``run`` as a detached keeper, returns once the keeper says the testbed is up, and writes
a state file (the keeper's pid and process group); ``down`` stops the keeper and then removes
whatever the plan creates, so it also cleans up after a failed or interrupted ``up``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dysco.errors import UserError
from dysco.testbed._netns import BACKENDS, Plan, Testbed, clean
from dysco.testbed._process import START_S, STOP_S
from dysco.testbed._topology import load_topology

UP_LINE = "dysco testbed: up"

_EPILOG = """\
example:
  dysco testbed up examples/firewall.toml      # namespaces, NICs, agents, middleboxes; then returns
  ip netns exec dy-s iperf3 -s -1 & ip netns exec dy-c iperf3 -c 10.0.3.2
  dysco ctl sessions --mgmt /tmp/dy-client.sock
  dysco testbed down examples/firewall.toml    # everything goes, also after a failed `up`

Host N of the file (from 1) is 10.0.N.2 in namespace PREFIX-KEY (KEY: c, m, s, then m2, m3, ...);
logs are in --logs (default /tmp/dysco-testbed-PREFIX).  Needs root.
"""


def register(subparsers: Any) -> None:
    t: argparse.ArgumentParser = subparsers.add_parser(
        "testbed",
        help="build or remove a namespace testbed (NICs, agents, middleboxes) from a TOML topology",
        description="Build a testbed on this machine from a topology file: every host a network "
        "namespace behind its own `dysco switch` NIC and `dysco agent`, hosts joined by a router "
        "namespace, middleboxes running Linux forwarding, iptables, NAT or HAProxy.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument(
        "action",
        choices=("up", "down", "run"),
        help="up: start and return; down: remove; run: start and keep in the foreground until Ctrl-C",
    )
    t.add_argument("file", type=Path, metavar="FILE", help="the topology (e.g. examples/chain.toml)")
    t.add_argument("--logs", type=Path, metavar="DIR", help="log directory (/tmp/dysco-testbed-PREFIX)")
    t.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the NICs' back end (default: $DYSCO_BACKEND, else ebpf where it loads, else python)",
    )
    t.add_argument(
        "--offloads",
        choices=("on", "off"),
        help="TSO/GSO/GRO and checksum offload on the veths (default: on with ebpf, off with python)",
    )
    t.set_defaults(handler=testbed_main)


def _paths(plan: Plan, logs: Path | None) -> tuple[Path, Path]:
    """The log directory and the state file."""
    return logs or Path(f"/tmp/dysco-testbed-{plan.prefix}"), Path(f"/tmp/dysco-testbed-{plan.prefix}.json")


def testbed_main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UserError("needs root (network namespaces, veth pairs, raw sockets)")
    overrides: dict[str, Any] = {}
    if args.backend is not None:
        overrides["backend"] = args.backend
    if args.offloads is not None:
        overrides["offloads"] = args.offloads == "on"
    plan = load_topology(args.file, **overrides)
    logs, state = _paths(plan, args.logs)
    if args.action == "run":
        return _run(plan, logs)
    if args.action == "up":
        return _up(args.file, plan, logs, state)
    return _down(plan, state)


def _run(plan: Plan, logs: Path) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Testbed(plan, logs) as tb:
        hosts = ", ".join(f"{h.name} {h.address} ({plan.ns(h.key)})" for h in plan.hosts)
        print(f"{UP_LINE}: {hosts}; NICs on the {tb.carried_by()}; logs in {logs}", flush=True)
        # whoever started us may be gone: later output would go to a closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        stop.wait()
    return 0


def _up(file: Path, plan: Plan, logs: Path, state: Path) -> int:
    if state.exists():
        raise UserError(f"a testbed with prefix {plan.prefix!r} is up ({state}); `dysco testbed down` first")
    logs.mkdir(parents=True, exist_ok=True)
    keeper_log = logs / "testbed.log"
    argv = [sys.executable, "-m", "dysco", "-v", "testbed", "run", str(file), "--logs", str(logs)]
    argv += ["--backend", plan.backend, "--offloads", "on" if plan.offloads_on else "off"]
    with keeper_log.open("w") as log:
        keeper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
    assert keeper.stdout is not None
    state.write_text(json.dumps({"pid": keeper.pid, "file": str(file), "logs": str(logs)}))
    deadline = time.monotonic() + START_S * (2 + len(plan.hosts))
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([keeper.stdout], [], [], max(left, 0))
        line = keeper.stdout.readline() if ready else ""
        if UP_LINE in line:
            break
        if line == "":  # the keeper failed (and cleaned up) or took too long
            keeper.stdout.close()
            _down(plan, state)
            raise UserError(f"the testbed did not come up; see {keeper_log} and the logs in {logs}")
    keeper.stdout.close()
    print(line.rstrip("\n"))
    print(f"state in {state}; `dysco testbed down {file}` removes it")
    return 0


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once process ``pid`` has exited (it is not our child: a pidfd says when)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _keeper(state: Path) -> int:
    """The pid of the running keeper the state file names, or 0."""
    try:
        pid = int(json.loads(state.read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return 0
    return pid if b"testbed" in cmdline else 0  # else the pid is another process's by now


def _down(plan: Plan, state: Path) -> int:
    pid = _keeper(state)
    if pid:
        os.kill(pid, signal.SIGTERM)  # the keeper stops its processes and cleans up
        if not _wait_gone(pid, STOP_S * 3):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # switches and agents of a keeper that had to be killed
    clean(plan)
    state.unlink(missing_ok=True)
    print(f"testbed {plan.prefix!r} down")
    return 0
