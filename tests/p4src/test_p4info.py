"""The P4Info of dysco.p4 has exactly the names dysco/p4names.py gives, and takes the compiler's entries."""

from __future__ import annotations

from typing import Any

from dysco.compiler.p4rt import table_entries
from dysco.compiler.passes import compile_text
from dysco.p4names import (
    CLASSIFIER,
    KNOWN_PEER,
    PACKET_IN,
    PACKET_OUT,
    PEER_ACTION,
    PEER_CELLS,
    SESSION_OUT,
    SESSION_TABLE_SIZE,
    SETUP_PORTS,
    SETUP_PORTS_ACTION,
    SUBSESSION_IN,
)
from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.softswitch import P4Program
from dysco.softswitch.server._convert import table_entry_from_proto
from dysco.softswitch.server._schema import Schema

from .dataplane import ROOT, Dut

MT = p4info_pb2.MatchField


def _tables(info: Any) -> dict[str, Any]:
    return {t.preamble.name: t for t in info.tables}


def _actions(info: Any) -> dict[str, Any]:
    return {a.preamble.name: a for a in info.actions}


def test_tables_and_keys(dysco_program: P4Program) -> None:
    info: Any = dysco_program.p4info
    tables = _tables(info)
    assert set(tables) == {CLASSIFIER.table, SESSION_OUT.table, SUBSESSION_IN.table, KNOWN_PEER, SETUP_PORTS}
    setup = tables[SETUP_PORTS]
    assert [(f.name, f.bitwidth, f.match_type) for f in setup.match_fields] == [
        ("hdr.tcp.dst_port", 16, MT.RANGE)
    ]
    assert {r.id for r in setup.action_refs} == {
        _actions(info)[n].preamble.id for n in (SETUP_PORTS_ACTION, "NoAction")
    }
    peers = tables[KNOWN_PEER]
    assert [(f.name, f.bitwidth, f.match_type) for f in peers.match_fields] == [
        ("hdr.ipv4.src_addr", 32, MT.EXACT)
    ]
    assert peers.size == PEER_CELLS and peers.idle_timeout_behavior == peers.NO_TIMEOUT
    cls = tables[CLASSIFIER.table]
    assert [(f.name, f.bitwidth, f.match_type) for f in cls.match_fields] == [
        (CLASSIFIER.src_addr, 32, MT.TERNARY),
        (CLASSIFIER.dst_addr, 32, MT.TERNARY),
        (CLASSIFIER.protocol, 8, MT.TERNARY),
        (CLASSIFIER.src_port, 16, MT.RANGE),
        (CLASSIFIER.dst_port, 16, MT.RANGE),
    ]
    assert cls.idle_timeout_behavior == cls.NO_TIMEOUT
    for names in (SESSION_OUT, SUBSESSION_IN):
        t = tables[names.table]
        assert [(f.name, f.bitwidth, f.match_type) for f in t.match_fields] == [
            (n, w, MT.EXACT) for n, w in zip(names.key, (32, 32, 8, 16, 16), strict=True)
        ]
        assert t.idle_timeout_behavior == t.NOTIFY_CONTROL
        assert t.size == SESSION_TABLE_SIZE
        acts = _actions(info)
        refs = {acts_name for acts_name, a in acts.items() if a.preamble.id in {r.id for r in t.action_refs}}
        assert refs == {names.rewrite_action, names.punt_action, names.drop_action, "NoAction"}


def test_actions_and_params(dysco_program: P4Program) -> None:
    acts = _actions(dysco_program.p4info)
    assert set(acts) == {
        CLASSIFIER.chain_action,
        CLASSIFIER.bypass_action,
        SESSION_OUT.rewrite_action,
        SESSION_OUT.punt_action,
        SESSION_OUT.drop_action,
        PEER_ACTION,
        SETUP_PORTS_ACTION,
        "NoAction",
        # called only directly from the control, listed as p4c lists them (every parameter bound)
        "DyscoIngress.punt",
        "DyscoIngress.translate_tuple",
    }

    def params(name: str) -> list[tuple[str, int]]:
        return [(p.name, p.bitwidth) for p in acts[name].params]

    assert params(CLASSIFIER.chain_action) == [(CLASSIFIER.chain_param, 16)]
    assert params(CLASSIFIER.bypass_action) == []
    assert tuple(params(SESSION_OUT.rewrite_action)) == SESSION_OUT.rewrite_params
    assert params(SESSION_OUT.punt_action) == [(SESSION_OUT.punt_param, 32)]
    assert params(SESSION_OUT.drop_action) == []
    assert params(PEER_ACTION) == [("cell", 32)]
    assert params("DyscoIngress.punt") == []  # punt(bit<8> reason): the calls bind the reason


def test_controller_headers(dysco_program: P4Program) -> None:
    info: Any = dysco_program.p4info
    cpm = {c.preamble.name: c for c in info.controller_packet_metadata}
    assert set(cpm) == {"packet_in", "packet_out"}
    for hdr in (PACKET_IN, PACKET_OUT):
        assert [(m.name, m.bitwidth) for m in cpm[hdr.name].metadata] == list(hdr.fields)
        assert sum(w for _, w in hdr.fields) % 8 == 0


def test_compiled_policies_install(dysco_program: P4Program) -> None:
    """The compiler's P4Runtime entries pass the server's checks and land in the classifier."""
    compiled = compile_text((ROOT / "examples" / "policies.dysco").read_text())
    msgs = table_entries(compiled.entries, dysco_program.p4info)
    assert msgs
    schema = Schema.from_p4info(dysco_program.p4info)
    dut = Dut(dysco_program)
    for msg in msgs:
        dut.sw.write_entry("insert", table_entry_from_proto(schema, msg, need_action=True))
    assert len(dut.sw.read_entries(msgs[0].table_id)) == len(msgs)
