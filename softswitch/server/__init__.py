"""The softswitch's P4Runtime gRPC server, packet ports and ``dysco switch``.

Public surface:

* :class:`SoftSwitchServer`: a :class:`dysco.softswitch.api.Device` served over
  P4Runtime (arbitration, pipeline config, Write/Read, packet-in/out, idle-timeout
  notifications, Capabilities), with optional packet ports.
* :class:`RawSocketPorts` (AF_PACKET sockets on interfaces) and :class:`MemoryPorts`.
* :class:`SwitchCore`: the same logic without gRPC, for in-process use.
* :class:`P4RuntimeError`: a refusal with its google.rpc code name.
"""

from __future__ import annotations

from dysco.softswitch.server._core import SwitchCore
from dysco.softswitch.server._errors import NO_PIPELINE, NOT_PRIMARY, P4RuntimeError
from dysco.softswitch.server._grpc import TlsConfig
from dysco.softswitch.server._ports import MemoryPorts, PortError, RawSocketPorts
from dysco.softswitch.server._switchd import DEFAULT_ADDRESS, SoftSwitchServer, default_program_loader

__all__ = [
    "DEFAULT_ADDRESS",
    "NOT_PRIMARY",
    "NO_PIPELINE",
    "MemoryPorts",
    "P4RuntimeError",
    "PortError",
    "RawSocketPorts",
    "SoftSwitchServer",
    "SwitchCore",
    "TlsConfig",
    "default_program_loader",
]
