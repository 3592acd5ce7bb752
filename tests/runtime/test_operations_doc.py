"""docs/operations.md shows the commands the real-process test runs (both come from testbed.Plan)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dysco.testbed import Plan

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_operations_doc_matches_the_plan() -> None:
    text = DOC.read_text()
    block = text.split("<!-- testbed:begin -->\n```sh\n", 1)[1].split("```\n<!-- testbed:end -->", 1)[0]
    # the page shows the default on a machine that can load the ebpf back end
    two, full = Plan.chain(agents="cm", backend="ebpf"), Plan.chain(agents="cms", backend="ebpf")
    hint = 'regenerate the block in docs/operations.md from Plan.chain(agents="cm", backend="ebpf").script()'
    assert block == two.script(), hint
    assert full.agent(full.hosts[2]) in text, "the third agent of the full deployment"
    for cmd in two.teardown():
        assert cmd in text


def test_the_reconfiguration_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## Reconfiguring a live session", 1)[1].split("\n## ", 1)[0]
    test = (DOC.parents[1] / "tests" / "e2e" / "test_reconfigure.py").read_text()
    plan = load_topology(DOC.parents[1] / "examples" / "reconfig.toml")
    addresses = {h.name: h.address for h in plan.hosts}
    assert addresses == {
        "client": "10.0.1.2", "fw1": "10.0.2.2", "server": "10.0.3.2", "fw2": "10.0.4.2", "scrub": "10.0.5.2",
    }  # fmt: skip
    assert 'FW1, SERVER, FW2, SCRUB = "10.0.2.2", "10.0.3.2", "10.0.4.2", "10.0.5.2"' in test
    mgmt = f"--mgmt {plan.mgmt(plan.host('client'))}"
    # each edit the test makes, as the page writes it
    for edit, in_test in [
        ("--insert 10.0.5.2", '"--insert", SCRUB'),
        ("--delete 10.0.5.2", '"--delete", SCRUB'),
        ("--all --replace 10.0.2.2 10.0.4.2", '"--all", "--replace", FW1, FW2'),
        (
            "--match 'tcp dst port 9005' --insert 10.0.5.2",
            '"--match", "tcp dst port 9005", "--insert", SCRUB',
        ),
        (
            "--match 'tcp dst portrange 9000-9009' --delete 10.0.5.2",
            '"tcp dst portrange 9000-9009", "--delete"',
        ),
    ]:
        assert in_test in test, edit
        assert any(
            line.startswith("dysco ctl reconfigure ") and f"{edit} {mgmt}" in line
            for line in text.splitlines()
        ), edit
    assert "stream-server 9000" in text and 'peer(self.tb, "server", "stream-server", port)' in test
    assert f"ip netns exec {plan.ns('s')} " in text and f"ip netns exec {plan.ns('c')} " in text


def test_the_splice_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## Splicing out a proxy by hand", 1)[1].split("\n## ", 1)[0]
    test = (DOC.parents[1] / "tests" / "e2e" / "test_splice.py").read_text()
    plan = load_topology(DOC.parents[1] / "examples" / "splice.toml")
    assert [h.address for h in plan.hosts] == ["10.0.1.2", "10.0.2.2", "10.0.3.2"]
    assert 'PROXY, SERVER = "10.0.2.2", "10.0.3.2"' in test
    proxy = plan.host("proxy")
    assert proxy.splice and f"--mgmt {plan.mgmt(proxy)}" in text
    lines = text.splitlines()
    ns = f"ip netns exec {plan.ns(proxy.key)} "
    start = next(ln for ln in lines if "examples/splice_proxy.py" in ln and ln.startswith(ns))
    assert "--listen 10.0.2.2:9000 --server 10.0.3.2:9000 --mgmt" in start
    assert '"--listen", f"{PROXY}:9000", "--server", f"{SERVER}:9000", "--mgmt", mgmt' in test
    splice = next(ln for ln in lines if ln.startswith(ns + "dysco ctl splice "))
    assert re.search(
        r"--in 10\.0\.1\.2:\d+-10\.0\.2\.2:9000 --out 10\.0\.2\.2:\d+-10\.0\.3\.2:9000 --mgmt", splice
    )
    assert '"--in", inbound, "--out", outbound, "--mgmt", mgmt' in test
    assert (
        '"ctl", "splice"' in test
        and '"--splice-after", str(4 * MB)' in test
        and "--splice-after 4194304" in text
    )


def test_the_agent_restart_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## Restarting an agent", 1)[1].split("\n## ", 1)[0]
    test = (DOC.parents[1] / "tests" / "e2e" / "test_agent_restart.py").read_text()
    plan = load_topology(DOC.parents[1] / "examples" / "reconfig.toml")
    client = plan.host("client")
    # the testbed restarts an agent with the command it started it with: the page shows it
    assert plan.agent(client) in text.splitlines()
    assert 'RESTARTED = ("client", "fw1", "server")' in test and 'tb.restart(f"agent {name}")' in test
    mgmt = f"--mgmt {plan.mgmt(client)}"
    for shown, in_test in [
        (f"dysco ctl status {mgmt}", 'ctl(tb, name, "status")'),
        (f"dysco ctl sessions {mgmt}", 'ctl(tb, name, "sessions")'),
        (f"--replace 10.0.2.2 10.0.4.2 {mgmt}", '"--replace", FW1, FW2'),
        ('"sessions.adopted": 1', 'core["sessions.adopted"] == 1'),
    ]:
        assert shown in text, shown
        assert in_test in test, in_test
    # the reasons the page lists are the core's, all of them
    source = (DOC.parents[1] / "runtime" / "core" / "_adopt.py").read_text()
    reasons = {*re.findall(r'Refused\("(\w+)"\)', source), *re.findall(r'"adopt\.refused\.(\w+)"', source)}
    listed = re.search(r"`adopt\.refused\.WHY`[^(]*\((.*?)\)\.", text, re.S)
    assert listed is not None
    assert set(re.findall(r"`(\w+)`", listed.group(1))) == reasons


def test_the_middlebox_api_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## The middlebox API", 1)[1].split("\n## ", 1)[0]
    lines = text.splitlines()
    test = (DOC.parents[1] / "tests" / "e2e" / "test_middlebox_api.py").read_text()
    # next hops: examples/reconfig.toml, fw1's application chooses the scrubber
    plan = load_topology(DOC.parents[1] / "examples" / "reconfig.toml")
    fw1, scrub = plan.host("fw1"), plan.host("scrub")
    assert (fw1.address, scrub.address) == ("10.0.2.2", "10.0.5.2")
    assert 'FW1, SCRUB = "10.0.2.2", "10.0.5.2"' in test
    ns = f"ip netns exec {plan.ns(fw1.key)} "
    assert f"{ns}iptables -I FORWARD 1 -p tcp --syn --dport 9003 -j NFQUEUE --queue-num 0" in lines
    assert '"-p", "tcp", "--syn", "--dport", "9003", "-j", "NFQUEUE", "--queue-num", "0"' in test
    assert '["iptables", "-I", "FORWARD", "1", *rule]' in test
    chooser = (
        f"{ns}python3 examples/next_hop_chooser.py --hop 10.0.5.2 --dport 9003 --mgmt {plan.mgmt(fw1)} &"
    )
    assert chooser in lines
    assert '"next_hop_chooser.py", "--hop", SCRUB, "--dport", "9003"' in test
    client = f"ip netns exec {plan.ns(plan.host('client').key)} python3 tests/e2e/peers.py"
    assert f"{client} blob-client 10.0.3.2 9003 3145728 3145728 hold" in lines
    assert '"blob-client", SERVER, 9003, size, size, "hold"' in test and "size = 3 << 20" in test
    assert f"dysco ctl sessions --mgmt {plan.mgmt(scrub)}" in text
    # deltas: examples/splice.toml, the HTTP proxy
    plan = load_topology(DOC.parents[1] / "examples" / "splice.toml")
    proxy = plan.host("proxy")
    ns = f"ip netns exec {plan.ns(proxy.key)} "
    start = f"{ns}python3 examples/http_header_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000"
    start += f" --mgmt {plan.mgmt(proxy)}"
    assert start in lines
    assert 'args = ["--listen", f"{PROXY}:9000", "--server", f"{SERVER}:9000"]' in test
    assert '"http_header_proxy.py", *args)' in test
    assert "peers.py keepalive-server 9000 &" in text and '"keepalive-server", 9000' in test
    assert "peers.py keepalive-client 10.0.2.2 9000" in text and '"keepalive-client", PROXY, 9000' in test
    for said in ('"splice"', '"end"', 'f"get {k} {n}"'):
        assert said in test, said


def test_the_dead_middlebox_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## Replacing a dead middlebox (`--failed`)", 1)[1].split("\n## ", 1)[0]
    test = (DOC.parents[1] / "tests" / "e2e" / "test_failover.py").read_text()
    plan = load_topology(DOC.parents[1] / "examples" / "failover.toml")
    addresses = {h.name: h.address for h in plan.hosts}
    assert addresses == {"client": "10.0.1.2", "fwd1": "10.0.2.2", "server": "10.0.3.2", "fwd2": "10.0.4.2"}
    assert 'FWD1, SERVER, FWD2 = "10.0.2.2", "10.0.3.2", "10.0.4.2"' in test
    mgmt = f"--mgmt {plan.mgmt(plan.host('client'))}"
    for flag in ("--failed", "--failover"):
        assert f'"--replace", FWD1, FWD2, "{flag}"' in test, flag
        assert f"--replace 10.0.2.2 10.0.4.2 {flag} {mgmt}" in text, flag
    # the host goes as the test makes it go: both links, then the namespace
    fwd1 = plan.host("fwd1")
    kill = f"ip link del {plan.prefix}-{fwd1.key}-net; ip link del {plan.prefix}-{fwd1.key}-host; "
    assert kill + f"ip netns del {plan.ns(fwd1.key)}" in text
    for step in (
        'f"{plan.prefix}-{h.key}-net"',
        'f"{plan.prefix}-{h.key}-host"',
        '"netns", "del", plan.ns(h.key)',
    ):
        assert step in test, step


def test_the_nat_section_runs_what_the_end_to_end_test_runs() -> None:
    from dysco.testbed import load_topology

    text = DOC.read_text().split("## A client behind a NAT without an agent", 1)[1].split("\n## ", 1)[0]
    test = (DOC.parents[1] / "tests" / "e2e" / "test_nat_inband.py").read_text()
    plan = load_topology(DOC.parents[1] / "examples" / "natclient.toml")
    addresses = {h.name: h.address for h in plan.hosts}
    assert addresses == {
        "client": "10.0.1.2", "mb1": "10.0.2.2", "server": "10.0.3.2", "scrub": "10.0.4.2", "mb2": "10.0.5.2"
    }  # fmt: skip
    assert 'MB1, SERVER, SCRUB, MB2 = "10.0.2.2", "10.0.3.2", "10.0.4.2", "10.0.5.2"' in test
    # the router's rules, as the test gives them
    rules = re.search(r"NAT_RULES = \[\n(.*?)\n\]", test, re.S)
    assert rules is not None
    for line in rules.group(1).splitlines():
        argv = ast.literal_eval(line.strip().rstrip(","))
        assert f"ip netns exec {plan.ns('r')} {' '.join(argv)}" in text, argv
    mgmt = f"--mgmt {plan.mgmt(plan.host('client'))}"
    for flags, said in (
        ('("--insert", SCRUB)', "--insert 10.0.4.2"),
        ('("--delete", SCRUB)', "--delete 10.0.4.2"),
        ('("--replace", MB1, MB2)', "--replace 10.0.2.2 10.0.5.2"),
    ):
        assert flags in test, flags
        assert f"{said} {mgmt}" in text, said
    assert '"control.inband_received"' in test and "control.inband_received" in text
