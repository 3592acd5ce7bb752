"""Session entries written through P4Runtime into the ebpf back end: entries per second and
kernel memory per entry (issue 16: >= 50,000 entries/s, <= 1 KB per session).

A real ``dysco switch --backend ebpf`` runs in a namespace of its own (``dyebpfst<pid>``, two
veth ports and its CPU port inside), serving P4Runtime on a Unix socket. A gRPC client
becomes primary, pushes p4src/dysco.p4 (SetForwardingPipelineConfig) and writes ``--entries``
session_out entries (distinct five-tuples, ``rewrite`` with its 11 parameters and the agent's
idle timeout) in Write requests of ``--batch`` updates. Each request is serialized before its
RPC starts, so the time per batch is gRPC plus the server; the client's protobuf encoding is
reported apart. Memory is what ``bpftool map show`` says the table's map locks (memlock)
empty and full; a sample of entries is read back from the map with ``bpftool map lookup``.
Everything the run makes (namespace, veths, the switch) is removed at the end, on errors and
on Ctrl-C too. Needs root.

    python -m bench.session_table                      # 1,000,000 entries, Writes of 10,000
    python -m bench.session_table --entries 20000 --batch 1000
    python -m bench.session_table --entries 200000 --profile out/session_table.pyspy   # + where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from google.protobuf import __version__ as protobuf_version
from google.protobuf.internal import api_implementation

from bench import _pyspy
from dysco.p4names import HOST_PORT, NET_PORT, SESSION_OUT
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch import load_program
from dysco.softswitch.targets.ebpf import VethRig, unavailable
from dysco.softswitch.targets.ebpf.cgen import generate

ROOT = Path(__file__).resolve().parents[1]
DYSCO = ROOT / "p4src" / "dysco.p4"
CPU_PORT = 255
TARGET_ENTRIES_PER_S = 50_000
TARGET_BYTES_PER_SESSION = 1024
START_S = 120.0
RPC_S = 600.0
MAX_MESSAGE = 256 << 20
ELECTION = p4runtime_pb2.Uint128(high=0, low=1)
IDLE_TIMEOUT_S = 300.0
"""The agent's idle timeout for every session entry (runtime/core/_session.py)."""


def log(msg: str) -> None:
    print(f"session_table: {msg}", file=sys.stderr, flush=True)


# --- the entries -------------------------------------------------------------------------------


def five_tuple(i: int) -> tuple[int, int, int, int, int]:
    """The i-th session: 10.x.y.z:port -> 192.0.2.1:443, distinct for i < 2^32 / 4."""
    return (0x0A000000 | (i >> 14), 0xC0000201, 6, 1024 + (i & 0x3FFF), 443)


def rewrite_args(i: int) -> tuple[int, ...]:
    """rewrite(src_addr, dst_addr, src_port, dst_port, seq_delta, ack_delta, ts_val_delta,
    ts_ecr_delta, ws_from, ws_to, session_id) of the i-th session."""
    return (0x0A640001, 0xC6336401, 20000 + (i & 0x7FFF), 8443, 0, (i * 7919) & 0xFFFFFFFF, 0, 0, 0, 0, i + 1)


def _bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


class Ids:
    """P4Info ids of the table, its action and their fields, from the pushed P4Info."""

    def __init__(self, p4info: Any) -> None:
        table = next(t for t in p4info.tables if t.preamble.name == SESSION_OUT.table)
        action = next(a for a in p4info.actions if a.preamble.name == SESSION_OUT.rewrite_action)
        fields = {f.name: f.id for f in table.match_fields}
        self.table = table.preamble.id
        self.fields = tuple(fields[n] for n in SESSION_OUT.key)
        self.action = action.preamble.id
        self.params = tuple(p.id for p in action.params)


def write_request(ids: Ids, first: int, count: int, idle_timeout_ns: int) -> bytes:
    """A serialized WriteRequest inserting sessions ``first`` .. ``first + count - 1``."""
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=ELECTION)
    insert = p4runtime_pb2.Update.INSERT
    for i in range(first, first + count):
        te = req.updates.add(type=insert).entity.table_entry
        te.table_id = ids.table
        te.idle_timeout_ns = idle_timeout_ns
        for fid, v in zip(ids.fields, five_tuple(i), strict=True):
            te.match.add(field_id=fid).exact.value = _bytes(v)
        act = te.action.action
        act.action_id = ids.action
        for pid, v in zip(ids.params, rewrite_args(i), strict=True):
            act.params.add(param_id=pid, value=_bytes(v))
    return bytes(req.SerializeToString())


# --- the switch --------------------------------------------------------------------------------


@contextmanager
def running_switch(workdir: Path) -> Iterator[tuple[int, str]]:
    """``dysco switch --backend ebpf --no-p4`` in a namespace of its own; yields its pid and
    gRPC address. The switch and the namespace are gone when the block ends, however it ends."""
    dysco = Path(sys.executable).parent / "dysco"
    address = f"unix:{workdir / 'p4rt.sock'}"
    with VethRig([HOST_PORT, NET_PORT], tag=f"st{os.getpid()}") as rig:
        argv = ["ip", "netns", "exec", rig.name, str(dysco), "switch", "--backend", "ebpf", "--no-p4"]
        argv += ["--cpu-port", str(CPU_PORT), "--grpc-server-addr", address, "--idle-poll-interval", "0.5"]
        for port in rig.ports:
            argv += ["-i", f"{port}@{rig.switch_if(port)}"]
        err = (workdir / "switch.stderr").open("w")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline()  # the ready line, or "" if it died first
            if "listening on" not in ready:
                proc.wait(timeout=START_S)
                tail = (workdir / "switch.stderr").read_text()[-2000:]
                raise RuntimeError(f"dysco switch did not start (exit {proc.returncode}):\n{tail}")
            log(f"dysco switch pid {proc.pid} in namespace {rig.name}: {ready.strip()}")
            yield proc.pid, address
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            err.close()


class Client:
    """A P4Runtime client: primary on a stream, then unary RPCs.  A thread drains the stream as
    a controller would (idle-timeout notifications come there once entries outlive
    ``--idle-timeout`` without traffic), counting messages and bytes without decoding them."""

    def __init__(self, address: str) -> None:
        opts = [
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
        ]
        self.channel = grpc.insecure_channel(address, options=opts)
        self.stub = p4runtime_pb2_grpc.P4RuntimeStub(self.channel)
        self._write = self.channel.unary_unary(
            "/p4.v1.P4Runtime/Write",
            request_serializer=None,  # the request is serialized bytes already
            response_deserializer=p4runtime_pb2.WriteResponse.FromString,
        )
        stream = self.channel.stream_stream(
            "/p4.v1.P4Runtime/StreamChannel",
            request_serializer=p4runtime_pb2.StreamMessageRequest.SerializeToString,
            response_deserializer=None,  # bytes: counted, not decoded
        )
        arbitration = p4runtime_pb2.StreamMessageRequest()
        arbitration.arbitration.device_id = 0
        arbitration.arbitration.election_id.CopyFrom(ELECTION)
        self._closing = threading.Event()
        self._stream = stream(self._requests(arbitration))
        reply = p4runtime_pb2.StreamMessageResponse.FromString(next(self._stream))
        if reply.arbitration.status.code != 0:
            raise RuntimeError(f"not primary: {reply.arbitration.status.message}")
        self.stream_messages = self.stream_bytes = 0
        self._drain = threading.Thread(target=self._drain_stream, name="stream-drain", daemon=True)
        self._drain.start()

    def _requests(self, arbitration: p4runtime_pb2.StreamMessageRequest) -> Iterator[Any]:
        """The stream stays open (this controller stays primary) until :meth:`close`."""
        yield arbitration
        self._closing.wait()

    def _drain_stream(self) -> None:
        try:
            for raw in self._stream:
                self.stream_messages += 1
                self.stream_bytes += len(raw)
        except grpc.RpcError:
            pass  # cancelled by close()

    def push(self, p4info: Any, device_config: bytes) -> None:
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=0,
            election_id=ELECTION,
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        )
        req.config.p4info.CopyFrom(p4info)
        req.config.p4_device_config = device_config
        self.stub.SetForwardingPipelineConfig(req, timeout=START_S)

    def write(self, request: bytes) -> None:
        self._write(request, timeout=RPC_S)

    def close(self) -> None:
        self._closing.set()
        self._stream.cancel()
        self._drain.join(timeout=RPC_S)
        self.channel.close()


# --- the kernel's view -------------------------------------------------------------------------


def map_ids(pid: int) -> list[int]:
    """Ids of the BPF maps process ``pid`` holds (its fds' ``map_id`` in /proc, as root)."""
    out: list[int] = []
    fds = Path(f"/proc/{pid}/fdinfo")
    for info in fds.iterdir():
        try:
            text = info.read_text()
        except OSError:  # an fd closed meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("map_id:"):
                out.append(int(line.split()[1]))
    return sorted(set(out))


def bpftool(*args: str) -> Any:
    proc = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def table_map(pid: int, map_name: str) -> dict[str, Any]:
    """``bpftool map show`` of the switch's map named ``map_name``."""
    found = [m for m in (bpftool("map", "show", "id", str(i)) for i in map_ids(pid)) if m["name"] == map_name]
    if len(found) != 1:
        raise RuntimeError(f"dysco switch pid {pid} holds {len(found)} maps named {map_name}")
    return found[0]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def read_back(map_id: int, action_index: int, sample: list[int], workdir: Path) -> int:
    """How many of the sampled sessions the map holds with the value written (one ``bpftool
    batch`` process for all lookups); raises on the first one that is missing or wrong."""
    cmds = workdir / "lookups.bpftool"
    lines = []
    for i in sample:
        key = b"".join(v.to_bytes(n, "big") for v, n in zip(five_tuple(i), (4, 4, 1, 2, 2), strict=True))
        lines.append(f"map lookup id {map_id} key hex {' '.join(f'{b:02x}' for b in key)}")
    cmds.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["bpftool", "-j", "batch", "file", str(cmds)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bpftool batch: {proc.stderr.strip() or proc.stdout[-500:]}")
    results = json.loads(proc.stdout)
    for i, res in zip(sample, results, strict=True):
        out = res.get("output") or {}
        value = bytes(int(b, 16) for b in out.get("value", ()))
        want_action = action_index.to_bytes(4, "little")
        want_args = b"".join(a.to_bytes(8, "little") for a in rewrite_args(i))
        if value[:4] != want_action or value[8 : 8 + len(want_args)] != want_args:
            raise RuntimeError(f"session {i} is not in the map as written: {res}")
    return len(sample)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Writes:
    """What writing the entries took."""

    rates: list[float] = field(default_factory=list)
    """Entries per second of each Write RPC."""
    rpc_s: float = 0.0
    encode_s: float = 0.0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    profile: dict[str, int] | None = None
    stream_messages: int = 0
    stream_bytes: int = 0


def write_all(client: Client, ids: Ids, pid: int, args: argparse.Namespace, workdir: Path) -> Writes:
    """Write ``args.entries`` entries in Writes of ``args.batch``; each request is encoded before
    its RPC's clock starts."""
    idle_ns = int(args.idle_timeout * 1e9)
    out = Writes()
    recording = _pyspy.Recording(pid, workdir / "profile.txt") if args.profile else None
    cpu0, t_start = _pyspy.cpu_seconds(pid), time.perf_counter()
    try:
        for first in range(0, args.entries, args.batch):
            if INTERRUPTED.is_set():
                raise KeyboardInterrupt("interrupted")
            count = min(args.batch, args.entries - first)
            t0 = time.perf_counter()
            request = write_request(ids, first, count, idle_ns)
            t1 = time.perf_counter()
            client.write(request)
            t2 = time.perf_counter()
            out.encode_s += t1 - t0
            out.rpc_s += t2 - t1
            out.rates.append(count / (t2 - t1))
            if len(out.rates) % 10 == 0 or first + count == args.entries:
                log(f"{first + count:,}/{args.entries:,} entries, last Write {out.rates[-1]:,.0f} entries/s")
    finally:
        if recording is not None:
            out.profile = recording.stop()
            shutil.copy(recording.out, args.profile)
    out.wall_s = time.perf_counter() - t_start
    out.server_cpu_s = _pyspy.cpu_seconds(pid) - cpu0
    out.stream_messages, out.stream_bytes = client.stream_messages, client.stream_bytes
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    program: Any = load_program(DYSCO)
    cprog = generate(program.ast, program.source, program.compiled.types, program.compiled.errors,
                     program.compiled.info)  # fmt: skip
    layout = cprog.tables[SESSION_OUT.table]
    if args.entries > layout.size:
        raise SystemExit(f"--entries {args.entries}: {SESSION_OUT.table} holds {layout.size}")
    workdir = Path(tempfile.mkdtemp(prefix="dysco-session-table-"))
    try:
        with running_switch(workdir) as (pid, address):
            client = Client(address)
            try:
                client.push(program.p4info, program.device_config())
                empty, rss_empty = table_map(pid, layout.map_name), rss_bytes(pid)
                log(f"{SESSION_OUT.table}: map {empty['id']}, {empty['bytes_memlock']:,} bytes locked empty")
                writes = write_all(client, Ids(program.p4info), pid, args, workdir)
                full, rss_full = table_map(pid, layout.map_name), rss_bytes(pid)
                sample = sorted(random.Random(1).sample(range(args.entries), min(args.sample, args.entries)))
                rewrite = layout.actions.index(SESSION_OUT.rewrite_action)
                checked = read_back(full["id"], rewrite, sample, workdir)
            finally:
                client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(args, layout, writes, (empty, full), (rss_empty, rss_full), checked)


def report(
    args: argparse.Namespace,
    layout: Any,
    w: Writes,
    maps: tuple[dict[str, Any], dict[str, Any]],
    rss: tuple[int, int],
    checked: int,
) -> dict[str, Any]:
    n = args.entries
    empty, full = maps
    median, overall = statistics.median(w.rates), n / w.rpc_s
    per_entry = full["bytes_memlock"] / n
    out: dict[str, Any] = {
        "benchmark": "session_table",
        "backend": "ebpf",
        "table": SESSION_OUT.table,
        "table_size": layout.size,
        "entries": n,
        "batch": args.batch,
        "writes": len(w.rates),
        "idle_timeout_s": args.idle_timeout,
        "entries_per_s": {
            "median_write": round(median),
            "overall": round(overall),
            "with_client_encoding": round(n / w.wall_s),
            "slowest_write": round(min(w.rates)),
            "fastest_write": round(max(w.rates)),
        },
        "seconds": {
            "rpc": round(w.rpc_s, 2),
            "client_encoding": round(w.encode_s, 2),
            "wall": round(w.wall_s, 2),
        },
        "server_cpu_us_per_entry": round(w.server_cpu_s / n * 1e6, 1),
        "stream_during_writes": {
            "messages": w.stream_messages,
            "bytes": w.stream_bytes,
            "note": "idle-timeout notifications of entries written more than --idle-timeout ago "
            "(the sweep's work is in the server's CPU time)",
        },
        "kernel_memory": {
            "map": layout.map_name,
            "map_flags": full["flags"],
            "max_entries": full["max_entries"],
            "memlock_empty_bytes": empty["bytes_memlock"],
            "memlock_full_bytes": full["bytes_memlock"],
            "bytes_per_entry": round(per_entry, 1),
            "bytes_per_entry_over_empty": round((full["bytes_memlock"] - empty["bytes_memlock"]) / n, 1),
        },
        "switch_rss_bytes": {"empty": rss[0], "full": rss[1], "per_entry": round((rss[1] - rss[0]) / n)},
        "read_back": {"sampled": checked, "found_as_written": checked},
        "protobuf": f"{protobuf_version} ({api_implementation.Type()})",
        "targets": {
            "entries_per_s": TARGET_ENTRIES_PER_S,
            "entries_per_s_met": median >= TARGET_ENTRIES_PER_S and overall >= TARGET_ENTRIES_PER_S,
            "bytes_per_session": TARGET_BYTES_PER_SESSION,
            "bytes_per_session_met": per_entry <= TARGET_BYTES_PER_SESSION,
            "note": "bytes per session: the memlock of the table the entries went into over the entries, "
            "its empty buckets included; an agent's session has one entry per direction "
            "(session_out, subsession_in)",
        },
    }
    if w.profile is not None:
        waiting = w.profile.pop(_pyspy.WAITING)
        busy = sum(w.profile.values()) or 1
        out["server_profile"] = {
            "samples": busy,
            "waiting_samples": waiting,
            "share": {stage: round(k / busy, 3) for stage, k in w.profile.items()},
            "us_per_entry": {
                stage: round(w.server_cpu_s * k / busy / n * 1e6, 1) for stage, k in w.profile.items()
            },
            "note": "py-spy samples of the switch's busy threads while it served the Writes (threads caught "
            "waiting left out); us_per_entry splits its CPU time by the shares",
        }
    return out


INTERRUPTED = threading.Event()
"""Set by Ctrl-C or SIGTERM: the Writes stop at the next one even if a library swallowed the
KeyboardInterrupt, and the bench exits 130 after its clean-up."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000, help="entries to write (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=10_000, help="updates per Write request (default 10,000)")
    ap.add_argument("--sample", type=int, default=1000, help="entries read back from the map (default 1,000)")
    ap.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, metavar="SECONDS",
                    help="idle timeout of every entry (default 300, the agent's; 0: none)")  # fmt: skip
    ap.add_argument("--profile", type=Path, metavar="FILE",
                    help="sample the switch with py-spy while it serves the Writes: the stacks go to FILE, "
                    "the share of each stage (gRPC, protobuf decoding, conversion, bookkeeping, map "
                    "updates) into the JSON")  # fmt: skip
    args = ap.parse_args(argv)
    if args.entries < 1 or args.batch < 1:
        ap.error("--entries and --batch must be at least 1")
    if args.profile is not None and _pyspy.py_spy() is None:
        ap.error("--profile needs py-spy (.venv/bin/pip install py-spy)")
    why = unavailable()
    if why is not None:
        raise SystemExit(f"session_table: {why}")
    signal.signal(signal.SIGTERM, _interrupt)  # a kill runs the same clean-up as Ctrl-C
    signal.signal(signal.SIGINT, _interrupt)
    result = run(args)
    if INTERRUPTED.is_set():
        raise SystemExit(130)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
