"""Live policy reloads at an agent on a real ``dysco switch`` process (no root needed): the new
file's entries and nothing else end up in the classifier, new SYNs follow the new policies, a
live session keeps its chain and its entries, a bad file changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from dysco.errors import UserError
from dysco.proto.p4.v1 import p4runtime_pb2
from dysco.runtime.core import _packet as pk
from dysco.runtime.p4rt import AgentService
from dysco.runtime.p4rt._client import entry_to_proto
from dysco.softswitch.api import Program
from dysco.testbed import SwitchProcess

from .test_p4rt import POLICY, WAIT_S, _running, _stop, from_host, settings, switch, syn

__all__ = ["switch"]  # the fixture, imported for pytest

NEW = (
    "middlebox fw2 { instances 10.0.5.5; }\nmiddlebox ids { instances 10.0.4.4; }\n"
    "policy web: tcp dst port 80 -> fw2\npolicy ssh: tcp dst port 22 -> ids\n"
)


def _key(te: p4runtime_pb2.TableEntry) -> bytes:
    return te.SerializeToString(deterministic=True)


async def classifier(service: AgentService) -> set[bytes]:
    """The classifier's entries as the switch reads them back."""
    conn = service.connection
    assert conn is not None
    entity = p4runtime_pb2.Entity()
    entity.table_entry.table_id = service.nic.classifier_id
    return {_key(e.table_entry) for e in await conn.read([entity])}


def expected(service: AgentService) -> set[bytes]:
    """The entries of the policies the agent has in force."""
    assert service.settings.policies is not None
    return {
        _key(entry_to_proto(e)) for e in service.nic.classifier_entries(service.settings.policies.entries)
    }


def test_a_reload_puts_the_new_file_in_force_and_leaves_live_sessions_alone(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    old_file, new_file = tmp_path / "old.dysco", tmp_path / "new.dysco"
    old_file.write_text(POLICY)
    new_file.write_text(NEW)

    async def main() -> None:
        base = settings(dysco_program, switch.address)
        service = AgentService(dataclasses.replace(base, policies_file=str(old_file)))
        task = await _running(service)
        try:
            from_host(service, syn(40000))  # a live session through fw
            await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
            before = await classifier(service)
            assert before == expected(service)

            same = await service.reload_policies({})  # the same file again: nothing to write
            assert (same["added"], same["removed"], same["kept"]) == (0, 0, len(before))
            assert await classifier(service) == before

            done = await service.reload_policies({"file": str(new_file)})
            assert done["file"] == str(new_file) and done["policies"] == 2
            now = await classifier(service)
            assert now == expected(service) != before  # the catch-all is gone too
            assert done["added"] == len(now - before) and done["removed"] == len(before - now)
            assert done["kept"] == len(now & before)

            [live] = service.sessions()
            assert live["chain"] == ["10.0.2.2", "10.0.3.2"]  # untouched
            f = pk.parse(syn())
            from_host(service, dataclasses.replace(f, sport=40001).to_bytes())  # web, now via fw2
            from_host(service, dataclasses.replace(f, sport=40002, dport=22).to_bytes())  # ssh
            await service.wait_until(lambda: len(service.sessions()) == 3, WAIT_S)
            chains = {row["five_tuple"]["sport"]: row["chain"] for row in service.sessions()}
            assert chains == {
                40000: ["10.0.2.2", "10.0.3.2"],
                40001: ["10.0.5.5", "10.0.3.2"],
                40002: ["10.0.4.4", "10.0.3.2"],
            }
            assert service.counters["policies.reloads"] == 2
            assert not service.errors
        finally:
            await _stop(task)

    asyncio.run(main())


def test_a_bad_file_is_refused_whole_and_the_old_policies_stay(
    dysco_program: Program, switch: SwitchProcess, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.dysco"
    bad.write_text(NEW.replace("tcp dst port 22", "tcp dst prot 22"))

    async def main() -> None:
        service = AgentService(settings(dysco_program, switch.address))
        task = await _running(service)
        try:
            before = await classifier(service)
            with pytest.raises(UserError, match=rf"{bad}:4:\d+"):
                await service.reload_policies({"file": str(bad)})
            with pytest.raises(UserError, match="no policy file to reload"):
                await service.reload_policies({})  # started without --policies
            assert await classifier(service) == before
            assert service.settings.policies is not None and service.settings.policies_file == ""
            from_host(service, syn())
            await service.wait_until(lambda: service.counters["packet_out"] >= 1, WAIT_S)
            assert service.sessions()[0]["chain"] == ["10.0.2.2", "10.0.3.2"]
            assert service.counters["policies.reloads"] == 0
        finally:
            await _stop(task)

    asyncio.run(main())
