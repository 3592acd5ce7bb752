"""The connection to etcd: its generated gRPC stubs (from aetcd) behind a few typed calls, and
its failures as three errors of ours: :class:`Unavailable` (etcd cannot be reached or answered
wrong: try again later), :class:`Compacted` (a watch asked for history etcd no longer keeps: read
afresh) and :class:`Denied` (etcd's access control refused the request or the credentials).

``--etcd URL[,URL...]`` is ``http://HOST:PORT`` (or https), one per member of the cluster: the
channel goes to the first that answers and on to the next when it fails (gRPC's pick_first over
the list).  ``--etcd-user NAME --etcd-password-file FILE``: an etcd with access control on.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aetcd.rpc
import aetcd.utils
import grpc

from dysco.errors import DyscoError, UserError

RPC_TIMEOUT_S = 2
"""Every request to etcd (a watch excepted) fails after this long."""
CHANNEL_OPTIONS = {"grpc.use_local_subchannel_pool": 1, "grpc.initial_reconnect_backoff_ms": 100}
"""gRPC shares connections (and their reconnection backoff) between channels to the same
address: a new connection after etcd came back would fail at once with the old error."""


class Unavailable(DyscoError):
    """etcd could not be reached, or the request failed there."""


class Denied(Unavailable):
    """etcd's access control refused the credentials or the request (a key outside this
    client's permissions)."""


class Compacted(DyscoError):
    """A watch started below etcd's compaction revision."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"etcd compacted its history up to revision {revision}")
        self.revision = revision


@dataclass(frozen=True, slots=True)
class Tls:
    """etcd over TLS: the CA certificates that sign etcd's, and this client's certificate and
    key (PEM) when etcd asks for one (``--client-cert-auth``)."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class User:
    """An etcd user and its password (etcd's access control: docs/security.md)."""

    name: str
    password: str = ""

    def __repr__(self) -> str:
        return f"User({self.name!r})"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The members of one etcd cluster (host, port), and how to speak to them."""

    members: tuple[tuple[str, int], ...]
    tls: Tls | None = None
    user: User | None = None

    def __str__(self) -> str:
        scheme = "https" if self.tls else "http"
        return ",".join(f"{scheme}://{h}:{p}" for h, p in self.members)

    @property
    def target(self) -> str:
        """The gRPC target: one address, or gRPC's list of IPv4 addresses."""
        if len(self.members) == 1:
            return f"{self.members[0][0]}:{self.members[0][1]}"
        return "ipv4:" + ",".join(f"{h}:{p}" for h, p in self.members)

    def with_user(self, user: User | None) -> Endpoint:
        return Endpoint(self.members, self.tls, user)


def parse_url(url: str, flag: str = "--etcd", tls: Tls | None = None, user: User | None = None) -> Endpoint:
    """``http://HOST:PORT``, or ``https://HOST:PORT`` with ``tls`` (the port defaults to 2379);
    several, comma-separated, for the members of a cluster (IPv4 addresses then)."""
    members = []
    for one in url.split(","):
        parts = urllib.parse.urlsplit(one)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise UserError(f"{flag} {url!r}: expected http://HOST:PORT, e.g. http://127.0.0.1:2379")
        if (parts.scheme == "https") != (tls is not None):
            raise UserError(f"{flag} {url!r}: https goes with --etcd-ca (and http without it)")
        try:
            port = parts.port or 2379
        except ValueError:
            raise UserError(f"{flag} {url!r}: bad port") from None
        members.append((parts.hostname, port))
    if len(members) > 1 and not all(_ipv4(h) for h, _ in members):
        raise UserError(f"{flag} {url!r}: the members of a cluster are given by IPv4 address")
    return Endpoint(tuple(members), tls, user)


def _ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


def endpoint_of(args: Any) -> Endpoint:
    """The etcd of a command's ``--etcd``, ``--etcd-ca``, ``--etcd-cert``, ``--etcd-key``,
    ``--etcd-user`` and ``--etcd-password-file``."""
    tls = read_tls(args.etcd_ca, args.etcd_cert, args.etcd_key)
    return parse_url(args.etcd, tls=tls, user=read_user(args.etcd_user, args.etcd_password_file))


def read_user(name: str | None, password_file: str | None) -> User | None:
    """The user of ``--etcd-user`` with the password in ``--etcd-password-file`` (its first
    line); None without them."""
    if name is None:
        if password_file:
            raise UserError("--etcd-password-file is for --etcd-user")
        return None
    if not password_file:
        raise UserError(
            "--etcd-user needs --etcd-password-file (the password is not given on the command line)"
        )
    try:
        text = Path(password_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {password_file}: {exc}") from None
    password = text.split("\n", 1)[0].strip()
    if not password:
        raise UserError(f"{password_file}: no password on its first line")
    return User(name, password)


def read_tls(ca: str | None, cert: str | None, key: str | None) -> Tls | None:
    """The files of ``--etcd-ca``, ``--etcd-cert`` and ``--etcd-key``, read now (None: no TLS)."""
    if ca is None:
        if cert or key:
            raise UserError("--etcd-cert and --etcd-key need --etcd-ca")
        return None
    if bool(cert) != bool(key):
        raise UserError("--etcd-cert and --etcd-key go together")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None

    data = read(ca)
    assert data is not None
    return Tls(data, read(cert), read(key))


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's value and the revision that last changed it."""

    key: bytes
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a watch: ``value`` None for a deletion."""

    key: bytes
    value: bytes | None
    revision: int


class Store:
    """One connection to etcd; ``async with Store(endpoint) as store``.

    The requests go through etcd's generated gRPC stubs (aetcd's): aetcd's own calls return
    None for the errors it does not know, "permission denied" among them, which would read as
    "no such key".  ``probe`` is a key this client may read: the connection is tried on it
    (with access control on, an agent reads only its own keys)."""

    def __init__(self, endpoint: Endpoint, probe: bytes = b"/") -> None:
        self.endpoint = endpoint
        self.probe = probe
        self._channel: Any = None
        self._metadata: Any = None
        self._kv: Any = None
        self._lease: Any = None
        self._auth: Any = None

    async def __aenter__(self) -> Store:
        e = self.endpoint
        options = list(CHANNEL_OPTIONS.items())
        if e.tls is not None:
            creds = grpc.ssl_channel_credentials(e.tls.ca, e.tls.key, e.tls.cert)
            self._channel = grpc.aio.secure_channel(e.target, creds, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(e.target, options=options)
        self._kv = aetcd.rpc.KVStub(self._channel)
        self._lease = aetcd.rpc.LeaseStub(self._channel)
        self._auth = aetcd.rpc.AuthStub(self._channel)
        try:
            if e.user is not None:
                request = aetcd.rpc.AuthenticateRequest(name=e.user.name, password=e.user.password)
                reply = await self._rpc("authenticate", self._auth.Authenticate, request)
                self._metadata = (("token", reply.token),)
            await self.get(self.probe)  # the channel connects lazily: fail here, not later
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; a close that does not finish in time is abandoned (the process
        goes on without that connection)."""
        if self._channel is None:
            return
        channel, self._channel = self._channel, None
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(RPC_TIMEOUT_S):
                await channel.close()

    async def _rpc(self, what: str, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=RPC_TIMEOUT_S, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.endpoint, what, exc) from None

    async def _range(self, key: bytes, end: bytes = b"", **more: Any) -> Any:
        request = aetcd.rpc.RangeRequest(key=key, range_end=end, **more)
        return await self._rpc(f"read {key.decode(errors='replace')}", self._kv.Range, request)

    async def get_prefix(self, prefix: bytes) -> tuple[int, list[Entry]]:
        """The store's revision and every key under ``prefix``."""
        r = await self._range(prefix, aetcd.utils.prefix_range_end(prefix))
        return int(r.header.revision), [Entry(kv.key, kv.value, kv.mod_revision) for kv in r.kvs]

    async def get(self, key: bytes) -> Entry | None:
        r = await self._range(key)
        return Entry(key, r.kvs[0].value, r.kvs[0].mod_revision) if r.kvs else None

    async def get_keys(self, keys: Sequence[bytes]) -> tuple[int, list[Entry]]:
        """The keys that exist of ``keys``, read at one revision (returned)."""
        revision = 0
        found: list[Entry] = []
        for key in keys:
            r = await self._range(key, revision=revision)
            revision = revision or int(r.header.revision)
            found += [Entry(kv.key, kv.value, kv.mod_revision) for kv in r.kvs]
        if not keys:
            revision = int((await self._range(self.probe)).header.revision)
        return revision, found

    async def put(self, key: bytes, value: bytes, lease: int | None = None) -> int:
        """The revision of the write."""
        request = aetcd.rpc.PutRequest(key=key, value=value, lease=lease or 0)
        r = await self._rpc(f"write {key.decode(errors='replace')}", self._kv.Put, request)
        return int(r.header.revision)

    async def create(self, key: bytes, value: bytes) -> bool:
        """Write ``key`` only if it does not exist (a transaction): True if this call wrote it."""
        request = aetcd.rpc.TxnRequest(
            compare=[aetcd.rpc.Compare(key=key, target=aetcd.rpc.Compare.CREATE, create_revision=0,
                                       result=aetcd.rpc.Compare.EQUAL)],
            success=[aetcd.rpc.RequestOp(request_put=aetcd.rpc.PutRequest(key=key, value=value))],
        )  # fmt: skip
        r = await self._rpc(f"create {key.decode(errors='replace')}", self._kv.Txn, request)
        return bool(r.succeeded)

    async def delete(self, key: bytes) -> bool:
        request = aetcd.rpc.DeleteRangeRequest(key=key)
        r = await self._rpc(f"delete {key.decode(errors='replace')}", self._kv.DeleteRange, request)
        return bool(r.deleted)

    async def compact(self, revision: int) -> None:
        """Drop the history before ``revision`` (watches from earlier fail: :class:`Compacted`)."""
        await self._rpc("compact", self._kv.Compact, aetcd.rpc.CompactionRequest(revision=revision))

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        r = await self._rpc("lease", self._lease.LeaseGrant, aetcd.rpc.LeaseGrantRequest(TTL=ttl))
        return int(r.ID)

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL (0 or less: it has expired)."""
        call = self._lease.LeaseKeepAlive(metadata=self._metadata)
        try:
            async with asyncio.timeout(RPC_TIMEOUT_S):
                await call.write(aetcd.rpc.LeaseKeepAliveRequest(ID=lease))
                reply = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise _error(self.endpoint, "lease keep-alive", exc) from None
        except TimeoutError:
            raise Unavailable(f"etcd at {self.endpoint}: lease keep-alive: no answer") from None
        finally:
            call.cancel()
        return 0 if reply is grpc.aio.EOF else int(reply.TTL)

    async def history_kept(self, start: int) -> bool:
        """Whether etcd still has revision ``start`` (a watch from it is not compacted away).
        Asked before watching from an old revision: a compacted watch's answer can take long."""
        current = int((await self._range(self.probe)).header.revision)
        if start > current:
            return True
        try:
            await self._range(self.probe, revision=start, count_only=True)
        except Compacted:
            return False
        return True

    async def auth(self, what: str, method: str, request: Any) -> Any:
        """An Auth RPC (``method`` of etcd's Auth service: UserAdd, RoleGrantPermission, ...)."""
        return await self._rpc(what, getattr(self._auth, method), request)

    async def watch_prefix(self, prefix: bytes, start: int) -> AsyncGenerator[Change, None]:
        """The changes under ``prefix`` from revision ``start`` on (see :meth:`watch`)."""
        async for change in self.watch(prefix, start, aetcd.utils.prefix_range_end(prefix)):
            yield change

    async def watch(self, key: bytes, start: int, end: bytes = b"") -> AsyncGenerator[Change, None]:
        """The changes of ``key`` (of the range ``key``-``end`` when given) from revision
        ``start`` on, until the connection fails (:class:`Unavailable`) or etcd no longer has
        ``start`` (:class:`Compacted`).  One Watch RPC of its own per watch."""
        stub = aetcd.rpc.WatchStub(self._channel)
        create = aetcd.rpc.WatchCreateRequest(key=key, range_end=end, start_revision=start)
        call = stub.Watch(metadata=self._metadata)
        try:
            await call.write(aetcd.rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise Unavailable(f"etcd at {self.endpoint}: the watch ended")
                if response.compact_revision:
                    raise Compacted(int(response.compact_revision))
                if response.canceled:
                    why = response.cancel_reason.split("desc = ", 1)[-1]
                    if "permission denied" in why:
                        raise Denied(f"etcd at {self.endpoint}: watch {key.decode(errors='replace')}: {why}")
                    raise Unavailable(f"etcd at {self.endpoint}: watch canceled: {why}")
                for event in response.events:
                    kv = event.kv
                    deleted = event.type == aetcd.rpc.Event.DELETE
                    yield Change(kv.key, None if deleted else kv.value, kv.mod_revision)
        except grpc.aio.AioRpcError as exc:
            raise _error(self.endpoint, "watch", exc) from None
        finally:
            call.cancel()


def _error(endpoint: Endpoint, what: str, exc: grpc.aio.AioRpcError) -> DyscoError:
    """Our error for a failed request: :class:`Denied` (permissions, credentials),
    :class:`Compacted`, or :class:`Unavailable`."""
    code, details = exc.code(), exc.details() or exc.code().name
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED) or (
        code == grpc.StatusCode.INVALID_ARGUMENT and "authentication failed" in details
    ):
        return Denied(f"etcd at {endpoint}: {what}: {details}")
    if code == grpc.StatusCode.INVALID_ARGUMENT and "user name is empty" in details:
        return Denied(f"etcd at {endpoint}: {what}: {details} (etcd has access control on: give --etcd-user)")
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
        return Compacted(0)
    return Unavailable(f"etcd at {endpoint}: {what}: {_reason(details)}")


def _reason(text: str) -> str:
    return text.strip().split("; last error: ")[-1]
