"""A P4Runtime proxy for tests: passes every call through to a real target, can hold ``Write``
calls until the test lets them go, and logs the stream's packet-outs and packet-ins and the
Writes' answers in the order it saw them.

With it a test plays a target whose writes are slow (or reordered against the stream, which
P4Runtime allows) without changing the target: the agent cannot tell it from a slow switch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from dysco.proto.p4.v1 import p4runtime_pb2

SERVICE = "/p4.v1.P4Runtime/"
UNARY = ("Write", "SetForwardingPipelineConfig", "GetForwardingPipelineConfig", "Capabilities")


@dataclass(frozen=True)
class Seen:
    """One thing the proxy passed on: ``kind`` is ``packet_out``, ``packet_in`` or
    ``write_answered``; ``fields`` the packet's metadata by id."""

    kind: str
    fields: dict[int, int]
    payload: bytes = b""


class HoldingProxy:
    def __init__(self, target: str) -> None:
        self.target = target
        self.log: list[Seen] = []
        self.held = 0
        """Writes waiting for :meth:`release`."""
        self._open = asyncio.Event()
        self._open.set()
        self._changed = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self.address = ""

    async def __aenter__(self) -> HoldingProxy:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Handler(self),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open.set()
        if self._server is not None:
            await self._server.stop(grace=None)
        if self._channel is not None:
            await self._channel.close()

    def hold(self) -> None:
        """Writes from now on wait until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _seen(self, item: Seen | None = None) -> None:
        async with self._changed:
            if item is not None:
                self.log.append(item)
            self._changed.notify_all()

    # ---- the calls ------------------------------------------------------------------------------

    async def unary(self, method: str, request: bytes, context: Any) -> bytes:
        assert self._channel is not None
        if method == "Write":
            self.held += 1
            await self._seen()
            await self._open.wait()
            self.held -= 1
        call = self._channel.unary_unary(SERVICE + method)
        try:
            answer: bytes = await call(request)
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "")
            raise
        if method == "Write":
            await self._seen(Seen("write_answered", {}))
        return answer

    async def read(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        assert self._channel is not None
        async for answer in self._channel.unary_stream(SERVICE + "Read")(request):
            yield answer

    async def stream(self, requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        assert self._channel is not None
        upstream = self._channel.stream_stream(SERVICE + "StreamChannel")()

        async def pump() -> None:
            async for raw in requests:
                msg = p4runtime_pb2.StreamMessageRequest.FromString(raw)
                if msg.WhichOneof("update") == "packet":
                    fields = {m.metadata_id: int.from_bytes(m.value, "big") for m in msg.packet.metadata}
                    await self._seen(Seen("packet_out", fields, msg.packet.payload))
                await upstream.write(raw)
            await upstream.done_writing()

        pumping = asyncio.create_task(pump(), name="proxy-pump")
        try:
            async for raw in upstream:
                msg = p4runtime_pb2.StreamMessageResponse.FromString(raw)
                if msg.WhichOneof("update") == "packet":
                    fields = {m.metadata_id: int.from_bytes(m.value, "big") for m in msg.packet.metadata}
                    await self._seen(Seen("packet_in", fields, msg.packet.payload))
                yield raw
        finally:
            pumping.cancel()
            upstream.cancel()


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: HoldingProxy) -> None:
        self.proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = str(details.method)
        if not method.startswith(SERVICE):
            return None
        name = method.removeprefix(SERVICE)
        p = self.proxy
        if name in UNARY:

            async def unary(request: bytes, context: Any) -> bytes:
                return await p.unary(name, request, context)

            return grpc.unary_unary_rpc_method_handler(unary)
        if name == "Read":
            return grpc.unary_stream_rpc_method_handler(p.read)
        if name == "StreamChannel":
            return grpc.stream_stream_rpc_method_handler(p.stream)
        return None
