"""Punt rate limits: the ``MeterEntry`` updates that configure the NIC's punt meter, and reports.

p4src/dysco.p4 meters every punt to the agent per reason (``DyscoIngress.punt_meter``, one
packet meter cell per reason code) and counts the punts it drops in ``DyscoIngress.punt_dropped``
(docs/dataplane.md, "Punt rate limits").  An unconfigured cell limits nothing, so an agent that
writes no meter entries can be starved by a SYN flood; :data:`DEFAULT_LIMITS` is what an agent
should write when the operator says nothing.

Pure functions of the P4Info: :func:`meter_updates` gives the ``Update`` messages (MODIFY, the
only operation meters know), :func:`peer_meter_updates` those of the per-agent cells
(``DyscoIngress.peer_meter``, runtime/core/_peers.py), :func:`dropped_read` the entity that reads the
drop counters back, :func:`dropped_counts` and :func:`describe` turn both into plain dicts for
``dysco ctl status``.
:func:`parse_limit` reads the operator's ``REASON=RATE[/BURST]`` or ``REASON=off``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dysco import p4names
from dysco.errors import UserError
from dysco.p4names import Reason
from dysco.proto.p4.v1 import p4runtime_pb2


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``rate`` punts per second on average, ``burst`` at once."""

    rate: int
    burst: int

    def __post_init__(self) -> None:
        if self.rate < 1 or self.burst < 1:
            raise UserError(f"punt limit {self.rate}/{self.burst}: rate and burst must be at least 1")


DEFAULT_LIMITS: Mapping[Reason, Limit | None] = {
    Reason.POLICY_SYN: Limit(2000, 2000),
    Reason.DYSCO_SYN: Limit(1000, 1000),
    Reason.TAGGED_SYN: Limit(2000, 2000),
    Reason.CONTROL: Limit(1000, 500),
    Reason.INBAND: Limit(1000, 500),
    Reason.TWO_PATH: Limit(20000, 5000),
    Reason.TEARDOWN: Limit(4000, 4000),
    Reason.UNSUPPORTED: Limit(1000, 1000),
    Reason.IP_UNSUPPORTED: Limit(1000, 1000),
    Reason.SETUP_MISS: Limit(2000, 2000),
}
"""Limits on by default, per reason.  SYN setups are what a Python agent keeps up with, with a
burst that absorbs a client opening many connections at once.  Dysco SYNs, the one reason an
off-path flood reaches, get half the others' rate: reading a punt from the P4Runtime stream and
refusing it costs the agent about 0.2 ms of CPU (pure-Python protobuf and grpc.aio), so 1000/s is
a fifth of a core, what an agent still gets on a busy 2-core machine that also runs its NICs; at
2000/s the agent read more slowly than the NIC punted, and the NIC's queue for it dropped
teardown copies with the flood (issue 8).  Policy and tagged SYNs come only from the agent's own
host.  Control messages are a handful per reconfiguration; two-path punts carry whole sessions'
data for a few RTTs and teardown copies come two or three per session, so both are far above the
SYN rate.  Setup misses (SYN-ACKs that overtook their entries' writes) come at most one per
setup, so at the policy SYNs' rate.  ``None``: no limit."""


def _meter(p4info: Any, name: str = p4names.PUNT_METER) -> Any:
    for m in p4info.meters:
        if m.preamble.name == name:
            return m
    raise UserError(f"the P4 program has no meter {name} (is it p4src/dysco.p4?)")


def _counter(p4info: Any) -> Any:
    for c in p4info.counters:
        if c.preamble.name == p4names.PUNT_DROPPED:
            return c
    raise UserError(f"the P4 program has no counter {p4names.PUNT_DROPPED} (is it p4src/dysco.p4?)")


def _cell(meter: Any, index: int, limit: Limit | None) -> p4runtime_pb2.Update:
    """The MODIFY of cell ``index``: CIR = PIR = rate, CBURST = PBURST = burst (a punt is red, and
    dropped, when the peak bucket is empty); ``None`` clears the cell (no limit)."""
    u = p4runtime_pb2.Update(type=p4runtime_pb2.Update.MODIFY)
    entry = u.entity.meter_entry
    entry.meter_id = meter.preamble.id
    entry.index.index = index
    if limit is not None:
        entry.config.cir = entry.config.pir = limit.rate
        entry.config.cburst = entry.config.pburst = limit.burst
    return u


def meter_updates(
    p4info: Any, limits: Mapping[Reason, Limit | None] = DEFAULT_LIMITS
) -> list[p4runtime_pb2.Update]:
    """One MODIFY per reason in ``limits`` (:func:`_cell`)."""
    meter = _meter(p4info)
    if meter.spec.unit != meter.spec.PACKETS:
        raise UserError(f"{p4names.PUNT_METER} must count packets")
    updates = []
    for reason, limit in sorted(limits.items()):
        if not 0 <= reason < meter.size:
            raise UserError(f"reason {reason} outside {p4names.PUNT_METER}[0..{meter.size - 1}]")
        updates.append(_cell(meter, int(reason), limit))
    return updates


def peer_meter_updates(
    p4info: Any, limits: Mapping[Reason, Limit | None] = DEFAULT_LIMITS
) -> list[p4runtime_pb2.Update]:
    """One MODIFY per cell of the peer meter: every known agent gets the Dysco-SYN limit in a
    cell of its own (its control messages are metered there too).  Nothing for a program without
    the peer meter."""
    if not any(m.preamble.name == p4names.PEER_METER for m in p4info.meters):
        return []
    meter = _meter(p4info, p4names.PEER_METER)
    limit = limits.get(Reason.DYSCO_SYN)
    return [_cell(meter, cell, limit) for cell in range(meter.size)]


def dropped_read(p4info: Any) -> p4runtime_pb2.Entity:
    """The entity of a Read that returns every cell of the drop counter."""
    entity = p4runtime_pb2.Entity()
    entity.counter_entry.counter_id = _counter(p4info).preamble.id
    return entity


def dropped_counts(p4info: Any, entities: Iterable[p4runtime_pb2.Entity]) -> dict[str, int]:
    """Punts dropped per reason name (``policy_syn``, ...; ``reason_N`` for codes without a name)
    from the entities a Read of :func:`dropped_read` returned; cells that dropped nothing are left
    out."""
    cid = _counter(p4info).preamble.id
    out: dict[str, int] = {}
    for e in entities:
        c = e.counter_entry
        if e.WhichOneof("entity") != "counter_entry" or c.counter_id != cid or not c.data.packet_count:
            continue
        out[_name(c.index.index)] = c.data.packet_count
    return out


def _name(code: int) -> str:
    try:
        return Reason(code).name.lower()
    except ValueError:
        return f"reason_{code}"


def describe(
    limits: Mapping[Reason, Limit | None], dropped: Mapping[str, int] | None = None
) -> dict[str, dict[str, int | None]]:
    """The configured limits (and, when given, the drops) per reason, for status output."""
    out: dict[str, dict[str, int | None]] = {}
    for reason, limit in sorted(limits.items()):
        row: dict[str, int | None] = {
            "rate_pps": limit.rate if limit else None,
            "burst": limit.burst if limit else None,
        }
        if dropped is not None:
            row["dropped"] = dropped.get(_name(reason), 0)
        out[_name(reason)] = row
    return out


def parse_limit(text: str) -> tuple[Reason, Limit | None]:
    """``policy_syn=500/100`` (rate 500 punts/s, burst 100), ``control=50`` (burst = rate) or
    ``two_path=off`` (no limit), as given to ``dysco agent --punt-limit``."""
    name, sep, value = text.partition("=")
    try:
        reason = Reason[name.strip().upper()]
    except KeyError:
        names = ", ".join(r.name.lower() for r in Reason)
        raise UserError(f"--punt-limit {text!r}: unknown reason {name.strip()!r} (one of {names})") from None
    if not sep:
        raise UserError(f"--punt-limit {text!r}: expected REASON=RATE[/BURST] or REASON=off")
    value = value.strip()
    if value == "off":
        return reason, None
    rate, _, burst = value.partition("/")
    if not rate.isdigit() or not (burst or rate).isdigit():
        raise UserError(f"--punt-limit {text!r}: RATE and BURST are whole numbers of packets")
    return reason, Limit(int(rate), int(burst or rate))


def with_overrides(
    overrides: Iterable[tuple[Reason, Limit | None]], base: Mapping[Reason, Limit | None] = DEFAULT_LIMITS
) -> dict[Reason, Limit | None]:
    """``base`` with the operator's limits (:func:`parse_limit` results) put in."""
    out = dict(base)
    out.update(overrides)
    return out
