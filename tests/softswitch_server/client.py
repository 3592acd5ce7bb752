"""A raw P4Runtime test client: a stub plus StreamChannel sessions read on their own thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from google.rpc import status_pb2

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server._errors import STATUS_DETAILS_KEY

WAIT_S = 10.0
_END = object()


def election(eid: int) -> p4runtime_pb2.Uint128:
    return p4runtime_pb2.Uint128(high=eid >> 64, low=eid & ((1 << 64) - 1))


class Session:
    """One StreamChannel.  ``recv`` waits on a queue filled by the ``test-stream-reader`` thread."""

    def __init__(self, stub: p4runtime_pb2_grpc.P4RuntimeStub) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        self.responses: queue.Queue[Any] = queue.Queue()
        self._call = stub.StreamChannel(self._iter_requests())
        self.error: grpc.RpcError | None = None
        self._reader = threading.Thread(target=self._read, name="test-stream-reader", daemon=True)
        self._reader.start()

    def _iter_requests(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item

    def _read(self) -> None:
        try:
            for msg in self._call:
                self.responses.put(msg)
        except grpc.RpcError as exc:
            self.error = exc
        self.responses.put(_END)

    def send(self, msg: p4runtime_pb2.StreamMessageRequest) -> None:
        self._requests.put(msg)

    def arbitrate(self, eid: int, device_id: int = 0) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = device_id
        req.arbitration.election_id.CopyFrom(election(eid))
        self.send(req)

    def recv(self, timeout: float = WAIT_S) -> p4runtime_pb2.StreamMessageResponse:
        item = self.responses.get(timeout=timeout)
        if item is _END:
            raise EOFError(f"stream ended: {self.error}")
        return item

    def recv_kind(self, kind: str, timeout: float = WAIT_S) -> Any:
        msg = self.recv(timeout)
        assert msg.WhichOneof("update") == kind, f"expected {kind}, got {msg}"
        return getattr(msg, kind)

    def wait_end(self, timeout: float = WAIT_S) -> grpc.RpcError | None:
        """Wait for the stream to end; returns its error (None when it ended OK)."""
        while True:
            item = self.responses.get(timeout=timeout)
            if item is _END:
                return self.error

    def close(self) -> None:
        self._requests.put(_END)
        self._call.cancel()
        self._reader.join(timeout=WAIT_S)


def write_errors(exc: grpc.RpcError) -> list[p4runtime_pb2.Error]:
    """The per-update p4.v1.Error details of a failed Write."""
    for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            errors = []
            for detail in status.details:
                err = p4runtime_pb2.Error()
                assert detail.Unpack(err)
                errors.append(err)
            return errors
    raise AssertionError("no grpc-status-details-bin in the trailing metadata")
