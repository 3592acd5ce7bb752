"""A small declarative byte layout: fields declared once, used to encode and to decode.

A :class:`Layout` is an ordered list of :class:`Field`; each field is a fixed-size,
network-byte-order unsigned integer (``B``, ``H``, ``I``) or a fixed-size byte string,
optionally with a constant value the decoder checks.  Variable parts of a message
(address lists, the authentication tag) are sequences of layouts whose counts and lengths
come from fields decoded before them; the message module says how (see ``_wire.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from dysco.errors import InternalError


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    fmt: str
    """``B`` / ``H`` / ``I`` (unsigned, network order) or ``Ns`` (N bytes)."""
    const: int | bytes | None = None
    """A value the field must have; the decoder reports a mismatch under this field's name."""


class LayoutMismatch(Exception):
    """A constant field has another value (internal: the message module turns it into a PeerError)."""

    def __init__(self, field: str, value: int | bytes) -> None:
        super().__init__(f"{field} = {value!r}")
        self.field = field
        self.value = value


class Layout:
    """Fixed-size group of fields; ``size`` bytes on the wire."""

    def __init__(self, *fields: Field) -> None:
        self.fields = fields
        self._struct = struct.Struct("!" + "".join(f.fmt for f in fields))
        self.size = self._struct.size
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise InternalError(f"duplicate field names in layout {names}")

    def pack(self, values: Mapping[str, int | bytes]) -> bytes:
        """Encode; constant fields may be omitted from ``values``."""
        out: list[int | bytes] = []
        for f in self.fields:
            if f.name in values:
                v = values[f.name]
            elif f.const is not None:
                v = f.const
            else:
                raise InternalError(f"layout field {f.name} has no value")
            out.append(v)
        try:
            return self._struct.pack(*out)
        except struct.error as exc:
            raise InternalError(f"cannot encode {dict(values)!r}: {exc}") from exc

    def unpack(self, data: bytes | memoryview, offset: int = 0) -> dict[str, int | bytes]:
        """Decode ``size`` bytes at ``offset`` (the caller checked there are enough).

        Raises :class:`LayoutMismatch` for a constant field with another value."""
        values = self._struct.unpack_from(data, offset)
        result: dict[str, int | bytes] = {}
        for f, v in zip(self.fields, values, strict=True):
            if f.const is not None and v != f.const:
                raise LayoutMismatch(f.name, v)
            result[f.name] = v
        return result

    def describe(self) -> list[tuple[int, int, str]]:
        """``(offset, size, name)`` per field, for documentation and tests."""
        rows = []
        offset = 0
        for f in self.fields:
            size = struct.calcsize("!" + f.fmt)
            rows.append((offset, size, f.name))
            offset += size
        return rows
