"""p4runtime-shell 0.0.6, unchanged and in its own environment, against a real ``dysco switch``.

The project runs protobuf's upb implementation with bindings generated from p4runtime 1.4.1's
descriptors (dysco.proto); p4runtime-shell pins protobuf < 3.21, so it lives in .venv-p4rtsh
(``make p4rtsh``, requirements-p4rtsh.lock) and runs here as a subprocess, driven by
p4rtsh_session.py: pipeline push, table insert and read back, counter read, packet-out. The
switch runs on the python back end: what is under test is the P4Runtime server both back ends
share (test_switch_process.py runs each back end).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import text_format

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from .netns import Topology, expect_frame, frame, host_ports, raw_socket_in
from .switch_process import WAIT_S, running_switch

ROOT = Path(__file__).resolve().parents[2]
SHELL_PYTHON = ROOT / ".venv-p4rtsh" / "bin" / "python"
SESSION = Path(__file__).with_name("p4rtsh_session.py")
PROGRAM = Path(__file__).parent / "programs" / "fwd.p4"
SHELL_S = 120.0
# what the project's environment sets for its own protobuf must not leak into the shell's
_NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "VIRTUAL_ENV")

pytestmark = pytest.mark.root


@pytest.fixture
def topology() -> Iterator[Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, raw sockets)")
    with host_ports(2) as topo:
        yield topo


def shell(addr: str, *args: str) -> dict[str, Any]:
    """One p4runtime-shell session (p4rtsh_session.py PHASE) and what it saw."""
    if not SHELL_PYTHON.exists():
        pytest.fail(f"{SHELL_PYTHON} is missing: `make p4rtsh` builds p4runtime-shell's environment")
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    argv = [str(SHELL_PYTHON), str(SESSION), addr, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=SHELL_S, env=env)
    assert done.returncode == 0, f"p4runtime-shell {args[0]} failed ({done.returncode}):\n{done.stderr}"
    last = done.stdout.strip().splitlines()[-1]
    seen: dict[str, Any] = json.loads(last)
    return seen


def entries_by_match(addr: str) -> tuple[dict[str, int], dict[bytes, tuple[str, list[bytes]]]]:
    """The fwd entries as the project's own bindings read them: match -> (action, params)."""
    with grpc.insecure_channel(addr) as channel:
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=0)
        info = stub.GetForwardingPipelineConfig(get).config.p4info
        ids = {o.preamble.name: o.preamble.id for group in (info.tables, info.actions) for o in group}
        names = {v: k for k, v in ids.items()}
        probe = p4runtime_pb2.Entity(table_entry=p4runtime_pb2.TableEntry(table_id=ids["MyIngress.fwd"]))
        out: dict[bytes, tuple[str, list[bytes]]] = {}
        for reply in stub.Read(p4runtime_pb2.ReadRequest(device_id=0, entities=[probe])):
            for entity in reply.entities:
                te = entity.table_entry
                action = te.action.action
                out[te.match[0].exact.value] = (names[action.action_id], [p.value for p in action.params])
    return ids, out


def test_p4runtime_shell_against_dysco_switch(topology: Topology, tmp_path: Path) -> None:
    from dysco.softswitch import load_program

    program = load_program(PROGRAM)
    p4info = tmp_path / "fwd.p4info.txtpb"
    p4info.write_text(text_format.MessageToString(program.p4info))
    config = tmp_path / "fwd.bin"
    config.write_bytes(program.device_config())
    argv = ["--backend", "python", "--no-p4", "--cpu-port", "64", "--grpc-server-addr", "127.0.0.1:0"]
    for i, pair in enumerate(topology.pairs, start=1):
        argv += ["-i", f"{i}@{pair.switch_end}"]
    h1 = raw_socket_in(topology.netns, topology.pairs[0].host_end)
    h2 = raw_socket_in(topology.netns, topology.pairs[1].host_end)
    try:
        with running_switch(argv, tmp_path / "switch.log") as (proc, port):
            addr = f"127.0.0.1:{port}"
            seen = shell(addr, "setup", "--p4info", str(p4info), "--config", str(config))
            # the client really is the old world: protobuf 3 against our upb server
            assert seen["versions"]["protobuf"].startswith("3.")
            assert seen["versions"]["p4runtime-shell"] == "0.0.6"
            assert seen["read_back"] == [["01", "MyIngress.forward", "02"]]
            assert "ALREADY_EXISTS" in seen["duplicate"]["text"]
            assert seen["duplicate"]["errors"] == [[0, grpc.StatusCode.ALREADY_EXISTS.value[0]]]
            assert seen["default"] == ["MyIngress.forward", "05"]
            assert seen["multicast"] == [[1, 1], [2, 1]]

            # what the shell wrote, as the project's bindings read it
            _, entries = entries_by_match(addr)
            assert entries == {b"\x01": ("MyIngress.forward", [b"\x02"]), b"\x02": ("MyIngress.to_cpu", [])}

            # the shell's entry forwards port 1 to port 2; each frame is counted on port 1
            tags = [b"shell-fwd-0", b"shell-fwd-1"]
            for tag in tags:
                h1.send(frame(tag))
                assert expect_frame(h2, tag) == frame(tag)
            out = frame(b"shell-out")
            seen = shell(addr, "traffic", "--packet-out", out.hex())
            assert seen["counters"] == {"1": [2, sum(len(frame(t)) for t in tags)], "2": [0, 0]}
            assert expect_frame(h1, b"shell-out") == out

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=WAIT_S) == 0
    finally:
        h1.close()
        h2.close()
