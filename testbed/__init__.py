"""dysco.testbed: networks built around agents, for tests, benchmarks and the demo.

Not the agent (that is :mod:`dysco.runtime`): these tools start ``dysco switch`` NICs and
``dysco agent`` processes in network namespaces (or agents in the in-process simulation) and
drive traffic through them.

Public surface::

    Plan, Host, load_topology   a testbed written down: hosts, links, commands (from a TOML file)
    Testbed, Process            carry a plan out and tear it down; one started process
    SwitchProcess               one ``dysco switch`` process
    clean                       remove whatever a plan creates

Commands: ``dysco testbed up|down|run FILE`` (:mod:`dysco.testbed.cli`) and ``dysco demo``
(:mod:`dysco.testbed.demo`).
"""

from dysco.testbed._netns import Host, Plan, Testbed, clean
from dysco.testbed._process import Process, SwitchProcess
from dysco.testbed._topology import load_topology

__all__ = ["Host", "Plan", "Process", "SwitchProcess", "Testbed", "clean", "load_topology"]
