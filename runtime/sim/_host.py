"""Simulated hosts: an application on the HOST port, and (with an agent) a softswitch running
p4src/dysco.p4 through the in-process API plus the agent's sans-IO core."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dysco.compiler import Compiled
from dysco.compiler.software import SoftwareClassifier
from dysco.runtime._nic import Nic
from dysco.runtime.core import SECOND, Agent, Config, adopt
from dysco.runtime.core._events import (
    Action,
    Delete,
    Install,
    Mapping,
    Modify,
    Notify,
    Peer,
    Port,
    Send,
    SetTimer,
    Table,
)
from dysco.runtime.sim._net import Network, Sim
from dysco.softswitch import Switch
from dysco.softswitch.api import EntryError, Program, WriteOp


class App(Protocol):
    def receive(self, frame: bytes) -> None: ...


@dataclass
class Host:
    sim: Sim
    net: Network
    name: str
    address: int
    app: App | None = None
    switch: Switch | None = None
    agent: Agent | None = None
    nic: Nic | None = None
    agent_delay: int = 0
    """Time the agent takes per packet-in (the packet-outs leave this much later)."""
    idle_poll: int = 1 * SECOND
    notes: list[Notify] = field(default_factory=list)
    _polling: bool = False

    # ---- frames --------------------------------------------------------------------------------

    def from_net(self, frame: bytes) -> None:
        if self.switch is None:
            self._to_app(frame)
        else:
            self._process(self._port(Port.NET), frame)

    def emit(self, frame: bytes) -> None:
        """The application sends a frame toward the network."""
        if self.switch is None:
            self.net.send(self.address, frame)
        else:
            self._process(self._port(Port.HOST), frame)

    def _port(self, port: Port) -> int:
        assert self.nic is not None
        return self.nic.ports[port]

    def _to_app(self, frame: bytes) -> None:
        if self.app is not None:
            app = self.app
            self.sim.after(0, lambda: app.receive(frame))

    def _process(self, port: int, frame: bytes) -> None:
        assert self.switch is not None and self.nic is not None
        for eport, out in self.switch.process(port, frame):
            if eport == self.nic.ports[Port.NET]:
                self.net.send(self.address, out)
            elif eport == self.nic.ports[Port.HOST]:
                self._to_app(out)
            elif eport == self.switch.cpu_port:
                self._packet_in(out)

    # ---- the agent -------------------------------------------------------------------------------

    def _packet_in(self, data: bytes) -> None:
        assert self.agent is not None and self.nic is not None
        p = self.nic.packet_in(data)
        if p.port is None:
            return
        actions = self.agent.packet_in(self.sim.now, p.frame, p.port, p.reason, p.policy_id, p.session_id)
        if self.agent_delay:
            self.sim.after(self.agent_delay, lambda: self.execute(actions))
        else:
            self.execute(actions)

    def execute(self, actions: Iterable[Action]) -> None:
        assert self.agent is not None and self.switch is not None and self.nic is not None
        failed: set[int] = set()
        more: list[Action] = []
        for a in actions:
            if isinstance(a, Install | Modify):
                if a.mapping.session_id in failed:
                    continue
                op: WriteOp = "insert" if isinstance(a, Install) else "modify"
                try:
                    self.switch.write_entry(op, self.nic.entry(a.mapping, self.agent.config.idle_timeout))
                except EntryError as exc:
                    failed.add(a.mapping.session_id)
                    more.extend(self.agent.write_failed(self.sim.now, a.mapping, exc.code, exc.message))
            elif isinstance(a, Delete):
                try:
                    self.switch.write_entry("delete", self.nic.entry(a.mapping))
                except EntryError as exc:
                    if exc.code != "NOT_FOUND":
                        raise
            elif isinstance(a, Send):
                if failed:
                    continue  # a refused write: that SYN must not leave
                self._process(self.switch.cpu_port or 0, self.nic.packet_out(a.frame, a.port))
            elif isinstance(a, SetTimer):
                self.sim.at(a.at, lambda: self.execute(self._agent().timer(self.sim.now)))
            elif isinstance(a, Peer):
                if a.replaces is not None:
                    self.switch.write_entry("delete", self.nic.peer_entry(a.replaces, a.cell))
                self.switch.write_entry("insert", self.nic.peer_entry(a.address, a.cell))
            else:
                self.notes.append(a)
        if more:
            self.execute(more)
        if not self._polling and (not self.agent.empty() or self.session_entries()):
            self._polling = True
            self.sim.after(self.idle_poll, self._poll_idle)

    def _agent(self) -> Agent:
        assert self.agent is not None
        return self.agent

    def _poll_idle(self) -> None:
        assert self.agent is not None and self.switch is not None and self.nic is not None
        self._polling = False
        for entry in self.switch.expired_entries():
            key = self.nic.mapping_key(entry)
            if key is not None:
                self.execute(self.agent.idle_timeout(self.sim.now, *key))
        if (not self.agent.empty() or self.session_entries()) and not self._polling:
            self._polling = True
            self.sim.after(self.idle_poll, self._poll_idle)

    def restart_agent(self) -> Agent:
        """The agent dies and a new one starts with the same settings and chains: a new core
        (nothing of the old one), which adopts the NIC's session entries; the NIC went on
        meanwhile.  Returns the new core."""
        assert self.agent is not None and self.switch is not None and self.nic is not None
        old = self.agent
        self.agent = Agent(old.config, old.chains.values(), old.software)
        self.execute(adopt(self.agent, self.sim.now, self.nic_mappings()))
        return self.agent

    def nic_mappings(self) -> list[Mapping]:
        """Every entry of the NIC's session tables, as an adapter hands them to the core."""
        assert self.switch is not None and self.nic is not None
        found = (self.nic.mapping(e) for t in Table for e in self.switch.read_entries(self.nic.table_ids[t]))
        return [m for m in found if m is not None]

    def session_entries(self) -> int:
        """Entries left in the NIC's session tables."""
        if self.switch is None or self.nic is None:
            return 0
        return sum(len(self.switch.read_entries(self.nic.table_ids[t])) for t in Table)


class World:
    """Hosts on one simulated network, sharing one compiled P4 program."""

    def __init__(self, program: Program, seed: int = 0) -> None:
        self.sim = Sim(seed)
        self.net = Network(self.sim)
        self.program = program
        self.nic = Nic(program.p4info)
        self.hosts: dict[str, Host] = {}

    def host(
        self,
        name: str,
        address: int,
        *,
        agent: bool = True,
        policies: Compiled | None = None,
        via: int | None = None,
        private: bool = False,
        app: Callable[[Host], App] | None = None,
        **config: Any,
    ) -> Host:
        h = Host(self.sim, self.net, name, address)
        if agent:
            h.switch = Switch(self.program, cpu_port=255, clock=self.sim.clock)
            h.nic = self.nic
            chains = policies.chains.values() if policies is not None else ()
            software = SoftwareClassifier.from_compiled(policies) if policies is not None else None
            h.agent = Agent(Config(address=address, name=name, **config), chains, software)
            h.switch.set_clone_session(self.nic.teardown_clone_session())
            for e in self.nic.classifier_entries(policies.entries if policies is not None else ()):
                h.switch.write_entry("insert", e)
        if app is not None:
            h.app = app(h)
        self.net.attach(address, h.from_net, via, private)
        self.hosts[name] = h
        return h

    def leftovers(self) -> dict[str, str]:
        """Per host, what state is left (empty when everything was cleaned up)."""
        out = {}
        for name, h in self.hosts.items():
            problems = []
            if h.session_entries():
                problems.append(f"{h.session_entries()} NIC session entries")
            if h.agent is not None and not h.agent.empty():
                problems.append(f"agent state {h.agent.status(self.sim.now)}")
            if problems:
                out[name] = "; ".join(problems)
        return out
