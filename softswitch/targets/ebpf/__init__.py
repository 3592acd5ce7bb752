"""The ebpf target: the program lowered to C for the TC hook, built with clang, loaded and
driven through libbpf (:mod:`.libbpf`, our own ctypes binding) and pyroute2.

Public surface: :class:`EbpfSwitch` (an ``api.Device``), :class:`VethRig` (namespaced veth
pairs to send packets through), :func:`unavailable` (why this machine cannot run it, or None),
:class:`Unsupported` (a construct the back end cannot compile yet).
"""

from __future__ import annotations

import ctypes.util
import os
import shutil

from .build import BuildError, find_clang
from .cgen import Unsupported
from .device import EbpfSwitch
from .libbpf import BpfError, VerifierError
from .netns import NetnsError, VethRig


def unavailable() -> str | None:
    """One line saying why the ebpf back end cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the ebpf backend needs root (loading BPF programs, clsact qdiscs)"
    if find_clang() is None:
        return "the ebpf backend needs clang-16 (apt-get install clang-16 llvm-16 libbpf-dev)"
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        return "the ebpf backend needs libbpf-dev (bpf/bpf_helpers.h)"
    if ctypes.util.find_library("bpf") is None:
        return "the ebpf backend needs libbpf.so.1"
    if shutil.which("ip") is None:
        return "the ebpf backend needs iproute2 (ip)"
    return None


__all__ = [
    "BpfError",
    "BuildError",
    "EbpfSwitch",
    "NetnsError",
    "Unsupported",
    "VerifierError",
    "VethRig",
    "unavailable",
]
