"""Random P4Runtime requests never crash the server core: every answer is a P4Runtime error code."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.server import P4RuntimeError, SwitchCore

from .conftest import FakeClock, pipeline_request
from .fake_device import (
    A_DROP,
    A_NOACTION,
    A_SET_PORT,
    A_SET_PRIO,
    C_COUNTER,
    M_METER,
    R_REG,
    T_ACL,
    T_FWD,
    T_ROUTE,
    FakeDevice,
    load_fake_program,
)

ALLOWED = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "PERMISSION_DENIED",
}

small_bytes = st.binary(min_size=0, max_size=8)
ids = st.sampled_from([0, 1, 2, 3, 4, 7])


@st.composite
def field_matches(draw: st.DrawFn) -> p4runtime_pb2.FieldMatch:
    fm = p4runtime_pb2.FieldMatch(field_id=draw(ids))
    kind = draw(st.sampled_from(["exact", "ternary", "lpm", "range", "optional", "none"]))
    if kind == "exact":
        fm.exact.value = draw(small_bytes)
    elif kind == "ternary":
        fm.ternary.value = draw(small_bytes)
        fm.ternary.mask = draw(small_bytes)
    elif kind == "lpm":
        fm.lpm.value = draw(small_bytes)
        fm.lpm.prefix_len = draw(st.integers(-5, 70))
    elif kind == "range":
        fm.range.low = draw(small_bytes)
        fm.range.high = draw(small_bytes)
    elif kind == "optional":
        fm.optional.value = draw(small_bytes)
    return fm


@st.composite
def table_entries(draw: st.DrawFn) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(
        table_id=draw(st.sampled_from([0, T_FWD, T_ACL, T_ROUTE, 0x02FFFFFF])),
        priority=draw(st.integers(-3, 3)),
        is_default_action=draw(st.booleans()),
        idle_timeout_ns=draw(st.sampled_from([0, -1, 10**9])),
    )
    te.match.extend(draw(st.lists(field_matches(), max_size=4)))
    if draw(st.booleans()):
        action = te.action.action
        action.action_id = draw(st.sampled_from([0, A_SET_PORT, A_DROP, A_NOACTION, A_SET_PRIO]))
        for _ in range(draw(st.integers(0, 3))):
            action.params.add(param_id=draw(ids), value=draw(small_bytes))
    elif draw(st.booleans()):
        te.action.action_profile_member_id = 1
    return te


@st.composite
def entities(draw: st.DrawFn) -> p4runtime_pb2.Entity:
    kind = draw(st.sampled_from(["table", "mc", "clone", "counter", "meter", "register", "direct", "empty"]))
    e = p4runtime_pb2.Entity()
    if kind == "table":
        e.table_entry.CopyFrom(draw(table_entries()))
    elif kind == "mc":
        g = e.packet_replication_engine_entry.multicast_group_entry
        g.multicast_group_id = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                g.replicas.add(egress_port=draw(st.integers(0, 600)), instance=draw(st.integers(0, 2)))
            else:
                g.replicas.add(port=draw(small_bytes), instance=draw(st.integers(0, 2)))
    elif kind == "clone":
        c = e.packet_replication_engine_entry.clone_session_entry
        c.session_id = draw(st.integers(0, 3))
        c.packet_length_bytes = draw(st.integers(-2, 100))
    elif kind == "counter":
        e.counter_entry.counter_id = draw(st.sampled_from([0, C_COUNTER, 5]))
        if draw(st.booleans()):
            e.counter_entry.index.index = draw(st.integers(-2, 6))
        e.counter_entry.data.packet_count = draw(st.integers(-1, 5))
    elif kind == "meter":
        e.meter_entry.meter_id = draw(st.sampled_from([0, M_METER]))
        e.meter_entry.config.cir = draw(st.integers(-1, 10))
        e.meter_entry.config.pir = draw(st.integers(-1, 10))
    elif kind == "register":
        e.register_entry.register_id = draw(st.sampled_from([0, R_REG]))
        e.register_entry.data.bitstring = draw(small_bytes)
    elif kind == "direct":
        e.direct_counter_entry.table_entry.CopyFrom(draw(table_entries()))
    return e


def make_core() -> SwitchCore:
    core = SwitchCore(FakeDevice(FakeClock()), program_loader=load_fake_program, clock=FakeClock())  # type: ignore[arg-type]
    core.set_pipeline(pipeline_request(None))
    return core


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 4), entities()), min_size=1, max_size=6))
def test_random_writes_and_reads_get_p4runtime_errors_only(
    updates: list[tuple[int, p4runtime_pb2.Entity]],
) -> None:
    core = make_core()
    req = p4runtime_pb2.WriteRequest(device_id=0)
    for kind, entity in updates:
        req.updates.add(type=kind, entity=entity)
    results = core.write(req)
    assert len(results) == len(updates)
    for r in results:
        assert r is None or r.code in ALLOWED, r
    read = p4runtime_pb2.ReadRequest(device_id=0)
    read.entities.extend(entity for _, entity in updates)
    try:
        core.read(read)
    except P4RuntimeError as exc:
        assert exc.code in ALLOWED, exc
