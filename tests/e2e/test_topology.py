"""Topology files: every example loads; every mistake is a UserError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.testbed import load_topology

from .conftest import ROOT

HOSTS = '[[host]]\nname = "client"\nrole = "client"\n[[host]]\nname = "mbox"\nrole = "middlebox"\n'


@pytest.mark.parametrize(
    "name",
    [
        "chain",
        "firewall",
        "nat",
        "haproxy",
        "longchain",
        "reconfig",
        "natclient",
        "splice",
        "migrate",
        "scale",
        "synflood",
        "fleet",
        "fleet-ha",
    ],
)
def test_examples_load(name: str) -> None:
    plan = load_topology(ROOT / "examples" / f"{name}.toml")
    assert plan.role("client") and plan.role("middlebox") and plan.role("server")
    assert "$" not in plan.policy_text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n" + HOSTS, "unknown key 'x'"),
        ("prefix = 'dy'\n", "no [[host]] tables"),
        ("prefix = 3\n" + HOSTS, "prefix must be str"),
        ("prefix = 'much-too-long'\n" + HOSTS, "at most 8 lower-case"),
        (HOSTS + "colour = 1\n", "unknown key 'colour'"),
        (HOSTS.replace('"mbox"', '"Mbox"'), "must be a lower-case identifier"),
        (HOSTS.replace('"middlebox"', '"router"'), "role 'router' is not one of"),
        (HOSTS + 'kind = "nginx"\n', "kind 'nginx' is not one of"),
        (HOSTS + "rules = [1]\n", "rules must be strings"),
        (HOSTS + 'sysctls = ["net.ipv4.ip_forward"]\n', "sysctls must be NAME=VALUE strings"),
        (HOSTS + 'agentless = ["10.0.3"]\n', "agentless '10.0.3' is not an IPv4 network"),
        (HOSTS + "splice = 1\n", "splice must be bool"),
        (
            HOSTS + "agent = false\nsplice = true\n",
            "host mbox: policy, agentless and splice are for a host with an agent",
        ),
        (HOSTS + 'policy = "policy p: tcp -> $nowhere"\n', "the policy names no host"),
        (HOSTS + 'sysctls = ["a=1; reboot"]\n', "sysctls must be NAME=VALUE strings, not 'a=1; reboot'"),
        (HOSTS + 'p4 = "p4src/baseline.p4"\n', "p4 is for a NIC without an agent"),
        (HOSTS.replace('"mbox"', '"client"'), "two hosts have the same name"),
        (HOSTS.replace('role = "client"', 'role = "server"'), "must be a client"),
        ("policy = 'middlebox fw { instances $nowhere; }'\n" + HOSTS, "the policy names no host"),
        ("prefix = \n", "Invalid value"),
        ("etcd = 'yes'\n" + HOSTS, "etcd must be bool"),
        (HOSTS + 'group = "web"\n', "host mbox: group is for a host with an agent, with etcd = true"),
        ("etcd_tls = true\n" + HOSTS, "etcd_tls is for etcd = true"),
        ("etcd_auth = true\n" + HOSTS, "etcd_auth is for etcd = true"),
        ("etcd = true\netcd_members = 2\n" + HOSTS, "etcd_members = 2: 1 or 3"),
        ("etcd = true\n" + HOSTS + 'group = "a/b"\n', "host mbox: group 'a/b': use letters"),
    ],
)
def test_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_topology(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_sysctls_are_set_in_the_hosts_namespace() -> None:
    plan = load_topology(ROOT / "examples" / "reconfig.toml")
    fw2 = plan.host("fw2")
    cmd = f"ip netns exec {plan.ns(fw2.key)} sysctl -qw net.netfilter.nf_conntrack_tcp_be_liberal=1"
    assert plan.network().count(cmd) == 1
    assert not plan.host("fw1").sysctls


def test_a_host_of_its_own_policy_agentless_networks_and_splice(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        HOSTS + 'splice = true\nagentless = ["10.0.3.2/32"]\npolicy = "policy p: tcp dst port 9 -> $client"\n'
    )
    plan = load_topology(path, policies=str(tmp_path / "p.dysco"))
    files = plan.policy_files()
    assert files["mbox"] == (str(tmp_path / "p-mbox.dysco"), "policy p: tcp dst port 9 -> 10.0.1.2")
    agent = plan.agent(plan.host("mbox"))
    assert f"--policies {tmp_path / 'p-mbox.dysco'} --agentless 10.0.3.2/32 --splice " in agent
    assert "--splice" not in plan.agent(plan.host("client"))
    assert "cat > " + str(tmp_path / "p-mbox.dysco") in plan.script()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No such file"):
        load_topology(tmp_path / "none.toml")


def test_with_etcd_the_policies_go_to_etcd_and_the_agents_watch_them(tmp_path: Path) -> None:
    plan = load_topology(ROOT / "examples" / "fleet.toml", etcd_ports=(3379, 3380))
    assert plan.etcd_policies() == {
        "policies/all": "",
        "policies/agent/client": plan.policy_text,
    }
    client = plan.agent(plan.host("client"))
    pki = f"/tmp/{plan.prefix}-etcd-pki"
    tls = f"--etcd-ca {pki}/ca.crt --etcd-cert {pki}/client.crt --etcd-key {pki}/client.key"
    assert f" --etcd https://127.0.0.1:3379 {tls} --group clients " in client and "--policies" not in client
    assert "--group" not in plan.agent(plan.host("fw1"))
    script = plan.script()
    assert "--listen-client-urls https://127.0.0.1:3379" in script and "cat > " not in script
    assert "--client-cert-auth" in script
    put = f"etcdctl --endpoints https://127.0.0.1:3379 --cacert {pki}/ca.crt --cert {pki}/client.crt"
    assert f"{put} --key {pki}/client.key put /dysco/policies/agent/client <<'EOF'" in script


def test_a_three_member_etcd_with_users_and_keys() -> None:
    plan = load_topology(ROOT / "examples" / "fleet-ha.toml", etcd_ports=(3379, 3380, 3381, 3382, 3383, 3384))
    urls = "http://127.0.0.1:3379,http://127.0.0.1:3381,http://127.0.0.1:3383"
    users = f"/tmp/{plan.prefix}-etcd-users"
    client = plan.agent(plan.host("client"))
    assert f" --etcd {urls} --etcd-user client --etcd-password-file {users}/client " in client
    assert f" --keys /tmp/{plan.prefix}-keys.txt " in client
    assert plan.etcd_client() == [
        "--etcd",
        urls,
        "--etcd-user",
        "root",
        "--etcd-password-file",
        f"{users}/root",
    ]
    script = plan.script()
    assert script.count("--initial-cluster m0=http://127.0.0.1:3380,m1=http://127.0.0.1:3382,") == 3
    with pytest.raises(UserError, match="etcd: 3 members need 6 ports"):
        load_topology(ROOT / "examples" / "fleet-ha.toml", etcd_ports=(3379, 3380))
