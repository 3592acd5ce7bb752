"""``dysco classify`` against the real thing: libpcap's filters, tried in file order.

A file of 10,000 generated policies (3-6 primitives, and/or/not, port ranges) and random
SYNs written to a pcap file; ``dysco classify --json`` (the command, in a subprocess) must
give each SYN the first policy whose predicate libpcap's compiled filter accepts.  With the
default capacity and with a table of 16 entries, so that most policies are left to the
agent's evaluator.  ``make test`` runs 2,000 SYNs; ``make soak`` runs 100,000 (slow).  And
a file of 10,000 policies that seldom overlap, where a full table leaves most of them to
software: 300 SYNs in ``make test``, 5,000 in ``make soak``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dysco.compiler.cover import boxes_of
from dysco.compiler.evaluate import Syn
from dysco.compiler.generate import PredicateGenerator, disjoint_predicates, syn_frame
from dysco.compiler.passes import front
from dysco.compiler.pcap import PcapFilter
from dysco.compiler.pcapfile import write_pcap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policies.dysco"


def dysco(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dysco", *args], capture_output=True, text=True, check=False)


class Oracle:
    """libpcap's unoptimised filters (the optimiser of libpcap 1.10.3 mis-evaluates some
    expressions: tests/compiler/test_libpcap.py), tried in file order."""

    def __init__(self, policy_text: str) -> None:
        _, pf = front(policy_text, "oracle.dysco")
        self.names = [pol.name for pol in pf.policies]
        self.filters = [PcapFilter(pol.source, optimize=False) for pol in pf.policies]

    def first(self, frame: bytes) -> str | None:
        for name, f in zip(self.names, self.filters, strict=True):
            if f.matches(frame):
                return name
        return None

    def close(self) -> None:
        for f in self.filters:
            f.close()


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Oracle]:
    gen = PredicateGenerator(random.Random(21), primitives=(3, 6))
    text = gen.policy_file(10_000)
    path = tmp_path_factory.mktemp("classify") / "10k.dysco"
    path.write_text(text)
    oracle = Oracle(text)
    yield path, oracle
    oracle.close()


def _agree(
    policies: tuple[Path, Oracle], tmp_path: Path, count: int, capacity: int, seed: int
) -> Counter[str]:
    path, oracle = policies
    gen = PredicateGenerator(random.Random(seed))
    syns = [gen.syn() for _ in range(count)]
    frames = [syn_frame(s) for s in syns]
    pcap = tmp_path / "syns.pcap"
    write_pcap(pcap, frames)
    proc = dysco("classify", str(path), str(pcap), "--json", "--capacity", str(capacity))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["packet"] for o in lines] == list(range(1, count + 1))
    where: Counter[str] = Counter()
    for obj, frame, syn in zip(lines, frames, syns, strict=True):
        assert obj["policy"] == oracle.first(frame), (obj, syn)
        where[obj["where"]] += 1
    return where


@pytest.mark.parametrize("capacity", [4096, 16])
def test_classify_agrees_with_libpcap_on_a_10000_policy_file(
    policies: tuple[Path, Oracle], tmp_path: Path, capacity: int
) -> None:
    where = _agree(policies, tmp_path, 2_000, capacity, seed=capacity)
    if capacity == 16:
        assert where["software"] > 0  # the agent's evaluator was exercised


@pytest.mark.slow
@pytest.mark.parametrize("capacity", [4096, 16])
def test_classify_agrees_with_libpcap_on_100000_syns(
    policies: tuple[Path, Oracle], tmp_path: Path, capacity: int
) -> None:
    _agree(policies, tmp_path, 100_000, capacity, seed=100 + capacity)


def _syns_near(text: str, r: random.Random, count: int) -> list[Syn]:
    """SYNs inside a box of a random policy: most match it or a policy before it."""
    _, pf = front(text, "near.dysco")
    out = []
    while len(out) < count:
        boxes = boxes_of(r.choice(pf.policies).predicate)
        if not boxes:
            continue
        v, m, sl, sh, dl, dh = r.choice(boxes)
        addr = v | (r.getrandbits(64) & ~m)
        out.append(Syn(addr >> 32, addr & 0xFFFFFFFF, r.randint(sl, sh), r.randint(dl, dh)))
    return out


@pytest.mark.parametrize(
    "count", [pytest.param(300, id="300"), pytest.param(5_000, id="5000", marks=pytest.mark.slow)]
)
def test_classify_agrees_with_libpcap_where_a_full_table_leaves_most_policies_to_software(
    tmp_path: Path, count: int
) -> None:
    """10,000 policies that seldom overlap: the default table holds the first two thousand or
    so, the rest are covered by software entries; SYNs near random policies, so most match
    one, and libpcap has to try thousands of filters for some (hence fewer SYNs)."""
    text = "middlebox fw { instances 10.0.2.1; }\n" + "".join(
        f"policy p{i}: {pred} -> fw\n" for i, pred in enumerate(disjoint_predicates(random.Random(7), 10_000))
    )
    path = tmp_path / "disjoint.dysco"
    path.write_text(text)
    syns = _syns_near(text, random.Random(count), count)
    pcap = tmp_path / "near.pcap"
    write_pcap(pcap, [syn_frame(s) for s in syns])
    proc = dysco("classify", str(path), str(pcap), "--json")
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    oracle = Oracle(text)
    try:
        want = [oracle.first(syn_frame(s)) for s in syns]
    finally:
        oracle.close()
    assert [o["policy"] for o in got] == want
    where = Counter((o["where"], o["policy"] is not None) for o in got)
    # ports drawn from a policy's ranges often fall in an earlier policy's: most are the NIC's
    assert where["software", True] > count // 50 and where["nic", True] > count // 2, where


# ---- the command itself ---------------------------------------------------------------------


def _frame(src: str, dst: str, sport: int, dport: int) -> bytes:
    a = [int(x) for x in src.split(".")]
    b = [int(x) for x in dst.split(".")]
    return syn_frame(
        Syn(
            a[0] << 24 | a[1] << 16 | a[2] << 8 | a[3],
            b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3],
            sport,
            dport,
        )
    )


def test_only_syns_are_classified_and_numbered_by_their_place_in_the_file(tmp_path: Path) -> None:
    web = _frame("10.0.1.5", "10.9.9.9", 40000, 80)
    ssh = _frame("10.0.1.8", "10.9.9.9", 40001, 22)
    syn_ack = bytearray(web)
    syn_ack[14 + 20 + 13] = 0x12  # SYN+ACK: not classified
    udp = bytearray(web)
    udp[14 + 9] = 17
    arp = b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28
    nothing = _frame("192.168.0.1", "10.9.9.9", 1, 2)
    pcap = tmp_path / "mixed.pcap"
    write_pcap(pcap, [arp, web, bytes(syn_ack), bytes(udp), ssh, nothing])
    proc = dysco("classify", str(EXAMPLE), str(pcap), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"packet": 2, "policy": "web", "where": "nic"},
        {"packet": 5, "policy": "ssh", "where": "nic"},
        {"packet": 6, "policy": None, "where": "nic"},
    ]
    text = dysco("classify", str(EXAMPLE), str(pcap))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "packet  policy  where",
        "2       web     nic",
        "5       ssh     nic",
        "6       -       nic",
    ]
    # a table of one entry: everything is punted to the agent, which gives the same policies
    one = dysco("classify", str(EXAMPLE), str(pcap), "--json", "--capacity", "1")
    assert [json.loads(line)["where"] for line in one.stdout.splitlines()] == ["software"] * 3
    assert [json.loads(line)["policy"] for line in one.stdout.splitlines()] == ["web", "ssh", None]


def test_help_shows_an_example() -> None:
    proc = dysco("classify", "--help")
    assert proc.returncode == 0
    assert "dysco classify examples/policies.dysco syns.pcap" in proc.stdout
    assert '{"packet": 1, "policy": "web", "where": "nic"}' in proc.stdout


def test_bad_inputs_exit_2_with_a_message(tmp_path: Path) -> None:
    ng = tmp_path / "capture.pcapng"
    ng.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 28)
    proc = dysco("classify", str(EXAMPLE), str(ng))
    assert proc.returncode == 2 and "a pcapng file; convert it with 'tcpdump -r" in proc.stderr
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello world, not a capture")
    proc = dysco("classify", str(EXAMPLE), str(junk))
    assert proc.returncode == 2 and "not a pcap file (magic 68656c6c)" in proc.stderr
    proc = dysco("classify", str(EXAMPLE), str(tmp_path / "missing.pcap"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    proc = dysco("classify", str(EXAMPLE), str(junk), "--capacity", "0")
    assert proc.returncode == 2 and "--capacity must be at least 1" in proc.stderr
