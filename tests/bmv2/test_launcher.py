"""The target launcher: choosing bmv2 or the softswitch, the shared command line, a real start,
the bmv2 path through fake simple_switch_grpc and p4c, and ``dysco target up|down``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format

from dysco.bmv2 import Target, TargetError, TargetSpec, build, choose_kind, find_p4c, switch_argv
from dysco.bmv2.launcher import parse_port
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch import load_program
from tests.real_p4c import P4C, p4c_unusable

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "tests" / "softswitch_server" / "programs" / "fwd.p4"


@pytest.fixture(scope="module")
def real_p4c() -> Path:
    """The real p4c's bmv2 back end (../shared/tools/p4c), where it exists and runs."""
    reason = p4c_unusable()
    if reason:
        pytest.skip(reason)
    return P4C


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def tables(addr: str) -> list[str]:
    with grpc.insecure_channel(addr) as channel:
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        reply = stub.GetForwardingPipelineConfig(
            p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=0)
        )
        return [t.preamble.name for t in reply.config.p4info.tables]


@pytest.fixture
def fake_bmv2(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A bin dir with simple_switch_grpc and p4c that record their argv and stand in with ours."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "simple_switch_grpc").write_text(
        f'#!/bin/sh\necho "simple_switch_grpc $*" >> {calls}\nexec {sys.executable} -m dysco switch "$@"\n'
    )
    # p4c --target bmv2 --arch v1model --p4runtime-files F -o DIR PROG  ->  dysco p4c PROG ...
    (bin_dir / "p4c").write_text(
        f'#!/bin/sh\necho "p4c $*" >> {calls}\n'
        f'exec {sys.executable} -m dysco p4c "$9" --p4runtime-files "$6" -o "$8"\n'
    )
    for tool in ("simple_switch_grpc", "p4c"):
        (bin_dir / tool).chmod(0o755)
    yield bin_dir, calls


def test_choice() -> None:
    empty = {"PATH": "/nonexistent"}
    assert choose_kind(empty) == "softswitch"
    assert choose_kind({**empty, "DYSCO_TARGET": "softswitch"}) == "softswitch"
    with pytest.raises(TargetError, match="simple_switch_grpc is not on PATH or no p4c was found"):
        choose_kind({**empty, "DYSCO_TARGET": "bmv2"})
    with pytest.raises(TargetError, match="expected 'bmv2' or 'softswitch'"):
        choose_kind({**empty, "DYSCO_TARGET": "tofino"})


def test_choice_finds_bmv2_on_path(fake_bmv2: tuple[Path, Path]) -> None:
    bin_dir, _ = fake_bmv2
    assert choose_kind({"PATH": str(bin_dir)}) == "bmv2"
    assert choose_kind({"PATH": str(bin_dir), "DYSCO_TARGET": "softswitch"}) == "softswitch"


def test_p4c_by_flag_environment_or_path(tmp_path: Path, fake_bmv2: tuple[Path, Path]) -> None:
    bin_dir, _ = fake_bmv2
    other = tmp_path / "elsewhere" / "p4c-bm2-ss"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\nexit 0\n")
    other.chmod(0o755)
    on_path = {"PATH": str(bin_dir)}
    assert find_p4c(on_path) == str(bin_dir / "p4c")
    assert find_p4c({**on_path, "DYSCO_P4C": str(other)}) == str(other)
    assert find_p4c({**on_path, "DYSCO_P4C": str(bin_dir / "p4c")}, str(other)) == str(other)  # flag wins
    assert find_p4c({"PATH": "/nonexistent"}) is None
    with pytest.raises(TargetError, match="DYSCO_P4C=/no/p4c: no such executable"):
        find_p4c({"PATH": "/nonexistent", "DYSCO_P4C": "/no/p4c"})
    with pytest.raises(TargetError, match="--p4c=/no/p4c: no such executable"):
        find_p4c({"PATH": str(bin_dir)}, "/no/p4c")
    # simple_switch_grpc on PATH and a p4c named outside it: bmv2
    (bin_dir / "p4c").unlink()
    assert choose_kind({"PATH": str(bin_dir)}) == "softswitch"
    assert choose_kind({"PATH": str(bin_dir), "DYSCO_P4C": str(other)}) == "bmv2"
    assert choose_kind({"PATH": str(bin_dir)}, str(other)) == "bmv2"


def test_build_with_the_real_p4c(tmp_path: Path, real_p4c: Path) -> None:
    """What the bmv2 path runs, with the real compiler: bmv2's JSON and the same P4Info as ours."""
    env = {"PATH": "/usr/bin:/bin", "DYSCO_P4C": str(real_p4c)}
    built = build(TargetSpec(PROGRAM, build_dir=tmp_path / "by-env", environ=env), "bmv2")
    assert built.device_config == tmp_path / "by-env" / "fwd.json"
    assert "pipelines" in json.loads(built.device_config.read_text())  # bmv2's format, not ours
    info = text_format.Parse(built.p4info.read_text(), p4info_pb2.P4Info())
    assert info == load_program(PROGRAM).p4info
    spec = TargetSpec(
        PROGRAM, build_dir=tmp_path / "by-flag", p4c=str(real_p4c), environ={"PATH": "/usr/bin"}
    )
    assert "pipelines" in json.loads(build(spec, "bmv2").device_config.read_text())


def test_a_p4c_error_is_reported(tmp_path: Path, real_p4c: Path) -> None:
    bad = tmp_path / "bad.p4"
    bad.write_text("#include <core.p4>\ncontrol C() { apply { x = 1; } }\n")
    spec = TargetSpec(bad, build_dir=tmp_path, p4c=str(real_p4c), environ={"PATH": "/usr/bin"})
    with pytest.raises(TargetError, match=r"p4c failed .*\n.*bad\.p4\(2\)"):
        build(spec, "bmv2")


def test_same_flags_for_both_targets() -> None:
    spec = TargetSpec(PROGRAM, ports=((1, "veth0"), (2, "veth2")), cpu_port=64, grpc_addr="127.0.0.1:1")
    bmv2, ours = switch_argv(spec, "bmv2"), switch_argv(spec, "softswitch")
    assert bmv2[0] == "simple_switch_grpc" and ours[:4] == [sys.executable, "-m", "dysco", "switch"]
    assert bmv2[1:] == ours[4:] == [
        "--device-id", "0", "-i", "1@veth0", "-i", "2@veth2", "--no-p4",
        "--", "--grpc-server-addr", "127.0.0.1:1", "--cpu-port", "64",
    ]  # fmt: skip


def test_bad_port_and_program(tmp_path: Path) -> None:
    assert parse_port("3@eth1") == (3, "eth1")
    for bad in ("eth1", "x@eth1", "3@"):
        with pytest.raises(TargetError, match="expected PORT@INTERFACE"):
            parse_port(bad)
    spec = TargetSpec(tmp_path / "missing.p4", build_dir=tmp_path, environ={"PATH": os.environ["PATH"]})
    with pytest.raises(TargetError, match="no such program"):
        Target(spec, "softswitch").start()


def test_softswitch_starts_and_serves_the_program(tmp_path: Path) -> None:
    addr = free_addr()
    spec = TargetSpec(PROGRAM, grpc_addr=addr, build_dir=tmp_path, environ={"PATH": "/usr/bin:/bin"})
    with Target(spec) as target:
        assert target.kind == "softswitch"
        assert "MyIngress.fwd" in tables(addr)
    assert target.process is not None and target.process.returncode == 0


def test_bmv2_path_with_fake_tools(tmp_path: Path, fake_bmv2: tuple[Path, Path]) -> None:
    bin_dir, calls = fake_bmv2
    addr = free_addr()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    spec = TargetSpec(PROGRAM, grpc_addr=addr, cpu_port=64, build_dir=tmp_path / "build", environ=env)
    with Target(spec) as target:
        assert target.kind == "bmv2"
        assert "MyIngress.fwd" in tables(addr)
    logged = calls.read_text().splitlines()
    assert logged[0] == (
        f"p4c --target bmv2 --arch v1model --p4runtime-files {tmp_path}/build/fwd.p4info.txtpb "
        f"-o {tmp_path}/build {PROGRAM}"
    )
    assert logged[1] == f"simple_switch_grpc --device-id 0 --no-p4 -- --grpc-server-addr {addr} --cpu-port 64"


def test_a_target_that_dies_is_reported(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("simple_switch_grpc", "echo cannot open device >&2; exit 3"), ("p4c", "exit 0")):
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "fwd.json").write_text("{}")
    (tmp_path / "fwd.p4info.txtpb").write_text("")
    spec = TargetSpec(
        PROGRAM, grpc_addr=free_addr(), build_dir=tmp_path, environ={"PATH": f"{bin_dir}:/usr/bin"}
    )
    with pytest.raises(TargetError, match="exited with 3") as info:
        Target(spec).start()
    assert "cannot open device" in str(info.value)


@pytest.mark.root
def test_target_up_and_down_with_veths(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (veth pairs, network namespaces)")
    tag = os.getpid() % 100000
    ns, end1, peer1 = f"dyscot{tag}", f"dt{tag}a", f"dt{tag}b"
    addr = free_addr()
    state = tmp_path / "state"
    env = {**os.environ, "DYSCO_TARGET": "softswitch"}
    base = [sys.executable, "-m", "dysco", "target"]
    up = subprocess.run(
        [*base, "up", str(PROGRAM), "--veth", f"1@{end1}:{peer1}", "--peer-netns", ns,
         "--grpc-server-addr", addr, "--state-dir", str(state)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith(f"target up: softswitch on {addr}")
        assert "MyIngress.fwd" in tables(addr)
        assert subprocess.run(["ip", "link", "show", end1], capture_output=True).returncode == 0
        pid = json.loads((state / "target.json").read_text())["pid"]
        again = subprocess.run(
            [*base, "up", str(PROGRAM), "--state-dir", str(state)], capture_output=True, text=True
        )
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = subprocess.run([*base, "down", "--state-dir", str(state)], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    )
    assert subprocess.run(["ip", "link", "show", end1], capture_output=True).returncode != 0
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    gone = subprocess.run([*base, "down", "--state-dir", str(state)], capture_output=True, text=True)
    assert gone.returncode == 2 and "no target is up" in gone.stderr
