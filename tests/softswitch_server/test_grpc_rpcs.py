"""Every P4Runtime RPC against the server with a fake device, through a raw grpc client."""

from __future__ import annotations

import grpc
import pytest

from dysco.proto.p4.config.v1 import p4info_pb2
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server import SoftSwitchServer

from .client import Session, election, write_errors
from .conftest import pipeline_request
from .fake_device import (
    A_DROP,
    A_NOACTION,
    A_SET_PORT,
    A_SET_PRIO,
    C_COUNTER,
    CONFIG,
    M_METER,
    R_REG,
    T_ACL,
    T_FWD,
    T_ROUTE,
    FakeDevice,
    build_p4info,
)

Stub = p4runtime_pb2_grpc.P4RuntimeStub
GET = p4runtime_pb2.GetForwardingPipelineConfigRequest
SET = p4runtime_pb2.SetForwardingPipelineConfigRequest
U = p4runtime_pb2.Update


def fwd_entry(mac: bytes, port: bytes = b"\x02", *, timeout: int = 0) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=T_FWD, idle_timeout_ns=timeout)
    te.match.add(field_id=1).exact.value = mac
    te.action.action.action_id = A_SET_PORT
    te.action.action.params.add(param_id=1, value=port)
    return te


def write(stub: Stub, *updates: tuple[int, p4runtime_pb2.Entity], eid: int = 1) -> None:
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(eid))
    for kind, entity in updates:
        req.updates.add(type=kind, entity=entity)
    stub.Write(req)


def table(te: p4runtime_pb2.TableEntry) -> p4runtime_pb2.Entity:
    return p4runtime_pb2.Entity(table_entry=te)


def read(stub: Stub, *entities: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
    req = p4runtime_pb2.ReadRequest(device_id=0)
    req.entities.extend(entities)
    return [e for reply in stub.Read(req) for e in reply.entities]


def rpc_error(fn: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


def one_error(stub: Stub, kind: int, entity: p4runtime_pb2.Entity) -> p4runtime_pb2.Error:
    exc = rpc_error(write, stub, (kind, entity))
    assert exc.code() == grpc.StatusCode.UNKNOWN
    errors = write_errors(exc)
    assert len(errors) == 1
    return errors[0]


# --- no pipeline, capabilities -----------------------------------------------------------------


def test_no_pipeline_is_failed_precondition(stub: Stub) -> None:
    for call, req in (
        (stub.GetForwardingPipelineConfig, GET(device_id=0)),
        (stub.Write, p4runtime_pb2.WriteRequest(device_id=0)),
    ):
        exc = rpc_error(call, req)
        assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert exc.details() == "No forwarding pipeline config set for this device"
    exc = rpc_error(lambda r: list(stub.Read(r)), p4runtime_pb2.ReadRequest(device_id=0))
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_capabilities(stub: Stub) -> None:
    assert stub.Capabilities(p4runtime_pb2.CapabilitiesRequest()).p4runtime_api_version == "1.4.1"


def test_unknown_device_id_is_not_found(stub: Stub) -> None:
    exc = rpc_error(stub.GetForwardingPipelineConfig, GET(device_id=7))
    assert exc.code() == grpc.StatusCode.NOT_FOUND


# --- pipeline config ---------------------------------------------------------------------------------


def test_set_without_streams_needs_no_election_id(stub: Stub, device: FakeDevice) -> None:
    stub.SetForwardingPipelineConfig(pipeline_request(None))
    assert device.loads == 1
    exc = rpc_error(stub.SetForwardingPipelineConfig, pipeline_request(5))
    assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    assert exc.details() == "Not primary"


def test_get_pipeline_response_types(stub: Stub, primary: Session) -> None:
    info = build_p4info()
    full = stub.GetForwardingPipelineConfig(GET(device_id=0, response_type=GET.ALL)).config
    assert full.p4info == info and full.p4_device_config == CONFIG and full.cookie.cookie == 0xC00C1E
    cookie = stub.GetForwardingPipelineConfig(GET(device_id=0, response_type=GET.COOKIE_ONLY)).config
    assert cookie.cookie.cookie == 0xC00C1E and not cookie.HasField("p4info") and not cookie.p4_device_config
    p4i = stub.GetForwardingPipelineConfig(GET(device_id=0, response_type=GET.P4INFO_AND_COOKIE)).config
    assert p4i.p4info == info and not p4i.p4_device_config
    dev = stub.GetForwardingPipelineConfig(
        GET(device_id=0, response_type=GET.DEVICE_CONFIG_AND_COOKIE)
    ).config
    assert dev.p4_device_config == CONFIG and not dev.HasField("p4info")


def test_verify_does_not_commit_and_bad_config_is_invalid(stub: Stub, device: FakeDevice) -> None:
    req = pipeline_request(None)
    req.action = SET.VERIFY
    stub.SetForwardingPipelineConfig(req)
    assert device.loads == 0
    req.config.p4_device_config = b"garbage"
    exc = rpc_error(stub.SetForwardingPipelineConfig, req)
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a fake program" in (exc.details() or "")
    req = pipeline_request(None)
    req.ClearField("config")
    req.config.p4_device_config = CONFIG
    exc = rpc_error(stub.SetForwardingPipelineConfig, req)
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_verify_and_save_then_commit(stub: Stub, device: FakeDevice) -> None:
    req = pipeline_request(None)
    exc = rpc_error(stub.SetForwardingPipelineConfig, SET(device_id=0, action=SET.COMMIT))
    assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
    req.action = SET.VERIFY_AND_SAVE
    stub.SetForwardingPipelineConfig(req)
    assert device.loads == 0
    stub.SetForwardingPipelineConfig(SET(device_id=0, action=SET.COMMIT))
    assert device.loads == 1
    assert stub.GetForwardingPipelineConfig(GET(device_id=0)).config.cookie.cookie == 0xC00C1E


def _duplicate_table_id(info: p4info_pb2.P4Info) -> None:
    info.tables[1].preamble.id = info.tables[0].preamble.id


def _huge_key(info: p4info_pb2.P4Info) -> None:
    info.tables[0].match_fields[0].bitwidth = 4096


def _unknown_action(info: p4info_pb2.P4Info) -> None:
    info.tables[0].action_refs.add(id=0x01FFFFFF)


def _no_tables(info: p4info_pb2.P4Info) -> None:
    for field in ("tables", "direct_counters", "direct_meters"):
        info.ClearField(field)


def _renamed_param_width(info: p4info_pb2.P4Info) -> None:
    info.actions[0].params[0].bitwidth = 16


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (_duplicate_table_id, "is used twice"),
        (_huge_key, "is 4096 bits, the program's is 48"),
        (_unknown_action, "names action id 0x01ffffff, which the P4Info does not have"),
        (_no_tables, "the program's table 'MyIngress.fwd' (id 0x02000001) is missing"),
        (_renamed_param_width, "'port' is 16 bits, the program's is 9"),
    ],
)
def test_a_p4info_that_contradicts_itself_or_the_program_is_refused(
    stub: Stub, primary: Session, device: FakeDevice, mutate: object, fragment: str
) -> None:
    for action in (SET.VERIFY, SET.VERIFY_AND_COMMIT):
        req = pipeline_request(1)
        req.action = action
        mutate(req.config.p4info)  # type: ignore[operator]
        exc = rpc_error(stub.SetForwardingPipelineConfig, req)
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (exc.details() or "")
    # the running pipeline stayed: its tables still take entries
    assert device.loads == 1
    write(stub, (U.INSERT, table(fwd_entry(b"\x00\x00\x00\x00\x00\x07"))))
    assert len(read(stub, table(p4runtime_pb2.TableEntry(table_id=T_FWD)))) == 1


def test_reconcile_is_unimplemented(stub: Stub) -> None:
    req = pipeline_request(None)
    req.action = SET.RECONCILE_AND_COMMIT
    assert rpc_error(stub.SetForwardingPipelineConfig, req).code() == grpc.StatusCode.UNIMPLEMENTED


# --- table entries -------------------------------------------------------------------------------------


def test_insert_read_modify_delete(stub: Stub, primary: Session) -> None:
    mac = b"\x00\x00\x00\x00\x00\x01"
    write(stub, (U.INSERT, table(fwd_entry(b"\x01", b"\x00\x03"))))
    (got,) = read(stub, table(p4runtime_pb2.TableEntry()))
    # canonical bytestrings on the way out
    assert got.table_entry.match[0].exact.value == b"\x01"
    assert got.table_entry.action.action.params[0].value == b"\x03"
    write(stub, (U.MODIFY, table(fwd_entry(mac, b"\x00"))))
    (got,) = read(stub, table(p4runtime_pb2.TableEntry(table_id=T_FWD)))
    assert got.table_entry.action.action.params[0].value == b"\x00"
    write(stub, (U.DELETE, table(fwd_entry(mac))))
    assert read(stub, table(p4runtime_pb2.TableEntry())) == []


def test_read_specific_entry_and_time_since_last_hit(stub: Stub, primary: Session, clock: object) -> None:
    write(stub, (U.INSERT, table(fwd_entry(b"\x01"))), (U.INSERT, table(fwd_entry(b"\x02"))))
    probe = p4runtime_pb2.TableEntry(table_id=T_FWD)
    probe.match.add(field_id=1).exact.value = b"\x00\x02"
    probe.time_since_last_hit.elapsed_ns = 0
    clock.advance(500)  # type: ignore[attr-defined]
    (got,) = read(stub, table(probe))
    assert got.table_entry.match[0].exact.value == b"\x02"
    assert got.table_entry.time_since_last_hit.elapsed_ns == 500


def test_duplicate_insert_is_already_exists(stub: Stub, primary: Session) -> None:
    write(stub, (U.INSERT, table(fwd_entry(b"\x01"))))
    err = one_error(stub, U.INSERT, table(fwd_entry(b"\x01")))
    assert err.canonical_code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert err.space == "ALL-sswitch-p4org"


def test_delete_missing_is_not_found(stub: Stub, primary: Session) -> None:
    err = one_error(stub, U.DELETE, table(fwd_entry(b"\x09")))
    assert err.canonical_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_batch_reports_ok_entries_up_to_last_failure(stub: Stub, primary: Session) -> None:
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    for mac in (b"\x01", b"\x01", b"\x02"):
        req.updates.add(type=U.INSERT, entity=table(fwd_entry(mac)))
    exc = rpc_error(stub.Write, req)
    errors = write_errors(exc)
    assert [e.canonical_code for e in errors] == [0, grpc.StatusCode.ALREADY_EXISTS.value[0]]
    assert len(read(stub, table(p4runtime_pb2.TableEntry()))) == 2


def route(prefix: int) -> p4runtime_pb2.Entity:
    te = p4runtime_pb2.TableEntry(table_id=T_ROUTE)
    te.match.add(field_id=1).lpm.value = bytes([prefix, 0, 0, 0])
    te.match[0].lpm.prefix_len = 8
    te.action.action.action_id = A_DROP
    return table(te)


def test_table_entries_reach_the_device_in_runs_in_order(
    stub: Stub, primary: Session, device: FakeDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consecutive entries of tables without direct resources go to the device in one
    write_entries call; any other update (here a fwd entry, whose table has a direct counter,
    and a counter) ends the run and is applied on its own, in order; answers keep their places."""
    runs: list[list[tuple[str, int]]] = []
    write_entries = device.write_entries

    def spy(updates: list[tuple[str, object]]) -> list[object]:
        runs.append([(op, e.match[0].value) for op, e in updates])  # type: ignore[attr-defined]
        return write_entries(updates)  # type: ignore[arg-type]

    monkeypatch.setattr(device, "write_entries", spy)
    counter = p4runtime_pb2.CounterEntry(counter_id=C_COUNTER)
    counter.index.index = 1
    counter.data.packet_count = 5
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    for kind, entity in (
        (U.INSERT, route(10)),
        (U.INSERT, route(10)),  # ALREADY_EXISTS, inside the run
        (U.INSERT, route(11)),
        (U.INSERT, table(fwd_entry(b"\x01"))),
        (U.DELETE, route(10)),
        (U.MODIFY, p4runtime_pb2.Entity(counter_entry=counter)),
        (U.DELETE, route(12)),  # NOT_FOUND
        (U.INSERT, route(12)),
    ):
        req.updates.add(type=kind, entity=entity)
    errors = write_errors(rpc_error(stub.Write, req))
    already, missing = grpc.StatusCode.ALREADY_EXISTS.value[0], grpc.StatusCode.NOT_FOUND.value[0]
    assert [e.canonical_code for e in errors] == [0, already, 0, 0, 0, 0, missing]
    ten, eleven, twelve = 10 << 24, 11 << 24, 12 << 24
    assert runs == [
        [("insert", ten), ("insert", ten), ("insert", eleven)],
        [("delete", ten)],
        [("delete", twelve), ("insert", twelve)],
    ]
    got = read(stub, table(p4runtime_pb2.TableEntry(table_id=T_ROUTE)))
    assert sorted(e.table_entry.match[0].lpm.value[0] for e in got) == [11, 12]


def test_a_long_run_reaches_the_device_in_pieces_of_run_max(
    stub: Stub, primary: Session, device: FakeDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dysco.softswitch.server import _core

    sizes: list[int] = []
    write_entries = device.write_entries

    def spy(updates: list[tuple[str, object]]) -> list[object]:
        sizes.append(len(updates))
        return write_entries(updates)  # type: ignore[arg-type]

    monkeypatch.setattr(device, "write_entries", spy)
    monkeypatch.setattr(_core, "RUN_MAX", 2)
    write(stub, *((U.INSERT, route(p)) for p in range(1, 6)))
    assert sizes == [2, 2, 1]
    assert len(read(stub, table(p4runtime_pb2.TableEntry(table_id=T_ROUTE)))) == 5


def _mac(i: int) -> bytes:
    return i.to_bytes(6, "big")


@pytest.mark.parametrize("failing", [200, 1000])
def test_many_failed_updates_stay_within_the_trailer_limit(
    stub: Stub, primary: Session, failing: int
) -> None:
    """Hundreds of refusals in one Write: the client still gets UNKNOWN with one detail per
    update (compacted: codes, short type URL), never RESOURCE_EXHAUSTED; past what fits in
    gRPC's metadata limit the details stop and the message says so."""
    write(stub, *((U.INSERT, table(fwd_entry(_mac(i)))) for i in range(failing)))
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
    for i in range(failing):  # every one of them is there already
        req.updates.add(type=U.INSERT, entity=table(fwd_entry(_mac(i))))
    req.updates.add(type=U.INSERT, entity=table(fwd_entry(_mac(failing))))  # the one that goes in
    exc = rpc_error(stub.Write, req)
    assert exc.code() == grpc.StatusCode.UNKNOWN
    errors = write_errors(exc)
    already = grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert errors and all(e.canonical_code == already for e in errors)
    if failing == 200:
        assert len(errors) == failing  # all of them, up to the last failing one
    else:
        assert 250 <= len(errors) < failing
        assert f"details of the first {len(errors)} of {failing} updates only" in (exc.details() or "")
    assert f"{failing} of {failing + 1} updates failed" in (exc.details() or "")
    assert len(read(stub, table(p4runtime_pb2.TableEntry(table_id=T_FWD)))) == failing + 1


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda te: setattr(te.match[0].exact, "value", b"\x01" * 7), "does not fit within 48 bits"),
        (lambda te: setattr(te.action.action.params[0], "value", b"\x02\x00"), "does not fit within 9 bits"),
        (lambda te: setattr(te.match[0].exact, "value", b""), "empty bytestring"),
        (lambda te: setattr(te, "table_id", 0x02FFFFFF), "Invalid table id"),
        (lambda te: setattr(te.action.action, "action_id", 0x01FFFFFF), "Invalid action id"),
        (lambda te: setattr(te.match[0], "field_id", 9), "invalid match field id"),
        (lambda te: te.ClearField("match"), "is missing"),
        (lambda te: setattr(te, "priority", 3), "priority must be 0"),
        (lambda te: te.ClearField("action"), "has no action"),
        (lambda te: te.action.action.ClearField("params"), "missing params port"),
        (lambda te: setattr(te.action.action, "action_id", A_NOACTION), "only be the default action"),
        (lambda te: setattr(te, "idle_timeout_ns", -1), "negative"),
    ],
)
def test_bad_values_are_invalid_argument(stub: Stub, primary: Session, mutate: object, fragment: str) -> None:
    te = fwd_entry(b"\x01")
    mutate(te)  # type: ignore[operator]
    err = one_error(stub, U.INSERT, table(te))
    assert err.canonical_code == grpc.StatusCode.INVALID_ARGUMENT.value[0], err
    assert fragment in err.message


def acl_entry(priority: int = 10) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=T_ACL, priority=priority)
    fm = te.match.add(field_id=1)
    fm.ternary.value = b"\x08\x00"
    fm.ternary.mask = b"\xff\x00"
    fm = te.match.add(field_id=2)
    fm.range.low = b"\x00\x50"
    fm.range.high = b"\x01\xbb"
    te.match.add(field_id=3).optional.value = b"\x01"
    te.action.action.action_id = A_SET_PRIO
    te.action.action.params.add(param_id=1, value=b"\x05")
    te.action.action.params.add(param_id=2, value=b"\x0f\xff")
    return te


def test_ternary_range_optional_entries(stub: Stub, primary: Session) -> None:
    write(stub, (U.INSERT, table(acl_entry())))
    (got,) = read(stub, table(p4runtime_pb2.TableEntry(table_id=T_ACL)))
    expected = acl_entry()
    expected.match[1].range.low = b"\x50"  # canonical: leading zero bytes stripped
    assert got.table_entry == expected
    err = one_error(stub, U.INSERT, table(acl_entry(priority=0)))
    assert "need a priority" in err.message
    te = acl_entry()
    te.match[0].ternary.value = b"\x08\x01"
    assert "outside the mask" in one_error(stub, U.INSERT, table(te)).message
    te = acl_entry()
    te.match[1].range.low = b"\x02\x00"
    assert "low end is above" in one_error(stub, U.INSERT, table(te)).message
    te = acl_entry()
    te.match[0].ternary.mask = b"\x00"
    assert "don't care" in one_error(stub, U.INSERT, table(te)).message


def test_lpm_entries(stub: Stub, primary: Session) -> None:
    te = p4runtime_pb2.TableEntry(table_id=T_ROUTE)
    te.match.add(field_id=1).lpm.value = b"\x0a\x00\x00\x00"
    te.match[0].lpm.prefix_len = 8
    te.action.action.action_id = A_DROP
    write(stub, (U.INSERT, table(te)))
    (got,) = read(stub, table(p4runtime_pb2.TableEntry(table_id=T_ROUTE)))
    assert got.table_entry.match[0].lpm.value == b"\x0a\x00\x00\x00"
    te.match[0].lpm.value = b"\x0a\x00\x00\x01"
    assert "beyond the prefix" in one_error(stub, U.INSERT, table(te)).message
    te.match[0].lpm.prefix_len = 33
    assert "outside 0..32" in one_error(stub, U.INSERT, table(te)).message


def test_default_entries(stub: Stub, primary: Session) -> None:
    default = p4runtime_pb2.TableEntry(table_id=T_FWD, is_default_action=True)
    (got,) = read(stub, table(default))
    assert got.table_entry.is_default_action and got.table_entry.action.action.action_id == A_DROP
    new = p4runtime_pb2.TableEntry(table_id=T_FWD, is_default_action=True)
    new.action.action.action_id = A_SET_PORT
    new.action.action.params.add(param_id=1, value=b"\x07")
    write(stub, (U.MODIFY, table(new)))
    (got,) = read(stub, table(default))
    assert got.table_entry.action.action.action_id == A_SET_PORT
    write(stub, (U.MODIFY, table(default)))  # no action: back to the program's default
    (got,) = read(stub, table(default))
    assert got.table_entry.action.action.action_id == A_DROP
    err = one_error(stub, U.INSERT, table(new))
    assert err.canonical_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    const = p4runtime_pb2.TableEntry(table_id=T_ACL, is_default_action=True)
    const.action.action.action_id = A_NOACTION
    err = one_error(stub, U.MODIFY, table(const))
    assert err.canonical_code == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_controller_metadata_and_metadata_round_trip(stub: Stub, primary: Session) -> None:
    te = fwd_entry(b"\x01")
    te.controller_metadata = 77
    te.metadata = b"opaque"
    write(stub, (U.INSERT, table(te)))
    (got,) = read(stub, table(p4runtime_pb2.TableEntry()))
    assert got.table_entry.controller_metadata == 77 and got.table_entry.metadata == b"opaque"


# --- PRE ----------------------------------------------------------------------------------------------


def pre(**kw: object) -> p4runtime_pb2.Entity:
    return p4runtime_pb2.Entity(
        packet_replication_engine_entry=p4runtime_pb2.PacketReplicationEngineEntry(**kw)
    )


def test_multicast_groups_accept_both_port_encodings(
    stub: Stub, primary: Session, device: FakeDevice
) -> None:
    group = p4runtime_pb2.MulticastGroupEntry(multicast_group_id=5)
    group.replicas.add(egress_port=1, instance=1)
    group.replicas.add(port=b"\x02", instance=1)
    write(stub, (U.INSERT, pre(multicast_group_entry=group)))
    assert [(r.port, r.instance) for r in device.multicast_groups()[5]] == [(1, 1), (2, 1)]
    (got,) = read(stub, pre(multicast_group_entry=p4runtime_pb2.MulticastGroupEntry()))
    assert len(got.packet_replication_engine_entry.multicast_group_entry.replicas) == 2
    err = one_error(stub, U.INSERT, pre(multicast_group_entry=group))
    assert err.canonical_code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    write(stub, (U.DELETE, pre(multicast_group_entry=group)))
    err = one_error(stub, U.MODIFY, pre(multicast_group_entry=group))
    assert err.canonical_code == grpc.StatusCode.NOT_FOUND.value[0]
    group.replicas.add(egress_port=1, instance=1)
    assert "duplicate replica" in one_error(stub, U.INSERT, pre(multicast_group_entry=group)).message


def test_clone_sessions(stub: Stub, primary: Session, device: FakeDevice) -> None:
    session = p4runtime_pb2.CloneSessionEntry(session_id=100, packet_length_bytes=64, class_of_service=1)
    session.replicas.add(port=b"\x40", instance=0)
    write(stub, (U.INSERT, pre(clone_session_entry=session)))
    assert device.clone_sessions()[100].replicas[0].port == 64
    (got,) = read(stub, pre(clone_session_entry=p4runtime_pb2.CloneSessionEntry(session_id=100)))
    assert got.packet_replication_engine_entry.clone_session_entry.packet_length_bytes == 64
    bad = p4runtime_pb2.CloneSessionEntry(session_id=0)
    assert one_error(stub, U.INSERT, pre(clone_session_entry=bad)).message == "0 is not a valid session id"


# --- counters, meters, registers ----------------------------------------------------------------------


def test_counters(stub: Stub, primary: Session) -> None:
    entry = p4runtime_pb2.CounterEntry(counter_id=C_COUNTER)
    entry.index.index = 2
    entry.data.packet_count = 3
    entry.data.byte_count = 300
    write(stub, (U.MODIFY, p4runtime_pb2.Entity(counter_entry=entry)))
    got = read(stub, p4runtime_pb2.Entity(counter_entry=p4runtime_pb2.CounterEntry(counter_id=C_COUNTER)))
    assert [(e.counter_entry.index.index, e.counter_entry.data.packet_count) for e in got] == [
        (0, 0),
        (1, 0),
        (2, 3),
        (3, 0),
    ]
    err = one_error(stub, U.INSERT, p4runtime_pb2.Entity(counter_entry=entry))
    assert err.canonical_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    entry.index.index = 9
    err = one_error(stub, U.MODIFY, p4runtime_pb2.Entity(counter_entry=entry))
    assert err.canonical_code == grpc.StatusCode.OUT_OF_RANGE.value[0]


def test_direct_counters(stub: Stub, primary: Session, ports: object) -> None:
    write(stub, (U.INSERT, table(fwd_entry(b"\x01"))))
    ports.inject(1, b"\x00\x00\x00\x00\x00\x01" + bytes(58))  # type: ignore[attr-defined]
    probe = p4runtime_pb2.DirectCounterEntry()
    probe.table_entry.table_id = T_FWD
    (got,) = read(stub, p4runtime_pb2.Entity(direct_counter_entry=probe))
    assert (got.direct_counter_entry.data.packet_count, got.direct_counter_entry.data.byte_count) == (1, 64)
    te = fwd_entry(b"\x01")
    te.counter_data.packet_count = 0
    (got,) = read(stub, table(p4runtime_pb2.TableEntry(table_id=T_FWD, counter_data=te.counter_data)))
    assert got.table_entry.counter_data.packet_count == 1
    reset = p4runtime_pb2.DirectCounterEntry(table_entry=fwd_entry(b"\x01"))
    write(stub, (U.MODIFY, p4runtime_pb2.Entity(direct_counter_entry=reset)))
    (got,) = read(stub, p4runtime_pb2.Entity(direct_counter_entry=probe))
    assert got.direct_counter_entry.data.packet_count == 0


def test_meters_and_direct_meters(stub: Stub, primary: Session) -> None:
    meter = p4runtime_pb2.MeterEntry(meter_id=M_METER)
    meter.index.index = 1
    meter.config.cir = 100
    meter.config.cburst = 10
    meter.config.pir = 200
    meter.config.pburst = 20
    write(stub, (U.MODIFY, p4runtime_pb2.Entity(meter_entry=meter)))
    got = read(stub, p4runtime_pb2.Entity(meter_entry=p4runtime_pb2.MeterEntry(meter_id=M_METER)))
    assert [e.meter_entry.config.pir for e in got] == [0, 200, 0, 0]
    write(stub, (U.INSERT, table(fwd_entry(b"\x01"))))
    dm = p4runtime_pb2.DirectMeterEntry(table_entry=fwd_entry(b"\x01"), config=meter.config)
    write(stub, (U.MODIFY, p4runtime_pb2.Entity(direct_meter_entry=dm)))
    (got,) = read(stub, p4runtime_pb2.Entity(direct_meter_entry=p4runtime_pb2.DirectMeterEntry()))
    assert got.direct_meter_entry.config.cir == 100
    meter.config.pir = 50
    err = one_error(stub, U.MODIFY, p4runtime_pb2.Entity(meter_entry=meter))
    assert "below committed rate" in err.message


def test_registers(stub: Stub, primary: Session) -> None:
    reg = p4runtime_pb2.RegisterEntry(register_id=R_REG)
    reg.index.index = 3
    reg.data.bitstring = b"\x00\x00\x01\x00"
    write(stub, (U.MODIFY, p4runtime_pb2.Entity(register_entry=reg)))
    (got,) = read(stub, p4runtime_pb2.Entity(register_entry=reg))
    assert got.register_entry.data.bitstring == b"\x01\x00"


# --- robustness ---------------------------------------------------------------------------------------


def test_malformed_requests_do_not_crash_the_server(
    stub: Stub, primary: Session, server: SoftSwitchServer
) -> None:
    bad_updates = [
        p4runtime_pb2.Update(type=U.UNSPECIFIED, entity=table(fwd_entry(b"\x01"))),
        p4runtime_pb2.Update(type=U.INSERT),
        p4runtime_pb2.Update(type=U.INSERT, entity=pre()),
        p4runtime_pb2.Update(
            type=U.INSERT, entity=p4runtime_pb2.Entity(extern_entry=p4runtime_pb2.ExternEntry())
        ),
        p4runtime_pb2.Update(type=U.INSERT, entity=table(p4runtime_pb2.TableEntry())),
        p4runtime_pb2.Update(
            type=U.MODIFY, entity=p4runtime_pb2.Entity(register_entry=p4runtime_pb2.RegisterEntry())
        ),
    ]
    for update in bad_updates:
        req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1))
        req.updates.append(update)
        exc = rpc_error(stub.Write, req)
        assert exc.code() == grpc.StatusCode.UNKNOWN
        (err,) = write_errors(exc)
        assert err.canonical_code in (
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
            grpc.StatusCode.UNIMPLEMENTED.value[0],
        ), err
    for entity in (p4runtime_pb2.Entity(), pre(), table(p4runtime_pb2.TableEntry(table_id=5))):
        exc = rpc_error(read, stub, entity)
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)
    # a raw garbage request body: grpc rejects it, the server keeps serving
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    raw = channel.unary_unary("/p4.v1.P4Runtime/Write")
    with pytest.raises(grpc.RpcError):
        raw(b"\xff\xff\xff\xff")
    channel.close()
    assert stub.Capabilities(p4runtime_pb2.CapabilitiesRequest()).p4runtime_api_version
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=election(1), atomicity=2)
    assert rpc_error(stub.Write, req).code() == grpc.StatusCode.UNIMPLEMENTED
