"""p4runtime-shell, unchanged, against the server: push the pipeline, insert, read back, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import text_format

from dysco.softswitch.server import SoftSwitchServer

from .fake_device import CONFIG, FakeDevice, build_p4info


@pytest.fixture
def shell(server: SoftSwitchServer, tmp_path: Path) -> Iterator[object]:
    import p4runtime_sh.shell as sh  # a pinned test dependency: a broken install must fail, not skip

    p4info_path = tmp_path / "p4info.txt"
    p4info_path.write_text(text_format.MessageToString(build_p4info()))
    bin_path = tmp_path / "device.bin"
    bin_path.write_bytes(CONFIG)
    sh.setup(
        device_id=0,
        grpc_addr=f"127.0.0.1:{server.port}",
        election_id=(0, 1),
        config=sh.FwdPipeConfig(str(p4info_path), str(bin_path)),
    )
    try:
        yield sh
    finally:
        sh.teardown()


def test_shell_insert_read_delete(shell: object, device: FakeDevice) -> None:
    sh = shell
    assert device.loads == 1
    te = sh.TableEntry("MyIngress.fwd")(action="MyIngress.set_port")  # type: ignore[attr-defined]
    te.match["hdr.ethernet.dstAddr"] = "00:00:00:00:00:07"
    te.action["port"] = "3"
    te.insert()
    entries = list(sh.TableEntry("MyIngress.fwd").read())  # type: ignore[attr-defined]
    assert len(entries) == 1
    assert entries[0].match["hdr.ethernet.dstAddr"].exact.value == b"\x07"
    assert entries[0].action["port"].value == b"\x03"
    # a duplicate insert surfaces as the shell's write error
    from p4runtime_sh.p4runtime import P4RuntimeWriteException

    with pytest.raises(P4RuntimeWriteException) as info:
        te.insert()
    assert "ALREADY_EXISTS" in str(info.value)
    assert [(i, e.canonical_code) for i, e in info.value.errors] == [(0, 6)]
    te.delete()
    assert list(sh.TableEntry("MyIngress.fwd").read()) == []  # type: ignore[attr-defined]


def test_shell_default_entry_and_multicast(shell: object, device: FakeDevice) -> None:
    sh = shell
    default = sh.TableEntry("MyIngress.fwd")(is_default=True)  # type: ignore[attr-defined]
    default.action = sh.Action("MyIngress.set_port")  # type: ignore[attr-defined]
    default.action["port"] = "5"
    default.modify()
    assert device.default_entry(0x02000001).action.params == (5,)
    group = sh.MulticastGroupEntry(7).add(1, 1).add(2, 1)  # type: ignore[attr-defined]
    group.insert()
    assert [r.port for r in device.multicast_groups()[7]] == [1, 2]
