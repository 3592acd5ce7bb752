"""The agent's metrics (``dysco agent --metrics ADDR:PORT``): what :class:`AgentService` counts
and reports in its status, as Prometheus families, read at scrape time.

The HTTP server runs in a thread of its own (:func:`dysco.metrics.serve`); the service lives on
the event loop.  A scrape therefore asks the loop for a snapshot (the status, with the punts the
NIC dropped read over P4Runtime) and builds the families from that copy in the server's thread:
nothing of the agent is read from two threads.

Two latency histograms:

* ``dysco_agent_punt_to_packet_out_seconds``: from a packet-in's arrival to the packet-out it
  caused, the table writes before it included (for a policy SYN, this agent's part of a session
  setup); observed by the service's worker through :attr:`AgentService.setup_latencies`;
* ``dysco_agent_reconfiguration_seconds``: at a left anchor, from ``reconfigure_started`` to
  ``reconfigured`` (label ``outcome="ok"``) or ``reconfigure_failed`` (``"failed"``), read from the
  service's event log at scrape time (a cursor; what the bounded log dropped between two scrapes
  is counted in ``dysco_agent_events_missed_total``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dysco import metrics as m
from dysco.runtime.p4rt._service import AgentService

SNAPSHOT_S = 5.0
"""How long a scrape waits for the event loop's snapshot."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
RECONF_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

Extra = Callable[[], Iterable[Metric]]
"""More families, built on the event loop with the snapshot (e.g. the fleet client's)."""


class _Observer:
    """What the service's worker appends latencies (ns) to: a histogram."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def append(self, ns: int, /) -> None:
        self.histogram.observe(ns / 1e9)


@dataclass
class _Snapshot:
    status: dict[str, Any]
    management: dict[str, int]
    extra: list[Metric] = field(default_factory=list)


class AgentCollector:
    """A prometheus_client collector of one :class:`AgentService` on ``loop``."""

    def __init__(
        self,
        service: AgentService,
        loop: asyncio.AbstractEventLoop,
        management: Callable[[], Mapping[str, int]] = dict,
        extra: Extra | None = None,
    ) -> None:
        self.service = service
        self.loop = loop
        self.management = management
        self.extra = extra
        self.latency = Histogram(
            "dysco_agent_punt_to_packet_out_seconds",
            "From a packet-in to the packet-out it caused, table writes included "
            "(for a policy SYN: this agent's part of the session setup)",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.reconf = Histogram(
            "dysco_agent_reconfiguration_seconds",
            "Reconfigurations this agent started as left anchor, from the start to the outcome",
            ["outcome"],
            buckets=RECONF_BUCKETS,
            registry=None,
        )
        self._cursor = 0
        self._started: dict[int, int] = {}
        self._missed = 0
        service.setup_latencies = _Observer(self.latency)

    # ---- on the event loop ------------------------------------------------------------------

    async def _snapshot(self) -> _Snapshot:
        status = await self.service.status_with_drops()
        self._read_events()
        extra = list(self.extra()) if self.extra is not None else []
        return _Snapshot(status, dict(self.management()), extra)

    def _read_events(self) -> None:
        """The notifications since the last scrape: reconfigurations' start and outcome."""
        log, last = self.service.event_log, self.service.event_seq
        first = last - len(log) + 1
        if self._cursor + 1 < first:
            self._missed += first - self._cursor - 1
        for row in list(log)[max(0, self._cursor + 1 - first) :]:
            event, sid, t = row["event"], row["session"], row["t_ns"]
            assert isinstance(sid, int) and isinstance(t, int)
            if event == "reconfigure_started":
                self._started[sid] = t
            elif event in ("reconfigured", "reconfigure_failed") and sid in self._started:
                outcome = "ok" if event == "reconfigured" else "failed"
                self.reconf.labels(outcome).observe((t - self._started.pop(sid)) / 1e9)
            elif event == "session_closed":
                self._started.pop(sid, None)
        self._cursor = last

    # ---- in the HTTP server's thread --------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self.loop)
        snap = future.result(timeout=SNAPSHOT_S)
        yield from m.families([*_families(snap.status, snap.management, self._missed), *snap.extra])
        yield from self.latency.collect()
        yield from self.reconf.collect()


def _families(status: dict[str, Any], management: Mapping[str, int], missed: int) -> Iterator[Metric]:
    core: dict[str, int] = status["core"]
    adapter: dict[str, int] = status["adapter"]
    config = status["config"]
    info = GaugeMetricFamily("dysco_agent_info", "This agent", labels=["name", "address", "p4runtime"])
    info.add_metric([config["name"], config["address"], config["p4runtime"]], 1)
    yield info
    yield m.gauge("dysco_agent_connected", "1 while connected to the NIC as primary", status["connected"])
    yield m.gauge("dysco_agent_sessions", "Sessions this agent keeps", status["sessions"])
    yield m.labelled(
        GaugeMetricFamily, "dysco_agent_sessions_by_state", "Sessions by state", "state", status["states"]
    )
    yield m.counter("dysco_agent_sessions_created_total", "Sessions set up", core.get("sessions.created", 0))
    yield m.counter("dysco_agent_sessions_closed_total", "Sessions ended", core.get("sessions.closed", 0))
    yield m.gauge("dysco_agent_chains", "Chains of the policies in force", config["chains"])
    tables = status["tables"]
    yield m.labelled(
        GaugeMetricFamily,
        "dysco_agent_table_entries",
        "Entries this agent holds in a NIC table",
        "table",
        {t: v["entries"] for t, v in tables.items()},
    )
    yield m.labelled(
        GaugeMetricFamily,
        "dysco_agent_table_size",
        "Size of a NIC table",
        "table",
        {t: v["size"] for t, v in tables.items()},
    )
    yield m.gauge("dysco_agent_ports_in_use", "Subsession ports allocated", status["ports_in_use"])
    yield m.labelled(
        CounterMetricFamily,
        "dysco_agent_punts_total",
        "Packet-ins by reason",
        "reason",
        m.by_prefix(core, "punts"),
    )
    punts = status["limits"]["punts"]
    dropped = {r: v["dropped"] for r, v in punts.items() if v.get("dropped") is not None}
    yield m.labelled(
        CounterMetricFamily,
        "dysco_agent_punts_dropped_total",
        "Punts the NIC's rate limit dropped, by reason",
        "reason",
        dropped,
    )
    drops = {**m.by_prefix(adapter, "drops")}
    for k, v in m.by_prefix(core, "drops").items():
        drops[k] = drops.get(k, 0) + v
    yield m.labelled(
        CounterMetricFamily,
        "dysco_agent_drops_total",
        "Packets the agent dropped, by reason",
        "reason",
        drops,
    )
    errors = {**m.by_prefix(adapter, "errors")}
    for k, v in m.by_prefix(core, "errors").items():
        errors[k] = errors.get(k, 0) + v
    yield m.labelled(CounterMetricFamily, "dysco_agent_errors_total", "Errors, by kind", "kind", errors)
    yield m.labelled(
        CounterMetricFamily,
        "dysco_agent_reconfigurations_total",
        "Reconfiguration steps and outcomes (reconf.* of the core)",
        "event",
        m.by_prefix(core, "reconf"),
    )
    notes = m.by_prefix(adapter, "notify")
    refused = {k.removesuffix("_refused"): v for k, v in notes.items() if k.endswith("_refused")}
    refused["policies"] = float(adapter.get("policies.reload_failed", 0))
    yield m.labelled(
        CounterMetricFamily,
        "dysco_agent_refusals_total",
        "Requests refused (reconfigure, right_request, splice, policies)",
        "what",
        refused,
    )
    yield m.labelled(
        CounterMetricFamily, "dysco_agent_notifications_total", "Notifications of the core", "event", notes
    )
    yield m.counter(
        "dysco_agent_policy_reloads_total",
        "Policy sets put in force without a restart",
        adapter.get("policies.reloads", 0),
    )
    yield m.labelled(
        GaugeMetricFamily,
        "dysco_agent_intake_waiting",
        "Events waiting for the core, by lane",
        "lane",
        status["intake"]["waiting"],
    )
    yield m.counter(
        "dysco_agent_packet_in_total", "Packet-ins read from the NIC", adapter.get("packet_in", 0)
    )
    yield m.counter("dysco_agent_packet_out_total", "Packet-outs sent", adapter.get("packet_out", 0))
    yield m.counter(
        "dysco_agent_reconnects_total", "Connections to the NIC lost", adapter.get("reconnects", 0)
    )
    yield m.counter(
        "dysco_agent_events_missed_total",
        "Notifications the bounded event log dropped before a scrape read them",
        missed,
    )
    yield m.every("dysco_agent_core_total", "Every counter of the protocol core", core)
    yield m.every("dysco_agent_adapter_total", "Every counter of the P4Runtime adapter", adapter)
    yield m.every("dysco_agent_management_total", "Every counter of the management socket", management)
