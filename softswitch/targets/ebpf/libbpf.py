"""A small ctypes binding of libbpf (``libbpf.so.1``): open/load an object, find its
program and maps, and read/write/delete map elements.  Only what the ebpf target uses."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from dysco.errors import UserError

LOG_SIZE = 16 << 20
LOG_TAIL_LINES = 12
INFO_SIZE = 256  # enough of struct bpf_prog_info / bpf_map_info for their ids


class BpfError(UserError):
    """libbpf or the kernel refused something (the message says what, with errno)."""


class VerifierError(BpfError):
    """The kernel's verifier rejected the program; ``log_tail`` holds the last lines of its log."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(f"{message}\n{log_tail}")
        self.log_tail = log_tail


def _load_lib() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise BpfError(f"cannot load libbpf ({name}): {exc}") from None
    vp, cp, ci, cs = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
    sigs: dict[str, tuple[object, list[object]]] = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (ci, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_object__find_map_fd_by_name": (ci, [vp, cp]),
        "bpf_program__fd": (ci, [vp]),
        "bpf_program__set_log_buf": (ci, [vp, vp, cs]),
        "bpf_program__set_log_level": (ci, [vp, ctypes.c_uint32]),
        "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
        "bpf_map_delete_elem": (ci, [ci, vp]),
        "bpf_map_get_next_key": (ci, [ci, vp, vp]),
        "bpf_map_lookup_batch": (ci, [ci, vp, vp, vp, vp, ctypes.POINTER(ctypes.c_uint32), vp]),
        "bpf_map_update_batch": (ci, [ci, vp, vp, ctypes.POINTER(ctypes.c_uint32), vp]),
        "bpf_map_delete_batch": (ci, [ci, vp, ctypes.POINTER(ctypes.c_uint32), vp]),
        "libbpf_set_print": (vp, [vp]),
        "libbpf_num_possible_cpus": (ci, []),
        "bpf_prog_test_run_opts": (ci, [ci, vp]),
        "bpf_object__pin_maps": (ci, [vp, cp]),
        "bpf_program__pin": (ci, [vp, cp]),
        "bpf_obj_get": (ci, [cp]),
        "bpf_obj_pin": (ci, [ci, cp]),
        "bpf_obj_get_info_by_fd": (ci, [ci, vp, ctypes.POINTER(ctypes.c_uint32)]),
        "bpf_map_create": (ci, [ci, cp, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, vp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_object__next_map": (vp, [vp, vp]),
        "bpf_map__name": (cp, [vp]),
        "bpf_map__reuse_fd": (ci, [vp, ci]),
        "bpf_map__pin": (ci, [vp, cp]),
    }
    for fname, (res, args) in sigs.items():
        f = getattr(lib, fname)
        f.restype = res
        f.argtypes = args
    lib.libbpf_set_print(None)  # no libbpf chatter on stderr; errors come back as exceptions
    return lib


def _errno_text(what: str) -> str:
    e = ctypes.get_errno()
    return f"{what}: {os.strerror(e)} (errno {e})"


class Loaded:
    """A program and its maps in the kernel, as the device uses them: a :class:`BpfObject`
    just loaded from a file, or a :class:`PinnedObject` an earlier switch pinned in bpffs."""

    _lib: ctypes.CDLL
    prog_fd: int

    def map_fd(self, name: str) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def possible_cpus(self) -> int:
        """How many values a per-CPU map holds per key."""
        n = int(self._lib.libbpf_num_possible_cpus())
        if n <= 0:
            raise BpfError("libbpf cannot count the possible CPUs")
        return n

    def prog_id(self) -> int:
        """The kernel's id of the program (what ``bpftool prog show`` lists)."""
        return obj_id(self._lib, self.prog_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def obj_id(lib: ctypes.CDLL, fd: int) -> int:
    """The id of the program or map behind ``fd`` (both info structs start ``type, id``)."""
    info = ctypes.create_string_buffer(INFO_SIZE)
    size = ctypes.c_uint32(INFO_SIZE)
    if lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size)) != 0:
        raise BpfError(_errno_text(f"BPF_OBJ_GET_INFO_BY_FD {fd}"))
    return int(struct.unpack_from("=I", info.raw, 4)[0])


class BpfObject(Loaded):
    """One loaded BPF object file.  Closing it releases its maps and program
    (the kernel keeps them while a TC filter still uses the program, or a pin in bpffs).
    ``reuse`` names maps the program is to use instead of making its own (map name -> fd of an
    existing map of the same layout): how a new program takes over an old one's state."""

    def __init__(self, path: Path, program: str, reuse: Mapping[str, int] | None = None) -> None:
        self._lib = _load_lib()
        self.path = path
        self.program_name = program
        self._obj = self._open()
        self._prog = self._lib.bpf_object__find_program_by_name(self._obj, program.encode())
        if not self._prog:
            self.close()
            raise BpfError(f"{path}: no program named {program}")
        for name, fd in (reuse or {}).items():
            m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
            if not m or self._lib.bpf_map__reuse_fd(m, fd) != 0:
                err = _errno_text(f"reusing map {name}")
                self.close()
                raise BpfError(f"{path}: {err}")
        if self._lib.bpf_object__load(self._obj) != 0:
            err = _errno_text(f"loading {path}")
            self.close()
            raise VerifierError(
                f"the kernel rejected the program ({err}); the verifier log ends:", self._log()
            )
        self.prog_fd = int(self._lib.bpf_program__fd(self._prog))

    def pin(self, directory: Path, prog_name: str) -> None:
        """Pin every map as ``directory/<map name>`` and the program as ``directory/prog_name``."""
        if self._lib.bpf_object__pin_maps(self._obj, str(directory).encode()) != 0:
            raise BpfError(_errno_text(f"pinning the maps in {directory}"))
        self.pin_program(directory / prog_name)

    def pin_program(self, path: Path) -> None:
        if self._lib.bpf_program__pin(self._prog, str(path).encode()) != 0:
            raise BpfError(_errno_text(f"pinning the program at {path}"))

    def pin_map(self, name: str, path: Path) -> None:
        m = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m or self._lib.bpf_map__pin(m, str(path).encode()) != 0:
            raise BpfError(_errno_text(f"pinning map {name} at {path}"))

    def map_names(self) -> list[str]:
        names: list[str] = []
        m = self._lib.bpf_object__next_map(self._obj, None)
        while m:
            names.append(self._lib.bpf_map__name(m).decode())
            m = self._lib.bpf_object__next_map(self._obj, m)
        return names

    def _open(self) -> int:
        obj = self._lib.bpf_object__open_file(str(self.path).encode(), None)
        if not obj:
            raise BpfError(_errno_text(f"opening {self.path}"))
        return int(obj)

    def _log(self) -> str:
        """Open the object again and load it with a verifier log, to report why it failed."""
        obj = self._open()
        try:
            prog = self._lib.bpf_object__find_program_by_name(obj, self.program_name.encode())
            buf = ctypes.create_string_buffer(LOG_SIZE)
            self._lib.bpf_program__set_log_buf(prog, buf, LOG_SIZE)
            self._lib.bpf_program__set_log_level(prog, 1)
            self._lib.bpf_object__load(obj)
            lines = buf.value.decode(errors="replace").rstrip().splitlines()
        finally:
            self._lib.bpf_object__close(obj)
        tail = lines[-LOG_TAIL_LINES:] or ["(the verifier wrote no log)"]
        return "\n".join("    " + x for x in tail)

    def map_fd(self, name: str) -> int:
        fd = int(self._lib.bpf_object__find_map_fd_by_name(self._obj, name.encode()))
        if fd < 0:
            raise BpfError(f"{self.path}: no map named {name}")
        return fd

    def close(self) -> None:
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = 0


class PinnedObject(Loaded):
    """A program and maps pinned in ``directory`` (``directory/prog_name``, ``directory/<map>``),
    opened by path (without ``prog_name``: maps only).  Closing it closes the descriptors only:
    the pins keep the program and maps in the kernel."""

    def __init__(self, directory: Path, prog_name: str | None = None) -> None:
        self._lib = _load_lib()
        self.path = directory
        self._fds: dict[str, int] = {}
        self.prog_fd = -1 if prog_name is None else self._get(prog_name)

    def _get(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            fd = int(self._lib.bpf_obj_get(str(self.path / name).encode()))
            if fd < 0:
                raise BpfError(_errno_text(f"opening the pinned {self.path / name}"))
            self._fds[name] = fd
        return fd

    def map_fd(self, name: str) -> int:
        return self._get(name)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def create_map(map_type: int, name: str, key_size: int, value_size: int, max_entries: int,
               pin: Path, flags: int = 0) -> int:  # fmt: skip
    """A map made by user space (not by a program), pinned at ``pin``; returns its fd."""
    lib = _load_lib()
    opts = _MapCreateOpts(sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags)
    opts_p = ctypes.byref(opts)
    fd = int(lib.bpf_map_create(map_type, name.encode(), key_size, value_size, max_entries, opts_p))
    if fd < 0:
        raise BpfError(_errno_text(f"creating map {name} ({value_size}-byte values)"))
    if lib.bpf_obj_pin(fd, str(pin).encode()) != 0:
        err = _errno_text(f"pinning map {name} at {pin}")
        os.close(fd)
        raise BpfError(err)
    return fd


class _MapCreateOpts(ctypes.Structure):
    """libbpf's ``struct bpf_map_create_opts`` (libbpf 1.1), up to ``map_flags``."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
    ]


class BpfMap:
    """Byte-level access to one map through its fd."""

    def __init__(self, obj: Loaded, name: str, key_size: int, value_size: int) -> None:
        self._lib = obj._lib
        self.name = name
        self.fd = obj.map_fd(name)
        self.key_size = key_size
        self.value_size = value_size

    def fdinfo(self) -> dict[str, int]:
        """What the kernel says about the map (``/proc/self/fdinfo``): ``map_id``, ``map_flags``,
        ``max_entries``, ``memlock`` (bytes charged for it now) and the rest, as integers."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/self/fdinfo/{self.fd}").read_text().splitlines():
            name, _, value = line.partition(":")
            try:
                out[name] = int(value.strip(), 0)
            except ValueError:
                continue  # pos/flags are octal-looking strings; only the map's numbers matter
        return out

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        k, v = self._buf(key, self.key_size), self._buf(value, self.value_size)
        if self._lib.bpf_map_update_elem(self.fd, k, v, flags) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"map {self.name}: update: {os.strerror(e)}")

    def update_batch(self, keys: bytes, values: bytes) -> tuple[int, int]:
        """Write ``len(keys) // key_size`` elements (BPF_ANY), in order, in one system call
        (BPF_MAP_UPDATE_BATCH): ``keys`` and ``values`` are the elements' keys and values one
        after another.  Returns how many were written and, when the kernel stopped at the next
        one, its errno (else 0)."""
        count = len(keys) // self.key_size
        if len(keys) != count * self.key_size or len(values) != count * self.value_size:
            raise ValueError(f"map {self.name}: {len(keys)} key and {len(values)} value bytes for {count}")
        done = ctypes.c_uint32(count)
        rc = self._lib.bpf_map_update_batch(self.fd, keys, values, ctypes.byref(done), None)
        return int(done.value), ctypes.get_errno() if rc != 0 else 0

    def delete_batch(self, keys: bytes) -> tuple[int, int]:
        """Delete the elements whose keys ``keys`` holds one after another, in one system call
        (BPF_MAP_DELETE_BATCH); returns as :meth:`update_batch` does."""
        count = len(keys) // self.key_size
        if len(keys) != count * self.key_size:
            raise ValueError(f"map {self.name}: {len(keys)} key bytes")
        done = ctypes.c_uint32(count)
        rc = self._lib.bpf_map_delete_batch(self.fd, keys, ctypes.byref(done), None)
        return int(done.value), ctypes.get_errno() if rc != 0 else 0

    def lookup(self, key: bytes) -> bytes | None:
        k = self._buf(key, self.key_size)
        v = ctypes.create_string_buffer(self.value_size)
        if self._lib.bpf_map_lookup_elem(self.fd, k, v) != 0:
            return None
        return v.raw

    def delete(self, key: bytes) -> bool:
        return int(self._lib.bpf_map_delete_elem(self.fd, self._buf(key, self.key_size))) == 0

    def keys(self) -> Iterator[bytes]:
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while self._lib.bpf_map_get_next_key(self.fd, cur, nxt) == 0:
            yield nxt.raw
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self, batch: int = 4096) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), ``batch`` elements per system call (BPF_MAP_LOOKUP_BATCH, which
        kernel 6.18 has for every map type the target uses, LPM_TRIE included)."""
        token_in: ctypes.Array[ctypes.c_char] | None = None
        token_out = ctypes.create_string_buffer(max(self.key_size, 8))
        keys = ctypes.create_string_buffer(self.key_size * batch)
        values = ctypes.create_string_buffer(self.value_size * batch)
        while True:
            count = ctypes.c_uint32(batch)
            rc = self._lib.bpf_map_lookup_batch(
                self.fd, token_in, token_out, keys, values, ctypes.byref(count), None
            )
            err = ctypes.get_errno() if rc != 0 else 0
            if rc != 0 and err != errno.ENOENT:
                raise OSError(err, f"map {self.name}: batch lookup: {os.strerror(err)}")
            kraw, vraw = keys.raw, values.raw
            for i in range(count.value):
                yield (
                    kraw[i * self.key_size : (i + 1) * self.key_size],
                    vraw[i * self.value_size : (i + 1) * self.value_size],
                )
            if rc != 0:  # ENOENT: that was the last batch
                return
            token_in = ctypes.create_string_buffer(token_out.raw, len(token_out))

    @staticmethod
    def _buf(data: bytes, size: int) -> ctypes.Array[ctypes.c_char]:
        if len(data) != size:
            raise ValueError(f"expected {size} bytes, got {len(data)}")
        return ctypes.create_string_buffer(data, size)


class _TestRunOpts(ctypes.Structure):
    """libbpf's ``struct bpf_test_run_opts`` (libbpf 1.1)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


SKB_CTX_SIZE = 192  # struct __sk_buff; the kernel wants the fields it does not take zeroed
SKB_INGRESS_IFINDEX = 36  # offsetof(struct __sk_buff, ingress_ifindex)


def test_run(obj: Loaded, data: bytes, ingress_ifindex: int, repeat: int) -> tuple[float, int]:
    """Run the object's program on ``data`` ``repeat`` times in the kernel (BPF_PROG_TEST_RUN) as
    if it arrived on ``ingress_ifindex``; the mean nanoseconds per run and the program's verdict.
    Nothing leaves: a redirect is only the verdict."""
    buf = ctypes.create_string_buffer(data, len(data))
    ctx = ctypes.create_string_buffer(SKB_CTX_SIZE)
    struct.pack_into("=I", ctx, SKB_INGRESS_IFINDEX, ingress_ifindex)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(buf, ctypes.c_void_p),
        data_size_in=len(data),
        ctx_in=ctypes.cast(ctx, ctypes.c_void_p),
        ctx_size_in=SKB_CTX_SIZE,
        repeat=repeat,
    )
    if obj._lib.bpf_prog_test_run_opts(obj.prog_fd, ctypes.byref(opts)) != 0:
        raise BpfError(_errno_text("BPF_PROG_TEST_RUN"))
    return float(opts.duration), int(opts.retval)
