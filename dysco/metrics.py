"""Metrics in the Prometheus text format over HTTP (``--metrics ADDR:PORT`` of ``dysco agent`` and
``dysco switch``), served by prometheus_client.

Each process has a registry of its own (no module-level state) holding one custom collector that
reads the counters and status the process keeps anyway, at scrape time: the hot paths count as
they always did and nothing is computed between two scrapes.  :func:`serve` starts the library's
HTTP server in a daemon thread; a collector that needs data owned by another thread (the agent's
event loop) fetches a snapshot from it.

Metric names are documented in docs/operations.md ("Metrics").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from threading import Thread
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from dysco.errors import UserError

_LABEL_SAFE = re.compile(r"[^a-zA-Z0-9_.:/-]")


def parse_address(text: str, flag: str = "--metrics") -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9100`` for IPv6; port 0 picks a free one) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"{flag} {text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9100")
    return host, int(port)


@dataclass
class MetricsServer:
    """The HTTP server of one registry; :meth:`close` stops it."""

    server: Any
    thread: Thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(address: str, collector: Collector, flag: str = "--metrics") -> MetricsServer:
    """Serve ``collector`` (in a registry of its own) at ``http://ADDRESS/metrics``."""
    host, port = parse_address(address, flag)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UserError(f"{flag} {address}: cannot listen: {exc.strerror or exc}") from None
    return MetricsServer(server, thread)


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    """One family with a sample per key of ``values`` (the key is the value of ``label``)."""
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([_LABEL_SAFE.sub("_", key)], value)
    return family


def by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, float]:
    """The counters named ``PREFIX.REST``, keyed by REST (``drops.bad_payload.tag`` ->
    ``bad_payload.tag`` for the prefix ``drops``)."""
    start = prefix + "."
    return {k[len(start) :]: float(v) for k, v in counts.items() if k.startswith(start)}


def every(name: str, doc: str, counts: Mapping[str, int]) -> Metric:
    """Every counter of a dict as one family labelled ``name``: nothing a process counts is
    left out of the scrape, whatever it is called."""
    return labelled(CounterMetricFamily, name, doc, "counter", {k: float(v) for k, v in counts.items()})


def families(metrics: Iterable[Metric]) -> Iterator[Metric]:
    """The families in name order (stable output for people reading a scrape)."""
    yield from sorted(metrics, key=lambda m: m.name)
