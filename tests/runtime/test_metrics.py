"""Metrics over HTTP (``--metrics``): a real agent and a real ``dysco switch`` process are scraped
with urllib and the answers parsed with prometheus_client's own parser; the values must move
with what happens (a SYN punted and set up), not just be present.  No root: the switch has no
interfaces and the test plays the host through packet-outs, as tests/runtime/test_p4rt.py does."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dysco import metrics, p4names
from dysco.errors import UserError
from dysco.runtime.cli import METRICS_LINE as AGENT_METRICS
from dysco.runtime.p4rt import AgentService
from dysco.runtime.p4rt._metrics import AgentCollector
from dysco.softswitch.api import Program
from dysco.softswitch.server.cli import METRICS_LINE as SWITCH_METRICS
from dysco.testbed import Process
from dysco.testbed._process import AGENT_READY, SWITCH_READY

from .test_p4rt import POLICY, WAIT_S, _running, _stop, free_port, from_host, settings, syn

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url``, by name and labels."""
    with urllib.request.urlopen(url, timeout=WAIT_S) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def url_of(line: str) -> str:
    return line.split()[-1]


class MetricsSwitch(Process):
    """``dysco switch --no-p4 --metrics 127.0.0.1:0`` on a free P4Runtime port."""

    def __init__(self, log: Path) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "dysco", "switch", "--no-p4", "--metrics", "127.0.0.1:0"]
        super().__init__(
            [*argv, "--", "--cpu-port", "255", "--grpc-server-addr", self.address], log, SWITCH_METRICS
        )

    def __enter__(self) -> MetricsSwitch:
        super().__enter__()
        self.metrics = url_of(self.ready_line)
        self.wait_for(SWITCH_READY, WAIT_S)
        return self


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[MetricsSwitch]:
    with MetricsSwitch(tmp_path / "switch.log") as sw:
        yield sw


def test_a_setup_moves_the_agents_and_the_switchs_metrics(
    dysco_program: Program, switch: MetricsSwitch
) -> None:
    session_out = p4names.SESSION_OUT.table

    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        collector = AgentCollector(service, asyncio.get_running_loop(), lambda: {"mgmt.requests": 3})
        exporter = metrics.serve("127.0.0.1:0", collector)
        url = f"http://{exporter.address}/metrics"
        task = await _running(service)
        try:
            before = await asyncio.to_thread(scrape, url)
            assert value(before, "dysco_agent_connected") == 1
            assert value(before, "dysco_agent_sessions") == 0
            assert value(before, "dysco_agent_table_size", table="session_out") >= 1024
            assert value(before, "dysco_agent_punt_to_packet_out_seconds_count") == 0
            assert value(before, "dysco_agent_management_total", counter="mgmt.requests") == 3
            assert ("dysco_agent_punts_total", frozenset({("reason", "policy_syn")})) not in before
            switch_before = await asyncio.to_thread(scrape, switch.metrics)
            assert value(switch_before, "dysco_switch_primary") == 1
            assert value(switch_before, "dysco_switch_table_entries", table=session_out) == 0

            from_host(service, syn())
            await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)

            after = await asyncio.to_thread(scrape, url)
            assert value(after, "dysco_agent_sessions") == 1
            assert value(after, "dysco_agent_sessions_created_total") == 1
            assert value(after, "dysco_agent_sessions_by_state", state="syn_sent") == 1
            assert value(after, "dysco_agent_punts_total", reason="policy_syn") == 1
            assert value(after, "dysco_agent_table_entries", table="session_out") == 1
            assert value(after, "dysco_agent_packet_out_total") == 1
            assert value(after, "dysco_agent_punt_to_packet_out_seconds_count") == 1
            assert 0 < value(after, "dysco_agent_punt_to_packet_out_seconds_sum") < WAIT_S
            assert value(after, "dysco_agent_punts_dropped_total", reason="policy_syn") == 0
            switch_after = await asyncio.to_thread(scrape, switch.metrics)
            assert value(switch_after, "dysco_switch_table_entries", table=session_out) == 1
            dropped = [k for k in switch_after if k[0] == "dysco_switch_counter_packets_total"]
            assert dropped, "the program's punt_dropped counter is served"
        finally:
            await _stop(task)
            exporter.close()

    asyncio.run(main())


def test_dysco_agent_serves_metrics_from_the_command_line(switch: MetricsSwitch, tmp_path: Path) -> None:
    policy = tmp_path / "policy.dysco"
    policy.write_text(POLICY)
    argv = [
        sys.executable,
        "-m",
        "dysco",
        "agent",
        "--p4runtime",
        switch.address,
        "--address",
        "10.0.1.2",
        "--p4",
        str(ROOT / "p4src" / "dysco.p4"),
        "--policies",
        str(policy),
        "--mgmt",
        str(tmp_path / "agent.sock"),
        "--metrics",
        "127.0.0.1:0",
    ]
    with Process(argv, tmp_path / "agent.log", AGENT_METRICS) as agent:
        url = url_of(agent.ready_line)
        agent.wait_for(AGENT_READY, WAIT_S)
        samples = scrape(url)
        assert value(samples, "dysco_agent_connected") == 1
        assert value(samples, "dysco_agent_chains") == 1
        info = {dict(labels)["name"] for name, labels in samples if name == "dysco_agent_info"}
        assert info == {"10.0.1.2"}
        # the management socket's counters are there: one status request moves them
        ctl = [sys.executable, "-m", "dysco", "ctl", "status", "--mgmt", str(tmp_path / "agent.sock")]
        subprocess.run(ctl, capture_output=True, check=True, timeout=WAIT_S)
        moved = scrape(url)
        management = [v for (name, _), v in moved.items() if name == "dysco_agent_management_total"]
        assert management and sum(management) >= 1


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("localhost", "--metrics 'localhost': expected ADDR:PORT, e.g. 127.0.0.1:9100"),
        ("127.0.0.1:99999", "--metrics '127.0.0.1:99999': expected ADDR:PORT"),
    ],
)
def test_a_bad_metrics_address_is_refused_before_starting(flag: str, message: str) -> None:
    for command in (["agent", "--address", "10.0.1.2", "--p4", "p4src/dysco.p4"], ["switch", "--no-p4"]):
        argv = [sys.executable, "-m", "dysco", *command, "--metrics", flag]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, check=False, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr, proc.stderr


def test_a_taken_metrics_port_is_a_clear_error(switch: MetricsSwitch) -> None:
    taken = switch.metrics.removeprefix("http://").removesuffix("/metrics")
    with pytest.raises(UserError, match=f"--metrics {taken}: cannot listen: "):
        metrics.serve(taken, _Empty())


class _Empty:
    """A collector never scraped: its server does not come up."""

    def collect(self) -> Iterator[object]:
        yield from ()
