"""bench.reconf_time's pure parts on synthetic event logs: pairing a proxy removal's events across
the client's, the proxy's and the server's agents (five-tuples that come back, failures, events
of other sessions in between), the nearest-rank percentiles and the fractions within 2 and 4 ms."""

from __future__ import annotations

import itertools

import pytest

from bench._reconf_events import Event, pair, percentile, summary, target_met

IN1, OUT1 = "10.0.1.2:40000->10.0.2.2:9000", "10.0.2.2:50000->10.0.3.2:9000"
IN2, OUT2 = "10.0.1.2:40002->10.0.2.2:9000", "10.0.2.2:50002->10.0.3.2:9000"
MS = 1_000_000


class Log:
    """Events of one agent, numbered as the agent numbers them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seq = itertools.count(1)

    def add(self, t_ms: float, event: str, session: int, message: str) -> None:
        self.events.append(Event(next(self._seq), int(t_ms * MS), event, session, message))


def removal(
    client: Log, proxy: Log, server: Log, t0: float, sids: tuple[int, int], rid: int, tuples: tuple[str, str]
) -> None:
    """One proxy removal starting at ``t0`` ms: lock request at t0 + 1, the server's first data
    on the new path at t0 + 3, the client's at t0 + 4, freed at t0 + 5 (client), + 6 (proxy) and
    + 7 (server)."""
    (c, p), (inb, outb) = sids, tuples
    proxy.add(t0, "splice_started", p, f"{inb} + {outb}")
    proxy.add(t0, "right_request_sent", p, f"{inb}: to 10.0.1.2")
    client.add(t0 + 1, "reconfigure_started", c, f"{inb}: rid {rid}")
    proxy.add(t0 + 1.5, "right_request_accepted", p, f"{inb}: 10.0.1.2 started rid {rid}")
    server.add(t0 + 3, "new_path_data", 7, f"{outb}: rid {rid}: sent 552 bytes")
    client.add(t0 + 4, "new_path_data", c, f"{inb}: rid {rid}: received 552 bytes")
    client.add(t0 + 5, "reconfigured", c, f"{inb}: rid {rid}")
    proxy.add(t0 + 6, "session_closed", p, f"{inb} (spliced)")
    proxy.add(t0 + 6, "spliced", p, f"{inb}: the proxy is out of the path")
    server.add(t0 + 7, "reconfigured", 7, f"{outb}: rid {rid} (right anchor)")


def test_a_removal_is_paired_across_the_three_agents() -> None:
    client, proxy, server = Log(), Log(), Log()
    removal(client, proxy, server, 100.0, (3, 5), 2, (IN1, OUT1))
    [r] = pair(client.events, proxy.events, server.events)
    assert (r.inbound, r.outbound, r.rid, r.failure) == (IN1, OUT1, 2, "")
    assert r.complete
    assert r.data_ns == {"server": 103 * MS, "client": 104 * MS}
    assert r.freed_ns == {"client": 105 * MS, "proxy": 106 * MS, "server": 107 * MS}
    assert r.to_new_path_data_ms() == pytest.approx(2.0)  # the earlier anchor's data counts
    assert r.to_old_path_freed_ms() == pytest.approx(6.0)  # the last agent to free counts
    assert r.to_new_path_data_ms("splice") == pytest.approx(3.0)
    assert r.to_old_path_freed_ms("splice") == pytest.approx(7.0)


def test_reused_five_tuples_and_interleaved_removals_pair_by_time_and_rid() -> None:
    client, proxy, server = Log(), Log(), Log()
    # two removals overlap in time; then the first five-tuples come back for a third session
    proxy.add(0, "splice_started", 1, f"{IN1} + {OUT1}")
    proxy.add(0.5, "splice_started", 2, f"{IN2} + {OUT2}")
    client.add(1, "reconfigure_started", 11, f"{IN2}: rid 4")  # the second one's lock goes first
    client.add(2, "reconfigure_started", 10, f"{IN1}: rid 6")
    server.add(3, "new_path_data", 21, f"{OUT1}: rid 6: sent 100 bytes")
    server.add(4, "new_path_data", 22, f"{OUT2}: rid 4: sent 100 bytes")
    client.add(5, "reconfigured", 11, f"{IN2}: rid 4")
    client.add(9, "reconfigured", 10, f"{IN1}: rid 6")
    proxy.add(10, "spliced", 2, f"{IN2}: the proxy is out of the path")
    proxy.add(11, "spliced", 1, f"{IN1}: the proxy is out of the path")
    server.add(12, "reconfigured", 22, f"{OUT2}: rid 4 (right anchor)")
    server.add(13, "reconfigured", 21, f"{OUT1}: rid 6 (right anchor)")
    removal(client, proxy, server, 50.0, (12, 3), 8, (IN1, OUT1))
    first, second, third = pair(client.events, proxy.events, server.events)
    assert (first.inbound, first.rid, second.inbound, second.rid, third.inbound, third.rid) == (
        IN1, 6, IN2, 4, IN1, 8,
    )  # fmt: skip
    assert (first.to_new_path_data_ms(), first.to_old_path_freed_ms()) == (
        pytest.approx(1.0),
        pytest.approx(11.0),
    )
    assert (second.to_new_path_data_ms(), second.to_old_path_freed_ms()) == (
        pytest.approx(3.0),
        pytest.approx(11.0),
    )
    assert third.to_old_path_freed_ms() == pytest.approx(6.0), "not paired with the first session's events"


def test_failed_and_incomplete_removals_have_no_times() -> None:
    client, proxy, server = Log(), Log(), Log()
    # refused on the left: the proxy hears of it, the client never started
    proxy.add(0, "splice_started", 1, f"{IN1} + {OUT1}")
    proxy.add(1, "right_request_refused", 1, f"{IN1}: 10.0.1.2 refused (BUSY)")
    proxy.add(1, "splice_failed", 1, f"{IN1}: the agent on the left did not start the reconfiguration")
    # started, then failed at the client
    proxy.add(10, "splice_started", 2, f"{IN2} + {OUT2}")
    client.add(11, "reconfigure_started", 5, f"{IN2}: rid 2")
    client.add(40, "reconfigure_failed", 5, f"{IN2}: rid 2: the new path could not be set up")
    # complete except that the server never freed its part (its event is missing)
    proxy.add(50, "splice_started", 3, f"{IN1} + {OUT1}")
    client.add(51, "reconfigure_started", 6, f"{IN1}: rid 4")
    client.add(52, "new_path_data", 6, f"{IN1}: rid 4: sent 10 bytes")
    client.add(53, "reconfigured", 6, f"{IN1}: rid 4")
    proxy.add(54, "spliced", 3, f"{IN1}: the proxy is out of the path")
    refused, failed, partial = pair(client.events, proxy.events, server.events)
    assert refused.failure.startswith("proxy: right_request_refused") and refused.lock_ns is None
    assert failed.failure == f"client: {IN2}: rid 2: the new path could not be set up"
    assert not partial.failure and not partial.complete and partial.freed_ns.keys() == {"client", "proxy"}
    for r in (refused, failed, partial):
        assert r.to_new_path_data_ms() is None and r.to_old_path_freed_ms() is None


def test_a_removal_without_data_on_the_new_path_has_only_the_freed_time() -> None:
    client, proxy, server = Log(), Log(), Log()
    removal(client, proxy, server, 0.0, (1, 1), 2, (IN1, OUT1))
    client.events = [e for e in client.events if e.event != "new_path_data"]
    server.events = [e for e in server.events if e.event != "new_path_data"]
    [r] = pair(client.events, proxy.events, server.events)
    assert r.complete and r.to_new_path_data_ms() is None and r.to_old_path_freed_ms() == pytest.approx(6.0)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1000, 0, -1)]  # 1..1000, unsorted
    assert percentile(values, 50) == 500.0
    assert percentile(values, 98.7) == 987.0
    assert percentile(values, 100) == 1000.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([5.0], 1) == 5.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], 0)


def test_summary_and_the_papers_target() -> None:
    # 80 values at 1 ms, 19 at 3 ms, 1 at 10 ms: 80% within 2 ms, 99% within 4 ms
    values = [1.0] * 80 + [3.0] * 19 + [10.0]
    s = summary(values)
    assert s["n"] == 100
    assert (s["p50_ms"], s["p80_ms"], s["p90_ms"], s["p98.7_ms"], s["p99_ms"], s["max_ms"]) == (
        1.0, 1.0, 3.0, 3.0, 3.0, 10.0,
    )  # fmt: skip
    assert (s["within_2ms"], s["within_4ms"]) == (0.8, 0.99)
    assert target_met(s)
    worse = summary([1.0] * 79 + [3.0] * 21)
    assert worse["within_2ms"] == 0.79 and not target_met(worse)
    tail = summary([1.0] * 90 + [3.0] * 8 + [5.0] * 2)  # 98% within 4 ms < 98.7%
    assert not target_met(tail)
    assert summary([]) == {"n": 0} and not target_met(summary([]))
