"""Access control in etcd (docs/security.md): with etcd's auth on and one user and role per
agent (``runtime/fleet/_access.py``), an agent's credentials read its own scope and what the
fleet shares, and nothing of another agent's or group's; a real fleet client on them puts its
group's set in force, registers and reports.  A real etcd; no root."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dysco.runtime.fleet import FleetAgent, FleetSettings, Layout, Scope, Store, parse_url
from dysco.runtime.fleet._access import agent_permissions, enable, grant_agent
from dysco.runtime.fleet._store import Denied, Endpoint, User
from dysco.testbed._etcd import EtcdProcess

from .test_p4rt import WAIT_S

LAYOUT = Layout()
ROOT_PW = "root-secret"


def as_user(etcd: EtcdProcess, name: str, password: str) -> Endpoint:
    return parse_url(etcd.url, user=User(name, password))


async def set_up(etcd: EtcdProcess) -> None:
    async with Store(parse_url(etcd.url)) as store:
        sets = [(Scope.ALL, "", "all"), (Scope.GROUP, "web", "web"), (Scope.GROUP, "db", "db"),
                (Scope.AGENT, "a2", "a2's own")]  # fmt: skip
        for scope, name, text in sets:
            await store.put(LAYOUT.policy(scope, name), text.encode())
        await grant_agent(store, LAYOUT, "a1", "web", "pw1")
        await grant_agent(store, LAYOUT, "a2", "db", "pw2")
        await enable(store, ROOT_PW)


def test_an_agent_reads_its_own_scope_only(etcd: EtcdProcess) -> None:
    async def main() -> None:
        await set_up(etcd)
        async with Store(as_user(etcd, "a1", "pw1"), LAYOUT.status("a1")) as a1:
            mine = await a1.get(LAYOUT.policy(Scope.GROUP, "web"))
            assert mine is not None and mine.value == b"web"
            assert (await a1.get(LAYOUT.policy(Scope.ALL))) is not None
            assert await a1.get(LAYOUT.policy(Scope.AGENT, "a1")) is None  # allowed; there is none
            for key in (
                LAYOUT.policy(Scope.GROUP, "db"),
                LAYOUT.policy(Scope.AGENT, "a2"),
                LAYOUT.status("a2"),
            ):
                with pytest.raises(Denied, match=f"read {key.decode()}: etcdserver: permission denied"):
                    await a1.get(key)
            with pytest.raises(Denied, match="permission denied"):
                await a1.get_prefix(LAYOUT.policies)  # the whole folder is more than its scope
            with pytest.raises(Denied, match="write /dysco/policies/all: etcdserver: permission denied"):
                await a1.put(LAYOUT.policy(Scope.ALL), b"mine now")
            with pytest.raises(Denied, match="write /dysco/status/a2: etcdserver: permission denied"):
                await a1.put(LAYOUT.status("a2"), b"{}")
            with pytest.raises(Denied, match="watch /dysco/policies/agent/a2: etcdserver: permission denied"):
                async for _ in a1.watch(LAYOUT.policy(Scope.AGENT, "a2"), 1):
                    pass
            await a1.put(LAYOUT.status("a1"), b"{}")  # its own report
        with pytest.raises(Denied, match="authenticate: etcdserver: authentication failed"):
            async with Store(as_user(etcd, "a1", "wrong"), LAYOUT.status("a1")):
                pass
        with pytest.raises(
            Denied, match="user name is empty \\(etcd has access control on: give --etcd-user\\)"
        ):
            async with Store(parse_url(etcd.url)):  # no user at all
                pass
        async with Store(as_user(etcd, "root", ROOT_PW)) as root:  # the operator reads everything
            _, entries = await root.get_prefix(LAYOUT.policies)
            assert len(entries) == 4

    asyncio.run(main())


def test_a_fleet_client_works_on_its_own_credentials(etcd: EtcdProcess) -> None:
    applied: list[str] = []

    async def apply(text: str, source: str) -> object:
        applied.append(f"{source} {text}")
        return {}

    async def main() -> None:
        await set_up(etcd)
        settings = FleetSettings(as_user(etcd, "a1", "pw1"), "a1", "10.0.1.2", "web")
        fleet = FleetAgent(settings, apply, lambda: 0, logging.getLogger("test.access"),
                           drain=lambda _: None, set_keys=lambda _: None)  # fmt: skip
        task = asyncio.create_task(fleet.run())
        try:
            await fleet.wait_until(lambda: fleet.applied is not None, WAIT_S)
            assert fleet.applied is not None and fleet.applied.key == LAYOUT.policy(Scope.GROUP, "web")
            assert fleet.last_error == "" and fleet.connected
            async with Store(as_user(etcd, "root", ROOT_PW)) as root:
                r = await root.put(LAYOUT.policy(Scope.GROUP, "web"), b"web two")
                await fleet.wait_until(
                    lambda: fleet.applied is not None and fleet.applied.revision == r, WAIT_S
                )
                assert await root.get(LAYOUT.agent("a1")) is not None  # registered under its lease
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert applied[0].endswith(" web") and applied[0].startswith("etcd:/dysco/policies/group/web@")
        assert applied[1:] == [f"etcd:/dysco/policies/group/web@{r} web two"]

    asyncio.run(main())


def test_the_permissions_of_an_agent() -> None:
    got = [str(p) for p in agent_permissions(LAYOUT, "a1", "web")]
    assert got == [
        "read /dysco/policies/all",
        "read /dysco/policies/agent/a1",
        "read /dysco/policies/group/web",
        "read /dysco/commands/*",
        "read /dysco/drained/*",
        "read /dysco/keys/ring",
        "readwrite /dysco/agents/a1",
        "readwrite /dysco/status/a1",
        "readwrite /dysco/results/*",
    ]


def test_the_cli_with_a_user(etcd: EtcdProcess, tmp_path: Path) -> None:
    asyncio.run(set_up(etcd))
    pw = tmp_path / "root.pw"
    pw.write_text(ROOT_PW + "\n")
    argv = [sys.executable, "-m", "dysco", "fleet", "status", "--etcd", etcd.url]
    out = subprocess.run([*argv, "--etcd-user", "root", "--etcd-password-file", str(pw)],
                         capture_output=True, text=True, timeout=WAIT_S, check=False)  # fmt: skip
    assert out.returncode == 0 and out.stdout.endswith(": 0 agents, 0 up\n"), out.stderr
    out = subprocess.run(
        [*argv, "--etcd-user", "root"], capture_output=True, text=True, timeout=WAIT_S, check=False
    )
    assert out.returncode == 2 and "--etcd-user needs --etcd-password-file" in out.stderr, out.stderr
    out = subprocess.run([*argv, "--etcd-password-file", str(pw)], capture_output=True, text=True,
                         timeout=WAIT_S, check=False)  # fmt: skip
    assert out.returncode == 2 and "--etcd-password-file is for --etcd-user" in out.stderr, out.stderr
    (tmp_path / "empty.pw").write_text("\n")
    out = subprocess.run([*argv, "--etcd-user", "root", "--etcd-password-file", str(tmp_path / "empty.pw")],
                         capture_output=True, text=True, timeout=WAIT_S, check=False)  # fmt: skip
    assert out.returncode == 2 and "empty.pw: no password on its first line" in out.stderr, out.stderr
    out = subprocess.run([*argv, "--etcd-user", "root", "--etcd-password-file", str(tmp_path / "none.pw")],
                         capture_output=True, text=True, timeout=WAIT_S, check=False)  # fmt: skip
    assert out.returncode == 2 and "cannot read " in out.stderr, out.stderr
