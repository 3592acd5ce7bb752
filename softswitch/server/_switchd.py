"""A running softswitch: device + P4Runtime gRPC server + packet ports + idle-timeout poller.

:class:`SoftSwitchServer` owns every thread it starts (the gRPC worker pool, the
``idle-poll`` thread, the ports' receive thread) and stops them in :meth:`stop`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import grpc

from dysco.softswitch.api import Clock, Device, Program
from dysco.softswitch.server._core import ProgramLoader, SwitchCore
from dysco.softswitch.server._errors import P4RuntimeError
from dysco.softswitch.server._grpc import TlsConfig, make_grpc_server
from dysco.softswitch.server._offload import VnetHdr
from dysco.softswitch.server._ports import RawSocketPorts

_log = logging.getLogger("dysco.softswitch.server")

DEFAULT_ADDRESS = "0.0.0.0:9559"
DEFAULT_IDLE_POLL_S = 0.5


class Ports(Protocol):
    def start(self, receive: Receive) -> None: ...
    def transmit(self, port: int, frame: bytes) -> None: ...
    def close(self) -> None: ...


class Receive(Protocol):
    def __call__(self, port: int, frame: bytes, vnet: VnetHdr | None = None, /) -> None: ...


def default_program_loader(config: bytes) -> Program:
    """``dysco.softswitch.program_from_device_config``, imported when first needed."""
    try:
        from dysco.softswitch import program_from_device_config  # type: ignore[attr-defined, unused-ignore]
    except ImportError as exc:
        raise P4RuntimeError("UNIMPLEMENTED", f"the softswitch executor is not available: {exc}") from exc
    program: Program = program_from_device_config(config)
    return program


class SoftSwitchServer:
    def __init__(
        self,
        device: Device,
        *,
        device_id: int = 0,
        address: str = DEFAULT_ADDRESS,
        ports: Ports | None = None,
        program_loader: ProgramLoader = default_program_loader,
        clock: Clock = time.monotonic_ns,
        idle_poll_interval: float = DEFAULT_IDLE_POLL_S,
        tls: TlsConfig | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.core = SwitchCore(
            device, device_id=device_id, program_loader=program_loader, clock=clock, on_commit=on_commit
        )
        self.address = address
        self.ports = ports
        self.port = 0
        """The TCP port the gRPC server listens on, once started."""
        self._idle_interval = idle_poll_interval
        self._tls = tls
        self._stop = threading.Event()
        self._grpc: grpc.Server | None = None
        self._idle_thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._grpc, self.port = make_grpc_server(self.core, self.address, self._tls)
        except RuntimeError as exc:  # grpcio raises this when the port is taken
            raise OSError(f"cannot listen on {self.address}: {exc}") from exc
        if self.ports is not None:
            self.core.set_transmit(self.ports.transmit)
            self.ports.start(self.core.receive)
        self._idle_thread = threading.Thread(target=self._poll_idle, name="idle-poll", daemon=True)
        self._idle_thread.start()
        self._grpc.start()
        _log.info("[switch] P4Runtime server listening on %s (port %d)", self.address, self.port)

    def _poll_idle(self) -> None:
        while not self._stop.wait(self._idle_interval):
            self.core.poll_idle_timeouts()
            self.poll_drops()

    def poll_drops(self) -> dict[str, int]:
        """Read what the kernel dropped before the pipeline (every port's socket, the CPU port's
        too), log what is new, and return every count so far by cause (the idle-poll thread
        calls this every poll interval).  In-memory ports lose nothing."""
        if not isinstance(self.ports, RawSocketPorts):
            return {}
        self.ports.poll_drops()
        for cause, n in self.ports.drops.new_since_last().items():
            _log.warning("[switch] %d frames lost before the pipeline: %s", n, cause)
        return self.ports.drops.counts()

    def kernel_drops(self) -> dict[str, int]:
        """Every count so far by cause, as of the last :meth:`poll_drops`."""
        return self.ports.drops.counts() if isinstance(self.ports, RawSocketPorts) else {}

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving, end every stream, stop the threads and close the ports.  Idempotent."""
        self._stop.set()
        self.core.close_all_streams()
        if self._grpc is not None:
            # bounded: grpcio may never finish a stream whose request failed to deserialize, and
            # an unbounded wait would then keep the process from exiting (tests/security)
            self._grpc.stop(grace).wait(grace + 1)
            self._grpc = None
        if self._idle_thread is not None:
            self._idle_thread.join(timeout=5)
            self._idle_thread = None
        lost = self.poll_drops()
        if lost:
            _log.info("[switch] frames lost before the pipeline while running: %s", lost)
        if self.ports is not None:
            self.ports.close()
        _log.info("[switch] stopped")

    def __enter__(self) -> SoftSwitchServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
