"""``dysco fleet keys`` and ``dysco fleet undrain`` against a real etcd, their mistakes and how a
rotation stops when an agent does not answer (the rotation with real agents and sessions is
tests/e2e/test_fleet_ha.py).  No root."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from dysco.runtime.fleet import Layout, Registration, Store, parse_url
from dysco.runtime.fleet._keys import decode
from dysco.testbed._etcd import EtcdProcess

from .test_p4rt import WAIT_S

LAYOUT = Layout()


def fleet(etcd: EtcdProcess, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dysco", "fleet", *args, "--etcd", etcd.url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)


def put(etcd: EtcdProcess, key: bytes, value: bytes) -> None:
    async def main() -> None:
        async with Store(parse_url(etcd.url)) as store:
            await store.put(key, value)

    asyncio.run(main())


def ring(etcd: EtcdProcess) -> tuple[int, list[int]]:
    async def main() -> tuple[int, list[int]]:
        async with Store(parse_url(etcd.url)) as store:
            entry = await store.get(LAYOUT.keys)
            assert entry is not None
            r = decode(entry.value)
            return r.current, sorted(r.keys)

    return asyncio.run(main())


def test_put_show_and_rotate_without_agents(etcd: EtcdProcess, tmp_path: Path) -> None:
    out = fleet(etcd, "keys", "show")
    assert out.returncode == 1 and out.stdout.strip() == "no key ring in etcd (/dysco/keys/ring)", out.stdout
    out = fleet(etcd, "keys", "rotate")
    assert out.returncode == 2, out.stderr
    assert (
        "no key ring in etcd (/dysco/keys/ring): put one first with `dysco fleet keys put FILE`" in out.stderr
    )
    keys = tmp_path / "keys.txt"
    keys.write_text("3 " + "ab" * 32 + " current\n")
    keys.chmod(0o600)
    out = fleet(etcd, "keys", "put", str(keys))
    assert out.returncode == 0 and out.stdout.startswith("key ring put: current 3, ids 3: 0 of 0 agents"), out
    assert ring(etcd) == (3, [3])
    out = fleet(etcd, "keys", "rotate", "--overlap", "0", "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert (done["old"], done["new"], done["ok"]) == (3, 4, True)
    assert [s["step"] for s in done["steps"]] == ["add key 4", "switch to key 4", "retire 3"]
    assert ring(etcd) == (4, [4])
    out = fleet(etcd, "keys", "show")
    assert out.returncode == 0 and out.stdout.rstrip().endswith(": current 4, ids 4"), out.stdout
    out = fleet(etcd, "keys", "rotate", "--overlap", "-1")
    assert out.returncode == 2 and "--overlap -1: between 0 and 3600 seconds" in out.stderr, out.stderr
    keys.chmod(0o644)
    out = fleet(etcd, "keys", "put", str(keys))
    assert out.returncode == 2 and "lets others read the keys (chmod 600" in out.stderr, out.stderr


def test_a_rotation_stops_where_an_agent_does_not_answer(etcd: EtcdProcess) -> None:
    put(etcd, LAYOUT.keys, b'{"current": 1, "keys": {"1": "' + b"11" * 32 + b'"}}')
    put(etcd, LAYOUT.agent("ghost"), Registration("ghost", "10.0.9.9").encode())  # up, never answers
    out = fleet(etcd, "keys", "rotate", "--overlap", "0", "--timeout", "0.5")
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("add key 2: 0 of 1 agents have it ("), lines
    stopped = "stopped: the ring stays at step 'add key 2' (run `dysco fleet keys rotate` again once every"
    assert lines[1:] == ["  ghost: no answer", f"{stopped} agent answers)"]
    assert ring(etcd) == (1, [1, 2]), "the new key is accepted, the old one still signs"


def test_every_id_taken(etcd: EtcdProcess) -> None:
    keys = {str(i): f"{i:02x}" * 32 for i in range(256)}
    put(etcd, LAYOUT.keys, json.dumps({"current": 0, "keys": keys}).encode())
    out = fleet(etcd, "keys", "rotate")
    assert out.returncode == 2 and "the ring has 256 keys: no id left for a new one" in out.stderr, out.stderr


def test_undrain(etcd: EtcdProcess) -> None:
    out = fleet(etcd, "undrain", "10.0.2.2")
    assert out.returncode == 1 and out.stdout.strip() == "10.0.2.2 was not drained", out.stdout
    put(etcd, LAYOUT.drained("10.0.2.2"), b"{}")
    out = fleet(etcd, "undrain", "10.0.2.2")
    assert out.returncode == 0 and out.stdout.startswith("10.0.2.2 back in service at 0 of 0 agents in "), out
    out = fleet(etcd, "undrain", "10.0.2")
    assert out.returncode == 2 and "undrain: '10.0.2' is not an IPv4 address" in out.stderr, out.stderr
