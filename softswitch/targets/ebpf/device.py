"""The ebpf target as an :class:`~dysco.softswitch.api.Device`: the program compiled to C,
built with clang, loaded with libbpf, attached at clsact ingress of every port; table
writes go into its maps.

The CPU port (``cpu_port``) is a veth pair (:mod:`.cpuport`): packet-outs go in through
:meth:`EbpfSwitch.process`, packet-ins come out on :attr:`EbpfSwitch.cpu_interface`.

The program and its maps are pinned in bpffs (:mod:`._pins`), so forwarding outlives the
process: :meth:`EbpfSwitch.close` removes them (a clean stop) unless told to keep the data path,
and a switch started on the same interfaces re-adopts a pinned pipeline whose program it loads
(:meth:`EbpfSwitch.load`; a build of it from another dysco version is swapped in on the pinned
tables, :mod:`._upgrade`) and rebuilds its entries from the maps, else removes it.

What it does not do yet (each call says so with ``UNIMPLEMENTED``): multicast groups,
clone sessions of more than one replica or truncating ones, direct counters, direct meter
configuration.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...api import (
    ActionCall,
    EntryError,
    FieldMatch,
    Program,
    TableEntry,
    WriteOp,
)
from . import _extras, _tc, _upgrade, cgen
from ._externs import METER_SIZE, ExternMaps
from ._extras import Extras, ExtrasStore
from ._hashtable import HashTable
from ._pins import EXTRAS_PIN, META_PIN, PROG_PIN, Meta, PinDir, c_hash, netns_inode
from ._scantable import ScanTable
from .build import build
from .cpuport import CpuVeth
from .libbpf import BpfError, BpfMap, BpfObject, Loaded, test_run
from .netns import ETH_P_ALL, VethRig, in_netns
from .tablemaps import TableMaps

log = logging.getLogger("dysco.softswitch.ebpf")

PROG_NAME = _upgrade.PROG_NAME
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
SETTLE_S = 2.0  # how long a packet may take to come out before process() gives up waiting
SWEEP_BUDGET = 65536
"""Entries with idle timeouts one sweep looks at per table at most (the rest are looked at by the
next sweep), so that a sweep holds the server's lock for tens of milliseconds, not seconds."""
_U32 = struct.Struct("=I")


def _raw_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.bind((ifname, 0))
    except OSError:
        s.close()
        raise
    return s


class EbpfSwitch(ExternMaps):
    """One v1model switch in the kernel.  ``ports`` maps port numbers to interface names
    (in namespace ``netns``, or this one); ``rig`` (optional) is the veth rig
    :meth:`process` sends through."""

    def __init__(
        self,
        program: Program | None = None,
        *,
        ports: Mapping[int, str],
        netns: str | None = None,
        rig: VethRig | None = None,
        cpu_port: int | None = None,
        drop_port: int = 511,
        workdir: Path | None = None,
    ) -> None:
        super().__init__()
        self.cpu_port = cpu_port
        self.drop_port = drop_port
        self.ports = dict(ports)
        self.netns = netns
        self.rig = rig
        # the pins of a switch that ran on these ports before: adopted by load() if it matches
        self._pins = PinDir(netns_inode(netns), ports)
        self._found = self._pins.read()
        if self._found is not None and (self._found.cpu_port, self._found.drop_port) != (cpu_port, drop_port):
            log.warning("removing %s: pinned with other CPU and drop ports", self._pins.path)
            self._pins.remove()
            self._found = None
        # the CPU port: a veth pair to the server, unless the rig already has that port
        self.cpu: CpuVeth | None = None
        self._cpu_sock: socket.socket | None = None
        if cpu_port is not None and cpu_port not in self.ports:
            self.cpu = CpuVeth(netns=netns)
            self.ports[cpu_port] = self.cpu.switch_if
            try:
                if netns:
                    with in_netns(netns):
                        self._cpu_sock = _raw_socket(self.cpu.controller_if)
                else:
                    self._cpu_sock = _raw_socket(self.cpu.controller_if)
            except BaseException:
                self.cpu.close()
                raise
        self._data_ports = dict(ports)
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="dysco-ebpf-"))
        self._program: Program | None = None
        self._obj: Loaded | None = None
        self._meta: Meta | None = None
        self._adoptable = True
        self.kept_state = False
        """Whether the last :meth:`load` kept the tables it found pinned (re-adoption)."""
        self._tables: dict[int, TableMaps] = {}
        self._extras: ExtrasStore | None = None
        self._actions: dict[int, str] = {}
        self._action_ids: dict[str, int] = {}
        self._attached: list[int] = []
        self._ipr: Any = None
        self.c_program: cgen.CProgram | None = None
        if program is not None:
            self.load(program)

    # ------------------------------------------------------------ lifecycle
    @property
    def program(self) -> Program | None:
        return self._program

    @property
    def pin_dir(self) -> Path:
        """Where the program and maps are pinned (see :mod:`._pins`)."""
        return self._pins.path

    def load(self, program: Program) -> None:
        """Replace the pipeline, clearing every table, unless the program is the one pinned for
        these ports and nothing was loaded since this switch started (or since it re-adopted it):
        then the pinned program (or this version's build of it) keeps running on its tables,
        which are re-adopted (:attr:`kept_state`)."""
        p: Any = program
        cprog = cgen.generate(p.ast, p.source, p.compiled.types, p.compiled.errors, p.compiled.info)
        digest = c_hash(cprog.source)
        found, adoptable = self._found, self._adoptable
        self._found, self._adoptable, self.kept_state = None, False, False
        if adoptable and self._obj is not None and self._meta is not None:
            if self._meta.c_sha256 == digest:  # the first push after a re-adoption: keep it
                self._program, self.kept_state = program, True
                log.info("the pipeline is the one re-adopted from %s: tables kept", self.pin_dir)
                return
        elif adoptable and found is not None and self._take_over(program, cprog, found, digest):
            self._adoptable = self.kept_state = True
            return
        obj_path = build(cprog.source, self.workdir)
        self.close(keep_workdir=True)
        try:
            self._fresh(program, cprog, obj_path, digest)
        except BaseException:
            self.close(keep_workdir=True)
            raise

    def _take_over(self, program: Program, cprog: cgen.CProgram, found: Meta, digest: str) -> bool:
        """Re-adopt the pinned pipeline (the same C), or upgrade it (the same P4 program and state
        layout under other C, :mod:`._upgrade`); False when it is to be replaced."""
        same = (found.program_sha256, found.layout_sha256) == (
            _upgrade.program_hash(program.device_config()),
            _upgrade.layout_hash(cprog),
        )
        if found.ports != self._data_ports or not (found.c_sha256 == digest or same):
            log.warning("%s holds another program: replacing it", self.pin_dir)
            return False
        try:
            if found.c_sha256 != digest:
                found = self._upgrade(build(cprog.source, self.workdir), cprog, found, digest)
            self._adopt(program, cprog, found)
            return True
        except (BpfError, OSError) as exc:
            log.warning("cannot re-adopt the pipeline in %s (%s): loading anew", self.pin_dir, exc)
            return False

    def _upgrade(self, obj_path: Path, cprog: cgen.CProgram, found: Meta, digest: str) -> Meta:
        """Put the new build of the pinned program on the pinned state and every port."""
        ipr = self._iproute()

        def retarget(prog_fd: int, name: str) -> None:
            for port, ifname in sorted(self.ports.items()):
                _tc.replace(ipr, self._ifindex(ipr, port, ifname), ifname, prog_fd, name)

        _upgrade.swap(self._pins.path, obj_path, _upgrade.state_maps(cprog), retarget)
        log.info("%s: the pinned program is now this version's build, on the same tables", self.pin_dir)
        maps = tuple(sorted(p.name for p in self._pins.path.iterdir() if p.name != META_PIN))
        return dataclasses.replace(found, c_sha256=digest, maps=maps)

    def _fresh(self, program: Program, cprog: cgen.CProgram, obj_path: Path, digest: str) -> None:
        """Load the object, pin it and its maps in a new pin directory, attach it."""
        ipr = self._iproute()
        ifnames = set(self._data_ports.values())
        for d in self._pins.leftovers(ifnames, lambda i: bool(ipr.link_lookup(ifname=i))):
            log.warning("removing %s: left by a switch on some of these interfaces, or on gone ones", d)
            shutil.rmtree(d, ignore_errors=True)
        self._pins.make()
        with BpfObject(obj_path, PROG_NAME) as loaded:
            loaded.pin(self._pins.path, PROG_PIN)
        _extras.create(self._pins.path / EXTRAS_PIN)
        obj = self._setup(program, cprog)
        for t in self._tables.values():
            self._write_default(t, t.lay.default_action, t.lay.default_args)
            self._const_entries(t)
        self._attach(obj, cprog)
        maps = sorted(p.name for p in self._pins.path.iterdir())
        self._meta = Meta(
            digest, self._data_ports, self.cpu_port, self.drop_port, tuple(maps),
            program_sha256=_upgrade.program_hash(program.device_config()),
            layout_sha256=_upgrade.layout_hash(cprog),
        )  # fmt: skip
        self._pins.write(self._meta)  # last: a directory without it is unfinished

    def _adopt(self, program: Program, cprog: cgen.CProgram, found: Meta) -> None:
        """Take over the pinned program and maps: rebuild every table's entries from its map,
        the clone sessions from theirs, and make sure every port runs the program."""
        missing = [m for m in found.maps if not (self._pins.path / m).exists()]
        if missing:
            raise BpfError(f"pins missing: {', '.join(missing)}")
        try:
            obj = self._setup(program, cprog)
            assert self._extras is not None and self._clones is not None
            self._extras.load()
            for t in self._tables.values():
                t.adopt()
            self._extras.collect(self._extras_in_use())  # records of entries deleted long ago
            self._adopt_clone_sessions()
            self._attach(obj, cprog)
        except BaseException:
            self._release()
            raise
        self._meta = dataclasses.replace(found, pid=os.getpid())
        self._pins.write(self._meta)
        entries = sum(len(t) for t in self._tables.values())
        log.info("re-adopted %s, pinned by pid %d (%d entries)", self.pin_dir, found.pid, entries)

    def _setup(self, program: Program, cprog: cgen.CProgram) -> Loaded:
        """Open the pinned program and maps and make the tables' and externs' views of them."""
        p: Any = program
        obj = self._pins.open()
        self._obj, self.c_program, self._program = obj, cprog, program
        info = p.compiled.info
        self._actions = {a.id: a.name for a in info.actions.values()}
        self._action_ids = {a.name: a.id for a in info.actions.values()}
        sigs = {a.name: (a.id, len(a.params)) for a in info.actions.values()}
        self._extras = store = ExtrasStore(obj, EXTRAS_PIN, self._extras_in_use)
        self._tables = {
            info.tables[n].id: (ScanTable if lay.kind == "scan" else HashTable)(
                obj, lay, info.tables[n], sigs, store
            )
            for n, lay in cprog.tables.items()
        }
        self.stats = BpfMap(obj, cprog.stats_map, 4, 8)
        self._clones = BpfMap(obj, "clones", 4, 8)
        self._sessions = {}
        ncpu = obj.possible_cpus()
        sizes = {"counter": 16 * ncpu, "register": 8, "meter": METER_SIZE}
        self._externs = {
            info.externs[n].id: (lay, BpfMap(obj, lay.map_name, 4, sizes[lay.kind]))
            for n, lay in cprog.externs.items()
            if lay.kind in sizes
        }
        self._ncpu = ncpu
        return obj

    def _extras_in_use(self) -> Iterable[Extras]:
        return {x for t in self._tables.values() for x in t.in_use()}

    def _iproute(self) -> Any:
        from pyroute2 import IPRoute

        if self._ipr is None:
            if self.netns:
                with in_netns(self.netns):
                    self._ipr = IPRoute()
            else:
                self._ipr = IPRoute()
        return self._ipr

    @staticmethod
    def _ifindex(ipr: Any, port: int, ifname: str) -> int:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise EntryError("INVALID_ARGUMENT", f"no interface {ifname} for port {port}")
        return int(found[0])

    def _attach(self, obj: Loaded, cprog: cgen.CProgram) -> None:
        """Write the port maps and attach the program to every port that does not run it yet."""
        ipr = self._iproute()
        pin = BpfMap(obj, cprog.ports_map, 4, 4)
        pout = BpfMap(obj, cprog.egress_map, 4, 4)
        name = _tc.filter_name(obj.prog_id())
        ours: set[bytes] = set()
        for port, ifname in sorted(self.ports.items()):
            idx = self._ifindex(ipr, port, ifname)
            pin.update(_U32.pack(idx), _U32.pack(port))
            pout.update(_U32.pack(port), _U32.pack(idx))
            ours.add(_U32.pack(idx))
            if _tc.attach(ipr, idx, ifname, obj.prog_fd, name):
                log.debug("attached %s to %s", name, ifname)
            self._attached.append(idx)
        for stale in [k for k, _ in pin.items() if k not in ours]:  # e.g. a dead switch's CPU veth
            pin.delete(stale)

    def close(self, keep_workdir: bool = False, *, keep_datapath: bool = False) -> None:
        """Detach from every port (removing the clsact qdiscs this switch added), unpin and free
        the maps; with ``keep_datapath``, leave the program attached and pinned, with its maps,
        for the next switch on these ports to re-adopt (an upgrade)."""
        if keep_datapath and self._obj is not None:
            log.info("leaving the pipeline running, pinned in %s", self.pin_dir)
            self._attached.clear()
        elif self._attached or self._obj is not None:
            ipr = self._iproute()
            for idx in self._attached:
                _tc.detach(ipr, idx)
            self._attached.clear()
            self._pins.remove()
        self._release()
        if not keep_workdir:
            if self._cpu_sock is not None:
                self._cpu_sock.close()
                self._cpu_sock = None
            if self.cpu is not None:
                self.cpu.close()
                self.cpu = None
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _release(self) -> None:
        """Close this process's descriptors of the program and maps (the pins stay)."""
        if self._obj is not None:
            self._obj.close()
            self._obj = None
        self._meta = None
        self._clones = None
        self._extras = None
        self._tables.clear()
        self._attached.clear()

    def pinned_pipeline(self) -> bytes | None:
        """The pipeline config the server last gave :meth:`pin_pipeline`, as pinned for these
        ports when this switch started (None: nothing pinned, or no config with it)."""
        found = self._found if self._found is not None else self._meta
        return found.pipeline or None if found is not None else None

    def pin_pipeline(self, config: bytes) -> None:
        """Keep ``config`` (the server's ForwardingPipelineConfig, opaque here) with the pins."""
        if self._meta is not None:
            self._meta = dataclasses.replace(self._meta, pipeline=config)
            self._pins.write(self._meta)

    @property
    def cpu_interface(self) -> str | None:
        """The controller side of the CPU veth (packet-ins arrive there), or None."""
        return self.cpu.controller_if if self.cpu is not None else None

    # ------------------------------------------------------------ packets
    def time_program(self, port: int, data: bytes, repeat: int = 100_000) -> tuple[float, int]:
        """Nanoseconds the program takes per packet (the kernel's BPF_PROG_TEST_RUN, ``repeat``
        runs, mean) for ``data`` arriving on ``port``, and its TC verdict (7: redirect, 2: drop,
        0: pass).  For benchmarks: it times the program alone, without the veths around it."""
        if self._obj is None or self.c_program is None:
            raise EntryError("FAILED_PRECONDITION", "no program loaded")
        ifindex = BpfMap(self._obj, self.c_program.egress_map, 4, 4).lookup(struct.pack("=I", port))
        if ifindex is None:
            raise EntryError("INVALID_ARGUMENT", f"no port {port}")
        return test_run(self._obj, data, struct.unpack("=I", ifindex)[0], repeat)

    def counters(self) -> list[int]:
        return [struct.unpack("=Q", self.stats.lookup(struct.pack("=I", i)) or bytes(8))[0] for i in range(4)]

    def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
        """Send ``data`` into ``port`` through the rig and return what the program sent out.

        Waits (up to SETTLE_S) until the program counted the packet as forwarded, dropped
        or passed, then for exactly as many frames as it forwarded."""
        if port == self.cpu_port and self._cpu_sock is not None:
            # a packet-out: into the CPU veth, where the program takes it as from the CPU port.
            # What it sends to data ports leaves in the kernel; packet-ins come back on
            # cpu_interface, which the server reads.
            self._cpu_sock.send(data)
            return []
        if self.rig is None:
            raise EntryError("UNIMPLEMENTED", "this ebpf switch has no veth rig to send packets through")
        before = self.counters()
        self.rig.send(port, data)
        deadline = time.monotonic() + SETTLE_S
        done = 0
        while time.monotonic() < deadline:
            now = self.counters()
            done = sum(now[i] - before[i] for i in (cgen.STAT_OUT, cgen.STAT_DROP, cgen.STAT_PASS))
            if done >= 1:
                break
            select.select([], [], [], 0.001)
        if done < 1:
            raise EntryError("DEADLINE_EXCEEDED", f"the program did not see the packet sent into port {port}")
        want = self.counters()[cgen.STAT_OUT] - before[cgen.STAT_OUT]
        got: list[tuple[int, bytes]] = []
        socks = list(self.rig.socks.values())
        while len(got) < want and time.monotonic() < deadline:
            select.select(socks, [], [], max(0.0, deadline - time.monotonic()))
            got += self.rig.drain()
        return got + self.rig.drain()

    # ------------------------------------------------------------ tables
    def _table(self, table_id: int) -> TableMaps:
        t = self._tables.get(table_id)
        if t is None:
            raise EntryError("NOT_FOUND", f"no table {table_id} in the ebpf program")
        return t

    def write_entry(self, op: WriteOp, entry: TableEntry) -> None:
        error = self.write_entries([(op, entry)])[0]
        if error is not None:
            raise error

    def write_entries(self, updates: Sequence[tuple[WriteOp, TableEntry]]) -> list[EntryError | None]:
        """The updates in order, each answered as :meth:`write_entry` would; consecutive updates
        of one exact or lpm table reach the kernel in one batch (see :mod:`._hashtable`)."""
        now = time.monotonic_ns()
        out: list[EntryError | None] = []
        i = 0
        while i < len(updates):
            table_id = updates[i][1].table_id
            j = i + 1
            while j < len(updates) and updates[j][1].table_id == table_id:
                j += 1
            t = self._tables.get(table_id)
            if t is None:
                out += [EntryError("NOT_FOUND", f"no table {table_id} in the ebpf program")] * (j - i)
            else:
                out += t.write(updates[i:j], now)
            i = j
        return out

    def _const_entries(self, t: TableMaps) -> None:
        """Install a table's ``const entries`` (P4 key order, kind ``dontcare`` for ``_``)."""
        for ce in t.info.const_entries or ():
            match: list[FieldMatch] = []
            for k, (kind, value, extra) in zip(t.info.keys, ce.match, strict=True):
                if kind == "dontcare":
                    continue
                if kind == "ternary":
                    match.append(FieldMatch(k.id, "ternary", value, mask=extra))
                elif kind == "lpm":
                    match.append(FieldMatch(k.id, "lpm", value, prefix_len=extra))
                elif kind == "range":
                    match.append(FieldMatch(k.id, "range", value, high=extra))
                else:
                    match.append(FieldMatch(k.id, kind, value))
            call = ActionCall(self._action_ids[ce.action], tuple(ce.args))
            self.write_entry("insert", TableEntry(t.info.id, tuple(match), call, priority=ce.priority))

    def read_entries(self, table_id: int = 0) -> list[TableEntry]:
        tables = [self._table(table_id)] if table_id else list(self._tables.values())
        now = time.monotonic_ns()
        return [e for t in tables for e in t.read(now)]

    def _write_default(self, t: TableMaps, action: str, args: Sequence[int]) -> None:
        aid = self._action_ids.get(action)
        if aid is None:
            raise EntryError("INVALID_ARGUMENT", f"unknown default action {action}")
        t.write_default(ActionCall(aid, tuple(args)), time.monotonic_ns())

    def default_entry(self, table_id: int) -> TableEntry:
        t = self._table(table_id)
        return TableEntry(table_id, (), t.default_call, is_default_action=True)

    def set_default_entry(self, entry: TableEntry) -> None:
        t = self._table(entry.table_id)
        if entry.match:
            raise EntryError("INVALID_ARGUMENT", "a default entry has no match")
        name = self._actions.get(entry.action.action_id, "")
        self._write_default(t, name, entry.action.params)

    def reset_default_entry(self, table_id: int) -> None:
        t = self._table(table_id)
        self._write_default(t, t.lay.default_action, t.lay.default_args)

    def expired_entries(self) -> list[TableEntry]:
        """The server's sweep: entries whose last hit (written by the program) is at least their
        idle timeout ago, each reported once until the program hits it again.  Only entries that
        may be idle by now are looked at (:mod:`._idle`), at most SWEEP_BUDGET per table."""
        now = time.monotonic_ns()
        return [e for t in self._tables.values() if t.lay.timeout for e in t.expired(now, SWEEP_BUDGET)]
