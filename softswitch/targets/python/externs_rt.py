"""Stateful v1model externs at run time: counters, meters (trTCM, RFC 2698) and registers."""

from __future__ import annotations

from ...api import Clock, CounterValue, EntryError, MeterConfig

GREEN, YELLOW, RED = 0, 1, 2


class CounterArray:
    def __init__(self, size: int, unit: str) -> None:
        self.size = size
        self.unit = unit
        self.cells = [CounterValue() for _ in range(size)]

    def count(self, index: int, length: int) -> None:
        if index < self.size:  # bmv2 reports an error and goes on; so do we, silently
            c = self.cells[index]
            c.packets += 1
            c.bytes += length

    def check(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise EntryError("OUT_OF_RANGE", f"index {index} out of range (size {self.size})")


class MeterCell:
    """One two-rate three-colour meter; unconfigured meters mark everything green."""

    __slots__ = ("config", "last", "tc", "tp")

    def __init__(self) -> None:
        self.config: MeterConfig | None = None
        self.tc = 0.0
        self.tp = 0.0
        self.last = 0

    def configure(self, config: MeterConfig | None, now: int) -> None:
        self.config = config
        if config is not None:
            self.tc, self.tp = float(config.cburst), float(config.pburst)
        self.last = now

    def execute(self, amount: int, now: int) -> int:
        cfg = self.config
        if cfg is None:
            return GREEN
        dt = max(0, now - self.last) / 1e9
        self.last = now
        self.tp = min(float(cfg.pburst), self.tp + cfg.pir * dt)
        self.tc = min(float(cfg.cburst), self.tc + cfg.cir * dt)
        if self.tp < amount:
            return RED
        if self.tc < amount:
            self.tp -= amount
            return YELLOW
        self.tp -= amount
        self.tc -= amount
        return GREEN


class MeterArray:
    def __init__(self, size: int, unit: str, clock: Clock) -> None:
        self.size = size
        self.unit = unit
        self.clock = clock
        self.cells = [MeterCell() for _ in range(size)]

    def execute(self, index: int, length: int) -> int:
        if index >= self.size:
            return GREEN
        return self.cells[index].execute(length if self.unit == "bytes" else 1, self.clock())

    def configure(self, index: int, config: MeterConfig | None) -> None:
        if not 0 <= index < self.size:
            raise EntryError("OUT_OF_RANGE", f"meter index {index} out of range (size {self.size})")
        self.cells[index].configure(config, self.clock())


class RegisterArray:
    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self.width = width
        self.cells = [0] * size

    def read(self, index: int) -> int:
        return self.cells[index] if index < self.size else 0

    def write(self, index: int, value: int) -> None:
        if index < self.size:
            self.cells[index] = value & ((1 << self.width) - 1)

    def check(self, index: int, value: int = 0) -> None:
        if not 0 <= index < self.size:
            raise EntryError("OUT_OF_RANGE", f"register index {index} out of range (size {self.size})")
        if not 0 <= value < (1 << self.width):
            raise EntryError("INVALID_ARGUMENT", f"value {value} does not fit {self.width} bits")
