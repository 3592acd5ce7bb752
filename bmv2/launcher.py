"""Start a P4 target for a program and an interface map: bmv2 when it is installed, else ours.

The choice: ``DYSCO_TARGET=bmv2|softswitch`` if set; otherwise bmv2's
``simple_switch_grpc`` when it is on PATH and a p4c is found, else ``dysco switch``.
The p4c is the one named by ``TargetSpec.p4c`` (``dysco target up --p4c``), else by
``DYSCO_P4C``, else ``p4c`` on PATH; the p4c driver or its bmv2 back end (``p4c-bm2-ss``).
Both get the same command line (``dysco switch`` takes simple_switch_grpc's flags),
start without a program (``--no-p4``), and receive it over P4Runtime once their gRPC
server answers: the P4Info plus the device config (bmv2's JSON from p4c, or the
softswitch's JSON from ``dysco p4c``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import grpc
from google.protobuf import text_format

from dysco.errors import UserError
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

TargetKind = Literal["bmv2", "softswitch"]
KINDS: tuple[TargetKind, ...] = ("bmv2", "softswitch")
READY_TIMEOUT_S = 60.0

_log = logging.getLogger("dysco.bmv2")


class TargetError(UserError):
    """The target could not be built, started or reached."""


def find_p4c(environ: Mapping[str, str], given: str | None = None) -> str | None:
    """The p4c to use: ``given`` (a path or a name), else ``$DYSCO_P4C``, else ``p4c`` on PATH.

    None if there is no such program; a p4c named explicitly but missing is an error.
    """
    path = environ.get("PATH")
    named = given or environ.get("DYSCO_P4C")
    if named:
        found = shutil.which(named, path=path)
        if found is None:
            what = "--p4c" if given else "DYSCO_P4C"
            raise TargetError(f"{what}={named}: no such executable")
        return found
    return shutil.which("p4c", path=path)


def choose_kind(environ: Mapping[str, str] | None = None, p4c: str | None = None) -> TargetKind:
    env = os.environ if environ is None else environ
    has_bmv2 = bool(shutil.which("simple_switch_grpc", path=env.get("PATH")) and find_p4c(env, p4c))
    forced = env.get("DYSCO_TARGET", "")
    if forced == "bmv2":
        if not has_bmv2:
            raise TargetError(
                "DYSCO_TARGET=bmv2 but simple_switch_grpc is not on PATH or no p4c was found "
                "(--p4c, DYSCO_P4C or p4c on PATH)"
            )
        return "bmv2"
    if forced == "softswitch":
        return "softswitch"
    if forced:
        raise TargetError(f"DYSCO_TARGET={forced!r}: expected 'bmv2' or 'softswitch'")
    return "bmv2" if has_bmv2 else "softswitch"


def parse_port(text: str) -> tuple[int, str]:
    """``N@IFACE``, as simple_switch_grpc's ``-i`` takes it."""
    number, sep, iface = text.partition("@")
    if not sep or not number.isdigit() or not iface:
        raise TargetError(f"bad port {text!r}: expected PORT@INTERFACE, e.g. 1@veth0")
    return int(number), iface


@dataclass(frozen=True, slots=True)
class TargetSpec:
    program: Path
    ports: tuple[tuple[int, str], ...] = ()
    cpu_port: int = 255
    grpc_addr: str = "127.0.0.1:9559"
    device_id: int = 0
    build_dir: Path = Path("build/target")
    p4c: str | None = None  # path or name of the p4c to use (default: $DYSCO_P4C, else p4c on PATH)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass(frozen=True, slots=True)
class Built:
    p4info: Path
    device_config: Path


def _run(argv: Sequence[str], environ: Mapping[str, str], what: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=dict(environ), check=False)
    if proc.returncode != 0:
        raise TargetError(f"{what} failed ({' '.join(argv)}):\n{proc.stderr.strip() or proc.stdout.strip()}")


def build(spec: TargetSpec, kind: TargetKind) -> Built:
    """Compile the program for the target: P4Info text plus the device config."""
    if not spec.program.is_file():
        raise TargetError(f"no such program: {spec.program}")
    spec.build_dir.mkdir(parents=True, exist_ok=True)
    p4info = spec.build_dir / f"{spec.program.stem}.p4info.txtpb"
    config = spec.build_dir / f"{spec.program.stem}.json"
    if kind == "bmv2":
        p4c = find_p4c(spec.environ, spec.p4c)
        if p4c is None:
            raise TargetError("no p4c found (give --p4c PATH, set DYSCO_P4C, or put p4c on PATH)")
        argv = [p4c, "--target", "bmv2", "--arch", "v1model", "--p4runtime-files", str(p4info)]
        # the p4c driver takes an output folder; its bmv2 back end p4c-bm2-ss the JSON file itself
        out = config if Path(p4c).name.startswith("p4c-bm2") else spec.build_dir
        _run([*argv, "-o", str(out), str(spec.program)], spec.environ, "p4c")
    else:
        argv = [sys.executable, "-m", "dysco", "p4c", str(spec.program), "--p4runtime-files", str(p4info)]
        _run([*argv, "-o", str(spec.build_dir)], spec.environ, "dysco p4c")
    return Built(p4info, config)


def switch_argv(spec: TargetSpec, kind: TargetKind) -> list[str]:
    """The target's command line: the same flags for both, only the program differs."""
    binary = ["simple_switch_grpc"] if kind == "bmv2" else [sys.executable, "-m", "dysco", "switch"]
    argv = [*binary, "--device-id", str(spec.device_id)]
    for number, iface in spec.ports:
        argv += ["-i", f"{number}@{iface}"]
    return [*argv, "--no-p4", "--", "--grpc-server-addr", spec.grpc_addr, "--cpu-port", str(spec.cpu_port)]


class Target:
    """A running target; ``with Target(spec) as t:`` starts it and stops it again."""

    def __init__(
        self, spec: TargetSpec, kind: TargetKind | None = None, *, log_path: Path | None = None
    ) -> None:
        self.spec = spec
        self.kind: TargetKind = kind or choose_kind(spec.environ, spec.p4c)
        self.log_path = log_path or spec.build_dir / f"{self.kind}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self, *, detach: bool = False) -> None:
        built = build(self.spec, self.kind)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("wb")
        argv = switch_argv(self.spec, self.kind)
        _log.info("[target] starting %s: %s", self.kind, " ".join(argv))
        self.process = subprocess.Popen(
            argv,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=dict(self.spec.environ),
            start_new_session=detach,
        )
        try:
            self.wait_ready()
            self.push(built)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the P4Runtime server answers; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.spec.grpc_addr) as channel:
            stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise TargetError(
                        f"{self.kind} exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TargetError(
                        f"{self.kind} did not answer on {self.spec.grpc_addr} in {timeout:.0f}s"
                    )
                try:
                    # any answer means the server is up; the short deadline notices a dead process
                    stub.Capabilities(
                        p4runtime_pb2.CapabilitiesRequest(), timeout=min(left, 0.5), wait_for_ready=True
                    )
                    return
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                        return  # it answered, if only to refuse

    def push(self, built: Built) -> None:
        info = p4info_pb2.P4Info()
        text_format.Parse(built.p4info.read_text(), info, allow_unknown_field=True)
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=self.spec.device_id,
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
        )
        req.config.p4info.CopyFrom(info)
        req.config.p4_device_config = built.device_config.read_bytes()
        with grpc.insecure_channel(self.spec.grpc_addr) as channel:
            try:
                p4runtime_pb2_grpc.P4RuntimeStub(channel).SetForwardingPipelineConfig(req, timeout=60)
            except grpc.RpcError as exc:
                raise TargetError(f"pushing the pipeline to {self.kind} failed: {exc.details()}") from None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> Target:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
