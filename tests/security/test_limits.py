"""Punt rate limits configured over P4Runtime (runtime/p4rt/_limits.py) on a real ``dysco switch``.

The switch process has no interfaces: SYNs enter its pipeline on the HOST port as packet-outs in
PIPELINE mode, the classifier punts them, and the punt meter decides which reach this client
as packet-ins and which are dropped and counted in ``punt_dropped``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dysco import p4names
from dysco.compiler import compile_text
from dysco.errors import UserError
from dysco.p4names import Reason
from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.runtime._nic import Nic
from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import ip_int, prefixed
from dysco.runtime.p4rt import Connection, Pipeline
from dysco.runtime.p4rt import _limits as lim
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

WAIT_S = 30.0
POLICY = "middlebox fw { instances 10.0.2.2; }\npolicy web: tcp dst port 80 -> fw\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    with SwitchProcess(f"127.0.0.1:{_free_port()}", log=tmp_path / "switch.log") as sw:
        yield sw


def _meta(p4info: Any, name: str) -> dict[str, int]:
    cpm = next(c for c in p4info.controller_packet_metadata if c.preamble.name == name)
    return {m.name: m.id for m in cpm.metadata}


def _syn(sport: int) -> bytes:
    return pk.TcpFrame(
        b"\x02\0\0\0\0\x02",
        b"\x02\0\0\0\0\x01",
        ip_int("10.0.1.2"),
        ip_int("10.0.3.2"),
        sport,
        80,
        1,
        0,
        pk.SYN,
    ).to_bytes()


async def _read(address: str, entity: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        out: list[p4runtime_pb2.Entity] = []
        async for reply in stub.Read(p4runtime_pb2.ReadRequest(device_id=0, entities=[entity])):
            out.extend(reply.entities)
        return out


def test_limits_written_read_back_and_a_flood_cut_and_counted(
    dysco_program: Program, switch: SwitchProcess
) -> None:
    info = dysco_program.p4info
    limits = lim.with_overrides([(Reason.POLICY_SYN, lim.Limit(1, 5))])
    n = 40

    async def main() -> None:
        log = prefixed(__name__, "test", "p4rt")
        async with Connection(switch.address, 0, 1, log) as conn:
            await conn.ensure_pipeline(Pipeline(info, dysco_program.device_config()))
            nic = Nic(info)
            entries = nic.classifier_entries(compile_text(POLICY).entries)
            assert await conn.write([conn.table_update("insert", e) for e in entries]) == [None] * len(
                entries
            )
            updates = lim.meter_updates(info, limits)
            assert await conn.write(updates) == [None] * len(updates)

            # read back: every configured cell as written, the others without a configuration
            wildcard = p4runtime_pb2.Entity()
            wildcard.meter_entry.meter_id = updates[0].entity.meter_entry.meter_id
            cells = {e.meter_entry.index.index: e.meter_entry for e in await _read(switch.address, wildcard)}
            assert len(cells) == p4names.PUNT_REASONS
            for code, cell in cells.items():
                limit = limits.get(Reason(code)) if code in Reason._value2member_map_ else None
                if limit is None:
                    assert not cell.HasField("config")
                else:
                    c = cell.config
                    assert (c.cir, c.cburst, c.pir, c.pburst) == (limit.rate, limit.burst) * 2

            # a burst of policy SYNs, then a control datagram as a marker: the switch handles
            # packet-outs in order, so when the marker is punted every SYN has been metered
            out = _meta(info, "packet_out")
            inn = {v: k for k, v in _meta(info, "packet_in").items()}
            pipeline = {out["mode"]: int(p4names.PacketOutMode.PIPELINE)}
            started = time.monotonic()
            for i in range(n):
                conn.packet_out(_syn(30000 + i), {**pipeline, out["port"]: p4names.HOST_PORT})
            marker = cw.udp_frame(ip_int("10.0.2.2"), ip_int("10.0.1.2"), p4names.CONTROL_UDP_PORT, b"m")
            conn.packet_out(marker, {**pipeline, out["port"]: p4names.NET_PORT})
            reasons: list[int] = []
            async with asyncio.timeout(WAIT_S):
                async for msg in conn.messages():
                    if msg.WhichOneof("update") != "packet":
                        continue
                    fields = {inn[m.metadata_id]: int.from_bytes(m.value, "big") for m in msg.packet.metadata}
                    reasons.append(fields["reason"])
                    if fields["reason"] == Reason.CONTROL:
                        break
            elapsed = time.monotonic() - started

        punted = reasons.count(Reason.POLICY_SYN)
        dropped = lim.dropped_counts(info, await _read(switch.address, lim.dropped_read(info)))
        # the bucket starts full (5) and refills at 1/s while the switch works through the burst
        assert 5 <= punted <= 5 + int(elapsed) + 1, (punted, elapsed)
        assert dropped == {"policy_syn": n - punted}
        report = lim.describe(limits, dropped)
        assert report["policy_syn"] == {"rate_pps": 1, "burst": 5, "dropped": n - punted}
        assert report["control"] == {"rate_pps": 1000, "burst": 500, "dropped": 0}

    asyncio.run(main())


def test_default_limits_cover_every_reason(dysco_program: Program) -> None:
    updates = lim.meter_updates(dysco_program.p4info)
    assert sorted(u.entity.meter_entry.index.index for u in updates) == sorted(int(r) for r in Reason)
    assert all(u.type == p4runtime_pb2.Update.MODIFY and u.entity.meter_entry.config.pir > 0 for u in updates)


def test_off_clears_the_cell(dysco_program: Program) -> None:
    [u] = lim.meter_updates(dysco_program.p4info, {Reason.TWO_PATH: None})
    assert u.entity.meter_entry.index.index == Reason.TWO_PATH and not u.entity.meter_entry.HasField("config")
    assert lim.describe({Reason.TWO_PATH: None}) == {"two_path": {"rate_pps": None, "burst": None}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("policy_syn=500/100", (Reason.POLICY_SYN, lim.Limit(500, 100))),
        ("CONTROL=50", (Reason.CONTROL, lim.Limit(50, 50))),
        ("two_path=off", (Reason.TWO_PATH, None)),
    ],
)
def test_parse_limit(text: str, expected: tuple[Reason, lim.Limit | None]) -> None:
    assert lim.parse_limit(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("flood=5", "unknown reason 'flood'"),
        ("control", "expected REASON=RATE"),
        ("control=fast", "whole numbers"),
        ("control=5/x", "whole numbers"),
        ("control=0", "at least 1"),
    ],
)
def test_parse_limit_refuses(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        lim.parse_limit(text)


def test_a_program_without_the_meter_is_refused() -> None:
    from dysco.proto.p4.config.v1 import p4info_pb2

    with pytest.raises(UserError, match=r"no meter DyscoIngress\.punt_meter"):
        lim.meter_updates(p4info_pb2.P4Info())
    with pytest.raises(UserError, match=r"no counter DyscoIngress\.punt_dropped"):
        lim.dropped_read(p4info_pb2.P4Info())
