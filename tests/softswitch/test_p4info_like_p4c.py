"""The P4Info answers as p4c's does, point by point (tests/p4src/test_p4c.py compares whole files
with the real p4c where it is installed; these run everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dysco.softswitch import load_program

PROGRAM = """
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; }
struct hs { h_t h; }
struct m_t { bit<8> x; }
parser P(packet_in pkt, out hs h, inout m_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.h); transition accept; }
}
control V(inout hs h, inout m_t m) { apply { } }
action top(bit<8> r) { }
control I(inout hs h, inout m_t m, inout standard_metadata_t sm) {
    @bar(1) meter(4, MeterType.packets) m_z;
    meter(4, MeterType.packets) m_a;
    action direct(inout bit<8> y, bit<8> z) { y = z; }
    action both(bit<8> q) { m.x = q; }
    @foo("bar") @name("renamed") action set(bit<8> v, bit<16> w) { m.x = v; }
    @hidden action hid() { m.x = 1; }
    @foo("x") @brief("the first table") table t_z { key = { h.h.a : exact; } actions = { both; NoAction; } }
    table t_a { key = { h.h.a : exact; } actions = { set; } default_action = set(0xee, 0); }
    apply {
        direct(m.x, 3);
        both(4);
        top(5);
        hid();
        m_z.execute_meter(0, m.x);
        m_a.execute_meter(1, m.x);
        t_z.apply();
        t_a.apply();
    }
}
control E(inout hs h, inout m_t m, inout standard_metadata_t sm) { apply { } }
control C(inout hs h, inout m_t m) { apply { } }
control D(packet_out pkt, in hs h) { apply { pkt.emit(h.h); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


@pytest.fixture(scope="module")
def info(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("p4info") / "prog.p4"
    path.write_text(PROGRAM)
    return load_program(path).p4info


def _actions(info: Any) -> dict[str, Any]:
    return {a.preamble.name: a for a in info.actions}


def test_actions_only_called_directly_are_listed_without_params(info: Any) -> None:
    acts = _actions(info)
    assert set(acts) == {"NoAction", "top", "I.direct", "I.both", "I.renamed"}  # not the @hidden one
    assert list(acts["top"].params) == [] and list(acts["I.direct"].params) == []
    # called directly and in a table: the table's parameters
    assert [(p.name, p.bitwidth) for p in acts["I.both"].params] == [("q", 8)]


def test_every_table_has_an_initial_default_action(info: Any) -> None:
    tables = {t.preamble.name: t for t in info.tables}
    acts = _actions(info)
    assert tables["I.t_z"].initial_default_action.action_id == acts["NoAction"].preamble.id
    assert not tables["I.t_z"].initial_default_action.arguments
    d = tables["I.t_a"].initial_default_action
    assert d.action_id == acts["I.renamed"].preamble.id
    # as p4c writes them: each value in its parameter's full width, not in canonical form
    assert [(a.param_id, a.value) for a in d.arguments] == [(1, b"\xee"), (2, b"\x00\x00")]


def test_annotations_in_the_preamble(info: Any) -> None:
    acts = _actions(info)
    assert list(acts["NoAction"].preamble.annotations) == ['@noWarn("unused")']
    assert list(acts["I.renamed"].preamble.annotations) == ['@foo("bar")']  # @name is applied, not repeated
    table = next(t for t in info.tables if t.preamble.name == "I.t_z")
    assert list(table.preamble.annotations) == ['@foo("x")']
    assert table.preamble.doc.brief == "the first table"  # @brief is documentation
    meter = next(m for m in info.meters if m.preamble.name == "I.m_z")
    assert list(meter.preamble.annotations) == ["@bar(1)"]


def test_type_info_is_written_even_when_empty(info: Any) -> None:
    assert info.HasField("type_info")
    assert not info.type_info.structs


def test_tables_and_meters_in_declaration_order(info: Any) -> None:
    assert [t.preamble.name for t in info.tables] == ["I.t_z", "I.t_a"]
    assert [m.preamble.name for m in info.meters] == ["I.m_z", "I.m_a"]
