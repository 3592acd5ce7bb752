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
    StateHook, HookCall, HookOp, HookError, View, run_hook, hook_done, STATE_HOOKS
                                    a stateful middlebox's hook, run by an adapter
    adopt                           a restarted agent rebuilds its sessions from its NIC's entries
"""

from dysco.runtime.core._adopt import adopt
from dysco.runtime.core._agent import Agent, hook_done
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
from dysco.runtime.core._session import SECOND, Config, Role
from dysco.runtime.core._statehook import STATE_HOOKS, HookCall, HookError, HookOp, StateHook, View, run_hook
from dysco.runtime.core._syn_payload import BadPayload, SynPayload
from dysco.runtime.core._syn_payload import decode as decode_payload
from dysco.runtime.core._syn_payload import encode as encode_payload
from dysco.runtime.core._types import FiveTuple

__all__ = [
    "SECOND",
    "STATE_HOOKS",
    "Action",
    "Agent",
    "BadPayload",
    "Config",
    "Delete",
    "FiveTuple",
    "HookCall",
    "HookError",
    "HookOp",
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
    "StateHook",
    "SynPayload",
    "Table",
    "View",
    "adopt",
    "decode_payload",
    "encode_payload",
    "hook_done",
    "run_hook",
]
