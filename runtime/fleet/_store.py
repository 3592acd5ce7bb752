"""The connection to etcd: aetcd (asyncio, gRPC) behind a few typed calls, and its failures as
two errors of ours: :class:`Unavailable` (etcd cannot be reached or answered wrong: try again
later) and :class:`Compacted` (a watch asked for history etcd no longer keeps: read afresh).

``--etcd URL`` is ``http://HOST:PORT`` (one member; the agent reconnects to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aetcd
import aetcd.rpc
import aetcd.utils
import aetcd.watcher
import grpc

from dysco.errors import DyscoError, UserError

RPC_TIMEOUT_S = 2
"""Every request to etcd (a watch excepted) fails after this long."""
CHANNEL_OPTIONS = {"grpc.use_local_subchannel_pool": 1, "grpc.initial_reconnect_backoff_ms": 100}
"""gRPC shares connections (and their reconnection backoff) between channels to the same
address: a new connection after etcd came back would fail at once with the old error."""


class Unavailable(DyscoError):
    """etcd could not be reached, or the request failed there."""


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
class Endpoint:
    host: str
    port: int
    tls: Tls | None = None

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


def parse_url(url: str, flag: str = "--etcd", tls: Tls | None = None) -> Endpoint:
    """``http://HOST:PORT``, or ``https://HOST:PORT`` with ``tls`` (the port defaults to 2379)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise UserError(f"{flag} {url!r}: expected http://HOST:PORT, e.g. http://127.0.0.1:2379")
    if (parts.scheme == "https") != (tls is not None):
        raise UserError(f"{flag} {url!r}: https goes with --etcd-ca (and http without it)")
    try:
        port = parts.port or 2379
    except ValueError:
        raise UserError(f"{flag} {url!r}: bad port") from None
    return Endpoint(parts.hostname, port, tls)


def endpoint_of(args: Any) -> Endpoint:
    """The etcd of a command's ``--etcd`` and ``--etcd-ca``, ``--etcd-cert``, ``--etcd-key``."""
    return parse_url(args.etcd, tls=read_tls(args.etcd_ca, args.etcd_cert, args.etcd_key))


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
    """One connection to etcd; ``async with Store(endpoint) as store``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._client: Any = aetcd.Client(
            host=endpoint.host, port=endpoint.port, timeout=RPC_TIMEOUT_S, options=CHANNEL_OPTIONS
        )

    async def __aenter__(self) -> Store:
        try:
            if self.endpoint.tls is not None:
                self._secure(self.endpoint.tls)
            await self._client.connect()
            await self._client.get(b"/")  # the channel connects lazily: fail here, not later
        except aetcd.ClientError as exc:
            await self.close()
            raise Unavailable(f"etcd at {self.endpoint}: {_reason(exc)}") from None
        return self

    def _secure(self, tls: Tls) -> None:
        """aetcd 1.0 opens plain-text channels only: give its client a TLS channel and the
        stubs on it (the attributes its ``connect`` sets), so ``connect`` finds it connected."""
        c = self._client
        creds = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
        target = f"{self.endpoint.host}:{self.endpoint.port}"
        c.channel = grpc.aio.secure_channel(target, creds, options=list(CHANNEL_OPTIONS.items()))
        c.kvstub = aetcd.rpc.KVStub(c.channel)
        c.clusterstub = aetcd.rpc.ClusterStub(c.channel)
        c.leasestub = aetcd.rpc.LeaseStub(c.channel)
        c.maintenancestub = aetcd.rpc.MaintenanceStub(c.channel)
        c._watcher = aetcd.watcher.Watcher(aetcd.rpc.WatchStub(c.channel), timeout=RPC_TIMEOUT_S)
        c._connected.set()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; a close that does not finish in time is abandoned (the process
        goes on without that connection)."""
        with contextlib.suppress(TimeoutError, aetcd.ClientError):
            async with asyncio.timeout(RPC_TIMEOUT_S):
                await self._client.close()

    async def get_prefix(self, prefix: bytes) -> tuple[int, list[Entry]]:
        """The store's revision and every key under ``prefix``."""
        r = await self._call("get_prefix", prefix)
        return int(r.header.revision), [Entry(kv.key, kv.value, kv.mod_revision) for kv in r.kvs]

    async def get(self, key: bytes) -> Entry | None:
        r = await self._call("get", key)
        return None if r is None else Entry(key, r.value, r.mod_revision)

    async def put(self, key: bytes, value: bytes, lease: int | None = None) -> int:
        """The revision of the write."""
        r = await self._call("put", key, value, lease=lease)
        return int(r.header.revision)

    async def create(self, key: bytes, value: bytes) -> bool:
        """Write ``key`` only if it does not exist (a transaction): True if this call wrote it."""
        t = self._client.transactions
        try:
            ok, _ = await self._client.transaction(
                compare=[t.create(key) == 0], success=[t.put(key, value)], failure=[]
            )
        except aetcd.ClientError as exc:
            raise Unavailable(f"etcd at {self.endpoint}: create: {_reason(exc)}") from None
        return bool(ok)

    async def delete(self, key: bytes) -> bool:
        r = await self._call("delete", key)
        return r is not None

    async def compact(self, revision: int) -> None:
        """Drop the history before ``revision`` (watches from earlier fail: :class:`Compacted`)."""
        await self._call("compact", revision)

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        lease = await self._call("lease", ttl)
        return int(lease.id)

    async def keep_alive(self, lease: int) -> int:
        """Refresh ``lease``; its remaining TTL (0 or less: it has expired)."""
        reply = await self._call("refresh_lease", lease)
        return int(reply.TTL) if reply is not None else 0

    async def history_kept(self, start: int) -> bool:
        """Whether etcd still has revision ``start`` (a watch from it is not compacted away).
        Asked before watching from an old revision: aetcd takes a compacted watch's answer only
        after its request times out."""
        current, _ = await self.get_prefix(b"\0")
        if start > current:
            return True
        request = aetcd.rpc.RangeRequest(key=b"\0", revision=start, count_only=True)
        try:
            await self._client.kvstub.Range(request, timeout=RPC_TIMEOUT_S, metadata=self._client.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE:  # "required revision has been compacted"
                return False
            raise Unavailable(f"etcd at {self.endpoint}: range at {start}: {exc.details()}") from None
        return True

    async def watch_prefix(self, prefix: bytes, start: int) -> AsyncIterator[Change]:
        """The changes under ``prefix`` from revision ``start`` on, until the connection fails
        (:class:`Unavailable`) or etcd no longer has ``start`` (:class:`Compacted`).

        One Watch RPC of its own per watch, on aetcd's channel and generated stubs: aetcd's
        shared watcher holds a lock while it waits for room in its bounded request queue, and a
        watch broken at the wrong moment left a task that could not be cancelled."""
        stub = aetcd.rpc.WatchStub(self._client.channel)
        create = aetcd.rpc.WatchCreateRequest(
            key=prefix, range_end=aetcd.utils.prefix_range_end(prefix), start_revision=start
        )
        call = stub.Watch(metadata=self._client.metadata)
        try:
            await call.write(aetcd.rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise Unavailable(f"etcd at {self.endpoint}: the watch ended")
                if response.compact_revision:
                    raise Compacted(int(response.compact_revision))
                if response.canceled:
                    raise Unavailable(f"etcd at {self.endpoint}: watch canceled: {response.cancel_reason}")
                for event in response.events:
                    kv = event.kv
                    deleted = event.type == aetcd.rpc.Event.DELETE
                    yield Change(kv.key, None if deleted else kv.value, kv.mod_revision)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"etcd at {self.endpoint}: watch: {exc.details() or exc.code().name}") from None
        finally:
            call.cancel()

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, method)(*args, **kwargs)
        except aetcd.ClientError as exc:
            raise Unavailable(f"etcd at {self.endpoint}: {method}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.split("; last error: ")[-1]
