"""Hostile input at every boundary, in bounded time (the ``soak`` hypothesis profile runs more).

What the other suites already fuzz is not repeated here:

* SYN payload and control-message decoders on arbitrary bytes and sealed-then-mutated input:
  tests/runtime/test_wire.py, tests/runtime/test_ctlwire.py (and ``make soak``'s atheris run,
  tests/security/fuzz_decoders.py);
* policy text and token soup: tests/compiler/test_properties.py;
* P4 programs mutated: tests/softswitch/test_frontend_fuzz.py;
* random frames through every test program and through dysco.p4 with sessions:
  tests/softswitch/test_fuzz.py, tests/p4src/test_malformed.py;
* random P4Runtime requests against the server core: tests/softswitch_server/test_fuzz.py.

Added here: the control datagram path as the agent sees it (UDP framing + decoder, with keys),
real policy files mutated, Dysco SYNs and control datagrams mutated through dysco.p4's punt
decisions, hostile punts fed to the agent's core, and garbage on the wire of a real
``dysco switch``'s gRPC server.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dysco import p4names
from dysco.compiler import compile_text
from dysco.p4names import NET_PORT, Reason
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.runtime.core import SECOND, Agent, Config
from dysco.runtime.core import _auth as auth
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _syn_payload as wire
from dysco.runtime.core._events import Port
from dysco.runtime.core._events import Reason as CoreReason
from dysco.runtime.core._types import FiveTuple, ip_int
from dysco.softswitch import P4Program
from dysco.testbed import SwitchProcess

from ..compiler.test_properties import _check_total
from ..p4src.dataplane import Dut, packet_in

ROOT = Path(__file__).resolve().parents[2]
RING = auth.KeyRing({1: bytes(range(32))}, current=1)
ME, PEER = ip_int("10.0.0.10"), ip_int("10.0.0.1")
T0 = 1_700_000_000 * SECOND

edits = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6)


def _edit(data: bytes, changes: list[tuple[int, int]], cut: int = 0) -> bytes:
    out = bytearray(data)
    for at, value in changes:
        if at < len(out):
            out[at] = value
    return bytes(out[: max(0, len(out) - cut)])


def _control_body(kind: int, hops: int) -> bytes:
    sub = FiveTuple(PEER, ME, 10000, 80)
    return cw.encode(cw.Message(cw.Kind(kind), 7, 3, PEER, ip_int("10.0.0.100"), sub, hops=(1,) * hops))


# ---- the control datagram as the agent receives it -------------------------------------------------


@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(
            lambda k, h, ch, cut, keyed: cw.udp_frame(
                PEER,
                ME,
                p4names.CONTROL_UDP_PORT,
                _edit(
                    cw.encode(cw.decode(_control_body(k, h)), RING, sender=PEER, receiver=ME, now=T0)
                    if keyed
                    else _control_body(k, h),
                    ch,
                    cut,
                ),
            ),
            st.integers(1, 15),
            st.integers(0, 3),
            edits,
            st.integers(0, 3),
            st.booleans(),
        ),
    ),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3),
    st.booleans(),
)
def test_control_frames_parse_or_are_refused(
    frame: bytes, frame_edits: list[tuple[int, int]], keyed: bool
) -> None:
    """UDP framing and decoder together: any frame gives a message or a BadControl, and with keys
    nothing whose sealed bytes were changed gets through."""
    frame = _edit(frame, frame_edits)
    try:
        _src, _dst, data = cw.parse_udp(frame, p4names.CONTROL_UDP_PORT)
        msg = cw.decode(data, RING if keyed else None, auth.ReplayGuard(ME) if keyed else None, now=T0)
    except cw.BadControl:
        return
    if keyed:  # accepted: then these are exactly the bytes that were sealed
        assert cw.encode(msg) == cw.encode(msg, RING, sender=PEER, receiver=ME, now=T0) == data


# ---- policy files ---------------------------------------------------------------------------------

POLICY_FILES = [
    ROOT / "examples" / "policies.dysco",
    *sorted((ROOT / "tests/compiler/golden").glob("*.dysco")),
]


@settings(max_examples=150)
@given(
    st.sampled_from(POLICY_FILES),
    st.lists(
        st.tuples(
            st.floats(0, 1), st.integers(0, 6), st.sampled_from(["", "x", "{", ";", "/", "-", "9", "\0"])
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_policy_files_compile_or_fail_at_a_position(
    path: Path, changes: list[tuple[float, int, str]]
) -> None:
    text = path.read_text()
    for where, cut, insert in changes:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut :]
    _check_total(text)


# ---- dysco.p4's punt decisions on hostile frames from the network ---------------------------------


def _dysco_syn() -> bytes:
    p = wire.SynPayload(FiveTuple(PEER, ip_int("10.0.0.100"), 40000, 80), (ME, ip_int("10.0.0.100")))
    return bytes(
        Ether() / IP(src="10.0.0.1", dst="10.0.0.10") / TCP(sport=10000, dport=80, flags="S") / wire.encode(p)
    )


def _control() -> bytes:
    return cw.udp_frame(PEER, ME, p4names.CONTROL_UDP_PORT, _control_body(1, 1))


def _well_formed(pkt: Ether) -> bool:
    ip = pkt.getlayer(IP)
    return (
        ip is not None
        and ip.version == 4
        and ip.ihl == 5
        and ip.len == len(bytes(ip))
        and not (ip.flags.MF or ip.frag)
        and (
            ip.proto != 6
            or (pkt.haslayer(TCP) and pkt[TCP].dataofs >= 5 and pkt[TCP].dataofs * 4 <= ip.len - 20)
        )
    )


@given(st.sampled_from(["syn", "control"]), edits, st.integers(0, 30))
def test_hostile_frames_are_punted_only_as_what_they_are(
    dysco_program: P4Program, base: str, changes: list[tuple[int, int]], cut: int
) -> None:
    frame = _edit(_dysco_syn() if base == "syn" else _control(), changes, cut if cut > 20 else 0)
    out = Dut(dysco_program).send(NET_PORT, frame)
    pkt = Ether(frame)
    for port, data in out:
        if port != 255:
            assert (port, data) == (p4names.HOST_PORT, frame), "a frame without a session passes untouched"
            continue
        fields, inner = packet_in(data)
        assert bytes(inner) == frame
        assert fields["reason"] in (Reason.DYSCO_SYN, Reason.CONTROL, Reason.IP_UNSUPPORTED)
        if fields["reason"] == Reason.DYSCO_SYN:
            assert pkt.haslayer(TCP) and pkt[TCP].flags.S and not pkt[TCP].flags.A
            assert wire.has_magic(bytes(pkt[TCP].payload))
        elif fields["reason"] == Reason.CONTROL:
            assert pkt.haslayer(UDP) and pkt[UDP].dport == p4names.CONTROL_UDP_PORT
    if _well_formed(pkt):
        punted = [packet_in(d)[0]["reason"] for p, d in out if p == 255]
        if pkt.haslayer(UDP) and pkt[UDP].dport == p4names.CONTROL_UDP_PORT:
            assert punted == [Reason.CONTROL]
        if (
            pkt.haslayer(TCP)
            and pkt[TCP].flags.S
            and not pkt[TCP].flags.A
            and wire.has_magic(bytes(pkt[TCP].payload))
        ):
            assert punted == [Reason.DYSCO_SYN]


# ---- the agent's core on hostile punts -----------------------------------------------------------


def _agent() -> Agent:
    policies = compile_text("middlebox fw { instances 10.0.0.20; }\npolicy web: tcp dst port 80 -> fw\n")
    return Agent(Config(address=ME, name="victim"), policies.chains.values())


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(CoreReason)),
            st.sampled_from([Port.NET, Port.HOST]),
            st.one_of(
                st.binary(max_size=120),
                st.builds(_edit, st.sampled_from([_dysco_syn(), _control()]), edits),
            ),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_hostile_punts_never_break_the_agent_and_leave_nothing(
    punts: list[tuple[CoreReason, Port, bytes, int]],
) -> None:
    """Whatever the NIC punts (with any reason, policy id or session id): the core answers with
    actions, never an exception, and once its timers ran out no state is left."""
    agent = _agent()
    now = T0
    for reason, port, frame, ids in punts:
        now += 1_000_000
        agent.packet_in(now, frame, port, reason, policy_id=ids, session_id=ids)
    for _ in range(4):
        now += 120 * SECOND
        agent.timer(now)
    assert agent.empty(), agent.status(now)


# ---- garbage on the wire of a real P4Runtime server -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchProcess]:
    log = tmp_path_factory.mktemp("switch") / "switch.log"
    with SwitchProcess(f"127.0.0.1:{_free_port()}", log=log) as sw:
        yield sw


STOP_BOUND_S = 6.0
"""The switch's gRPC grace (1 s) and its bound on the shutdown wait (2 s), with room to spare."""

RPCS = [
    "/p4.v1.P4Runtime/Write",
    "/p4.v1.P4Runtime/Read",
    "/p4.v1.P4Runtime/SetForwardingPipelineConfig",
    "/p4.v1.P4Runtime/GetForwardingPipelineConfig",
    "/p4.v1.P4Runtime/Capabilities",
]


def _valid_write() -> bytes:
    req = p4runtime_pb2.WriteRequest(device_id=0, election_id=p4runtime_pb2.Uint128(low=1))
    u = req.updates.add(type=p4runtime_pb2.Update.INSERT)
    u.entity.table_entry.table_id = 0x02000001
    u.entity.table_entry.match.add(field_id=1).exact.value = b"\x0a\x00\x00\x01"
    return req.SerializeToString()


@settings(max_examples=60)
@given(
    st.sampled_from(RPCS),
    st.one_of(st.binary(max_size=64), st.builds(_edit, st.just(_valid_write()), edits)),
    st.lists(st.binary(max_size=32), max_size=3),
)
def test_garbage_on_the_grpc_wire_gets_a_status_and_the_server_serves_on(
    switch: SwitchProcess, rpc: str, body: bytes, stream_msgs: list[bytes]
) -> None:
    with grpc.insecure_channel(switch.address) as channel:
        if rpc.endswith("/Read"):
            call = channel.unary_stream(rpc)
            with contextlib.suppress(grpc.RpcError):
                list(call(body, timeout=10))
        else:
            with contextlib.suppress(grpc.RpcError):
                channel.unary_unary(rpc)(body, timeout=10)
        stream = channel.stream_stream("/p4.v1.P4Runtime/StreamChannel")
        with contextlib.suppress(grpc.RpcError):
            for _ in stream(iter(stream_msgs), timeout=2):
                pass
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        assert stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=10).p4runtime_api_version
    assert switch.proc is not None and switch.proc.poll() is None


def test_the_switch_stops_promptly_after_malformed_stream_messages(tmp_path: Path) -> None:
    """grpcio can leave a StreamChannel whose request failed to deserialize unfinished; the
    switch must still exit on SIGTERM (it used to wait for that stream forever)."""
    with SwitchProcess(f"127.0.0.1:{_free_port()}", log=tmp_path / "switch.log") as sw:
        for _ in range(6):
            with grpc.insecure_channel(sw.address) as channel:
                stream = channel.stream_stream("/p4.v1.P4Runtime/StreamChannel")
                with contextlib.suppress(grpc.RpcError):
                    for _ in stream(iter([b"\xff\xff"]), timeout=5):
                        pass
        assert sw.proc is not None
        sw.proc.terminate()
        assert sw.proc.wait(timeout=STOP_BOUND_S) == 0
