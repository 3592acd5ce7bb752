"""dysco.runtime: the host agent.

Public surface::

    Agent, Config              the sans-IO core (events in, actions out); Agent.reconfigure,
                               Agent.request_removal / request_reconfiguration (rightRequest),
                               Agent.splice (remove a TCP-terminating proxy, Config.splice)
    Install, Modify, Delete, Send, SetTimer, Notify, Peer, Mapping, Port, Reason, Table
    FiveTuple
    SynPayload, encode_payload, decode_payload, BadPayload   (docs/protocol.md)
    splice, SpliceResult       a proxy hands its two sockets to the local agent (steps out)
    prepend_hops, declare_delta, leave, LeaveResult
                               the middlebox API: next hops, the bytes it added, its removal

The protocol is ``dysco.runtime.core`` (sans-IO: no sockets, clocks or asyncio).  Beside it its
adapters: ``dysco.runtime.p4rt`` (P4Runtime over gRPC, asyncio), ``dysco.runtime.sim``
(simulation on a fake clock), the management API (``_mgmt``, ``_ctl``: ``dysco ctl``), the
splice call (``_splicecall``), the middlebox API (``_mbcall``, ``_ctl_mbox``), the conntrack
state hook (``_conntrack``), the NIC's table entries (``_nic``) and ``dysco.runtime.cli``
(``dysco agent``, ``dysco ctl``).
"""

from dysco.runtime._mbcall import LeaveResult, declare_delta, leave, prepend_hops
from dysco.runtime._splicecall import SpliceResult, splice
from dysco.runtime.core import (
    Action,
    Agent,
    BadPayload,
    Config,
    Delete,
    FiveTuple,
    Install,
    Mapping,
    Modify,
    Notify,
    Peer,
    Port,
    Reason,
    Role,
    Send,
    SetTimer,
    SynPayload,
    Table,
    decode_payload,
    encode_payload,
)

__all__ = [
    "Action",
    "Agent",
    "BadPayload",
    "Config",
    "Delete",
    "FiveTuple",
    "Install",
    "LeaveResult",
    "Mapping",
    "Modify",
    "Notify",
    "Peer",
    "Port",
    "Reason",
    "Role",
    "Send",
    "SetTimer",
    "SpliceResult",
    "SynPayload",
    "Table",
    "declare_delta",
    "decode_payload",
    "encode_payload",
    "leave",
    "prepend_hops",
    "splice",
]
