"""The pure part of ``bench.reconf_time``: a proxy removal's events, paired across the three
agents' event logs, and the numbers of a distribution.

The agents log the core's notifications with CLOCK_MONOTONIC timestamps (``dysco ctl events``);
all agents run on one machine, so their stamps compare directly.  One proxy removal is, in the
order they happen (client -> proxy -> server, both legs Dysco sessions):

* proxy agent: ``splice_started`` ``IN + OUT`` (the proxy's splice call reached it; it sends a
  rightRequest to the client's agent), then ``spliced`` ``IN: ...`` once the TEARDOWN of the old
  path reached it (or ``splice_failed`` / ``right_request_refused`` / ``right_request_failed``);
* client agent, the left anchor: ``reconfigure_started`` ``IN: rid R`` (it sent the lock request),
  ``new_path_data`` ``IN: rid R: sent|received N bytes`` (its first data segment on the new path),
  ``reconfigured`` ``IN: rid R`` (old path torn down from here; or ``reconfigure_failed``);
* server agent, the right anchor: ``new_path_data`` ``OUT: rid R: ...`` and ``reconfigured``
  ``OUT: rid R (right anchor)``.

IN is the client's session as the client and the proxy's agent name it, OUT the proxy's session
to the server as the proxy's and the server's agents name it, R the client agent's id of the
reconfiguration.  Five-tuples may come back (ports are reused), so a proxy's splice is matched
with the first client reconfiguration of IN that started after it and before the proxy's agent
learnt the outcome, and everything else by (session id, rid) at the client and (OUT, rid) at the
server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dysco.plots import fraction_within

PERCENTILES = (50.0, 80.0, 90.0, 98.7, 99.0)
LIMITS_MS = (2.0, 4.0)
PAPER = {"within_2ms": 0.80, "within_4ms": 0.987}
"""Dysco (SIGCOMM'17), Figure 12, proxy removal: almost 80% of reconfigurations took less than
2 ms and 98.7% less than 4 ms."""
FAILED = ("splice_failed", "right_request_refused", "right_request_failed")

_TUPLE = r"\d+\.\d+\.\d+\.\d+:\d+->\d+\.\d+\.\d+\.\d+:\d+"
_SPLICE = re.compile(rf"({_TUPLE}) \+ ({_TUPLE})")
_HEAD = re.compile(rf"({_TUPLE}): rid (\d+)\b")


@dataclass(frozen=True, slots=True)
class Event:
    """One logged notification of an agent (an element of ``events`` in the ``events`` answer)."""

    seq: int
    t_ns: int
    event: str
    session: int
    message: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        return cls(int(d["seq"]), int(d["t_ns"]), str(d["event"]), int(d["session"]), str(d["message"]))


@dataclass(slots=True)
class Removal:
    """One proxy removal, its times in CLOCK_MONOTONIC ns."""

    inbound: str
    outbound: str
    splice_ns: int
    """The proxy's agent started the splice (``splice_started``)."""
    lock_ns: int | None = None
    """The client's agent sent the lock request (``reconfigure_started``)."""
    rid: int | None = None
    data_ns: dict[str, int] = field(default_factory=dict)
    """Per anchor (client, server): its first data segment on the new path."""
    freed_ns: dict[str, int] = field(default_factory=dict)
    """Per agent (client, proxy, server): it freed its part of the old path."""
    failure: str = ""
    outcome_ns: int | None = None
    """The proxy's agent learnt the outcome (``spliced`` or a failure)."""

    @property
    def complete(self) -> bool:
        return not self.failure and self.lock_ns is not None and len(self.freed_ns) == 3

    def to_new_path_data_ms(self, start: str = "lock") -> float | None:
        """From the lock request (or the splice, ``start="splice"``) to the first data segment on
        the new path at either anchor; None when incomplete or no data was seen on the new path."""
        begin = self.lock_ns if start == "lock" else self.splice_ns
        if not self.complete or begin is None or not self.data_ns:
            return None
        return (min(self.data_ns.values()) - begin) / 1e6

    def to_old_path_freed_ms(self, start: str = "lock") -> float | None:
        """To the last of the three agents freeing the old path; None when incomplete."""
        begin = self.lock_ns if start == "lock" else self.splice_ns
        if not self.complete or begin is None:
            return None
        return (max(self.freed_ns.values()) - begin) / 1e6


def _rid(message: str) -> tuple[str, int] | None:
    m = _HEAD.match(message)
    return (m.group(1), int(m.group(2))) if m else None


def pair(client: Iterable[Event], proxy: Iterable[Event], server: Iterable[Event]) -> list[Removal]:
    """The proxy removals in the three agents' logs, in the order their splices started."""
    removals: list[Removal] = []
    open_: dict[int, Removal] = {}
    for e in sorted(proxy, key=lambda e: e.seq):
        if e.event == "splice_started" and (m := _SPLICE.match(e.message)):
            r = Removal(m.group(1), m.group(2), e.t_ns)
            removals.append(r)
            open_[e.session] = r
        elif e.session in open_ and (e.event == "spliced" or e.event in FAILED):
            r = open_.pop(e.session)
            r.outcome_ns = e.t_ns
            if e.event == "spliced":
                r.freed_ns["proxy"] = e.t_ns
            else:
                r.failure = f"proxy: {e.event}: {e.message}"

    starts: dict[str, list[tuple[int, int, int]]] = {}
    """Client: session five-tuple -> (t_ns, session id, rid) of its reconfigurations, in time order."""
    by_rid: dict[tuple[int, int], list[Event]] = {}
    for e in sorted(client, key=lambda e: e.seq):
        head = _rid(e.message)
        if head is None:
            continue
        if e.event == "reconfigure_started":
            starts.setdefault(head[0], []).append((e.t_ns, e.session, head[1]))
        by_rid.setdefault((e.session, head[1]), []).append(e)
    at_server: dict[tuple[str, int], list[Event]] = {}
    for e in sorted(server, key=lambda e: e.seq):
        head = _rid(e.message)
        if head is not None:
            at_server.setdefault(head, []).append(e)

    for r in removals:
        candidates = starts.get(r.inbound, [])
        end = r.outcome_ns if r.outcome_ns is not None else float("inf")
        i = next((i for i, (t, _, _) in enumerate(candidates) if r.splice_ns <= t <= end), None)
        if i is None:
            r.failure = r.failure or "client: no reconfiguration started"
            continue
        t, sid, rid = candidates.pop(i)
        r.lock_ns, r.rid = t, rid
        for e in by_rid.get((sid, rid), []):
            if e.event == "new_path_data":
                r.data_ns.setdefault("client", e.t_ns)
            elif e.event == "reconfigured":
                r.freed_ns.setdefault("client", e.t_ns)
            elif e.event == "reconfigure_failed":
                r.failure = r.failure or f"client: {e.message}"
        for e in at_server.get((r.outbound, rid), []):
            if e.event == "new_path_data":
                r.data_ns.setdefault("server", e.t_ns)
            elif e.event == "reconfigured":
                r.freed_ns.setdefault("server", e.t_ns)
    return removals


# ---- numbers ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least ``p`` % of the values <= it."""
    if not values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    xs = sorted(values)
    return xs[max(1, math.ceil(p / 100 * len(xs) - 1e-9)) - 1]


def _key(p: float) -> str:
    return f"p{p:g}"


def summary(values_ms: Sequence[float]) -> dict[str, Any]:
    """n, the percentiles and the maximum in ms, and the fractions within 2 and 4 ms."""
    if not values_ms:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(values_ms)}
    out.update({f"{_key(p)}_ms": round(percentile(values_ms, p), 3) for p in PERCENTILES})
    out["max_ms"] = round(max(values_ms), 3)
    out["mean_ms"] = round(sum(values_ms) / len(values_ms), 3)
    for limit in LIMITS_MS:
        out[f"within_{limit:g}ms"] = round(fraction_within(values_ms, limit), 4)
    return out


def target_met(s: Mapping[str, Any]) -> bool:
    """The paper's result or better: at least 80% within 2 ms and 98.7% within 4 ms."""
    return bool(s.get("n")) and all(s[k] >= v for k, v in PAPER.items())
