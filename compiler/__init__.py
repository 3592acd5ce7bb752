"""The policy compiler: pcap-filter predicates and middlebox chains -> classifier entries.

Public surface::

    compile_text(text, filename, options) -> Compiled
    read_policies(path) -> str     a policy file's text, or a UserError with FILE:LINE:COL
    Compiled.entries / .chains
    to_json / to_text            (dysco.compiler.output)
    policy_for / entry_for       (dysco.compiler.evaluate)
    table_entries                (dysco.compiler.p4rt, P4Runtime messages)
"""

from dysco.compiler.entries import Entry
from dysco.compiler.passes import STAGES, Chain, Compiled, Options, compile_text
from dysco.compiler.source import read_policies

__all__ = ["STAGES", "Chain", "Compiled", "Entry", "Options", "compile_text", "read_policies"]
