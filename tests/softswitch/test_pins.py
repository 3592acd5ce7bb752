"""The record a switch pins with its maps (``_pins.Meta``): one wire format both ways, and every
way a record can be unreadable is refused rather than adopted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dysco.softswitch.targets.ebpf._pins import HEADER, MAGIC, MAX_NAME, Meta, PinDir, dir_name


def meta(**kw: object) -> Meta:
    base: dict[str, object] = {
        "c_sha256": "ab" * 32,
        "ports": {1: "veth1", 2: "veth3"},
        "cpu_port": 64,
        "drop_port": 511,
        "maps": ("t0", "d0", "dysco_prog"),
        "pid": 4242,
        "pipeline": b"\x0a\x00config",
    }
    base.update(kw)
    return Meta(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("m", [meta(), meta(cpu_port=None, pipeline=b"")])
def test_a_record_reads_back_as_written(m: Meta) -> None:
    raw = m.encode()
    assert Meta.decode(raw + bytes(100)) == m  # the map's value is zero-padded


def test_records_of_another_format_or_cut_short_are_refused() -> None:
    raw = meta().encode()
    with pytest.raises(ValueError, match="not a dysco pin record"):
        Meta.decode(b"xxxx" + raw[4:])
    with pytest.raises(ValueError, match="not a dysco pin record"):
        Meta.decode(raw[:-3])
    text = json.dumps({"format": 99}).encode()
    with pytest.raises(ValueError, match="format 99"):
        Meta.decode(HEADER.pack(MAGIC, len(text), 0) + text)


def test_the_directory_is_named_by_namespace_and_ports_and_hashed_when_long() -> None:
    assert dir_name(4026531840, {2: "veth3", 1: "veth1"}) == "4026531840_1@veth1_2@veth3"
    many = {i: f"interface{i:06d}" for i in range(20)}
    name = dir_name(7, many)
    assert name.startswith("7_") and len(name) < MAX_NAME
    assert name != dir_name(7, {**many, 20: "one-more"})


def test_looking_for_leftovers_while_another_switch_removes_the_last_directory(tmp_path: Path) -> None:
    """A switch's stop removes ``dysco/`` once empty; one starting at that moment finds none
    instead of failing (a run of two switches on a loaded machine hit it)."""
    gone = PinDir(1, {1: "veth1"}, root=tmp_path / "dysco")
    assert gone.leftovers({"veth1"}, lambda i: True) == []
    root = tmp_path / "dysco"
    root.mkdir()
    (root / "2_1@vethx").mkdir()  # a namespace that is gone
    assert PinDir(1, {1: "veth1"}, root=root).leftovers({"veth1"}, lambda i: True) == [root / "2_1@vethx"]
