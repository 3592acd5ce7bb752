"""The agent's side of a "software" classifier entry: the SYN gets the file's first matching
policy from the agent's evaluator, or goes on untouched when none holds."""

from __future__ import annotations

from pathlib import Path

from dysco.compiler.passes import Options, compile_text
from dysco.compiler.software import SOFTWARE_FLAG, SoftwareClassifier
from dysco.runtime import Agent, Config, Install, Notify, Port, Reason, Send
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import ip_int

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "policies.dysco").read_text()
ME = ip_int("10.0.1.5")


def _syn(dst: str, dport: int, src: int = ME) -> bytes:
    return pk.TcpFrame(b"\2" * 6, b"\4" * 6, src, ip_int(dst), 40000, dport, 1, 0, pk.SYN).to_bytes()


def _agent(with_software: bool = True) -> tuple[Agent, int]:
    compiled = compile_text(EXAMPLE, "policies.dysco", Options(capacity=1))  # all in software
    (entry,) = compiled.entries
    assert entry.action == "software"
    software = SoftwareClassifier.from_compiled(compiled) if with_software else None
    return Agent(Config(ME), compiled.chains.values(), software), entry.policy_id


def test_a_software_punt_takes_the_first_matching_policys_chain() -> None:
    agent, policy_id = _agent()
    assert policy_id == SOFTWARE_FLAG | 1
    actions = agent.packet_in(0, _syn("10.0.7.7", 443), Port.HOST, Reason.POLICY_SYN, policy_id)
    assert any(isinstance(a, Install) for a in actions)
    (sent,) = [a for a in actions if isinstance(a, Send)]
    assert sent.port is Port.NET
    assert pk.parse(sent.frame).dst in (ip_int("10.0.2.1"), ip_int("10.0.2.2"))  # web's chain: the firewall


def test_a_software_punt_no_policy_holds_for_goes_on_untouched() -> None:
    agent, policy_id = _agent()
    frame = _syn("10.0.7.7", 8080, src=ip_int("192.168.0.1"))
    actions = agent.packet_in(0, frame, Port.HOST, Reason.POLICY_SYN, policy_id)
    assert actions == [Send(frame, Port.NET)]


def test_without_an_evaluator_a_software_punt_fails_closed() -> None:
    agent, policy_id = _agent(with_software=False)
    actions = agent.packet_in(0, _syn("10.0.7.7", 443), Port.HOST, Reason.POLICY_SYN, policy_id)
    assert [a.event for a in actions if isinstance(a, Notify)] == ["no_software_classifier"]
    assert not any(isinstance(a, Send) for a in actions)
    assert agent.metrics["errors.no_software_classifier"] == 1
