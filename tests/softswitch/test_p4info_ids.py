"""P4Info ids: Jenkins one-at-a-time hash, prefixes, probing, @id."""

from __future__ import annotations

import pytest

from dysco.errors import UserError
from dysco.softswitch.p4info import aliases, assign_ids, jenkins_one_at_a_time


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
