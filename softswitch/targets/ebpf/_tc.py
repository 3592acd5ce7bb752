"""The program on the ports: a direct-action bpf filter on the clsact ingress hook of each one.

The filter's name says which program it runs, ``dysco_tc:<program id>`` (``tc filter show dev
IF ingress`` and ``bpftool net`` list it), so a restarted switch can tell a port that still runs
the pinned program (left alone: forwarding never stops) from one that runs another dysco program
(a crashed switch's leftover: its clsact qdisc is removed before ours goes on), and an upgrade
can swap the program under a port without a gap (:func:`replace`).  Every function takes a
pyroute2 ``IPRoute`` of the ports' namespace.
"""

from __future__ import annotations

import logging
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from .libbpf import BpfError

log = logging.getLogger("dysco.softswitch.ebpf")

FILTER_NAME = "dysco_tc"
TC_INGRESS = 0xFFFFFFF2  # "ffff:fff2", the clsact ingress hook


def filter_name(prog_id: int) -> str:
    return f"{FILTER_NAME}:{prog_id}"


def dysco_filters(ipr: Any, idx: int) -> list[str]:
    """The names of the dysco filters on ``idx``'s ingress hook ([] without a clsact qdisc)."""
    try:
        filters = ipr.get_filters(index=idx, parent=TC_INGRESS)
    except NetlinkError:  # no clsact qdisc there
        return []
    names: list[str] = []
    for f in filters:
        opts = f.get_attr("TCA_OPTIONS")
        name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
        if name and str(name).startswith(FILTER_NAME):
            names.append(str(name))
    return names


def attach(ipr: Any, idx: int, ifname: str, prog_fd: int, name: str) -> bool:
    """Make ``idx`` run the program ``name`` names; True if it had to be attached, False if the
    port runs it already.  Another dysco program there is removed first, with its qdisc."""
    found = dysco_filters(ipr, idx)
    if name in found:
        return False
    if found:
        log.warning("removing the clsact qdisc a previous dysco switch left on %s (%s)", ifname, found[0])
        ipr.tc("del", "clsact", index=idx)
    try:
        ipr.tc("add", "clsact", index=idx)
    except NetlinkError as exc:
        raise BpfError(f"cannot add a clsact qdisc to {ifname} (one not ours there?): {exc}") from None
    try:
        ipr.tc("add-filter", "bpf", index=idx, handle=":1", fd=prog_fd, name=name,
               parent=TC_INGRESS, classid=1, direct_action=True)  # fmt: skip
    except NetlinkError as exc:
        detach(ipr, idx)
        raise BpfError(f"cannot attach the program to {ifname}: {exc}") from None
    return True


def replace(ipr: Any, idx: int, ifname: str, prog_fd: int, name: str) -> None:
    """Swap the program of the dysco filter on ``idx`` for ``prog_fd`` in one step (the same
    priority and handle: the kernel replaces the filter atomically, no packet misses it); a port
    without one gets it attached."""
    try:
        filters = ipr.get_filters(index=idx, parent=TC_INGRESS)
    except NetlinkError:
        filters = []
    for f in filters:
        opts = f.get_attr("TCA_OPTIONS")
        found = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
        if found and str(found).startswith(FILTER_NAME):
            try:
                ipr.tc("replace-filter", "bpf", index=idx, handle=f["handle"], fd=prog_fd, name=name,
                       parent=TC_INGRESS, classid=1, direct_action=True, prio=f["info"] >> 16)  # fmt: skip
            except NetlinkError as exc:
                raise BpfError(f"cannot swap the program on {ifname}: {exc}") from None
            return
    attach(ipr, idx, ifname, prog_fd, name)


def detach(ipr: Any, idx: int) -> None:
    """Remove the clsact qdisc (and the filter with it) from ``idx``."""
    try:
        ipr.tc("del", "clsact", index=idx)
    except NetlinkError as exc:  # the interface may be gone already
        log.debug("clsact on ifindex %d: %s", idx, exc)
