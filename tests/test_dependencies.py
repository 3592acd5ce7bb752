"""The project's environment: protobuf on upb, and P4Runtime bindings generated to match p4runtime.

See docs/dependencies.md. These fail if someone re-pins a protobuf whose implementation is not
upb, or if the generated bindings (dysco.proto) drift from the descriptors they were made from.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.internal import api_implementation

from dysco.proto.p4.config.v1 import p4info_pb2, p4types_pb2
from dysco.proto.p4.v1 import p4data_pb2, p4runtime_pb2, p4runtime_pb2_grpc

GENERATOR = Path(__file__).resolve().parents[1] / "scripts" / "gen_p4rt_bindings.py"
GENERATED = {m.DESCRIPTOR.name: m for m in (p4info_pb2, p4types_pb2, p4data_pb2, p4runtime_pb2)}


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_p4rt_bindings", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protobuf_runs_on_upb() -> None:
    assert api_implementation.Type() == "upb"


def test_bindings_are_p4runtime_from_the_installed_package() -> None:
    """Every generated file is the p4runtime package's descriptor, renamed and nothing else."""
    gen = _generator()
    wheel = gen.source_files(importlib.metadata.distribution("p4runtime"))
    assert sorted(GENERATED) == sorted(gen.PREFIX + name for name in wheel)
    for name, original in wheel.items():
        ours = descriptor_pb2.FileDescriptorProto()
        GENERATED[gen.PREFIX + name].DESCRIPTOR.CopyToProto(ours)
        ours.name = ours.name.removeprefix(gen.PREFIX)
        ours.dependency[:] = [d.removeprefix(gen.PREFIX) for d in ours.dependency]
        assert ours == original, name


def test_wire_names_are_p4runtimes() -> None:
    """Renaming the files left the message and method names, which are on the wire, alone."""
    assert p4runtime_pb2.WriteRequest.DESCRIPTOR.full_name == "p4.v1.WriteRequest"
    assert p4info_pb2.P4Info.DESCRIPTOR.full_name == "p4.config.v1.P4Info"
    service = p4runtime_pb2.DESCRIPTOR.services_by_name["P4Runtime"]
    assert service.full_name == "p4.v1.P4Runtime"
    assert {m.name for m in service.methods} == {
        "Write", "Read", "SetForwardingPipelineConfig", "GetForwardingPipelineConfig", "StreamChannel",
        "Capabilities",
    }  # fmt: skip
    assert hasattr(p4runtime_pb2_grpc, "P4RuntimeStub")
    entry = p4runtime_pb2.TableEntry(table_id=7, priority=3)
    assert p4runtime_pb2.TableEntry.FromString(entry.SerializeToString()) == entry


@dataclass
class _FakeDist:
    """Just what gen_p4rt_bindings.source_files reads of an installed distribution."""

    root: Path
    files: list[PurePosixPath]
    version: str = "0.0"

    def locate_file(self, entry: PurePosixPath) -> Path:
        return self.root / entry


def test_generator_refuses_a_module_without_one_descriptor(tmp_path: Path) -> None:
    gen = _generator()
    (tmp_path / "p4").mkdir()
    (tmp_path / "p4" / "empty_pb2.py").write_text("DESCRIPTOR = None\n")
    expected = re.escape("empty_pb2.py: expected one serialized descriptor, found 0")
    with pytest.raises(gen.GenerateError, match=expected):
        gen.source_files(_FakeDist(tmp_path, [PurePosixPath("p4/empty_pb2.py")]))


def test_generator_needs_p4runtime_proto(tmp_path: Path) -> None:
    gen = _generator()
    (tmp_path / "p4").mkdir()
    blob = descriptor_pb2.FileDescriptorProto(name="p4/other.proto").SerializeToString()
    (tmp_path / "p4" / "other_pb2.py").write_text(f"X = f(serialized_pb={blob!r})\n")
    expected = re.escape("no p4/v1/p4runtime.proto descriptor among ['p4/other.proto']")
    with pytest.raises(gen.GenerateError, match=expected):
        gen.source_files(_FakeDist(tmp_path, [PurePosixPath("p4/other_pb2.py")]))
