"""Where a switch's program and maps are pinned in bpffs, and the record that says what they are.

A switch pins everything it loads under ``/sys/fs/bpf/dysco/<key>/``, where the key names the
network namespace (its inode) and the data ports (``1@veth1_2@veth3``; a hash when that would
be too long).  A ``dysco switch`` restarted on the same interfaces (after a crash, or an upgrade
stopped with ``--keep-datapath``) finds the directory and re-adopts what is there if the record
matches, else removes it.  The directory holds:

* ``dysco_prog``: the TC program the clsact filters run;
* one pin per map of the program (``t0``, ``d0``, ``ports_in``, ``stats`` ...), named as in the C;
* ``dysco_extras``: the idle timeouts and metadata of entries (:mod:`._extras`);
* ``dysco_meta``: this module's :class:`Meta` record, an ARRAY of one value, written last, so a
  directory without it is one a switch did not finish making (it is removed, never adopted).

The record's wire format, declared once (:data:`HEADER`) and used both ways::

    magic "dysc" | json length u32 | pipeline length u32 | json (utf-8) | pipeline bytes | zeros

The JSON holds the format version, the sha256 of the generated C (the program and every map's
layout), of the P4 program and of the state maps' layout (:mod:`._upgrade`), the ports, the CPU
and drop ports, the pid and the names of the maps to open; the
pipeline bytes are the ForwardingPipelineConfig the P4Runtime server last committed (opaque
here; empty when no server gave one).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .cpuport import pid_alive
from .libbpf import BpfError, BpfMap, Loaded, PinnedObject, create_map

log = logging.getLogger("dysco.softswitch.ebpf")

BPFFS = Path("/sys/fs/bpf")
ROOT_NAME = "dysco"
PROG_PIN = "dysco_prog"
META_PIN = "dysco_meta"
EXTRAS_PIN = "dysco_extras"
MAGIC = b"dysc"
FORMAT_VERSION = 1
HEADER = struct.Struct("=4sII")
META_MIN = 256 << 10
"""Bytes the record's map holds at least (a pipeline config that outgrows it makes a new one)."""
BPF_MAP_TYPE_ARRAY = 2
MAX_NAME = 200
_ZERO = struct.pack("=I", 0)


MKDIR_RACES = 8
"""Attempts at making a pin directory while other switches remove an empty ``dysco/``."""


class PinError(BpfError):
    """bpffs cannot be mounted or a pin directory cannot be made."""


@dataclass(frozen=True)
class Meta:
    c_sha256: str
    ports: Mapping[int, str]
    """Data ports only: the CPU port's veth is made anew by every switch."""
    cpu_port: int | None
    drop_port: int
    maps: tuple[str, ...]
    pid: int = field(default_factory=os.getpid)
    pipeline: bytes = b""
    program_sha256: str = ""
    """Of the P4 program (its device config)."""
    layout_sha256: str = ""
    """Of the maps that hold state, as the C declares them (:mod:`._upgrade`)."""

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT_VERSION,
            "c_sha256": self.c_sha256,
            "ports": {str(p): i for p, i in sorted(self.ports.items())},
            "cpu_port": self.cpu_port,
            "drop_port": self.drop_port,
            "maps": list(self.maps),
            "pid": self.pid,
            "program_sha256": self.program_sha256,
            "layout_sha256": self.layout_sha256,
        }
        text = json.dumps(doc, separators=(",", ":")).encode()
        return HEADER.pack(MAGIC, len(text), len(self.pipeline)) + text + self.pipeline

    @classmethod
    def decode(cls, raw: bytes) -> Meta:
        """Raises ValueError on anything but a record of this format version."""
        magic, nj, np = HEADER.unpack_from(raw)
        if magic != MAGIC or HEADER.size + nj + np > len(raw):
            raise ValueError("not a dysco pin record")
        doc = json.loads(raw[HEADER.size : HEADER.size + nj])
        if doc.get("format") != FORMAT_VERSION:
            raise ValueError(f"pin record format {doc.get('format')!r}, not {FORMAT_VERSION}")
        start = HEADER.size + nj
        return cls(
            str(doc["c_sha256"]),
            {int(p): str(i) for p, i in doc["ports"].items()},
            None if doc["cpu_port"] is None else int(doc["cpu_port"]),
            int(doc["drop_port"]),
            tuple(str(m) for m in doc["maps"]),
            int(doc["pid"]),
            bytes(raw[start : start + np]),
            str(doc.get("program_sha256", "")),
            str(doc.get("layout_sha256", "")),
        )


def c_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _bpffs_mounted(path: Path) -> bool:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == str(path) and parts[2] == "bpf":
            return True
    return False


def ensure_bpffs(path: Path = BPFFS) -> None:
    """Mount bpffs at ``path`` unless it is mounted there (a fresh machine has it unmounted)."""
    if _bpffs_mounted(path):
        return
    path.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", str(path).encode(), b"bpf", 0, None) != 0:
        e = ctypes.get_errno()
        raise PinError(f"cannot mount bpffs at {path}: {os.strerror(e)} (errno {e})")
    log.info("mounted bpffs at %s", path)


def netns_inode(netns: str | None) -> int:
    """The inode of the network namespace ``netns`` (/run/netns/NAME), or of this thread's."""
    return os.stat(f"/run/netns/{netns}" if netns else "/proc/thread-self/ns/net").st_ino


def dir_name(ns_inode: int, ports: Mapping[int, str]) -> str:
    name = f"{ns_inode}_" + "_".join(f"{p}@{i}" for p, i in sorted(ports.items()))
    if len(name) > MAX_NAME:
        name = f"{ns_inode}_{hashlib.sha256(name.encode()).hexdigest()[:24]}"
    return name


class PinDir:
    """The pin directory of one switch (by namespace and data ports); nothing is made until
    :meth:`make`."""

    def __init__(self, ns_inode: int, ports: Mapping[int, str], root: Path = BPFFS / ROOT_NAME) -> None:
        self.root = root
        self.ns_inode = ns_inode
        self.path = root / dir_name(ns_inode, ports)

    def read(self) -> Meta | None:
        """The record of the directory, or None (no directory, no record or an unreadable one)."""
        return read_meta(self.path)

    def make(self) -> None:
        """A new, empty directory (anything there before is removed)."""
        ensure_bpffs(self.root.parent)
        self.remove()
        for _ in range(MKDIR_RACES):
            try:
                self.path.mkdir(parents=True)
                return
            except FileNotFoundError:  # another switch's stop removed an empty dysco/ meanwhile
                continue
            except OSError as exc:
                raise PinError(f"cannot make {self.path}: {exc.strerror}") from None
        raise PinError(f"cannot make {self.path}: {self.root} keeps disappearing")

    def remove(self) -> None:
        """Unpin everything (the kernel frees what nothing else holds) and remove the directory
        (and ``dysco/`` with it once empty)."""
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: other switches' pins
            self.root.rmdir()

    def open(self) -> PinnedObject:
        return PinnedObject(self.path, PROG_PIN)

    def write(self, meta: Meta) -> None:
        """Write the record (making its map, or a bigger one, when needed)."""
        raw = meta.encode()
        pin = self.path / META_PIN
        if pin.exists():
            with PinnedObject(self.path) as obj:
                m = _meta_map(obj)
                if m.value_size >= len(raw):
                    m.update(_ZERO, raw + bytes(m.value_size - len(raw)))
                    return
            pin.unlink()
        size = -(-max(META_MIN, 2 * len(raw)) // 4096) * 4096
        fd = create_map(BPF_MAP_TYPE_ARRAY, META_PIN, 4, size, 1, pin)
        os.close(fd)
        with PinnedObject(self.path) as obj:
            m = _meta_map(obj)
            m.update(_ZERO, raw + bytes(m.value_size - len(raw)))

    def leftovers(self, ifnames: set[str], exists: Callable[[str], bool]) -> list[Path]:
        """Other pin directories no switch will re-adopt: of this namespace, those whose ports
        share an interface with ours (a switch on an overlapping set of interfaces) or whose
        interfaces are all gone and whose switch is dead (``exists`` says whether an interface
        of this namespace is there); and those of namespaces that no longer exist."""
        out: list[Path] = []
        try:
            dirs = sorted(self.root.iterdir())
        except FileNotFoundError:  # none, or another switch's stop just removed the last one
            return out
        live = _live_namespaces()
        for d in dirs:
            ns, _, _ = d.name.partition("_")
            if d == self.path:
                continue
            if ns != str(self.ns_inode):
                if ns.isdigit() and int(ns) not in live:
                    out.append(d)
                continue
            meta = read_meta(d)  # None: unfinished, maybe by a switch starting now; left alone
            if meta is None:
                continue
            ports = set(meta.ports.values())
            if ports & ifnames or not (pid_alive(meta.pid) or any(exists(i) for i in ports)):
                out.append(d)
        return out


def _live_namespaces() -> set[int]:
    """The inodes of the network namespaces that exist: those of processes and those bind-mounted
    anywhere (``ip netns add`` names, container runtimes' files)."""
    inodes: set[int] = set()
    for path in Path("/proc").glob("[0-9]*/ns/net"):
        with contextlib.suppress(OSError):
            inodes.add(path.stat().st_ino)
    with contextlib.suppress(OSError):
        mounts = Path("/proc/self/mountinfo").read_text()
        inodes.update(int(i) for i in re.findall(r"net:\[(\d+)\]", mounts))
    return inodes


def _meta_map(obj: Loaded) -> BpfMap:
    m = BpfMap(obj, META_PIN, 4, 0)
    m.value_size = m.fdinfo().get("value_size", 0)
    return m


def read_meta(path: Path) -> Meta | None:
    """The record in ``path``, or None (none there, or one this switch cannot read)."""
    if not (path / META_PIN).exists():
        return None
    try:
        with PinnedObject(path) as obj:
            raw = _meta_map(obj).lookup(_ZERO)
        return Meta.decode(raw) if raw else None
    except (BpfError, ValueError, KeyError, TypeError, struct.error) as exc:
        log.warning("%s: not a record this switch can read (%s)", path / META_PIN, exc)
        return None
