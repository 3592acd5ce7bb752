"""A device whose pipeline outlives the server (the ebpf back end pins it in bpffs): what the
server asks of it to come back after a restart with the pipeline, entries and meters it had.

* At start, :func:`restore` loads the pipeline config the device kept with its pins (the one the
  server committed last, P4Info and cookie included, so a controller that checks the cookie sees
  its own pipeline and pushes nothing) into the device, which re-adopts what is pinned.
* A SetForwardingPipelineConfig of the same program is the first one after the restart: the
  device keeps its tables (:attr:`PinnedDevice.kept_state`), and so does the server (meters).
* After each commit the server gives the device the config to keep (:func:`remember`).

A device without pins (the python back end) is none of this: its state dies with the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from google.protobuf.message import DecodeError

from dysco.errors import DyscoError
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.api import Device, MeterConfig, Program
from dysco.softswitch.server._entities import MeterStore

_log = logging.getLogger("dysco.softswitch.server")


@runtime_checkable
class PinnedDevice(Protocol):
    kept_state: bool
    """The last ``load`` kept the tables it found pinned (a re-adoption)."""

    def pinned_pipeline(self) -> bytes | None: ...
    def pin_pipeline(self, config: bytes) -> None: ...
    def meter_configs(self) -> dict[tuple[int, int], MeterConfig]: ...


@dataclass
class Restored:
    config: p4runtime_pb2.ForwardingPipelineConfig
    meters: MeterStore


def kept(device: Device) -> MeterStore | None:
    """The meters of a pipeline the device kept on its last ``load`` (None: it started anew)."""
    if isinstance(device, PinnedDevice) and device.kept_state:
        return MeterStore(indexed=device.meter_configs())
    return None


def restore(device: Device, load: Callable[[bytes], Program]) -> Restored | None:
    """Load the pinned pipeline (``load``: the server's program loader) when the device has no
    program yet; with one (given on the command line), take the pinned config if it is the same
    program and the device kept its tables.  None when there is nothing to restore."""
    if not isinstance(device, PinnedDevice):
        return None
    blob = device.pinned_pipeline()
    if not blob:
        return None
    try:
        config = p4runtime_pb2.ForwardingPipelineConfig.FromString(blob)
    except DecodeError as exc:
        _log.warning("[switch] the pinned pipeline config is unreadable (%s): not restored", exc)
        return None
    program = device.program
    if program is None:
        try:
            program = load(config.p4_device_config)
            device.load(program)
        except (DyscoError, OSError) as exc:
            _log.warning("[switch] the pinned pipeline could not be loaded (%s): starting without one", exc)
            return None
    elif program.device_config() != config.p4_device_config:
        return None
    meters = kept(device)
    if meters is None:
        return None
    _log.info("[switch] re-adopted the pinned pipeline (cookie %d)", config.cookie.cookie)
    return Restored(config, meters)


def remember(device: Device, config: p4runtime_pb2.ForwardingPipelineConfig) -> None:
    if isinstance(device, PinnedDevice):
        device.pin_pipeline(config.SerializeToString())
