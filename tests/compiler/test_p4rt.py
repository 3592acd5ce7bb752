"""The P4Runtime emitter against hand-built P4Infos."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.compiler.entries import SOFTWARE_FLAG
from dysco.compiler.p4rt import EmitError, canonical, classifier_capacity, read_p4info, table_entries
from dysco.compiler.passes import Options, compile_text
from dysco.errors import UserError
from dysco.p4names import CLASSIFIER, ClassifierNames
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "policies.dysco").read_text()
MT = p4info_pb2.MatchField


def make_p4info(
    names: ClassifierNames = CLASSIFIER, addr: int = MT.TERNARY, port: int = MT.RANGE, proto: int = MT.TERNARY
) -> p4info_pb2.P4Info:
    info = p4info_pb2.P4Info()
    table = info.tables.add()
    table.preamble.id, table.preamble.name = 0x02000001, names.table
    for i, (name, width, kind) in enumerate(
        [
            (names.src_addr, 32, addr),
            (names.dst_addr, 32, addr),
            (names.protocol, 8, proto),
            (names.src_port, 16, port),
            (names.dst_port, 16, port),
        ],
        start=1,
    ):
        table.match_fields.add(id=i, name=name, bitwidth=width, match_type=kind)
    chain = info.actions.add()
    chain.preamble.id, chain.preamble.name = 0x01000001, names.chain_action
    chain.params.add(id=1, name=names.chain_param, bitwidth=16)
    bypass = info.actions.add()
    bypass.preamble.id, bypass.preamble.name = 0x01000002, names.bypass_action
    table.action_refs.add(id=0x01000001)
    table.action_refs.add(id=0x01000002)
    return info


def test_canonical_bytestrings() -> None:
    assert canonical(0) == b"\x00"
    assert canonical(6) == b"\x06"
    assert canonical(0x0100) == b"\x01\x00"
    assert canonical(0xFFFFFFFF) == b"\xff\xff\xff\xff"


def test_example_entries() -> None:
    compiled = compile_text(EXAMPLE, "policies.dysco")
    msgs = table_entries(compiled.entries, make_p4info())
    assert len(msgs) == len(compiled.entries)
    first = msgs[0]
    assert first.table_id == 0x02000001 and first.priority == compiled.entries[0].priority
    by_id = {m.field_id: m for m in first.match}
    # web: src 10.0.1.0/24, protocol 6, dst port 80; dst address and src port are don't-care (omitted)
    assert set(by_id) == {1, 3, 5}
    assert (by_id[1].ternary.value, by_id[1].ternary.mask) == (bytes([10, 0, 1, 0]), b"\xff\xff\xff\x00")
    assert (by_id[3].ternary.value, by_id[3].ternary.mask) == (b"\x06", b"\xff")
    assert (by_id[5].range.low, by_id[5].range.high) == (b"\x50", b"\x50")
    assert first.action.action.action_id == 0x01000001
    assert list(first.action.action.params) == [p4runtime_pb2.Action.Param(param_id=1, value=b"\x01")]
    bypass = [m for m, e in zip(msgs, compiled.entries, strict=True) if e.action == "bypass"]
    assert bypass and all(m.action.action.action_id == 0x01000002 for m in bypass)
    assert all(not m.action.action.params for m in bypass)


def test_lpm_exact_and_optional_fields() -> None:
    compiled = compile_text(EXAMPLE, "policies.dysco")
    msgs = table_entries(compiled.entries, make_p4info(addr=MT.LPM, proto=MT.EXACT))
    fm = {m.field_id: m for m in msgs[0].match}
    assert (fm[1].lpm.value, fm[1].lpm.prefix_len) == (bytes([10, 0, 1, 0]), 24)
    assert fm[3].exact.value == b"\x06"
    hosts = compile_text("middlebox m { instances 1.2.3.4; }\npolicy p: dst host 10.0.9.9 -> m\n", "h")
    msgs = table_entries(hosts.entries, make_p4info(addr=MT.OPTIONAL, proto=MT.OPTIONAL))
    pinned = msgs[-1]
    assert {m.field_id: m.optional.value for m in pinned.match if m.HasField("optional")} == {
        2: bytes([10, 0, 9, 9]),
        3: b"\x06",
    }


def test_ternary_ports_need_the_ternary_compile() -> None:
    with pytest.raises(EmitError, match="compile with --port-match ternary"):
        table_entries(compile_text(EXAMPLE, "p").entries, make_p4info(port=MT.TERNARY))
    compiled = compile_text(EXAMPLE, "p", Options(port_match="ternary"))
    msgs = table_entries(compiled.entries, make_p4info(port=MT.TERNARY))
    dport = {m.field_id: m for m in msgs[0].match}[5]
    assert (dport.ternary.value, dport.ternary.mask) == (b"\x50", b"\xff\xff")


def test_configurable_names() -> None:
    names = ClassifierNames(table="Ing.cls", src_addr="h.ip.s", chain_action="Ing.go", chain_param="pid")
    compiled = compile_text(EXAMPLE, "p")
    assert len(table_entries(compiled.entries, make_p4info(names), names)) == len(compiled.entries)


@pytest.mark.parametrize(
    ("p4info", "message"),
    [
        (make_p4info(ClassifierNames(table="Other.t")), "P4Info has no table 'DyscoIngress.classifier'"),
        (make_p4info(ClassifierNames(dst_port="hdr.tcp.dport")), "has no match field 'hdr.tcp.dst_port'"),
        (make_p4info(ClassifierNames(chain_param="id")), "has no parameter 'policy_id'"),
        (make_p4info(ClassifierNames(bypass_action="X.nop")), "P4Info has no action 'DyscoIngress.bypass'"),
        (make_p4info(addr=MT.EXACT), "is an exact match; it cannot take mask"),
    ],
)
def test_mismatched_p4info(p4info: p4info_pb2.P4Info, message: str) -> None:
    with pytest.raises(EmitError, match=message):
        table_entries(compile_text(EXAMPLE, "p").entries, p4info)


def test_action_must_belong_to_the_table() -> None:
    info = make_p4info()
    del info.tables[0].action_refs[1]
    with pytest.raises(EmitError, match="is not an action of table"):
        table_entries(compile_text(EXAMPLE, "p").entries, info)


def test_non_prefix_masks_on_lpm_and_range() -> None:
    text = "middlebox m { instances 1.2.3.4; }\npolicy p: net 10.0.0.0 mask 255.0.255.0 -> m\n"
    entries = compile_text(text, "p").entries
    with pytest.raises(EmitError, match="is not a prefix"):
        table_entries(entries, make_p4info(addr=MT.LPM))
    with pytest.raises(EmitError, match="is not a range"):
        table_entries(entries, make_p4info(addr=MT.RANGE))


def test_software_entries_punt_with_the_software_flag() -> None:
    text = "middlebox fw { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: dst port {i} -> fw\n" for i in range(1, 6)
    )
    compiled = compile_text(text, "five.dysco", Options(capacity=3))
    msgs = table_entries(compiled.entries, make_p4info())
    assert [e.action for e in compiled.entries] == ["chain", "chain", "software"]
    params = [m.action.action.params[0].value for m in msgs]
    assert params == [canonical(1), canonical(2), canonical(SOFTWARE_FLAG | 3)]
    assert {m.action.action.action_id for m in msgs} == {0x01000001}  # all punt_policy


def test_a_policy_id_wider_than_the_parameter_is_refused() -> None:
    info = make_p4info()
    info.actions[0].params[0].bitwidth = 8
    compiled = compile_text(EXAMPLE, "policies.dysco", Options(capacity=1))
    with pytest.raises(EmitError, match=r"policy id 0x8001 does not fit 8 bits"):
        table_entries(compiled.entries, info)


def test_capacity_comes_from_the_p4info(tmp_path: Path) -> None:
    from google.protobuf import text_format

    info = make_p4info()
    with pytest.raises(EmitError, match="has no size in the P4Info; give --capacity"):
        classifier_capacity(info)
    info.tables[0].size = 1234
    assert classifier_capacity(info) == 1234
    path = tmp_path / "p4info.txt"
    path.write_text(text_format.MessageToString(info))
    assert classifier_capacity(read_p4info(str(path))) == 1234
    binary = tmp_path / "p4info.bin"
    binary.write_bytes(info.SerializeToString())
    assert classifier_capacity(read_p4info(str(binary))) == 1234
    path.write_text("tables { nonsense")
    with pytest.raises(UserError, match="not a P4Info file"):
        read_p4info(str(path))
    with pytest.raises(UserError, match="cannot read"):
        read_p4info(str(tmp_path / "missing.txt"))


def test_the_programs_classifier_holds_the_default_capacity() -> None:
    from dysco.compiler.passes import DEFAULT_CAPACITY
    from dysco.softswitch import load_program

    program = load_program(str(Path(__file__).resolve().parents[2] / "p4src" / "dysco.p4"))
    assert classifier_capacity(program.p4info) == DEFAULT_CAPACITY
