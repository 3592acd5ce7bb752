"""The ebpf target: C generation (anywhere), and on machines that can run it (root, clang-16,
libbpf) the STF suite on both back ends, table writes into maps, verifier errors and cleanup.

Everything a test makes (namespace ``dyebpf<pid>``, veth pairs, qdiscs, maps) is removed by
the test, also when it fails.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.cli import main
from dysco.softswitch import load_program
from dysco.softswitch.api import ActionCall, EntryError, FieldMatch, TableEntry
from dysco.softswitch.stf import run_stf
from dysco.softswitch.targets.ebpf import EbpfSwitch, Unsupported, VerifierError, VethRig, unavailable
from dysco.softswitch.targets.ebpf.build import build
from dysco.softswitch.targets.ebpf.cgen import generate
from dysco.softswitch.targets.ebpf.libbpf import BpfMap, BpfObject

from .test_stf_suite import CASES, program_for

STF_DIR = Path(__file__).parent / "stf"
ROUTER = Path(__file__).parent / "programs" / "router.p4"
WHY = unavailable()
needs_ebpf = pytest.mark.skipif(WHY is not None, reason=WHY or "")

# STF programs the ebpf back end must pass; every other case must stop with an Unsupported
# error naming the construct (never a wrong packet, never a traceback).
EBPF_PASSES = {
    "checksum",
    "idioms",
    "length",
    "meters",
    "misc",
    "router",
    "select",
    "stackwalk",
    "state",
    "tables",
    "teardown",
    "v1model",
}


def c_of(path: Path) -> str:
    p = load_program(path)
    return generate(p.ast, p.source, p.compiled.types, p.compiled.errors, p.compiled.info).source


def test_unavailable_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dysco.softswitch.targets import ebpf

    monkeypatch.setattr(ebpf.os, "geteuid", lambda: 1000)
    assert ebpf.unavailable() == "the ebpf backend needs root (loading BPF programs, clsact qdiscs)"
    monkeypatch.setattr(ebpf.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ebpf, "find_clang", lambda: None)
    why = ebpf.unavailable()
    assert why is not None and "clang-16" in why and "\n" not in why


def test_router_tables_become_maps_of_the_programs_size() -> None:
    p = load_program(ROUTER)
    c = generate(p.ast, p.source, p.compiled.types, p.compiled.errors, p.compiled.info)
    lay = c.tables["MyIngress.ipv4_lpm"]
    assert (lay.kind, lay.size, lay.default_action) == ("lpm", 1024, "MyIngress.drop")
    assert [(k.name, k.width, k.match_kind) for k in lay.keys] == [("hdr.ipv4.dstAddr", 32, "lpm")]
    assert "BPF_MAP_TYPE_LPM_TRIE" in c.source and "__uint(max_entries, 1024)" in c.source
    assert "bpf_redirect(" in c.source and "TC_ACT_SHOT" in c.source


def test_p4c_emit_c_dumps_the_generated_c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "router.c"
    assert main(["p4c", str(ROUTER), "-o", str(tmp_path), "--emit-c", str(out)]) == 0
    assert 'SEC("tc")' in out.read_text() and "LPM_TRIE" in out.read_text()
    assert main(["p4c", str(STF_DIR / "parser.p4"), "-o", str(tmp_path), "--emit-c", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported by the ebpf backend: varbit fields" in err[0]


def test_a_ternary_table_is_a_bounded_scan_of_its_size() -> None:
    p = load_program(STF_DIR / "tables.p4")
    c = generate(p.ast, p.source, p.compiled.types, p.compiled.errors, p.compiled.info)
    lay = c.tables["I.tern"]
    assert lay.kind == "scan" and [k.match_kind for k in lay.keys] == ["ternary"]
    assert f"bpf_loop({lay.size}, scan{lay.index}, &q, 0)" in c.source
    assert c.tables["I.t_exact"].kind == "hash"


def test_an_exact_table_is_a_hash_map(tmp_path: Path) -> None:
    prog = tmp_path / "exact.p4"
    prog.write_text(ROUTER.read_text().replace("hdr.ipv4.dstAddr: lpm", "hdr.ipv4.dstAddr: exact"))
    src = c_of(prog)
    assert "BPF_MAP_TYPE_HASH); __type(key, struct k0)" in src and "LPM_TRIE" not in src


@pytest.mark.parametrize(
    ("program", "construct", "where"),
    [
        ("parser.p4", "varbit fields", "parser.p4:54"),
        ("stack.p4", "method push_front()", "stack.p4:22"),
        ("ops.p4", "int<W> (signed) values", "ops.p4:17"),
        ("control.p4", "header unions", "control.p4:43"),
        ("externs.p4", "extern instances in a control (direct_counter dc)", "externs.p4:19"),
    ],
)
def test_an_unsupported_construct_is_named_with_file_and_line(
    program: str, construct: str, where: str
) -> None:
    with pytest.raises(Unsupported) as info:
        c_of(STF_DIR / program)
    msg = str(info.value)
    assert msg.startswith(f"not supported by the ebpf backend: {construct}")
    assert msg.endswith(f"{where})")


# ------------------------------------------------------------------ on the kernel


@pytest.fixture
def rig() -> Iterator[VethRig]:
    with VethRig([1, 2, 3]) as r:
        yield r
    assert not Path(f"/run/netns/{r.name}").exists()


def router_switch(r: VethRig, program: Path = ROUTER) -> EbpfSwitch:
    return EbpfSwitch(load_program(program), ports={p: r.switch_if(p) for p in r.ports}, netns=r.name, rig=r)


def lpm_entry(sw: EbpfSwitch, prefix: int, plen: int, port: int) -> TableEntry:
    info = sw.program.p4info  # type: ignore[union-attr]
    t = info.tables[0]
    fwd = next(a for a in info.actions if a.preamble.name == "MyIngress.ipv4_forward")
    return TableEntry(
        t.preamble.id,
        (FieldMatch(1, "lpm", prefix, prefix_len=plen),),
        ActionCall(fwd.preamble.id, (0xA, port)),
    )


@needs_ebpf
@pytest.mark.root
@pytest.mark.parametrize("stf", CASES, ids=[c.stem for c in CASES])
def test_stf_on_both_backends(stf: Path) -> None:
    prog = load_program(program_for(stf))
    assert run_stf(prog, stf).passed
    if stf.stem in EBPF_PASSES:
        result = run_stf(prog, stf, backend="ebpf")
        assert result.passed, result.report
    else:
        with pytest.raises(Unsupported, match=r"^not supported by the ebpf backend: .* \(.*:\d+\)$"):
            run_stf(prog, stf, backend="ebpf")
    assert not Path(f"/run/netns/dyebpf{os.getpid()}").exists()


@needs_ebpf
@pytest.mark.root
def test_a_wrong_expectation_fails_on_ebpf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.stf"
    text = (STF_DIR / "router.stf").read_text().replace("expect 2 0a0b0c0d0e0f", "expect 2 0a0b0c0d0e0e")
    wrong.write_text(text + "expect 7\n")
    assert main(["stf", "--backend", "ebpf", str(STF_DIR / "router.p4"), str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "port 2, packet 1 (expect on line 9): bytes differ from byte 5" in out
    assert "port 7: expected packet 1 (line 12) did not arrive" in out


@needs_ebpf
@pytest.mark.root
def test_dysco_stf_ebpf_reports_unsupported_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stf", "--backend", "ebpf", str(STF_DIR / "parser.p4"), str(STF_DIR / "parser.stf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported by the ebpf backend: varbit fields" in err[0]


@needs_ebpf
@pytest.mark.root
def test_dysco_switch_ebpf_reports_unsupported_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["switch", "--backend", "ebpf", "-i", "1@lo", "--grpc-server-addr", "127.0.0.1:0"]
    assert main([*args, str(STF_DIR / "parser.p4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not supported by the ebpf backend: varbit fields (" in err[0]
    assert (
        "clsact"
        not in subprocess.run(["tc", "qdisc", "show", "dev", "lo"], capture_output=True, text=True).stdout
    )


@needs_ebpf
@pytest.mark.root
def test_entries_go_into_the_maps(rig: VethRig) -> None:
    sw = router_switch(rig)
    try:
        e = lpm_entry(sw, 0x0A000000, 8, 2)
        sw.write_entry("insert", e)
        with pytest.raises(EntryError) as dup:
            sw.write_entry("insert", e)
        assert dup.value.code == "ALREADY_EXISTS"
        assert sw.read_entries() == [e]
        t = next(iter(sw._tables.values()))
        raw = t.map.lookup(struct.pack("=I", 8) + bytes([10, 0, 0, 0]))
        assert raw is not None and struct.unpack_from("=IIQQ", raw)[2:] == (0xA, 2)
        sw.write_entry("delete", e)
        assert t.map.lookup(struct.pack("=I", 8) + bytes([10, 0, 0, 0])) is None
        with pytest.raises(EntryError) as gone:
            sw.write_entry("delete", e)
        assert gone.value.code == "NOT_FOUND"
    finally:
        sw.close()


@needs_ebpf
@pytest.mark.root
def test_maps_are_read_in_batches(rig: VethRig) -> None:
    """BpfMap.items: BPF_MAP_LOOKUP_BATCH over several batches, of an LPM_TRIE and a HASH."""
    sw = router_switch(rig)
    try:
        prefixes = [0x0A000000, 0x0B000000, 0x0C000000]
        for p in prefixes:
            sw.write_entry("insert", lpm_entry(sw, p, 8, 2))
        t = next(iter(sw._tables.values()))
        got = sorted(k[4:] for k, _ in t.map.items(batch=2))
        assert got == sorted(p.to_bytes(4, "big") for p in prefixes)
        assert sw._obj is not None
        ports = BpfMap(sw._obj, "ports_out", 4, 4)
        assert sorted(struct.unpack("=I", k)[0] for k, _ in ports.items(batch=1)) == sorted(rig.ports)
    finally:
        sw.close()


@needs_ebpf
@pytest.mark.root
def test_a_full_table_says_so(rig: VethRig, tmp_path: Path) -> None:
    small = tmp_path / "small.p4"
    small.write_text(ROUTER.read_text().replace("size = 1024;", "size = 2;"))
    sw = router_switch(rig, small)
    try:
        sw.write_entry("insert", lpm_entry(sw, 0x0A000000, 8, 2))
        sw.write_entry("insert", lpm_entry(sw, 0x0B000000, 8, 2))
        with pytest.raises(EntryError) as full:
            sw.write_entry("insert", lpm_entry(sw, 0x0C000000, 8, 2))
        assert full.value.code == "RESOURCE_EXHAUSTED"
    finally:
        sw.close()


def clsacts(r: VethRig) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", r.name, "tc", "qdisc", "show"], capture_output=True, text=True, check=True
    ).stdout


@needs_ebpf
@pytest.mark.root
def test_leftovers_of_a_crashed_switch_are_cleaned_by_the_next_start(rig: VethRig) -> None:
    crashed = router_switch(rig)
    # what a killed process leaves: the qdiscs and filters stay, its fds are gone
    crashed._attached.clear()
    crashed.close()
    assert clsacts(rig).count("clsact") == 3
    sw = router_switch(rig)
    try:
        sw.write_entry("insert", lpm_entry(sw, 0x0A000000, 8, 3))
        frame = bytes.fromhex(
            "000000000001aabbccddeeff08004500001e00000000401164cb0a0000010a010203" + "00" * 11
        )
        out = sw.process(1, frame)
        assert [p for p, _ in out] == [3]
    finally:
        sw.close()
    assert "clsact" not in clsacts(rig)


@needs_ebpf
@pytest.mark.root
def test_a_verifier_rejection_shows_the_end_of_the_log(tmp_path: Path) -> None:
    src = (
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'SEC("tc") int dysco_tc(struct __sk_buff *skb) {\n'
        "    unsigned char *p = (unsigned char *)(long)skb->data;\n"
        "    return p[100];  /* no bounds check: the verifier refuses */\n"
        '}\nchar LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = build(src, tmp_path, "bad")
    with pytest.raises(VerifierError) as info:
        BpfObject(obj, "dysco_tc")
    msg = str(info.value)
    assert "the kernel rejected the program" in msg
    assert "invalid access to packet" in info.value.log_tail


@needs_ebpf
@pytest.mark.root
def test_dysco_switch_ebpf_removes_its_qdiscs_on_sigterm(rig: VethRig) -> None:
    cmd = ["ip", "netns", "exec", rig.name, sys.executable, "-m", "dysco", "switch", "--backend", "ebpf",
           "-i", f"1@{rig.switch_if(1)}", "-i", f"2@{rig.switch_if(2)}",
           "--grpc-server-addr", "127.0.0.1:0", str(ROUTER)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "P4Runtime server listening" in line, proc.stderr.read() if proc.stderr else ""
        assert clsacts(rig).count("clsact") == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "clsact" not in clsacts(rig)
