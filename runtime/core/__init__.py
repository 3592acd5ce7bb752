"""dysco.runtime.core: the Dysco protocol at one host, sans-IO.

Events in, actions out: :class:`Agent` takes the packets its NIC punted, control datagrams,
timers, idle timeouts, refused writes, policy updates and management commands, and returns
actions (:mod:`dysco.runtime.core._events`) for an adapter to carry out.  Nothing here opens a
socket, reads a clock or starts a task; the adapters beside this package do
(:mod:`dysco.runtime.p4rt`, :mod:`dysco.runtime.sim`).

Public surface::

    Agent, Config, Role, SECOND     the agent at one host and its settings
    Action, Install, Modify, Delete, Send, SetTimer, Notify    what it asks of an adapter
    Mapping, Peer, Port, Reason, Table                         the words of those actions
    FiveTuple
    SynPayload, encode_payload, decode_payload, BadPayload     the Dysco SYN payload
"""

from dysco.runtime.core._agent import SECOND, Agent, Config, Role
from dysco.runtime.core._events import (
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
from dysco.runtime.core._syn_payload import BadPayload, SynPayload
from dysco.runtime.core._syn_payload import decode as decode_payload
from dysco.runtime.core._syn_payload import encode as encode_payload
from dysco.runtime.core._types import FiveTuple

__all__ = [
    "SECOND",
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
    "SynPayload",
    "Table",
    "decode_payload",
    "encode_payload",
]
