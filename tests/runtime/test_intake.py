"""The agent's intake (runtime/p4rt/_intake.py) and how the P4Runtime service uses it: teardown
copies and the like before new-session SYNs, a bounded SYN backlog that lets the oldest go, and a
worker that leaves the stream reader its turns.  In process, no target: the stream is a list of
messages and the core a recorder."""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dysco import p4names
from dysco.errors import InternalError, PeerError
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime.core import Config
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._events import Action, Port, Reason
from dysco.runtime.core._types import ip_int
from dysco.runtime.p4rt import AgentService, Pipeline, Settings
from dysco.runtime.p4rt import _intake as intake
from dysco.runtime.p4rt import _service as service_mod
from dysco.runtime.p4rt._intake import Intake, Lane
from dysco.softswitch.api import Program


def test_first_lane_goes_before_setup_lane_and_each_keeps_its_order() -> None:
    q: Intake[str] = Intake(collections.Counter())
    q.put_punt("syn1", Lane.SETUP)
    q.put_punt("fin1", Lane.FIRST)
    q.put_punt("syn2", Lane.SETUP)
    q.put("timer")
    q.put_punt("fin2", Lane.FIRST)
    assert q.waiting() == {"first": 3, "setup": 2}
    assert q.take(2, 10) == ["fin1", "timer"]  # the SETUP lane waits while FIRST has more
    assert q.take(10, 1) == ["fin2", "syn1"]
    assert q.take(10, 10) == ["syn2"]
    assert len(q) == 0 and q.take(10, 10) == []


def _frame(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return pk.TcpFrame(b"\2" * 6, b"\4" * 6, ip_int(src), ip_int(dst), sport, dport, 1, 0, flags).to_bytes()


def test_a_flows_first_lane_punt_takes_its_waiting_syns_ahead_of_itself() -> None:
    """The SYN of a flow waits in the SETUP lane behind others; a FIN of the same flow (either
    direction) comes on the FIRST lane: the core gets the SYN first, then the FIN, and the
    other flows' SYNs keep their place."""
    counters: collections.Counter[str] = collections.Counter()
    q: Intake[str] = Intake(counters)
    syn_a = _frame("10.0.1.2", "10.0.3.2", 40000, 80, pk.SYN)
    fin_a = _frame("10.0.3.2", "10.0.1.2", 80, 40000, pk.FIN | pk.ACK)  # the other direction
    syn_b = _frame("10.0.1.2", "10.0.3.2", 40001, 80, pk.SYN)
    assert intake.flow_key(syn_a) == intake.flow_key(fin_a) != intake.flow_key(syn_b)
    q.put_punt("syn_b", Lane.SETUP, intake.flow_key(syn_b))
    q.put_punt("syn_a", Lane.SETUP, intake.flow_key(syn_a))
    q.put_punt("syn_a again", Lane.SETUP, intake.flow_key(syn_a))
    q.put_punt("fin_a", Lane.FIRST, intake.flow_key(fin_a))
    q.put_punt("control", Lane.FIRST, None)
    assert q.waiting() == {"first": 4, "setup": 1}
    assert q.take(10, 10) == ["syn_a", "syn_a again", "fin_a", "control", "syn_b"]
    assert counters["intake.promoted"] == 2
    q.put_punt("fin_a", Lane.FIRST, intake.flow_key(fin_a))  # nothing of its flow waits now
    assert q.take(10, 10) == ["fin_a"]


def test_flow_keys_only_for_ipv4_tcp() -> None:
    udp = bytearray(_frame("10.0.1.2", "10.0.3.2", 40000, 9797, pk.SYN))
    udp[23] = 17
    assert intake.flow_key(bytes(udp)) is None
    assert intake.flow_key(b"\0" * 20) is None
    assert intake.flow_key(_frame("10.0.1.2", "10.0.3.2", 1, 2, pk.ACK)[:36]) is None


def test_setup_lane_keeps_the_newest_and_counts_the_dropped() -> None:
    counters: collections.Counter[str] = collections.Counter()
    q: Intake[int] = Intake(counters, setup_bound=4)
    for i in range(10):
        assert q.put_punt(i, Lane.SETUP)
    assert q.take(10, 10) == [6, 7, 8, 9]
    assert counters["drops.syn_backlog"] == 6
    assert q.most == {Lane.FIRST: 0, Lane.SETUP: 4}


def test_first_lane_refuses_punts_beyond_its_bound_but_never_the_services_own_events() -> None:
    counters: collections.Counter[str] = collections.Counter()
    q: Intake[str] = Intake(counters, first_bound=2)
    assert q.put_punt("a", Lane.FIRST) and q.put_punt("b", Lane.FIRST)
    assert not q.put_punt("c", Lane.FIRST)
    q.put("timer")
    assert counters == {"drops.intake_full": 1}
    assert q.take(10, 10) == ["a", "b", "timer"]


def test_reasons_by_lane() -> None:
    setup = {r for r in Reason if intake.lane_of(r) is Lane.SETUP}
    assert setup == {Reason.POLICY_SYN, Reason.DYSCO_SYN}


def test_bounds_must_be_positive() -> None:
    with pytest.raises(InternalError, match="at least 1"):
        Intake(collections.Counter(), setup_bound=0)


def test_wait_returns_once_something_is_put() -> None:
    async def main() -> None:
        q: Intake[str] = Intake(collections.Counter())
        waiter = asyncio.create_task(q.wait(), name="test-intake-wait")
        await asyncio.sleep(0)  # lets the waiter start waiting; what is checked is that it is not done
        assert not waiter.done()
        q.put_punt("syn", Lane.SETUP)
        await asyncio.wait_for(waiter, 5)
        await q.wait()  # something waits: returns at once

    asyncio.run(main())


# ---- the service ------------------------------------------------------------------------------------


class Stream:
    """A connection whose stream is ``msgs``, then ends as a real one does (PeerError); nothing else
    is used when the core asks for no writes and no sends."""

    def __init__(self, msgs: list[p4runtime_pb2.StreamMessageResponse]) -> None:
        self.msgs = msgs

    async def messages(self) -> AsyncIterator[p4runtime_pb2.StreamMessageResponse]:
        for m in self.msgs:
            yield m
        raise PeerError("the test stream ended")


def packet_in(service: AgentService, reason: p4names.Reason, tag: int) -> p4runtime_pb2.StreamMessageResponse:
    """A punt from the NET port; ``tag`` is its payload, so the recorder can tell them apart."""
    ids = {name: mid for mid, name in service._in_meta.items()}
    msg = p4runtime_pb2.StreamMessageResponse()
    msg.packet.payload = tag.to_bytes(4, "big")
    fields = {"ingress_port": p4names.NET_PORT, "reason": int(reason), "session_id": 0, "policy_id": 0}
    for name, value in fields.items():
        msg.packet.metadata.add(metadata_id=ids[name], value=value.to_bytes(2, "big"))
    return msg


def recording(service: AgentService) -> list[tuple[Reason, int]]:
    """The packet-ins the core gets, in order (it acts on none)."""
    seen: list[tuple[Reason, int]] = []

    def packet_in(now: int, frame: bytes, port: Port, reason: Reason, *rest: Any) -> list[Action]:
        seen.append((reason, int.from_bytes(frame, "big")))
        return []

    service.agent.packet_in = packet_in  # type: ignore[method-assign]
    return seen


def service_for(program: Program) -> AgentService:
    return AgentService(
        Settings(
            p4runtime="unused:0",
            config=Config(address=ip_int("10.0.3.2"), name="server"),
            pipeline=Pipeline(program.p4info, program.device_config()),
        )
    )


async def drain(service: AgentService) -> None:
    """Run the worker until the intake is empty."""
    worker = asyncio.create_task(service._worker(Stream([])), name="test-worker")  # type: ignore[arg-type]
    try:
        await service.wait_until(lambda: len(service.intake) == 0, 10)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


def test_a_syn_flood_read_ahead_of_the_worker_leaves_teardowns_first_and_only_the_newest_syns(
    dysco_program: Program,
) -> None:
    """The stream is read before the worker takes anything (a reader well ahead of a busy
    worker): the teardown copy and the control message that came after a flood of Dysco SYNs go
    to the core first, then only the newest SYNs up to the bound, the others counted."""
    service = service_for(dysco_program)
    seen = recording(service)
    bound = service.intake.setup_bound
    flood = 3 * bound
    msgs = [packet_in(service, p4names.Reason.DYSCO_SYN, i) for i in range(flood)]
    msgs.insert(flood // 2, packet_in(service, p4names.Reason.TEARDOWN, 10**6))
    msgs.append(packet_in(service, p4names.Reason.CONTROL, 10**6 + 1))

    async def main() -> None:
        with pytest.raises(PeerError, match="test stream ended"):
            await service._stream(Stream(msgs))  # type: ignore[arg-type]
        await drain(service)
        status.update(service.status())

    status: dict[str, Any] = {}
    asyncio.run(main())
    assert seen[:2] == [(Reason.TEARDOWN, 10**6), (Reason.CONTROL, 10**6 + 1)]
    assert seen[2:] == [(Reason.DYSCO_SYN, i) for i in range(flood - bound, flood)]
    adapter = status["adapter"]
    assert adapter["drops.syn_backlog"] == flood - bound
    assert adapter["packet_in"] == flood + 2
    assert status["intake"] == {
        "waiting": {"first": 0, "setup": 0},
        "most": {"first": 2, "setup": bound},
        "setup_bound": bound,
    }


def test_the_worker_leaves_the_loop_to_others_between_batches(dysco_program: Program) -> None:
    """While SYNs wait, another task (the stream reader) runs at least after every
    SETUP_PER_BATCH of them: a worker that kept the loop would leave the stream unread."""
    service = service_for(dysco_program)
    seen = recording(service)
    n = 5 * service_mod.SETUP_PER_BATCH
    for i in range(n):
        p = service.nic.packet_in_fields(
            {"ingress_port": p4names.NET_PORT, "reason": 2}, i.to_bytes(4, "big")
        )
        service.intake.put_punt((functools.partial(service._packet_in, p), 0), Lane.SETUP)
    turns: list[int] = []

    async def reader() -> None:
        while service.intake:
            turns.append(len(service.intake))
            await asyncio.sleep(0)  # a turn of the loop, as a stream read takes

    async def main() -> None:
        task = asyncio.create_task(reader(), name="test-reader")
        await drain(service)
        await task

    asyncio.run(main())
    assert len(seen) == n
    steps = [a - b for a, b in itertools.pairwise(turns)]
    assert len(turns) >= n // service_mod.SETUP_PER_BATCH, turns
    assert max(steps) <= service_mod.SETUP_PER_BATCH, turns
