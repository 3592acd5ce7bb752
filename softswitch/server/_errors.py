"""P4Runtime error values and their gRPC encodings, as PI/bmv2 produce them.

:class:`P4RuntimeError` is a refusal with a google.rpc code *name* (the same names
:class:`dysco.softswitch.api.EntryError` carries).  A whole-RPC failure becomes the
gRPC status; per-update Write failures are collected and reported as PI does: gRPC
``UNKNOWN`` with trailing metadata ``grpc-status-details-bin`` holding a
``google.rpc.Status`` whose details are ``Any(p4.v1.Error)``, one per update up to
the last failing one (successes as ``code = OK``).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from dysco.errors import PeerError
from dysco.proto.p4.v1 import p4runtime_pb2

ERROR_SPACE = "ALL-sswitch-p4org"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
NO_PIPELINE = "No forwarding pipeline config set for this device"
NOT_PRIMARY = "Not primary"


class P4RuntimeError(PeerError):
    """A P4Runtime request the server refuses; ``code`` is a google.rpc code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        if code not in code_pb2.Code.keys():  # noqa: SIM118 (an enum wrapper, not a dict)
            raise ValueError(f"unknown google.rpc code {code!r}")
        self.code = code
        self.message = message

    def grpc_code(self) -> grpc.StatusCode:
        return grpc_status_code(self.code)


def grpc_status_code(name: str) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` with the given google.rpc code name."""
    return grpc.StatusCode[name]


def rpc_code_value(name: str) -> int:
    value: int = code_pb2.Code.Value(name)
    return value


def no_pipeline() -> P4RuntimeError:
    return P4RuntimeError("FAILED_PRECONDITION", NO_PIPELINE)


def not_primary() -> P4RuntimeError:
    return P4RuntimeError("PERMISSION_DENIED", NOT_PRIMARY)


TRAILER_BUDGET = 6_000
"""Bytes the serialized details may take.  They travel as binary trailing metadata, base64 on
the wire (4/3), and gRPC clients refuse metadata over 8 KB (a soft limit, some of the time) or
16 KB (always): 6,000 bytes stay under both."""
MESSAGE_CAP = 200
"""Characters of a message kept when the details are compacted (and of the summary)."""
COMPACT_TYPE_URL = "/p4.v1.Error"
"""A shorter type URL that Any.Unpack still resolves (it reads the name after the last '/')."""


def write_status(results: Sequence[P4RuntimeError | None]) -> status_pb2.Status | None:
    """The google.rpc.Status for a Write with these per-update results (None = success).

    Returns None when every update succeeded.  One detail per update up to the last failing
    one, as the spec asks; when they would not fit the trailer (``TRAILER_BUDGET``) they are
    compacted step by step (short type URL and no error space, then messages cut to
    ``MESSAGE_CAP``, then codes alone), and if even the codes alone do not fit, the details stop
    where the budget ends and the status message says how many are left out.
    """
    last = max((i for i, r in enumerate(results) if r is not None), default=-1)
    if last < 0:
        return None
    summary = _summary(results)
    for compact, cap in ((False, None), (True, None), (True, MESSAGE_CAP), (True, 0)):
        status = status_pb2.Status(code=code_pb2.UNKNOWN, message=summary)
        for result in results[: last + 1]:
            status.details.append(_detail(result, compact, cap))
        if status.ByteSize() <= TRAILER_BUDGET:
            return status
    status = status_pb2.Status(code=code_pb2.UNKNOWN)
    size = 0
    for result in results[: last + 1]:
        detail = _detail(result, True, 0)
        size += detail.ByteSize() + 3  # the field's tag and length
        if size > TRAILER_BUDGET:
            break
        status.details.append(detail)
    status.message = (
        f"{summary}; details of the first {len(status.details)} of {last + 1} updates only "
        "(the rest do not fit gRPC's metadata limit)"
    )
    return status


def _detail(result: P4RuntimeError | None, compact: bool, cap: int | None) -> any_pb2.Any:
    error = p4runtime_pb2.Error()
    if result is None:
        error.code = code_pb2.OK
    else:
        error.canonical_code = rpc_code_value(result.code)
        error.message = result.message if cap is None else result.message[:cap]
        if not compact:
            error.space = ERROR_SPACE
    detail = any_pb2.Any()
    if compact:
        detail.type_url = COMPACT_TYPE_URL
        detail.value = error.SerializeToString()
    else:
        detail.Pack(error)
    return detail


def _summary(results: Sequence[P4RuntimeError | None]) -> str:
    failed = [r for r in results if r is not None]
    first = failed[0]
    text = f"{len(failed)} of {len(results)} updates failed; first: {first.code}, {first.message}"
    return text if len(text) <= MESSAGE_CAP else text[: MESSAGE_CAP - 3] + "..."
