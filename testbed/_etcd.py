"""A single-node etcd for a testbed or a test (Debian's ``etcd-server``): its own data
directory, client and peer URLs on loopback, stopped with SIGTERM on exit like every
:class:`~dysco.testbed._process.Process`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
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


def etcd_argv(
    data: Path, client_port: int, peer_port: int, name: str = "dysco", pki: Path | None = None
) -> list[str]:
    """The command line of one member alone in its cluster, on 127.0.0.1; with ``pki`` (a
    directory with ca.crt, server.crt and server.key) clients speak TLS and must show a
    certificate that CA signed."""
    scheme = "https" if pki is not None else "http"
    client, peer = f"{scheme}://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    tls = []
    if pki is not None:
        tls = ["--cert-file", str(pki / "server.crt"), "--key-file", str(pki / "server.key"),
               "--trusted-ca-file", str(pki / "ca.crt"), "--client-cert-auth"]  # fmt: skip
    return [
        etcd_binary(),
        *tls,
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
        self, data: Path, client_port: int, peer_port: int, *, log: Path, append: bool = False,
        pki: Path | None = None,
    ) -> None:  # fmt: skip
        argv = etcd_argv(data, client_port, peer_port, pki=pki)
        super().__init__(argv, log, ETCD_READY, name="etcd", append=append)
        self.data = data
        self.pki = pki
        self.url = f"{'https' if pki else 'http'}://127.0.0.1:{client_port}"
        self.ports = (client_port, peer_port)

    def again(self) -> EtcdProcess:
        """A new process of the same member (after this one stopped), its log appended."""
        return EtcdProcess(self.data, *self.ports, log=self.log_path, append=True, pki=self.pki)


def make_pki(d: Path) -> Path:
    """A throwaway CA in ``d`` (made anew) and, signed by it for 127.0.0.1, etcd's certificate
    (server.crt, server.key) and the fleet's clients' (client.crt, client.key); returns ``d``."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)

    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UserError(f"openssl {args[0]}: {proc.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=dysco testbed etcd CA")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=dysco-{name}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d


def client_tls(pki: Path) -> list[str]:
    """The options that give a fleet client (agent or ``dysco fleet``) the certificates of ``pki``."""
    return ["--etcd-ca", str(pki / "ca.crt"), "--etcd-cert", str(pki / "client.crt"),
            "--etcd-key", str(pki / "client.key")]  # fmt: skip


def start_etcd(
    data: Path, ports: tuple[int, int], log: Path, keys: dict[str, str], pki: Path | None = None
) -> EtcdProcess:
    """A new etcd on ``data`` (emptied first) with ``keys`` (under /dysco/) written; over TLS
    with client certificates when ``pki`` (:func:`make_pki`) is given."""
    from dysco.runtime.fleet import Layout, Store, parse_url
    from dysco.runtime.fleet._store import read_tls

    shutil.rmtree(data, ignore_errors=True)
    etcd = EtcdProcess(data, *ports, log=log, pki=pki)
    etcd.__enter__()
    tls = read_tls(*client_tls(pki)[1::2]) if pki is not None else None

    async def put() -> None:
        async with Store(parse_url(etcd.url, tls=tls)) as store:
            for key, text in keys.items():
                await store.put(Layout().key(key), text.encode())

    try:
        asyncio.run(put())
    except BaseException:
        etcd.__exit__()
        raise
    return etcd
