"""Reconfiguration time on real processes: a TCP-terminating proxy splices itself out of many
short sessions, and the agents' own timestamps say how long each removal took.

``python -m bench.reconf_time`` (as root) prints JSON; progress goes to stderr; the CDF goes to
``bench-out/reconf_cdf.png``.  The testbed is ``examples/splice.toml``: client -> proxy ->
server, three network namespaces, each behind its own ``dysco switch`` NIC with a ``dysco agent``
(the testbed of ``dysco testbed``).  The proxy is ``examples/splice_proxy.py``; the client and the
server are this module's peers:

* the server echoes every byte back;
* the client runs sessions, ``--concurrency`` at a time, until ``--removals`` of them have been
  spliced.  Each sends ``--window`` messages of ``--message`` random bytes, waits for their
  echo, checks it and goes on, so data flows both ways all the time.  The proxy splices a
  connection once it has relayed ``--before`` bytes (both ways together); when it reports the
  splice done, this module tells the client, which sends ``--after`` more bytes each way
  (directly to the server now), closes and checks that every byte came back.  A session without
  an echo for ``--stall`` seconds is counted as failed (before or after its splice) and ends.

Per removal, from the agents' event logs (``dysco ctl events``: the core's notifications,
stamped with CLOCK_MONOTONIC ns when the agent has carried out the batch that raised them, one
clock for every process of the machine):

* start: the client's agent (the left anchor) sending the lock request (``reconfigure_started``,
  caused by the proxy agent's rightRequest); the times from the splice call reaching the proxy's
  agent (``splice_started``) are given too;
* (a) the new path carrying data: the first data segment either anchor sends or receives on the
  new path (``new_path_data``);
* (b) the old path freed: the last of the client's ``reconfigured`` (it sent the TEARDOWN), the
  proxy's ``spliced`` (the TEARDOWN reached it: both its sessions freed) and the server's
  ``reconfigured`` (right anchor).

The paper's prototype (a Linux kernel agent) finished almost 80% of proxy removals within 2 ms
and 98.7% within 4 ms; the JSON says whether this run did as well.  Here the NICs and agents are
Python processes sharing the machine's cores with the endpoints and the proxy, and every
control message and new-path packet crosses two of them per hop (packet-in, gRPC, packet-out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench._ports import free_port
from bench._reconf_events import PAPER, Event, Removal, pair, summary, target_met
from dysco.errors import DyscoError, UserError
from dysco.runtime._mgmt import request
from dysco.testbed import Plan, Testbed, load_topology

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "examples" / "splice.toml"
PROXY_SCRIPT = ROOT / "examples" / "splice_proxy.py"
PORT = 9000
WAIT_S = 120.0
SESSION_S = 60.0
"""A client session that is not told the splice is done within this long gives up (counted)."""
SETTLE_S = 10.0
"""How long after the last session the agents get to close every session (linger is 0.5 s)."""
KERNEL_COUNTERS = ("TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedPAWS")
OUT = ROOT / "bench-out"


def _progress(text: str) -> None:
    print(f"reconf_time: {text}", file=sys.stderr, flush=True)


# ---- peers: run by this module inside a host's namespace ---------------------------------------


async def _echo_server(port: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "0.0.0.0", port, backlog=256)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


class _Client:
    """The client peer: sessions through the proxy; ``after PORT`` on stdin ends one."""

    def __init__(self, addr: str, port: int, message: int, window: int, after: int, stall: float) -> None:
        self.addr, self.port = addr, port
        self.stall = stall
        self.block = message * window
        self.after = after
        self.told: dict[int, asyncio.Event] = {}
        self.early: set[int] = set()
        """``after`` lines for sessions not yet registered (the proxy reports fast)."""
        self.ok = self.failed = 0

    def tell(self, port: int) -> None:
        ev = self.told.get(port)
        if ev is None:
            self.early.add(port)
        else:
            ev.set()

    async def session(self) -> None:
        reader, writer = await asyncio.open_connection(self.addr, self.port)
        cport = writer.get_extra_info("sockname")[1]
        told = self.told.setdefault(cport, asyncio.Event())
        if cport in self.early:
            self.early.discard(cport)
            told.set()
        print(f"connected {cport}", flush=True)
        sent = after = 0
        deadline = asyncio.get_running_loop().time() + SESSION_S
        try:
            while not (told.is_set() and after >= self.after):
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"not told of the splice in {SESSION_S:g}s")
                block = os.urandom(self.block)
                writer.write(block)
                await writer.drain()
                try:
                    echo = await asyncio.wait_for(reader.readexactly(len(block)), self.stall)
                except TimeoutError:
                    raise TimeoutError(f"stalled: no echo in {self.stall:g}s") from None
                if echo != block:
                    raise ValueError(f"the echo differs after {sent} bytes")
                sent += len(block)
                if told.is_set():
                    after += len(block)
            writer.write_eof()
            rest = await asyncio.wait_for(reader.read(), self.stall)
            if rest:
                raise ValueError(f"{len(rest)} bytes more than were sent came back")
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.failed += 1
            print(f"failed {cport} sent {sent}: {type(exc).__name__}: {exc}", flush=True)
        else:
            self.ok += 1
            print(f"done {cport} sent {sent} after {after}", flush=True)
        finally:
            writer.close()
            self.told.pop(cport, None)

    async def run(self, limit: int, concurrency: int) -> None:
        """Sessions, ``concurrency`` at a time, until ``stop`` on stdin (or ``limit`` sessions)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def stdin() -> None:
            for line in sys.stdin:
                cmd, _, arg = line.strip().partition(" ")
                if cmd == "after":
                    loop.call_soon_threadsafe(self.tell, int(arg))
                elif cmd == "stop":
                    loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=stdin, name="stdin", daemon=True).start()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            try:
                await self.session()
            finally:
                gate.release()

        print("started", flush=True)
        async with asyncio.TaskGroup() as tg:
            for i in range(limit):
                await gate.acquire()
                if stop.is_set():
                    gate.release()
                    break
                tg.create_task(one(), name=f"session-{i}")
        print(f"finished ok {self.ok} failed {self.failed}", flush=True)


def _peer(args: list[str]) -> None:
    cmd, *rest = args
    if cmd == "echo-server":
        asyncio.run(_echo_server(int(rest[0])))
    elif cmd == "client":
        addr, port, limit, concurrency, message, window, after, stall = rest
        client = _Client(addr, int(port), int(message), int(window), int(after), float(stall))
        asyncio.run(client.run(int(limit), int(concurrency)))
    else:
        raise UserError(f"no peer {cmd!r}")


# ---- processes whose lines arrive on one queue ---------------------------------------------------


class Lines:
    """Processes whose output lines arrive, tagged with the process's name, on one queue (and in
    a log file each); stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.queue: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self._threads: list[threading.Thread] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.procs[name] = proc
        log = (self.logs / f"{name}.log").open("w")
        t = threading.Thread(target=self._pump, args=(name, proc, log), name=f"pump-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return proc

    def _pump(self, name: str, proc: subprocess.Popen[str], log: IO[str]) -> None:
        assert proc.stdout is not None
        with log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                self.queue.put((name, line.rstrip("\n")))
        self.queue.put((name, None))

    def wait_for(self, name: str, text: str, timeout: float = WAIT_S) -> str:
        """The next line of ``name`` containing ``text`` (lines of other processes are not
        expected meanwhile: starting up)."""
        end = time.monotonic() + timeout
        while True:
            try:
                who, line = self.queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise UserError(f"{name}: no line with {text!r} in {timeout:g}s; see {self.logs}") from None
            if line is None:
                raise UserError(f"{who} ended; see {self.logs / who}.log")
            if who == name and text in line:
                return line

    def send(self, name: str, line: str) -> None:
        stdin = self.procs[name].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(timeout=10)


@contextmanager
def lines(logs: Path) -> Iterator[Lines]:
    ls = Lines(logs)
    try:
        yield ls
    finally:
        ls.close()


# ---- the agents' event logs --------------------------------------------------------------------


class EventLogs:
    """Each agent's events, read from a cursor so that the bounded logs lose nothing."""

    def __init__(self, tb: Testbed) -> None:
        self.mgmt = {h.name: tb.plan.mgmt(h) for h in tb.hosts()}
        self.events: dict[str, list[Event]] = {name: [] for name in self.mgmt}
        self.cursor = {name: 0 for name in self.mgmt}

    def skip_past(self) -> None:
        """Start after what is logged now (the agents' start-up)."""
        for name, path in self.mgmt.items():
            answer = request(path, "events", {"since": 0, "limit": 1})
            assert isinstance(answer, dict)
            self.cursor[name] = answer["last"]

    def read(self) -> None:
        for name, path in self.mgmt.items():
            while True:
                answer = request(path, "events", {"since": self.cursor[name]})
                assert isinstance(answer, dict)
                if answer["missed"]:
                    raise UserError(f"{name}'s agent dropped {answer['missed']} events before they were read")
                self.events[name] += [Event.from_json(e) for e in answer["events"]]
                self.cursor[name] = answer["next"]
                if answer["next"] >= answer["last"]:
                    break


def _sessions(path: str) -> int:
    status = request(path, "status")
    assert isinstance(status, dict)
    n: int = status["sessions"]
    return n


# ---- the run ----------------------------------------------------------------------------------


def topology(logs: Path) -> Plan:
    n = TOPOLOGY.read_text().count("[[host]]")
    return load_topology(
        TOPOLOGY,
        prefix=f"rt{os.getpid() % 100000}",
        ports=tuple(free_port() for _ in range(n)),
        p4=str(ROOT / "p4src" / "dysco.p4"),
        policies=str(logs / "policy.dysco"),
        linger=0.5,
    )


_ACCEPTED = re.compile(r"^accepted (\d+) [\d.]+:(\d+) -> ")
_SPLICED = re.compile(r"^spliced (\d+) in \S+: up (\d+) down (\d+)")
_SPLICE_FAILED = re.compile(r"^splice failed (\d+)")
_DONE = re.compile(r"^done (\d+) sent (\d+) after (\d+)")
_FAILED = re.compile(r"^failed (\d+) ")


@dataclass
class Tally:
    """The sessions' outcomes as the proxy and the client report them."""

    spliced: int = 0
    splice_failures: list[str] = field(default_factory=list)
    relayed: dict[int, int] = field(default_factory=dict)
    """Client port of a live spliced session -> bytes the proxy relayed (both ways) until then."""
    ok: int = 0
    ok_past_the_proxy: int = 0
    """Sessions whose bytes after the splice did not cross the proxy."""
    stalled_after_splice: list[str] = field(default_factory=list)
    failed_before_splice: list[str] = field(default_factory=list)

    def done(self, port: int, sent: int) -> None:
        self.ok += 1
        relayed = self.relayed.pop(port, None)
        if relayed is not None and 2 * sent > relayed:
            self.ok_past_the_proxy += 1

    def failed(self, port: int, line: str) -> None:
        spliced = self.relayed.pop(port, None) is not None
        (self.stalled_after_splice if spliced else self.failed_before_splice).append(line)

    def as_json(self) -> dict[str, Any]:
        return {
            "spliced": self.spliced,
            "ok": self.ok,
            "ok_with_data_after_the_splice_past_the_proxy": self.ok_past_the_proxy,
            "failed_after_splice": len(self.stalled_after_splice),
            "failed_before_splice": len(self.failed_before_splice),
            "first_failures": (self.stalled_after_splice + self.failed_before_splice)[:5],
            "splice_failures_reported_by_the_proxy": len(self.splice_failures),
            "first_splice_failures": self.splice_failures[:5],
        }


def run(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    plan = topology(logs)
    proxy, server = plan.host("proxy"), plan.host("server")
    _progress(f"starting {len(plan.hosts)} NICs and agents ({TOPOLOGY.name})")
    with Testbed(plan, logs) as tb, ExitStack() as stack:
        procs = stack.enter_context(lines(logs))
        peer = [sys.executable, "-m", "bench.reconf_time", "--peer"]
        procs.start("server", tb.netns_argv("server", [*peer, "echo-server", str(PORT)]))
        procs.wait_for("server", "listening")
        proxy_argv = [sys.executable, str(PROXY_SCRIPT), "--listen", f"{proxy.address}:{PORT}"]
        proxy_argv += ["--server", f"{server.address}:{PORT}", "--splice-after", str(args.before)]
        proxy_argv += ["--mgmt", plan.mgmt(proxy), "--timeout", "30"]
        procs.start("proxy", tb.netns_argv("proxy", proxy_argv))
        procs.wait_for("proxy", "listening")
        logs_ = EventLogs(tb)
        logs_.skip_past()
        limit = 2 * args.removals  # sessions that fail before their splice make no removal
        client = [*peer, "client", proxy.address, str(PORT), str(limit), str(args.concurrency)]
        client += [str(args.message), str(args.window), str(args.after), str(args.stall)]
        started = time.monotonic()
        procs.start("client", tb.netns_argv("client", client))
        procs.wait_for("client", "started")
        _progress(f"sessions until {args.removals} are spliced, {args.concurrency} at a time")
        port_of: dict[int, int] = {}
        t = Tally()
        finished = ""
        last_read = time.monotonic()
        while not finished:
            try:
                who, line = procs.queue.get(timeout=WAIT_S)
            except queue.Empty:
                raise UserError(f"nothing happened in {WAIT_S:g}s; see {logs}") from None
            if line is None:
                raise UserError(f"{who} ended early; see {logs / who}.log")
            if who == "proxy":
                if m := _ACCEPTED.match(line):
                    port_of[int(m.group(1))] = int(m.group(2))
                elif m := _SPLICED.match(line):
                    cport = port_of[int(m.group(1))]
                    t.relayed[cport] = int(m.group(2)) + int(m.group(3))
                    t.spliced += 1
                    procs.send("client", f"after {cport}")
                    if t.spliced == args.removals:
                        procs.send("client", "stop")
                    if t.spliced % 100 == 0:
                        rate = t.spliced / (time.monotonic() - started)
                        _progress(f"  {t.spliced}/{args.removals} spliced ({rate:.1f}/s)")
                elif m := _SPLICE_FAILED.match(line):
                    t.splice_failures.append(line)
                    procs.send("client", f"after {port_of[int(m.group(1))]}")
            elif who == "client":
                if m := _DONE.match(line):
                    t.done(int(m.group(1)), int(m.group(2)))
                elif m := _FAILED.match(line):
                    t.failed(int(m.group(1)), line)
                elif line.startswith("finished "):
                    finished = line
            if time.monotonic() - last_read > 5.0:  # keep the agents' bounded logs read
                logs_.read()
                last_read = time.monotonic()
        seconds = time.monotonic() - started
        _progress(f"{finished} in {seconds:.1f}s; waiting for the agents to close every session")
        settle = time.monotonic() + SETTLE_S
        while any(_sessions(p) for p in logs_.mgmt.values()) and time.monotonic() < settle:
            time.sleep(0.2)  # polls the agents' status, with a deadline
        left = {name: n for name, p in logs_.mgmt.items() if (n := _sessions(p))}
        logs_.read()
        errors = {name: status_errors(path) for name, path in logs_.mgmt.items()}
        kernel = {name: kernel_counters(tb, name) for name in ("client", "server")}
    ev = logs_.events
    removals = pair(ev["client"], ev["proxy"], ev["server"])
    result = report(args, removals, t, errors, seconds)
    result["sessions"]["left_open_at_the_agents"] = left
    result["kernel_counters"] = kernel
    return result


def kernel_counters(tb: Testbed, host: str) -> dict[str, int]:
    """TCP counters of a host's kernel (nstat): retransmissions, timeouts, PAWS drops."""
    argv = tb.netns_argv(host, ["nstat", "-azs", *KERNEL_COUNTERS])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False).stdout
    return {
        f[0]: int(f[1])
        for line in out.splitlines()
        if len(f := line.split()) >= 2 and f[0] in KERNEL_COUNTERS
    }


def status_errors(path: str) -> list[Any]:
    status = request(path, "status")
    assert isinstance(status, dict)
    errors: list[Any] = status["errors"]
    return errors


def report(
    args: argparse.Namespace,
    removals: list[Removal],
    t: Tally,
    errors: dict[str, list[Any]],
    seconds: float,
) -> dict[str, Any]:
    complete = [r for r in removals if r.complete]
    a = [x for r in complete if (x := r.to_new_path_data_ms()) is not None]
    b = [x for r in complete if (x := r.to_old_path_freed_ms()) is not None]
    a_splice = [x for r in complete if (x := r.to_new_path_data_ms("splice")) is not None]
    b_splice = [x for r in complete if (x := r.to_old_path_freed_ms("splice")) is not None]
    sa, sb = summary(a), summary(b)
    return {
        "benchmark": "reconf_time",
        "layout": "client -> proxy (examples/splice_proxy.py) -> server, namespaces behind dysco switch "
        "NICs with dysco agents (examples/splice.toml); the proxy splices itself out of every session",
        "parameters": {k: v for k, v in vars(args).items() if k not in ("peer", "logs", "out")},
        "n": len(a),
        "concurrency": args.concurrency,
        "start": "the client's agent (left anchor) sends the lock request (reconfigure_started)",
        "to_new_path_data": sa,
        "to_old_path_freed": sb,
        "from_splice_call": {"to_new_path_data": summary(a_splice), "to_old_path_freed": summary(b_splice)},
        "target_met": {"to_new_path_data": target_met(sa), "to_old_path_freed": target_met(sb)},
        "reference": {
            **PAPER,
            "source": "Dysco (SIGCOMM'17) Fig. 12, proxy removal: almost 80% within 2 ms, 98.7% within 4 ms",
        },
        "sessions": t.as_json(),
        "removals": {
            "started": len(removals),
            "complete": len(complete),
            "failed": [r.failure for r in removals if r.failure][:5],
            "no_data_on_the_new_path_while_two_paths": sum(1 for r in complete if not r.data_ns),
            "first_data_by": {
                side: sum(
                    1 for r in complete if r.data_ns and min(r.data_ns, key=r.data_ns.__getitem__) == side
                )
                for side in ("client", "server")
            },
        },
        "agent_errors": {name: e for name, e in errors.items() if e},
        "seconds": round(seconds, 1),
        "_series": {"a": a, "b": b},
    }


def draw(result: dict[str, Any], out: Path) -> Path:
    from dysco.plots import cdf_png

    series = result.pop("_series")
    return cdf_png(
        out / "reconf_cdf.png",
        {
            "lock request -> new path carries data": series["a"],
            "lock request -> old path freed (all agents)": series["b"],
        },
        title=f"Proxy removal, dysco switch NICs: {result['n']} removals, {result['concurrency']} at a time",
        xlabel="ms (logarithmic)",
        log_x=True,
        references=[
            (2.0, PAPER["within_2ms"], "paper: 80% <= 2 ms"),
            (4.0, PAPER["within_4ms"], "paper: 98.7% <= 4 ms"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--removals", type=int, default=1000, help="proxy removals to measure")
    parser.add_argument("--concurrency", type=int, default=8, help="sessions at a time")
    parser.add_argument("--message", type=int, default=1000, help="bytes per message")
    parser.add_argument("--window", type=int, default=2, help="messages sent before waiting for their echo")
    parser.add_argument("--before", type=int, default=20000, help="bytes the proxy relays before splicing")
    parser.add_argument("--after", type=int, default=20000, help="bytes each way after the splice")
    parser.add_argument("--stall", type=float, default=3.0, help="a session without progress this long fails")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the PNG goes ({OUT.name})")
    parser.add_argument("--logs", type=Path, help="keep the logs here (default: a temporary directory)")
    parser.add_argument("--peer", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        _peer(args.peer)
        return
    if os.geteuid() != 0:
        raise SystemExit("reconf_time: needs root (network namespaces, veth pairs, raw sockets)")
    for name in ("removals", "concurrency", "message", "window"):
        if getattr(args, name) < 1:
            raise SystemExit(f"reconf_time: --{name} must be at least 1")
    os.chdir(ROOT)  # the peers run as python -m bench.reconf_time
    with tempfile.TemporaryDirectory(prefix="dysco-reconf-time-") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            result = run(args, logs)
        except (UserError, DyscoError) as exc:
            raise SystemExit(f"reconf_time: {exc}") from None
    if result["n"]:
        result["plot"] = str(draw(result, args.out))
    else:
        result.pop("_series")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
