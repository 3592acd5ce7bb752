"""Names of the P4 objects the compiler and the agent use, in one place.

``p4src/dysco.p4`` declares these tables, fields and actions with exactly these
control-plane names (tests check the P4Info generated from the program against
this module).  A program with other names can be driven by passing a different
:class:`ClassifierNames`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClassifierNames:
    """The outbound-SYN classifier table: ternary addresses, range ports, priorities."""

    table: str = "DyscoIngress.classifier"
    src_addr: str = "hdr.ipv4.src_addr"
    dst_addr: str = "hdr.ipv4.dst_addr"
    protocol: str = "hdr.ipv4.protocol"
    src_port: str = "hdr.tcp.src_port"
    dst_port: str = "hdr.tcp.dst_port"
    chain_action: str = "DyscoIngress.punt_policy"
    """Punts the SYN to the agent with the policy's chain id."""
    chain_param: str = "policy_id"
    bypass_action: str = "DyscoIngress.bypass"
    """Forwards the SYN untouched (no chain)."""


CLASSIFIER = ClassifierNames()
