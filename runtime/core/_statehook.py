"""The state hook: the contract between the agent's core and a stateful middlebox's hook.

A middlebox whose application keeps per-session state declares a :class:`StateHook` to its
agent (``dysco agent --state-hook``; :mod:`dysco.runtime._conntrack` is the reference one).  The
core never calls it: it queues :class:`HookCall` objects, an adapter runs each with
:func:`run_hook` off its event loop and feeds the outcome back with
:meth:`dysco.runtime.core.Agent.hook_done`.  The protocol around it is
:mod:`dysco.runtime.core.reconf._migrate`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from dysco.runtime.core import _control_messages as cw
from dysco.runtime.core._types import FiveTuple

STATE_HOOKS = ("conntrack",)
"""The state hooks an agent can run (``dysco agent --state-hook``, a testbed host's ``state_hook``)."""


class HookOp(enum.Enum):
    EXPORT = "export"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class View:
    """A session as the middlebox application sees it."""

    orig: FiveTuple
    """The packets from the left (the session's initiator) as they reach the application."""
    reply: FiveTuple
    """The packets from the right as they reach it (a NAT's replies go to its own address)."""

    def __str__(self) -> str:
        return f"{self.orig} (replies {self.reply})"


class HookError(Exception):
    """A hook could not export or import the state; the message says why (it travels to the left
    anchor, which reports it)."""


class StateHook(Protocol):
    """What a stateful middlebox implements.  Both calls may block (adapters run them off their
    event loop) and raise :class:`HookError`; anything else they raise counts as a failure too."""

    name: str

    def export_state(self, view: View) -> bytes:
        """The application's state for the session ``view`` (at most ``MAX_STATE`` bytes)."""
        ...

    def import_state(self, state: bytes, view: View) -> None:
        """Install ``state`` (another instance's export) for the session ``view``."""
        ...


@dataclass(frozen=True, slots=True)
class HookCall:
    """Work for the adapter: run the hook's export or import."""

    id: int
    op: HookOp
    view: View
    state: bytes = b""


def run_hook(hook: StateHook | None, call: HookCall) -> tuple[bytes, str]:
    """Carry ``call`` out (blocking): ``(state, "")`` or ``(b"", why it failed)``."""
    if hook is None:
        return b"", "no state hook"
    try:
        if call.op is HookOp.EXPORT:
            state: object = hook.export_state(call.view)
            if not isinstance(state, bytes):
                return b"", f"{hook.name}: export gave {type(state).__name__}, not bytes"
            if len(state) > cw.MAX_STATE:
                return b"", f"{hook.name}: {len(state)} bytes of state > {cw.MAX_STATE}"
            return state, ""
        hook.import_state(call.state, call.view)
        return b"", ""
    except HookError as exc:
        return b"", f"{hook.name}: {exc}"
    except Exception as exc:  # a hook's bug must not take the agent down: it fails the migration
        return b"", f"{hook.name}: {type(exc).__name__}: {exc}"
