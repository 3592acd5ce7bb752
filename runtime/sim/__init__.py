"""The simulation adapter: many hosts, each a softswitch running p4src/dysco.p4 plus its agent's
core, on a simulated faulty network with a fake clock; a run is determined by its seed."""

from dysco.runtime.sim._apps import ChainClassifier, Forwarder, Inserter, Nat, SpliceProxy
from dysco.runtime.sim._host import App, Host, World
from dysco.runtime.sim._natbox import NatBox
from dysco.runtime.sim._net import MS, Faults, Network, Sim
from dysco.runtime.sim._tcp import Conn, TcpStack

__all__ = [
    "MS",
    "App",
    "ChainClassifier",
    "Conn",
    "Faults",
    "Forwarder",
    "Host",
    "Inserter",
    "Nat",
    "NatBox",
    "Network",
    "Sim",
    "SpliceProxy",
    "TcpStack",
    "World",
]
