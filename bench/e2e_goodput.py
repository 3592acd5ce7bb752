"""End to end on real TCP: Dysco (``dysco.p4`` and agents) against the same hosts' NICs running
``baseline.p4`` without agents and against the plain path with no NICs, side by side in one run.

``python -m bench.e2e_goodput`` (as root) prints JSON; progress goes to stderr.  The layout is a
testbed of six namespaces, client -> m1 -> m2 -> m3 -> m4 -> server, the middleboxes Linux IP
forwarding, every host behind its own ``dysco switch`` NIC (the testbed of ``dysco testbed``).
It is built three ways:

* ``dysco``: every NIC gets ``dysco.p4`` from its agent; the client's policy sends port 5201
  (iperf3) and 80 (HTTP) through m1, and port 9000+K through m1..mK;
* ``baseline``: every NIC runs ``baseline.p4`` (the same bump in the wire without Dysco) and no
  agent runs; policy routing in the router namespace sends the same ports through the same
  middleboxes, both ways, so both runs cross the same middleboxes;
* ``plain``: the same namespaces, router and policy routing, no NICs and no agents: each
  host's eth0 is a veth straight to the router.

``dysco`` and ``baseline`` are measured for each NIC back end (``--backends``: ebpf, python) and
veth offload setting (``--offloads``: TSO/GSO/GRO and checksum offload off or on; the python NIC
runs with them off only), ``plain`` for each offload setting. Measured in each: TCP goodput
(iperf3 for ``--seconds``, ``--runs`` runs, the receiver's rate, median), HTTP requests per second
(``--requests`` short HTTP/1.0 requests, one connection each, ``--concurrency`` at a time), the
same with ``wrk`` against nginx for ``--wrk-seconds`` (``Connection: close``: a new connection per
request, as the paper measured), and session setup latency (the time connect() takes,
``--connects`` per chain length, lengths interleaved, all held open until the last). ``ratios``
gives, per back end and offload setting, dysco/baseline and dysco/plain for goodput and request
rate, and the setup overhead: dysco minus the other per chain length and its slope over the chain
length (the overhead per middlebox). Targets: goodput dysco/baseline >= 0.97; dysco/plain >= 0.6
offloads off and >= 0.8 offloads on (issue 16); setup overhead <= 1 ms for four middleboxes and
request rates dysco/baseline >= 0.9 (issue 19). ``wrk`` and ``nginx`` are Debian packages that
``make bench`` installs.

The NICs and agents share the machine's cores with the endpoints and middleboxes, so absolute
rates are this machine's; the ratios are the point.  The middleboxes' packet counters are
checked, so a run that bypassed its middleboxes fails.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._ports import free_port
from dysco.errors import UserError
from dysco.testbed import Host, Plan, Process, Testbed

ROOT = Path(__file__).resolve().parents[1]
MBOXES = 4
IPERF_PORT = 5201
HTTP_PORT = 80
SETUP_BASE = 9000
"""Port SETUP_BASE + K crosses middleboxes m1..mK."""
WAIT_S = 120.0
BODY = b"x" * 1024


# ---- peers: run by this module inside a host's namespace ---------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _http_server(port: int) -> None:
    with http.server.ThreadingHTTPServer(("0.0.0.0", port), _Handler) as server:
        print("listening", flush=True)
        server.serve_forever()


def _http_client(addr: str, port: int, count: int, concurrency: int) -> None:
    print("started", flush=True)
    failures: list[str] = []

    def worker(n: int) -> None:
        for _ in range(n):
            conn = http.client.HTTPConnection(addr, port, timeout=30)
            try:
                conn.request("GET", "/")
                answer = conn.getresponse()
                if answer.status != 200 or answer.read() != BODY:
                    failures.append(f"status {answer.status}")
            except OSError as exc:
                failures.append(str(exc))
            finally:
                conn.close()

    share = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(n,)) for n in share]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    print("result", json.dumps({"requests": count, "seconds": elapsed, "failures": failures[:5]}), flush=True)


def _accept_server(ports: list[int]) -> None:
    """Accept on every port; close each connection when the client does."""
    sel = selectors.DefaultSelector()
    for port in ports:
        sel.register(socket.create_server(("0.0.0.0", port), backlog=256), selectors.EVENT_READ, "listen")
    print("listening", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if key.data == "listen":
                sel.register(s.accept()[0], selectors.EVENT_READ, "conn")
            elif not s.recv(1024):
                sel.unregister(s)
                s.close()


def _connect_client(addr: str, ports: list[int], count: int) -> None:
    """``count`` connects per port, ports interleaved, after one unmeasured connect each.  The
    sessions stay open until the end, so no teardown runs while a session is set up."""
    print("started", flush=True)
    times: dict[int, list[float]] = {p: [] for p in ports}
    held = []
    for i in range(count + 1):
        for port in ports:
            start = time.perf_counter()
            held.append(socket.create_connection((addr, port), timeout=30))
            elapsed = time.perf_counter() - start
            if i:
                times[port].append(elapsed)
    for s in held:
        s.close()
    print("result", json.dumps(times), flush=True)


def _peer(args: list[str]) -> None:
    cmd, *rest = args
    if cmd == "http-server":
        _http_server(int(rest[0]))
    elif cmd == "http-client":
        _http_client(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
    elif cmd == "accept-server":
        _accept_server([int(p) for p in rest])
    elif cmd == "connect-client":
        _connect_client(rest[0], [int(p) for p in rest[2:]], int(rest[1]))
    else:
        raise UserError(f"no peer {cmd!r}")


# ---- the testbed, twice ------------------------------------------------------------------------


def policy() -> str:
    """The client's policy: HTTP and iperf3 through m1, port SETUP_BASE + K through m1..mK."""
    lines = [f"middlebox m{i} {{ instances $m{i}; }}" for i in range(1, MBOXES + 1)]
    lines.append(f"policy bulk: tcp dst port {IPERF_PORT} or tcp dst port {HTTP_PORT} -> m1")
    for k in range(1, MBOXES + 1):
        chain = ", ".join(f"m{i}" for i in range(1, k + 1))
        lines.append(f"policy k{k}: tcp dst port {SETUP_BASE + k} -> {chain}")
    return "\n".join(lines) + "\n"


def plan(build: str, prefix: str, policies: str, backend: str, offloads: bool) -> Plan:
    """client, m1..m4, server: ``dysco`` (agents, dysco.p4), ``baseline`` (baseline.p4 alone on
    every NIC) or ``plain`` (no NICs: each host's eth0 straight to the router)."""
    dysco = build == "dysco"
    p4 = "" if dysco else str(ROOT / "p4src" / "baseline.p4")
    keys = ["c", *(f"m{i}" if i > 1 else "m" for i in range(1, MBOXES + 1)), "s"]
    names = ["client", *(f"m{i}" for i in range(1, MBOXES + 1)), "server"]
    roles = ["client", *["middlebox"] * MBOXES, "server"]
    hosts = tuple(
        Host(key, name, i + 1, free_port(), role, agent=dysco, p4=p4)
        for i, (key, name, role) in enumerate(zip(keys, names, roles, strict=True))
    )
    return Plan(
        hosts,
        prefix=prefix,
        p4=str(ROOT / "p4src" / "dysco.p4"),
        policies=policies,
        policy=policy(),
        linger=0.5,
        backend=backend,
        offloads=offloads,
        nics=build != "plain",
    )


def baseline_routes(p: Plan) -> list[str]:
    """Policy routing in the router namespace: the ports of the benchmark cross the middleboxes
    of their chain in order, both ways, as Dysco's chains do.  (They take precedence over the
    plan's own rules; the namespace takes them along when it goes.)"""
    r, client, server = p.ns("r"), p.host("client"), p.host("server")
    mboxes = p.role("middlebox")
    chains = [(IPERF_PORT, 1), (HTTP_PORT, 1), *((SETUP_BASE + k, k) for k in range(1, MBOXES + 1))]
    cmds = [f"ip -n {r} route add default via {m.address} table {100 + i}" for i, m in enumerate(mboxes, 1)]
    pref = 100
    for port, k in chains:
        # (where the packet comes from, to, port match, the middlebox it goes to next)
        hops: list[tuple[Host, Host, str, int]] = [(client, server, f"dport {port}", 1)]
        hops += [(mboxes[i - 1], server, f"dport {port}", i + 1) for i in range(1, k)]
        hops += [(server, client, f"sport {port}", k)]
        hops += [(mboxes[i - 1], client, f"sport {port}", i - 1) for i in range(k, 1, -1)]
        for src, dst, match, nxt in hops:
            cmds.append(
                f"ip -n {r} rule add pref {pref} iif r-{src.key} to {dst.address}/32 "
                f"ipproto tcp {match} lookup {100 + nxt}"
            )
            pref += 1
    return cmds


def _progress(text: str) -> None:
    print(f"e2e_goodput: {text}", file=sys.stderr, flush=True)


def _rx_packets(tb: Testbed, key: str) -> int:
    out = subprocess.run(
        tb.netns_argv(key, ["cat", "/sys/class/net/eth0/statistics/rx_packets"]),
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT_S,
    )
    return int(out.stdout)


@contextmanager
def _crossing(tb: Testbed, keys: list[str], at_least: int, what: str) -> Iterator[None]:
    """Fails unless each middlebox of ``keys`` received ``at_least`` packets meanwhile."""
    before = {k: _rx_packets(tb, k) for k in keys}
    yield
    for k in keys:
        got = _rx_packets(tb, k) - before[k]
        if got < at_least:
            raise UserError(f"{what}: middlebox {tb.plan.host(k).name} saw {got} packets, not the traffic")


def _peer_argv(tb: Testbed, host: str, *args: object) -> list[str]:
    return tb.netns_argv(host, [sys.executable, "-m", "bench.e2e_goodput", "--peer", *map(str, args)])


def _result(argv: list[str], log: Path) -> Any:
    """The JSON a peer prints on its ``result`` line."""
    with Process(argv, log, "started") as p:
        line = p.wait_for("result", WAIT_S)
    return json.loads(line.split(" ", 1)[1])


@contextmanager
def accepting(tb: Testbed, logs: Path, port: int) -> Iterator[None]:
    """The server accepts on ``port`` and the client has connected three times through it (the
    first sessions' one-time work out of the way) while the block runs."""
    server = tb.plan.host("server")
    with Process(_peer_argv(tb, "server", "accept-server", port), logs / "accept-server.log", "listening"):
        _result(_peer_argv(tb, "client", "connect-client", server.address, 3, port), logs / "warm-up.log")
        yield


def connect_times(tb: Testbed, logs: Path, count: int, port: int) -> list[float]:
    """``count`` connects of the client to the server's ``port``, one at a time (seconds each)."""
    argv = _peer_argv(tb, "client", "connect-client", tb.plan.host("server").address, count, port)
    times: list[float] = _result(argv, logs / "connect-client.log")[str(port)]
    return times


def goodput(tb: Testbed, logs: Path, seconds: float, runs: int) -> list[dict[str, float]]:
    server = tb.plan.host("server")
    argv = tb.netns_argv("server", ["iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush"])
    out = []
    with Process(argv, logs / "iperf3-server.log", "Server listening"):
        for run in range(runs):
            client = ["iperf3", "-c", server.address, "-p", str(IPERF_PORT), "-t", f"{seconds:g}", "-J"]
            with _crossing(tb, ["m"], 1000, "goodput"):
                proc = subprocess.run(
                    tb.netns_argv("client", client),
                    capture_output=True,
                    text=True,
                    timeout=WAIT_S,
                    check=False,
                )
            (logs / f"iperf3-{run}.json").write_text(proc.stdout)
            if proc.returncode != 0:
                raise UserError(f"iperf3 failed: {proc.stdout[-1000:]}{proc.stderr}")
            end = json.loads(proc.stdout)["end"]
            mbps = end["sum_received"]["bits_per_second"] / 1e6
            out.append({"mbps": round(mbps, 2), "retransmits": end["sum_sent"]["retransmits"]})
            _progress(f"  goodput run {run + 1}/{runs}: {mbps:.1f} Mbit/s")
    return out


def http_rate(tb: Testbed, logs: Path, requests: int, concurrency: int) -> dict[str, Any]:
    server = tb.plan.host("server")
    with Process(_peer_argv(tb, "server", "http-server", HTTP_PORT), logs / "http-server.log", "listening"):
        argv = _peer_argv(tb, "client", "http-client", server.address, HTTP_PORT, requests, concurrency)
        with _crossing(tb, ["m"], 4 * requests, "http"):
            result = _result(argv, logs / "http-client.log")
    if result["failures"]:
        raise UserError(f"HTTP requests failed: {result['failures']}")
    rps = requests / result["seconds"]
    _progress(f"  {requests} HTTP requests: {rps:.0f}/s")
    return {"requests_per_s": round(rps, 1), "seconds": round(result["seconds"], 3)}


NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    server {{ listen {port}; location / {{ return 200 "dysco\\n"; }} }}
}}
"""
"""nginx in the foreground, one process, answering every request with a short body."""


def wrk_rate(tb: Testbed, logs: Path, seconds: float, connections: int) -> dict[str, Any]:
    """wrk against nginx, as the paper measured: ``connections`` at a time, each request on a new
    connection (``Connection: close``), for ``seconds``."""
    server = tb.plan.host("server")
    tmp = logs / "nginx"
    tmp.mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp, port=HTTP_PORT))
    # nginx names the OS in its log once it listens
    with Process(tb.netns_argv("server", ["nginx", "-c", str(conf)]), logs / "nginx.log", "OS:"):
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-H", "Connection: close",
                f"http://{server.address}:{HTTP_PORT}/"]  # fmt: skip
        with _crossing(tb, ["m"], 100, "wrk"):
            proc = subprocess.run(
                tb.netns_argv("client", argv), capture_output=True, text=True, timeout=WAIT_S, check=False
            )
    (logs / "wrk.log").write_text(proc.stdout + proc.stderr)
    rps = _wrk_field(proc.stdout, "Requests/sec:")
    if proc.returncode != 0 or rps is None:
        raise UserError(f"wrk failed: {proc.stdout[-1000:]}{proc.stderr}")
    errors = _wrk_field(proc.stdout, "Non-2xx or 3xx responses:") or 0.0
    _progress(f"  wrk against nginx: {rps:.0f} requests/s")
    return {"requests_per_s": round(rps, 1), "non_2xx": int(errors)}


def _wrk_field(text: str, label: str) -> float | None:
    for line in text.splitlines():
        if line.strip().startswith(label):
            return float(line.split(":", 1)[1].split()[0])
    return None


def setup_latency(tb: Testbed, logs: Path, connects: int) -> dict[str, float]:
    """Median connect() time in ms per chain length."""
    server = tb.plan.host("server")
    ports = [SETUP_BASE + k for k in range(1, MBOXES + 1)]
    with Process(_peer_argv(tb, "server", "accept-server", *ports), logs / "accept-server.log", "listening"):
        last = tb.plan.role("middlebox")[-1].key
        with _crossing(tb, [last], 3 * connects, "setup latency"):
            times = _result(
                _peer_argv(tb, "client", "connect-client", server.address, connects, *ports),
                logs / "connect-client.log",
            )
    medians = {
        str(k): round(statistics.median(times[str(SETUP_BASE + k)]) * 1e3, 3) for k in range(1, MBOXES + 1)
    }
    _progress(f"  connect() median ms by middleboxes: {medians}")
    return medians


def agent_errors(tb: Testbed) -> dict[str, list[Any]]:
    errors = {}
    for h in tb.hosts():
        argv = [sys.executable, "-m", "dysco", "ctl", "status", "--mgmt", tb.plan.mgmt(h), "--json"]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=WAIT_S)
        errors[h.name] = json.loads(out.stdout)["errors"]
    return {name: e for name, e in errors.items() if e}


def measure(build: str, backend: str, offloads: bool, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    name = f"{build}-{backend}-offloads-{'on' if offloads else 'off'}"
    logs = logs / name
    logs.mkdir()
    p = plan(build, f"b{os.getpid() % 100000}", str(logs / "policy.dysco"), backend, offloads)
    what = {
        "dysco": f"{len(p.hosts)} NICs and agents",
        "baseline": f"{len(p.hosts)} NICs",
        "plain": "no NICs",
    }
    _progress(f"{name}: starting ({what[build]})")
    with Testbed(p, logs) as tb:
        if build != "dysco":
            for cmd in baseline_routes(p):
                _run(cmd)
        runs = goodput(tb, logs, args.seconds, args.runs)
        result: dict[str, Any] = {
            "goodput_mbps": [r["mbps"] for r in runs],
            "goodput_median_mbps": round(statistics.median(r["mbps"] for r in runs), 2),
            "retransmits": [r["retransmits"] for r in runs],
            "http": http_rate(tb, logs, args.requests, args.concurrency),
            "wrk_nginx": wrk_rate(tb, logs, args.wrk_seconds, args.concurrency),
            "setup_ms": setup_latency(tb, logs, args.connects),
        }
        if build != "plain":
            result["nics"] = tb.carried_by()
        if build == "dysco":
            result["agent_errors"] = agent_errors(tb)
    return result


def _run(cmd: str) -> None:
    proc = subprocess.run(cmd.split(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"{cmd}: {proc.stderr.strip()}")


def _slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def compare(dysco: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Dysco against another build of the same path (baseline or plain)."""
    overhead = {k: round(dysco["setup_ms"][k] - base["setup_ms"][k], 3) for k in base["setup_ms"]}
    fixed, per_mbox = _slope([(float(k), v) for k, v in overhead.items()])
    return {
        "goodput_ratio": _ratio(dysco["goodput_median_mbps"], base["goodput_median_mbps"]),
        "http_rps_ratio": _ratio(dysco["http"]["requests_per_s"], base["http"]["requests_per_s"]),
        "wrk_nginx_rps_ratio": _ratio(
            dysco["wrk_nginx"]["requests_per_s"], base["wrk_nginx"]["requests_per_s"]
        ),
        "setup_overhead_ms": overhead,
        "setup_overhead_per_middlebox_ms": round(per_mbox, 3),
        "setup_overhead_fixed_ms": round(fixed, 3),
        "setup_overhead_per_middlebox_ms_max": round(max(v / int(k) for k, v in overhead.items()), 3),
    }


TARGETS = {"dysco/baseline": 0.97, "dysco/plain offloads off": 0.6, "dysco/plain offloads on": 0.8}
"""Goodput ratios through the one-middlebox chain (issue 16)."""


def configurations(backends: list[str], offloads: list[str]) -> list[tuple[str, bool]]:
    """(backend, offloads on) pairs to measure; the python NIC carries frames up to the MTU only,
    so it runs with offloads off."""
    return [(b, o == "on") for b in backends for o in offloads if not (b == "python" and o == "on")]


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        items = [t for t in text.split(",") if t]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(choices)}")
        return items

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="example: sudo .venv/bin/python -m bench.e2e_goodput --backends ebpf --offloads on --runs 1",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per iperf3 run")
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs (the median counts)")
    parser.add_argument("--requests", type=int, default=300, help="HTTP requests")
    parser.add_argument("--concurrency", type=int, default=4, help="HTTP requests at a time")
    parser.add_argument("--wrk-seconds", type=float, default=5.0, help="wrk against nginx")
    parser.add_argument("--connects", type=int, default=30, help="connects per chain length")
    parser.add_argument(
        "--backends",
        type=_csv(("ebpf", "python")),
        default=["ebpf", "python"],
        help="NIC back ends (ebpf,python)",
    )
    parser.add_argument(
        "--offloads", type=_csv(("off", "on")), default=["off", "on"], help="veth offloads (off,on)"
    )
    parser.add_argument("--logs", type=Path, help="keep the logs here (default: a temporary directory)")
    parser.add_argument("--peer", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        _peer(args.peer)
        return
    if os.geteuid() != 0:
        raise SystemExit("e2e_goodput: needs root (network namespaces, veth pairs, raw sockets)")
    os.chdir(ROOT)  # the peers run as python -m bench.e2e_goodput
    start = time.monotonic()
    configs = configurations(args.backends, args.offloads)
    runs: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dysco-e2e-goodput-") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        try:
            plain = {o: measure("plain", "python", o, args, logs) for o in sorted({o for _, o in configs})}
            for o, r in plain.items():
                runs[f"plain/offloads-{'on' if o else 'off'}"] = r
            for backend, on in configs:
                key = f"{backend}/offloads-{'on' if on else 'off'}"
                dysco = measure("dysco", backend, on, args, logs)
                base = measure("baseline", backend, on, args, logs)
                runs[f"{key}/dysco"], runs[f"{key}/baseline"] = dysco, base
                ratios[key] = {
                    "dysco/baseline": compare(dysco, base),
                    "dysco/plain": compare(dysco, plain[on]),
                }
        except UserError as exc:
            raise SystemExit(f"e2e_goodput: {exc}") from None
    result = {
        "benchmark": "e2e_goodput",
        "layout": "client -> m1 -> m2 -> m3 -> m4 -> server, namespaces behind dysco switch NICs "
        "(plain: no NICs); middleboxes Linux forwarding; goodput and HTTP through m1",
        "parameters": {k: v for k, v in vars(args).items() if k not in ("peer", "logs")},
        "ratios": ratios,
        "targets": {
            "goodput dysco/baseline >=": TARGETS["dysco/baseline"],
            "goodput dysco/plain >= (offloads off)": TARGETS["dysco/plain offloads off"],
            "goodput dysco/plain >= (offloads on)": TARGETS["dysco/plain offloads on"],
            "setup overhead for 4 middleboxes, dysco - baseline, ms <=": 1.0,
            "HTTP and wrk/nginx requests/s dysco/baseline >=": 0.9,
        },
        "runs": runs,
        "reference": "paper: goodput within 1.5 percentage points of the baseline, setup +94 us at most",
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
