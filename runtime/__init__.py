"""dysco.runtime: the host agent.

Public surface::

    Agent, Config              the sans-IO core (events in, actions out); Agent.reconfigure,
                               Agent.request_removal / request_reconfiguration (rightRequest),
                               Agent.splice (remove a TCP-terminating proxy, Config.splice)
    Install, Modify, Delete, Send, SetTimer, Notify, Peer, Mapping, Port, Reason, Table
    FiveTuple
    SynPayload, encode_payload, decode_payload, BadPayload   (docs/protocol.md)
    splice, SpliceResult       a proxy hands its two sockets to the local agent (steps out)

Adapters: ``dysco.runtime.sim`` (simulation on a fake clock), ``dysco.runtime.p4rt``
(P4Runtime over gRPC, asyncio), ``dysco.runtime.cli`` (``dysco agent``, ``dysco ctl``).
"""

from dysco.runtime._core import Agent, Config, Role
from dysco.runtime._events import (
    Action,
    Delete,
    Install,
    Mapping,
    Modify,
    Notify,
    Peer,
    Port,
    Reason,
    Send,
    SetTimer,
    Table,
)
from dysco.runtime._splicecall import SpliceResult, splice
from dysco.runtime._types import FiveTuple
from dysco.runtime._wire import BadPayload, SynPayload
from dysco.runtime._wire import decode as decode_payload
from dysco.runtime._wire import encode as encode_payload

__all__ = [
    "Action",
    "Agent",
    "BadPayload",
    "Config",
    "Delete",
    "FiveTuple",
    "Install",
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
    "decode_payload",
    "encode_payload",
    "splice",
]
