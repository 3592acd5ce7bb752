"""A single-node etcd for a testbed or a test (Debian's ``etcd-server``): its own data
directory, client and peer URLs on loopback, stopped with SIGTERM on exit like every
:class:`~dysco.testbed._process.Process`."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from dysco.errors import UserError
from dysco.testbed._process import Process

ETCD_READY = "ready to serve client requests"


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise UserError(
            "etcd is not installed (Debian: apt-get install etcd-server etcd-client; `make setup`)"
        )
    return found


def etcd_argv(data: Path, client_port: int, peer_port: int, name: str = "dysco") -> list[str]:
    """The command line of one member alone in its cluster, on 127.0.0.1."""
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        etcd_binary(),
        "--name", name,
        "--data-dir", str(data),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}",
        "--initial-cluster-state", "new",
    ]  # fmt: skip


class EtcdProcess(Process):
    """``etcd`` serving ``http://127.0.0.1:CLIENT_PORT``; its data stays in ``data`` (so a member
    stopped and started again on the same directory comes back with its keys)."""

    def __init__(
        self, data: Path, client_port: int, peer_port: int, *, log: Path, append: bool = False
    ) -> None:
        super().__init__(etcd_argv(data, client_port, peer_port), log, ETCD_READY, name="etcd", append=append)
        self.data = data
        self.url = f"http://127.0.0.1:{client_port}"
        self.ports = (client_port, peer_port)

    def again(self) -> EtcdProcess:
        """A new process of the same member (after this one stopped), its log appended."""
        return EtcdProcess(self.data, *self.ports, log=self.log_path, append=True)


def start_etcd(data: Path, ports: tuple[int, int], log: Path, keys: dict[str, str]) -> EtcdProcess:
    """A new etcd on ``data`` (emptied first) with ``keys`` (under /dysco/) written."""
    from dysco.runtime.fleet import Layout, Store, parse_url

    shutil.rmtree(data, ignore_errors=True)
    etcd = EtcdProcess(data, *ports, log=log)
    etcd.__enter__()

    async def put() -> None:
        async with Store(parse_url(etcd.url)) as store:
            for key, text in keys.items():
                await store.put(Layout().key(key), text.encode())

    try:
        asyncio.run(put())
    except BaseException:
        etcd.__exit__()
        raise
    return etcd
