"""The ``@controller_header`` conversions the server does for packet-in and packet-out.

A controller header is the concatenation of its fields in declaration order,
most significant bit first, padded with zero bits to a whole number of bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.server._errors import P4RuntimeError
from dysco.softswitch.server._schema import ControllerHeader, decode_bytes, encode_bytes


def split_packet_in(header: ControllerHeader | None, frame: bytes) -> p4runtime_pb2.PacketIn:
    """The PacketIn for a frame the device sent to the CPU port (header stripped)."""
    msg = p4runtime_pb2.PacketIn()
    if header is None:
        msg.payload = frame
        return msg
    n = header.nbytes
    if len(frame) < n:
        raise P4RuntimeError(
            "INTERNAL", f"frame of {len(frame)} bytes is shorter than the {n}-byte packet_in header"
        )
    bits = int.from_bytes(frame[:n], "big") >> (8 * n - header.bits)
    shift = header.bits
    for f in header.fields:
        shift -= f.bitwidth
        value = (bits >> shift) & ((1 << f.bitwidth) - 1)
        msg.metadata.add(metadata_id=f.id, value=encode_bytes(value))
    msg.payload = frame[n:]
    return msg


def build_packet_out(
    header: ControllerHeader | None, metadata: Iterable[p4runtime_pb2.PacketMetadata], payload: bytes
) -> bytes:
    """The frame to inject on the CPU port: packet_out header (missing fields 0) + payload."""
    items = list(metadata)
    if header is None:
        if items:
            raise P4RuntimeError(
                "INVALID_ARGUMENT", "PacketOut has metadata but the program has no packet_out header"
            )
        return payload
    values: dict[int, int] = {}
    for m in items:
        info = next((f for f in header.fields if f.id == m.metadata_id), None)
        if info is None:
            raise P4RuntimeError("INVALID_ARGUMENT", f"packet_out: invalid metadata id {m.metadata_id}")
        if m.metadata_id in values:
            raise P4RuntimeError("INVALID_ARGUMENT", f"packet_out: metadata {info.name} given twice")
        values[m.metadata_id] = decode_bytes(m.value, info.bitwidth, f"packet_out metadata {info.name}")
    bits = 0
    for f in header.fields:
        bits = (bits << f.bitwidth) | values.get(f.id, 0)
    n = header.nbytes
    bits <<= 8 * n - header.bits
    return bits.to_bytes(n, "big") + payload
