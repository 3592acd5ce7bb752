"""A new program under the pinned state: what a ``dysco switch`` of another version does when it
generates other C for the pinned P4 program.

The C may change between versions (how statements are lowered, new helpers) while the maps that
hold state keep their layout: the tables (``t<i>``, ``d<i>``), counters, registers and meters,
``clones``, ``stats`` and the port maps.  Their layout is what the C declares for them, the map
definitions and the key and value structs, plus the tables' layouts (action order, key fields),
hashed into the record (:func:`layout_hash`).  When the P4 program and that hash are the pinned
ones, the new object is loaded with the pinned state maps in place of its own
(``bpf_map__reuse_fd``), the maps it makes afresh (per-packet scratch) are pinned in place of the
old ones, and every port's filter is swapped to the new program in one netlink request
(:func:`._tc.replace`): the data path never stops and the tables stay.  Anything else in the
layout changed, and the pipeline is replaced instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from . import cgen
from ._pins import EXTRAS_PIN, META_PIN, PROG_PIN
from ._tc import filter_name
from .libbpf import BpfObject, PinnedObject

PROG_NAME = "dysco_tc"

_STRUCT = re.compile(r"^struct (k\d+|v\d+|counter|meter|clone_to) \{")
_MAP = re.compile(r"\} (\w+) SEC\(\"\.maps\"\);")


def state_maps(cprog: cgen.CProgram) -> list[str]:
    """The maps whose contents are the switch's state (kept across an upgrade)."""
    names = {cprog.stats_map, cprog.ports_map, cprog.egress_map, "clones"}
    names.update(n for lay in cprog.tables.values() for n in (lay.map_name, lay.default_map))
    names.update(lay.map_name for lay in cprog.externs.values())
    return sorted(names)


def layout_hash(cprog: cgen.CProgram) -> str:
    state = set(state_maps(cprog))
    lines = [
        line
        for line in cprog.source.splitlines()
        if _STRUCT.match(line) or ((m := _MAP.search(line)) is not None and m.group(1) in state)
    ]
    layouts = [repr(cprog.tables[n]) for n in sorted(cprog.tables)]
    layouts += [repr(cprog.externs[n]) for n in sorted(cprog.externs)]
    return hashlib.sha256("\n".join(lines + layouts).encode()).hexdigest()


def program_hash(device_config: bytes) -> str:
    return hashlib.sha256(device_config).hexdigest()


def swap(directory: Path, obj_path: Path, state: list[str], retarget: Callable[[int, str], None]) -> None:
    """Load the object at ``obj_path`` on the state maps pinned in ``directory``, pin its other
    maps and its program in place of the old ones, and have ``retarget`` (given the program's
    fd and filter name) move every port to it."""
    with PinnedObject(directory) as old:
        fds = {n: old.map_fd(n) for n in state}
        with BpfObject(obj_path, PROG_NAME, reuse=fds) as new:
            keep = {*state, META_PIN, EXTRAS_PIN}
            for p in directory.iterdir():
                if p.name not in keep:  # the old program and its own maps: the filters hold them
                    p.unlink()
            for name in new.map_names():
                if name not in keep:
                    new.pin_map(name, directory / name)
            new.pin_program(directory / PROG_PIN)
            retarget(new.prog_fd, filter_name(new.prog_id()))
