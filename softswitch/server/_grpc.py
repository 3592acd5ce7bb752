"""The gRPC face of the server: a ``p4.v1.P4Runtime`` servicer over :class:`SwitchCore`.

StreamChannel runs on a gRPC worker thread that drains the stream's outbox; a
reader thread per stream (named ``p4rt-stream-N``, owned by that RPC and joined when
it ends) feeds incoming messages to the core.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server._core import (
    API_VERSION,
    StreamAbort,
    StreamClosed,
    StreamHandle,
    SwitchCore,
)
from dysco.softswitch.server._errors import STATUS_DETAILS_KEY, P4RuntimeError, write_status

_log = logging.getLogger("dysco.softswitch.server.grpc")

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_STREAMS = 16
"""Open streams beyond this many are refused, so they cannot starve the worker pool."""


class P4RuntimeServicer(p4runtime_pb2_grpc.P4RuntimeServicer):  # type: ignore[misc]
    def __init__(self, core: SwitchCore) -> None:
        self._core = core

    def Write(self, request: p4runtime_pb2.WriteRequest, context: grpc.ServicerContext) -> Any:
        try:
            results = self._core.write(request)
        except P4RuntimeError as exc:
            context.abort(exc.grpc_code(), exc.message)
        status = write_status(results)
        if status is not None:
            context.set_trailing_metadata(((STATUS_DETAILS_KEY, status.SerializeToString()),))
            context.abort(grpc.StatusCode.UNKNOWN, status.message)
        return p4runtime_pb2.WriteResponse()

    def Read(self, request: p4runtime_pb2.ReadRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            reply = self._core.read(request)
        except P4RuntimeError as exc:
            context.abort(exc.grpc_code(), exc.message)
        yield reply

    def SetForwardingPipelineConfig(
        self, request: p4runtime_pb2.SetForwardingPipelineConfigRequest, context: grpc.ServicerContext
    ) -> Any:
        try:
            self._core.set_pipeline(request)
        except P4RuntimeError as exc:
            context.abort(exc.grpc_code(), exc.message)
        return p4runtime_pb2.SetForwardingPipelineConfigResponse()

    def GetForwardingPipelineConfig(
        self, request: p4runtime_pb2.GetForwardingPipelineConfigRequest, context: grpc.ServicerContext
    ) -> Any:
        try:
            return self._core.get_pipeline(request)
        except P4RuntimeError as exc:
            context.abort(exc.grpc_code(), exc.message)

    def Capabilities(self, request: p4runtime_pb2.CapabilitiesRequest, context: grpc.ServicerContext) -> Any:
        return p4runtime_pb2.CapabilitiesResponse(p4runtime_api_version=API_VERSION)

    def StreamChannel(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            handle = self._core.open_stream(limit=MAX_STREAMS)
        except P4RuntimeError as exc:
            context.abort(exc.grpc_code(), exc.message)
        context.add_callback(lambda: handle.outbox.put(StreamClosed()))
        reader = threading.Thread(
            target=self._read_stream,
            args=(handle, request_iterator),
            name=f"p4rt-stream-{handle.stream_id}",
            daemon=True,
        )
        reader.start()
        _log.info("[p4runtime] stream %d opened by %s", handle.stream_id, context.peer())
        try:
            while True:
                item = handle.outbox.get()
                if isinstance(item, StreamClosed):
                    break
                if isinstance(item, StreamAbort):
                    context.abort(item.error.grpc_code(), item.error.message)
                yield item
        finally:
            self._core.close_stream(handle)
            _log.info("[p4runtime] stream %d closed", handle.stream_id)

    def _read_stream(self, handle: StreamHandle, requests: Iterator[Any]) -> None:
        try:
            for msg in requests:
                try:
                    self._core.stream_message(handle, msg)
                except P4RuntimeError as exc:
                    handle.outbox.put(StreamAbort(exc))
                    return
                except Exception:
                    _log.exception("[p4runtime] stream %d: message handling failed (bug)", handle.stream_id)
                    handle.outbox.put(StreamAbort(P4RuntimeError("INTERNAL", "softswitch bug; see its log")))
                    return
        except grpc.RpcError:
            pass  # the peer went away; the RPC callback ends the stream
        except Exception:
            _log.exception("[p4runtime] stream %d: reading failed", handle.stream_id)
        handle.outbox.put(StreamClosed())


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """P4Runtime over TLS: the server's certificate chain and key (PEM), and for client
    authentication the CA certificates clients must present a certificate from."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def make_grpc_server(core: SwitchCore, address: str, tls: TlsConfig | None = None) -> tuple[grpc.Server, int]:
    """A started-not-yet gRPC server serving ``core`` on ``address`` (over TLS when ``tls`` is
    given); returns it and the bound port."""
    pool = futures.ThreadPoolExecutor(max_workers=MAX_STREAMS + 8, thread_name_prefix="p4rt-rpc")
    server = grpc.server(
        pool,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=None,
    )
    p4runtime_pb2_grpc.add_P4RuntimeServicer_to_server(P4RuntimeServicer(core), server)
    port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port
