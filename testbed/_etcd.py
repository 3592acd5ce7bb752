"""An etcd for a testbed or a test (Debian's ``etcd-server``): one member, or a cluster of
several on loopback ports, each with its own data directory, stopped with SIGTERM on exit like
every :class:`~dysco.testbed._process.Process`; over TLS and with access control (a user and
role per agent, :mod:`dysco.runtime.fleet._access`) when asked."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from pathlib import Path

from dysco.errors import UserError
from dysco.testbed._process import Process

ETCD_READY = "ready to serve client requests"
MEMBER_STARTED = "listening for peers on"
"""A member of a cluster serves clients only once a quorum is up: it is started when it says this."""


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise UserError(
            "etcd is not installed (Debian: apt-get install etcd-server etcd-client; `make setup`)"
        )
    return found


def etcd_argv(
    data: Path, client_port: int, peer_port: int, name: str = "dysco", pki: Path | None = None,
    cluster: str = "",
) -> list[str]:  # fmt: skip
    """The command line of one member on 127.0.0.1, alone in its cluster or one of ``cluster``
    (etcd's ``--initial-cluster``: NAME=PEER-URL,...); with ``pki`` (a directory with ca.crt,
    server.crt and server.key) clients speak TLS and must show a certificate that CA signed."""
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
        "--initial-cluster", cluster or f"{name}={peer}",
        "--initial-cluster-state", "new",
    ]  # fmt: skip


class EtcdProcess(Process):
    """``etcd`` serving ``http://127.0.0.1:CLIENT_PORT``; its data stays in ``data`` (so a member
    stopped and started again on the same directory comes back with its keys)."""

    def __init__(
        self, data: Path, client_port: int, peer_port: int, *, log: Path, append: bool = False,
        pki: Path | None = None, name: str = "dysco", cluster: str = "",
    ) -> None:  # fmt: skip
        argv = etcd_argv(data, client_port, peer_port, name, pki, cluster)
        super().__init__(argv, log, MEMBER_STARTED if cluster else ETCD_READY, name=name, append=append)
        self.data = data
        self.pki = pki
        self.member = name
        self.cluster = cluster
        self.url = f"{'https' if pki else 'http'}://127.0.0.1:{client_port}"
        self.ports = (client_port, peer_port)

    def again(self) -> EtcdProcess:
        """A new process of the same member (after this one stopped), its log appended."""
        return EtcdProcess(self.data, *self.ports, log=self.log_path, append=True, pki=self.pki,
                           name=self.member, cluster=self.cluster)  # fmt: skip


def cluster_members(ports: tuple[int, ...]) -> list[tuple[str, int, int, str]]:
    """Name, client port, peer port and ``--initial-cluster`` of each member of a cluster on the
    client and peer port pairs of ``ports``."""
    pairs = list(zip(ports[::2], ports[1::2], strict=True))
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(pairs))
    return [(f"m{i}", client, peer, cluster) for i, (client, peer) in enumerate(pairs)]


def member_argvs(data: Path, ports: tuple[int, ...], pki: Path | None = None) -> list[list[str]]:
    """The command lines of the members (one: alone in its cluster, on ``data`` itself)."""
    if len(ports) == 2:
        return [etcd_argv(data, ports[0], ports[1], pki=pki)]
    return [
        etcd_argv(data / n, client, peer, n, pki, cluster)
        for n, client, peer, cluster in cluster_members(ports)
    ]


def start_cluster(
    data: Path, ports: tuple[int, ...], log: Path, pki: Path | None = None
) -> list[EtcdProcess]:
    """Members ``m0``, ``m1``, ... (client and peer port pairs of ``ports``) of a new cluster,
    each with its data under ``data`` and its log next to ``log``; returned once every member
    serves clients."""
    members: list[EtcdProcess] = []
    try:
        for name, client, peer, cluster in cluster_members(ports):
            one = log.with_name(f"{log.stem}-{name}{log.suffix}")
            m = EtcdProcess(data / name, client, peer, log=one, pki=pki, name=name, cluster=cluster)
            m.__enter__()
            members.append(m)
        for m in members:
            m.wait_for(ETCD_READY, 30.0)
    except BaseException:
        for m in members:
            m.__exit__()
        raise
    return members


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
    data: Path, ports: tuple[int, ...], log: Path, keys: dict[str, str], pki: Path | None = None,
    users: dict[str, tuple[str, str]] | None = None, root_password: str = "",
) -> list[EtcdProcess]:  # fmt: skip
    """A new etcd on ``data`` (emptied first; one member per client and peer port pair of
    ``ports``) with ``keys`` (under /dysco/) written; over TLS with client certificates when
    ``pki`` (:func:`make_pki`) is given; with ``users`` (agent name -> group, password), a user
    and role for each and access control on, ``root`` having ``root_password``."""
    from dysco.runtime.fleet import Layout, Store, parse_url
    from dysco.runtime.fleet._access import enable, grant_agent
    from dysco.runtime.fleet._store import read_tls

    shutil.rmtree(data, ignore_errors=True)
    if len(ports) == 2:
        one = EtcdProcess(data, ports[0], ports[1], log=log, pki=pki)
        one.__enter__()
        members = [one]
    else:
        members = start_cluster(data, ports, log, pki)
    tls = read_tls(*client_tls(pki)[1::2]) if pki is not None else None
    url = ",".join(m.url for m in members)

    async def put() -> None:
        async with Store(parse_url(url, tls=tls)) as store:
            for key, text in keys.items():
                await store.put(Layout().key(key), text.encode())
            if users is not None:
                for name, (group, password) in users.items():
                    await grant_agent(store, Layout(), name, group, password)
                await enable(store, root_password)

    try:
        asyncio.run(put())
    except BaseException:
        for m in members:
            m.__exit__()
        raise
    return members


def make_key_file(path: Path) -> dict[str, str]:
    """The agents' key file (one random key, current; mode 600) at ``path``, and the same ring
    as the fleet's ``keys/ring`` (key -> value, for :func:`start_etcd`)."""
    from dysco.runtime.core._auth import KeyRing
    from dysco.runtime.fleet._keys import encode

    ring = KeyRing({1: secrets.token_bytes(32)}, 1)
    path.write_text(ring.dumps())
    path.chmod(0o600)
    return {"keys/ring": encode(ring).decode()}


def make_users(d: Path, agents: dict[str, str]) -> tuple[dict[str, tuple[str, str]], str]:
    """A random password per agent (name -> group) and for root, each in a file of ``d`` (mode
    600) named by the user: agent -> (group, password), and root's password."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700)
    users: dict[str, tuple[str, str]] = {}
    for name, group in [("root", ""), *agents.items()]:
        password = secrets.token_hex(16)
        (d / name).write_text(password + "\n")
        (d / name).chmod(0o600)
        users[name] = (group, password)
    root = users.pop("root")[1]
    return users, root
