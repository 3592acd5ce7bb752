"""A small ctypes binding to the system libpcap: compile a filter, run it on a frame.

Used as the oracle for filter semantics (tests) and as the reference point in the
compiler benchmark.  Needs Debian's ``libpcap0.8``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

from dysco.errors import UserError

_DLT_EN10MB = 1
_NETMASK_UNKNOWN = 0xFFFFFFFF


class _BpfProgram(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p))


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _PktHdr(ctypes.Structure):
    _fields_ = (("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32))


class PcapUnavailable(UserError):
    """libpcap is not installed."""


class PcapFilterError(UserError):
    """libpcap rejected a filter expression."""


@functools.cache
def _lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise PcapUnavailable(f"libpcap not found ({exc}); install the Debian package libpcap0.8") from exc
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    )
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_offline_filter.restype = ctypes.c_int
    lib.pcap_offline_filter.argtypes = (ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr), ctypes.c_char_p)
    lib.pcap_freecode.restype = None
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
    lib.pcap_close.restype = None
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


class PcapFilter:
    """A filter compiled by libpcap for Ethernet frames."""

    def __init__(self, expression: str, *, optimize: bool = True) -> None:
        lib = _lib()
        self._handle = lib.pcap_open_dead(_DLT_EN10MB, 65535)
        if not self._handle:
            raise PcapUnavailable("pcap_open_dead failed")
        self._prog = _BpfProgram()
        rc = lib.pcap_compile(
            self._handle, ctypes.byref(self._prog), expression.encode(), int(optimize), _NETMASK_UNKNOWN
        )
        if rc != 0:
            message = (lib.pcap_geterr(self._handle) or b"").decode(errors="replace")
            lib.pcap_close(self._handle)
            self._handle = None
            raise PcapFilterError(f"libpcap: {message}")

    def matches(self, frame: bytes) -> bool:
        if self._handle is None:
            raise PcapFilterError("filter is closed")
        hdr = _PktHdr(_Timeval(0, 0), len(frame), len(frame))
        verdict: int = _lib().pcap_offline_filter(ctypes.byref(self._prog), ctypes.byref(hdr), frame)
        return verdict != 0

    def close(self) -> None:
        if self._handle is not None:
            _lib().pcap_freecode(ctypes.byref(self._prog))
            _lib().pcap_close(self._handle)
            self._handle = None

    def __enter__(self) -> PcapFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
