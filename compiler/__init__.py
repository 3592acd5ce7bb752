"""The policy compiler: pcap-filter predicates and middlebox chains -> classifier entries.

Public surface::

    compile_text(text, filename, options) -> Compiled
    read_policies(path) -> str     a policy file's text, or a UserError with FILE:LINE:COL
    Options(budget, capacity, port_match)
    Compiled.entries / .chains / .stats
    SoftwareClassifier           the agent's evaluator for software punts (dysco.compiler.software)
    Deployed                     the entries as the NIC looks them up, then that evaluator
                                 (dysco.compiler.deployed; what ``dysco classify`` runs)
    to_json / to_text            (dysco.compiler.output)
    policy_for / entry_for       (dysco.compiler.evaluate)
    table_entries                (dysco.compiler.p4rt, P4Runtime messages)
"""

from dysco.compiler.entries import SOFTWARE_FLAG, Entry
from dysco.compiler.passes import STAGES, Chain, Compiled, Options, compile_text
from dysco.compiler.software import SoftwareClassifier
from dysco.compiler.source import read_policies

__all__ = [
    "SOFTWARE_FLAG",
    "STAGES",
    "Chain",
    "Compiled",
    "Entry",
    "Options",
    "SoftwareClassifier",
    "compile_text",
    "read_policies",
]
