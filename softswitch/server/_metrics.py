"""The switch's metrics (``dysco switch --metrics ADDR:PORT``): table occupancy, the program's
indirect counters (``punt_dropped`` of dysco.p4: punts dropped by reason, the index being the
reason's code), packets the device counted, and the P4Runtime streams, read at scrape time.

A scrape reads the device under the core's lock (:meth:`SwitchCore.inspect`), as a Read RPC
does: between two packets, never in the middle of one.  Counting a table's entries walks it, so
a scrape of a switch holding a million entries costs what reading them over P4Runtime costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dysco import metrics as m
from dysco.softswitch.api import DeviceStats
from dysco.softswitch.server._core import SwitchCore

EBPF_STATS = ("in", "out", "drop", "pass")
"""The ebpf back end's per-CPU packet counts, in its stats map's order."""


@dataclass
class _Snapshot:
    pipeline: bool
    streams: int
    primary: bool
    stream_drops: int
    offload_drops: int
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    """table -> (entries, size)"""
    counters: dict[tuple[str, int], int] = field(default_factory=dict)
    """(counter, index) -> packets"""
    packets: dict[str, int] = field(default_factory=dict)
    """what the device counted itself: in, out, dropped, ..."""


def _read(core: SwitchCore) -> _Snapshot:
    streams, primary, dropped = core.stream_state()
    schema = core.schema
    snap = _Snapshot(schema is not None, streams, primary, dropped, core.offload_drops)
    if schema is None:
        return snap
    device = core.device
    sizes = {t.preamble.id: t.size for t in schema.p4info.tables}
    for tid, table in schema.tables.items():
        snap.tables[table.name] = (len(device.read_entries(tid)), sizes.get(tid, 0))
    for cid, info in schema.counters.items():
        for i in range(info.size):
            snap.counters[info.name, i] = device.read_counter(cid, i).packets
    stats = getattr(device, "stats", None)
    if isinstance(stats, DeviceStats):  # the python back end
        snap.packets = {
            "in": stats.packets_in,
            "out": stats.packets_out,
            "dropped": stats.packets_dropped,
            "malformed": stats.malformed,
        }
    elif callable(getattr(device, "counters", None)):  # the ebpf back end
        snap.packets = dict(zip(EBPF_STATS, device.counters(), strict=False))  # type: ignore[attr-defined]
    return snap


class SwitchCollector:
    """A prometheus_client collector of one running switch.  ``kernel_drops``: the frames the
    kernel dropped before the pipeline, by cause (:meth:`SoftSwitchServer.kernel_drops`)."""

    def __init__(
        self, core: SwitchCore, backend: str, kernel_drops: Callable[[], dict[str, int]] | None = None
    ) -> None:
        self.core = core
        self.backend = backend
        self.kernel_drops = kernel_drops

    def collect(self) -> Iterator[Metric]:
        snap = self.core.inspect(_read)
        info = GaugeMetricFamily("dysco_switch_info", "This switch", labels=["backend", "device_id"])
        info.add_metric([self.backend, str(self.core.device_id)], 1)
        families: list[Metric] = [
            info,
            m.gauge("dysco_switch_pipeline", "1 once a pipeline is committed", snap.pipeline),
            m.gauge("dysco_switch_streams", "Open P4Runtime streams", snap.streams),
            m.gauge("dysco_switch_primary", "1 while a controller is primary", snap.primary),
            m.counter(
                "dysco_switch_stream_dropped_total",
                "Packet-ins and notifications dropped because a controller read too slowly",
                snap.stream_drops,
            ),
            m.counter(
                "dysco_switch_offload_dropped_total",
                "Packet-ins whose checksum offload could not be finished",
                snap.offload_drops,
            ),
            m.labelled(
                GaugeMetricFamily,
                "dysco_switch_table_entries",
                "Entries in a table",
                "table",
                {t: v[0] for t, v in snap.tables.items()},
            ),
            m.labelled(
                GaugeMetricFamily,
                "dysco_switch_table_size",
                "Size of a table (P4Info)",
                "table",
                {t: v[1] for t, v in snap.tables.items()},
            ),
            m.labelled(
                CounterMetricFamily,
                "dysco_switch_packets_total",
                "Packets the device counted",
                "what",
                snap.packets,
            ),
        ]
        counters = CounterMetricFamily(
            "dysco_switch_counter_packets_total",
            "The program's indirect counters (dysco.p4: punt_dropped by reason code)",
            labels=["counter", "index"],
        )
        for (name, index), packets in sorted(snap.counters.items()):
            counters.add_metric([name, str(index)], packets)
        families.append(counters)
        if self.kernel_drops is not None:
            families.append(
                m.labelled(
                    CounterMetricFamily,
                    "dysco_switch_kernel_dropped_total",
                    "Frames the kernel dropped before the pipeline saw them (a port's full receive "
                    "queue, a refused send), by port and cause",
                    "cause",
                    self.kernel_drops(),
                )
            )
        yield from m.families(families)
