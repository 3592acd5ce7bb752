"""P4Info ids: Jenkins one-at-a-time hash, prefixes, probing, @id."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.softswitch import load_program
from dysco.softswitch.p4info import aliases, assign_ids, jenkins_one_at_a_time

STF = Path(__file__).parent / "stf"


def test_hash_by_hand() -> None:
    # Bob Jenkins' one-at-a-time definition applied step by step to the single byte b"a" (0x61)
    h = 0x61
    h = (h + (h << 10)) & 0xFFFFFFFF
    h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    h = (h + (h << 15)) & 0xFFFFFFFF
    assert h == 0xCA2E9442
    assert jenkins_one_at_a_time(b"a") == 0xCA2E9442
    assert jenkins_one_at_a_time(b"") == 0


def test_ids_p4c_gives() -> None:
    # values from p4c's expected outputs, quoted in the team's notes
    assert assign_ids(0x01, ["NoAction"])["NoAction"] == 21257015
    assert assign_ids(0x02, ["ingressImpl.t1"])["ingressImpl.t1"] == 49173205
    assert assign_ids(0x04, ["packet_out_t"])["packet_out_t"] == 75327753


def test_collision_probes_to_the_next_free_id() -> None:
    natural = assign_ids(0x01, ["NoAction"])["NoAction"]
    # an @id taking NoAction's natural id pushes it to the next suffix
    ids = assign_ids(0x01, ["NoAction", "taken"], {"taken": natural & 0xFFFFFF})
    assert ids["taken"] == natural
    assert ids["NoAction"] == natural + 1


def test_id_annotation_prefix_checked() -> None:
    assert assign_ids(0x02, ["t"], {"t": 5})["t"] == 0x02000005
    assert assign_ids(0x02, ["t"], {"t": 0x02000007})["t"] == 0x02000007
    with pytest.raises(UserError, match="wrong prefix"):
        assign_ids(0x02, ["t"], {"t": 0x01000007})


def test_aliases_are_shortest_unique_suffixes() -> None:
    got = aliases(["MyIngress.drop", "MyEgress.drop", "MyIngress.fwd", "NoAction"])
    assert got == {
        "MyIngress.drop": "MyIngress.drop",
        "MyEgress.drop": "MyEgress.drop",
        "MyIngress.fwd": "fwd",
        "NoAction": "NoAction",
    }


def test_id_and_name_annotations_in_a_program(tmp_path: Path) -> None:
    src = tmp_path / "ids.p4"
    src.write_text(
        '#include "' + str(STF / "common.p4") + '"\n'
        "header h_t { bit<8> a; }\n"
        "struct headers { ethernet_t eth; h_t h; }\n"
        "struct meta_t { }\n"
        "parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {\n"
        "    state start { pkt.extract(h.eth); transition accept; } }\n"
        '@name(".global_set") @id(5) action set(bit<8> v) { }\n'
        "control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {\n"
        '    @id(0x02000007) @name("renamed") table t { key = { h.h.a: exact; } actions = { set; } }\n'
        "    apply { t.apply(); } }\n"
        "control D(packet_out pkt, in headers h) { apply { } }\n"
        "V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(),"
        " NoCompute<headers, meta_t>(), D()) main;\n"
    )
    info = load_program(src).p4info
    assert [(t.preamble.name, t.preamble.id) for t in info.tables] == [("I.renamed", 0x02000007)]
    names = {a.preamble.name: a.preamble.id for a in info.actions}
    assert names["global_set"] == 0x01000005
    assert names["NoAction"] == 21257015
