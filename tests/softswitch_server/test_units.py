"""The pure parts: bytestrings, controller headers, arbitration, Write error encoding."""

from __future__ import annotations

import pytest
from google.rpc import code_pb2
from hypothesis import given
from hypothesis import strategies as st

from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.softswitch.server._arbitration import Arbiter, Notice
from dysco.softswitch.server._errors import P4RuntimeError, write_status
from dysco.softswitch.server._packetio import build_packet_out, split_packet_in
from dysco.softswitch.server._schema import ControllerHeader, ParamInfo, decode_bytes, encode_bytes

from .conftest import pipeline_request


@given(
    st.integers(1, 200).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, (1 << w) - 1))),
    st.integers(0, 3),
)
def test_bytestrings_round_trip_and_are_canonical(wv: tuple[int, int], pad: int) -> None:
    width, value = wv
    data = encode_bytes(value)
    assert decode_bytes(data, width, "f") == value
    assert decode_bytes(b"\x00" * pad + data, width, "f") == value  # padded input is accepted
    assert len(data) == 1 or data[0] != 0


def test_bytestring_errors() -> None:
    with pytest.raises(P4RuntimeError, match="does not fit within 9 bits") as info:
        decode_bytes(b"\x02\x00", 9, "f")
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(P4RuntimeError, match="empty bytestring"):
        decode_bytes(b"", 9, "f")
    with pytest.raises(ValueError, match=r"unknown google\.rpc code"):
        P4RuntimeError("NOPE", "x")


HEADER = ControllerHeader(
    1, "packet_out", (ParamInfo(1, "port", 9), ParamInfo(2, "flag", 1), ParamInfo(3, "x", 3))
)


@given(st.integers(0, 511), st.integers(0, 1), st.integers(0, 7), st.binary(max_size=40))
def test_controller_header_round_trip(port: int, flag: int, x: int, payload: bytes) -> None:
    md = [
        p4runtime_pb2.PacketMetadata(metadata_id=i, value=encode_bytes(v))
        for i, v in ((1, port), (2, flag), (3, x))
    ]
    frame = build_packet_out(HEADER, md, payload)
    assert len(frame) == 2 + len(payload)  # 13 bits padded to 2 bytes
    msg = split_packet_in(HEADER, frame)
    assert [(m.metadata_id, decode_bytes(m.value, 9, "m")) for m in msg.metadata] == [
        (1, port),
        (2, flag),
        (3, x),
    ]
    assert msg.payload == payload


def test_controller_header_errors() -> None:
    with pytest.raises(P4RuntimeError, match="invalid metadata id 9"):
        build_packet_out(HEADER, [p4runtime_pb2.PacketMetadata(metadata_id=9, value=b"\x01")], b"")
    dup = [p4runtime_pb2.PacketMetadata(metadata_id=1, value=b"\x01")] * 2
    with pytest.raises(P4RuntimeError, match="given twice"):
        build_packet_out(HEADER, dup, b"")
    with pytest.raises(P4RuntimeError, match="shorter than"):
        split_packet_in(HEADER, b"\x01")
    assert build_packet_out(None, [], b"abc") == b"abc"
    with pytest.raises(P4RuntimeError, match="no packet_out header"):
        build_packet_out(None, dup, b"")


def test_arbiter_rules() -> None:
    arb = Arbiter(device_id=0)
    assert arb.may_write(None) and not arb.may_write(1)
    assert arb.update(1, 0, 10) == [Notice(1, 0, 10, True)]
    assert arb.update(2, 0, 5) == [Notice(2, 0, 10, False)]
    assert not arb.may_write(None) and not arb.may_write(5) and arb.may_write(10)
    with pytest.raises(P4RuntimeError, match="Election id already exists"):
        arb.update(3, 0, 10)
    assert arb.update(2, 0, 20) == [Notice(1, 0, 20, False), Notice(2, 0, 20, True)]
    assert arb.update(2, 0, 20) == [Notice(2, 0, 20, True)]  # every arbitration gets a reply
    assert arb.remove(1) == []  # a backup leaving changes nothing
    assert arb.remove(2) == []  # nobody left to tell
    assert arb.primary() is None
    with pytest.raises(P4RuntimeError, match="Unknown device id 4") as info:
        arb.update(1, 4, 1)
    assert info.value.code == "NOT_FOUND"


def test_write_status_pads_successes_up_to_the_last_failure() -> None:
    assert write_status([None, None]) is None
    fail = P4RuntimeError("NOT_FOUND", "gone")
    status = write_status([None, fail, None])
    assert status is not None and status.code == code_pb2.UNKNOWN
    errors = []
    for d in status.details:
        e = p4runtime_pb2.Error()
        d.Unpack(e)
        errors.append((e.canonical_code, e.message))
    assert errors == [(0, ""), (code_pb2.NOT_FOUND, "gone")]


def test_a_slow_readers_dropped_packet_ins_are_logged_as_they_happen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Beyond OUTBOX_LIMIT queued messages a stream drops packet-ins (never other messages) and
    says so at the 1st, 2nd, 4th, 8th ... drop, not only when the stream closes."""
    from dysco.softswitch.server._core import OUTBOX_LIMIT, StreamHandle

    handle = StreamHandle(7)
    msg = p4runtime_pb2.StreamMessageResponse()
    for _ in range(OUTBOX_LIMIT):
        handle.put(msg, droppable=True)
    with caplog.at_level("WARNING", logger="dysco.softswitch.server"):
        for _ in range(5):
            handle.put(msg, droppable=True)
        handle.put(msg)  # not droppable: queued
    assert handle.dropped == 5 and handle.outbox.qsize() == OUTBOX_LIMIT + 1
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"[p4runtime] stream 7: {n} messages dropped so far (slow reader, {OUTBOX_LIMIT} queued)"
                    for n in (1, 2, 4)]  # fmt: skip


def test_the_idle_sweep_waits_for_a_primary_that_does_not_keep_up() -> None:
    """With IDLE_BACKLOG messages queued on the primary's stream the sweep does not ask the device
    (whose entries stay due); once the stream is drained it reports them."""
    from dysco.softswitch.api import ActionCall, FieldMatch, TableEntry
    from dysco.softswitch.server._core import IDLE_BACKLOG, SwitchCore

    from .conftest import FakeClock
    from .fake_device import A_SET_PORT, T_FWD, FakeDevice, load_fake_program

    clock = FakeClock()
    core = SwitchCore(FakeDevice(clock), program_loader=load_fake_program, clock=clock)
    core.set_pipeline(pipeline_request(None))
    handle = core.open_stream()
    hello = p4runtime_pb2.StreamMessageRequest()
    hello.arbitration.election_id.low = 1
    core.stream_message(handle, hello)
    handle.outbox.get_nowait()  # the arbitration answer
    entry = TableEntry(T_FWD, (FieldMatch(1, "exact", 1),), ActionCall(A_SET_PORT, (2,)), idle_timeout_ns=5)
    core.device.write_entry("insert", entry)
    clock.advance(10)
    for _ in range(IDLE_BACKLOG):
        handle.put(p4runtime_pb2.StreamMessageResponse(), droppable=True)
    assert core.poll_idle_timeouts() == 0
    while not handle.outbox.empty():
        handle.outbox.get_nowait()
    assert core.poll_idle_timeouts() == 1
    assert handle.outbox.get_nowait().WhichOneof("update") == "idle_timeout_notification"


def test_on_commit_runs_once_per_committed_pipeline() -> None:
    from dysco.softswitch.server._core import SwitchCore

    from .conftest import FakeClock
    from .fake_device import FakeDevice, load_fake_program

    clock = FakeClock()
    commits: list[int] = []
    core = SwitchCore(
        FakeDevice(clock), program_loader=load_fake_program, clock=clock, on_commit=lambda: commits.append(1)
    )
    verify = pipeline_request(None)
    verify.action = p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY
    core.set_pipeline(verify)
    assert commits == []
    core.set_pipeline(pipeline_request(None))
    core.set_pipeline(pipeline_request(None))
    assert commits == [1, 1]


def test_settle_heap_freezes_what_is_alive_and_collects_what_a_later_commit_dropped() -> None:
    import gc
    import weakref

    from dysco.softswitch.server.cli import settle_heap

    class Node:
        pass

    old = Node()
    old.self = old  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    gone = weakref.ref(old)
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        del old  # a replaced pipeline's objects, frozen by the first commit
        settle_heap()
        assert gone() is None
    finally:
        gc.unfreeze()


def test_a_big_write_lets_packets_through_between_its_slices() -> None:
    """A Write of 8 slices on a device that takes a while per slice: frames arriving meanwhile
    are processed between the slices, not after the whole Write (the lock is let go)."""
    import threading
    import time as _time

    from dysco.softswitch.server._core import WRITE_SLICE, SwitchCore

    from .conftest import FakeClock
    from .fake_device import A_SET_PORT, T_FWD, FakeDevice, load_fake_program

    events: list[str] = []
    flowing = threading.Event()

    class SlowDevice(FakeDevice):
        def write_entry(self, op, entry):  # type: ignore[no-untyped-def]
            events.append("w")
            if len(events) % 64 == 0:
                _time.sleep(0.001)  # a slow device, the lock held
            super().write_entry(op, entry)

        def process(self, port: int, data: bytes) -> list[tuple[int, bytes]]:
            events.append("p")
            flowing.set()
            return super().process(port, data)

    clock = FakeClock()
    core = SwitchCore(SlowDevice(clock), program_loader=load_fake_program, clock=clock)
    core.set_pipeline(pipeline_request(None))
    handle = core.open_stream()
    hello = p4runtime_pb2.StreamMessageRequest()
    hello.arbitration.election_id.low = 1
    core.stream_message(handle, hello)
    req = p4runtime_pb2.WriteRequest(device_id=0)
    req.election_id.low = 1
    for i in range(8 * WRITE_SLICE):
        te = req.updates.add(type=p4runtime_pb2.Update.INSERT).entity.table_entry
        te.table_id = T_FWD
        te.match.add(field_id=1).exact.value = (i + 1).to_bytes(6, "big")
        te.action.action.action_id = A_SET_PORT
        te.action.action.params.add(param_id=1, value=b"\x02")
    done = threading.Event()

    def frames() -> None:
        while not done.is_set():
            core.receive(1, b"\xff" * 6 + b"\x00" * 54)

    sender = threading.Thread(target=frames, name="frames")
    sender.start()
    try:
        assert flowing.wait(10), "no frame processed at all"
        assert core.write(req) == [None] * len(req.updates)
    finally:
        done.set()
        sender.join()
    first, last = events.index("w"), len(events) - 1 - events[::-1].index("w")
    assert events.count("w") == len(req.updates)
    assert "p" in events[first:last], "no frame got through while the Write ran"
