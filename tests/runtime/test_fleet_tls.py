"""etcd over TLS with client certificates (a throwaway PKI, tests/pki.py): the fleet's client
talks to a real etcd that requires a certificate; without one, or without TLS, it is refused
with a clear error; ``dysco fleet`` takes the same options."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.runtime.fleet import Layout, Scope, Store, parse_url
from dysco.runtime.fleet._store import Tls, Unavailable, read_tls
from dysco.testbed._etcd import EtcdProcess
from tests.pki import make_pki

from .conftest import free_port

WAIT_S = 20.0


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    pki = make_pki(tmp_path)
    with EtcdProcess(tmp_path / "etcd", free_port(), free_port(), log=tmp_path / "etcd.log", pki=pki) as e:
        yield e


def test_the_client_speaks_tls_with_its_certificate(tls_etcd: EtcdProcess) -> None:
    pki = tls_etcd.pki
    assert pki is not None and tls_etcd.url.startswith("https://")
    tls = read_tls(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"))
    key = Layout().policy(Scope.ALL)

    async def main() -> None:
        async with Store(parse_url(tls_etcd.url, tls=tls)) as store:
            revision = await store.put(key, b"over tls")
            entry = await store.get(key)
            assert entry is not None and (entry.value, entry.revision) == (b"over tls", revision)
            changes = store.watch_prefix(Layout().policies, revision)
            first = await asyncio.wait_for(anext(changes), WAIT_S)
            assert (first.key, first.value) == (key, b"over tls")
            await changes.aclose()
        no_cert = Tls((pki / "ca.crt").read_bytes())
        with pytest.raises(Unavailable, match=f"etcd at {tls_etcd.url}: "):
            async with Store(parse_url(tls_etcd.url, tls=no_cert)):
                pass
        plain = tls_etcd.url.replace("https://", "http://")
        with pytest.raises(Unavailable, match=f"etcd at {plain}: "):
            async with Store(parse_url(plain)):
                pass

    asyncio.run(main())


def test_dysco_fleet_status_over_tls(tls_etcd: EtcdProcess) -> None:
    pki = tls_etcd.pki
    assert pki is not None
    argv = [sys.executable, "-m", "dysco", "fleet", "status", "--etcd", tls_etcd.url,
            "--etcd-ca", str(pki / "ca.crt"), "--etcd-cert", str(pki / "client.crt"),
            "--etcd-key", str(pki / "client.key")]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False)
    assert out.returncode == 0 and ": 0 agents, 0 up" in out.stdout, out.stderr


@pytest.mark.parametrize(
    ("url", "files", "message"),
    [
        ("https://127.0.0.1:2379", (None, None, None), "https goes with --etcd-ca"),
        ("http://127.0.0.1:2379", ("ca.crt", None, None), "https goes with --etcd-ca"),
        ("https://127.0.0.1:2379", ("ca.crt", "client.crt", None), "--etcd-cert and --etcd-key go together"),
        ("https://127.0.0.1:2379", (None, "client.crt", "client.key"), "need --etcd-ca"),
        ("https://127.0.0.1:2379", ("none.crt", None, None), "cannot read"),
    ],
)
def test_bad_tls_options_are_refused(
    tmp_path: Path, url: str, files: tuple[str | None, str | None, str | None], message: str
) -> None:
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("x")
    paths = [str(tmp_path / f) if f else None for f in files]
    with pytest.raises(UserError, match=message):
        parse_url(url, tls=read_tls(*paths))
