"""The agent's side of a "software" classifier entry: the SYN gets the file's first matching
policy from the agent's evaluator, or goes on untouched when none holds."""

from __future__ import annotations

from pathlib import Path

from dysco.compiler.passes import Options, compile_text
from dysco.compiler.software import SOFTWARE_FLAG, SoftwareClassifier
from dysco.runtime import Agent, Config, Install, Notify, Port, Reason, Send
from dysco.runtime.core import _packet as pk
from dysco.runtime.core._types import ip_int
from dysco.softswitch.api import Program

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


def test_in_the_simulation_a_session_set_up_by_the_agents_evaluator_completes(dysco_program: Program) -> None:
    """A classifier of one entry: every SYN is the agent's to classify. Port 80 takes the
    chain through the middlebox; port 81 matches no policy and goes straight to the server."""
    from dysco.runtime.core import SECOND
    from dysco.runtime.sim import Forwarder, TcpStack, World

    from .simworld import CLIENT, SERVER, check_clean, check_exchange, request, respond

    w = World(dysco_program, 0)
    text = (
        "middlebox mb0 { instances 10.0.0.10; }\n"
        "policy web: tcp dst port 80 -> mb0\npolicy alt: tcp dst port 8080 -> mb0\n"
    )
    policies = compile_text(text, "sim.dysco", Options(capacity=1))
    (entry,) = policies.entries
    assert entry.action == "software" and (entry.dport.low, entry.dport.high) == (80, 8080)
    client = TcpStack(w.sim, ip_int(CLIENT), lambda f: None)
    c = w.host("client", ip_int(CLIENT), policies=policies, app=lambda h: client)
    client.emit = c.emit
    mb = w.host("mb0", ip_int("10.0.0.10"), app=Forwarder)
    server = TcpStack(w.sim, ip_int(SERVER), lambda f: None)
    s = w.host("server", ip_int(SERVER), app=lambda h: server)
    server.emit = s.emit
    server.listen(80, respond)
    server.listen(81, respond)
    conns = [client.connect(ip_int(SERVER), 80, request(0)), client.connect(ip_int(SERVER), 81, request(1))]
    w.sim.run_for(30 * SECOND)
    check_exchange(conns, server)
    assert c.agent is not None and c.agent.metrics["sessions.created"] == 1  # port 80 only
    assert mb.app is not None and mb.app.frames > 0  # type: ignore[attr-defined]
    check_clean(w)
