"""The fleet's keys in etcd (docs/fleet.md): one prefix (default ``/dysco/``) and under it

::

    policies/all                 policy text (docs/policy-language.md) for every agent
    policies/group/GROUP         ... for the agents of GROUP (``dysco agent --group``)
    policies/agent/NAME          ... for the agent NAME
    agents/NAME                  NAME's registration (JSON), under a lease: gone when NAME is
    status/NAME                  NAME's last report (JSON): the policy in force, a refusal, sessions
    commands/ID                  a fleet command (JSON, :mod:`._commands`)
    results/ID/NAME              NAME's outcome of command ID (JSON)
    drained/ADDR                 a drained middlebox instance (JSON: who, when): no new sessions
    keys/ring                    the trust domain's key ring (JSON, :mod:`._keys`)

An agent puts in force the most specific policy set that exists for it (agent, else group, else
all; none: no policies).  Values are UTF-8; registrations and reports are JSON objects whose
fields are the dataclasses below.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from dysco.errors import UserError

DEFAULT_PREFIX = "/dysco/"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class Scope(enum.Enum):
    """Who a policy set is for, from the least to the most specific."""

    ALL = "all"
    GROUP = "group"
    AGENT = "agent"


def check_name(text: str, what: str) -> str:
    """An agent or group name as a key segment: letters, digits, ``_ . -``, at most 63."""
    if not _NAME.fullmatch(text):
        raise UserError(f"{what} {text!r}: use letters, digits, '_', '.' and '-' (at most 63, no '/')")
    return text


@dataclass(frozen=True, slots=True)
class Layout:
    """The keys of one fleet (one prefix)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise UserError(f"etcd prefix {self.prefix!r}: must start and end with '/'")

    def key(self, *parts: str) -> bytes:
        return (self.prefix + "/".join(parts)).encode()

    def policy(self, scope: Scope, name: str = "") -> bytes:
        """The key of a policy set: ``policies/all``, ``policies/group/G``, ``policies/agent/N``."""
        if scope is Scope.ALL:
            if name:
                raise UserError("the scope 'all' takes no name")
            return self.key("policies", "all")
        return self.key("policies", scope.value, check_name(name, scope.value))

    @property
    def policies(self) -> bytes:
        return self.key("policies", "")

    def agent(self, name: str) -> bytes:
        return self.key("agents", name)

    @property
    def agents(self) -> bytes:
        return self.key("agents", "")

    def status(self, name: str) -> bytes:
        return self.key("status", name)

    @property
    def statuses(self) -> bytes:
        return self.key("status", "")

    def command(self, ident: str) -> bytes:
        return self.key("commands", ident)

    @property
    def commands(self) -> bytes:
        return self.key("commands", "")

    def result(self, ident: str, name: str) -> bytes:
        return self.key("results", ident, name)

    def results(self, ident: str) -> bytes:
        return self.key("results", ident, "")

    def drained(self, addr: str) -> bytes:
        return self.key("drained", addr)

    @property
    def drained_all(self) -> bytes:
        return self.key("drained", "")

    @property
    def keys(self) -> bytes:
        return self.key("keys", "ring")

    def name_of(self, key: bytes, folder: bytes) -> str:
        """NAME of ``FOLDER/NAME``."""
        return key[len(folder) :].decode()

    def scopes_of(self, name: str, group: str) -> tuple[bytes, ...]:
        """The policy keys of an agent, most specific first."""
        keys = [self.policy(Scope.AGENT, name)]
        if group:
            keys.append(self.policy(Scope.GROUP, group))
        keys.append(self.policy(Scope.ALL))
        return tuple(keys)


def parse_scope(text: str) -> tuple[Scope, str]:
    """``all``, ``group:G`` or ``agent:N`` (``dysco fleet policies put --scope``)."""
    kind, _, name = text.partition(":")
    try:
        scope = Scope(kind)
    except ValueError:
        raise UserError(f"--scope {text!r}: expected all, group:NAME or agent:NAME") from None
    if scope is not Scope.ALL and not name:
        raise UserError(f"--scope {text!r}: {kind} needs a name, e.g. {kind}:web")
    if scope is Scope.ALL and name:
        raise UserError(f"--scope {text!r}: 'all' takes no name")
    return scope, name


@dataclass(frozen=True, slots=True)
class Registration:
    """``agents/NAME``: who the agent is (under its lease)."""

    name: str
    address: str
    group: str = ""
    role: str = "agent"
    version: str = ""
    metrics: str = ""
    """Its metrics URL, when it serves metrics."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Registration:
        return cls(**json_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Refusal:
    key: str
    revision: int
    error: str


@dataclass(frozen=True, slots=True)
class Report:
    """``status/NAME``: what the agent last did with its keys (kept when it goes away)."""

    name: str
    address: str
    policy_key: str = ""
    """The policy set in force ("" for none)."""
    policy_revision: int = 0
    """The etcd revision of that key's value in force (0: none from etcd)."""
    refused: Refusal | None = None
    """The last policy set this agent refused (the one before stays in force)."""
    sessions: int = 0
    at: float = 0.0
    """Wall-clock time of the report (s)."""
    extra: dict[str, Any] = field(default_factory=dict)
    keys_revision: int = 0
    """The etcd revision of the key ring in force (0: none from etcd)."""
    keys_current: int = -1
    """The id of the key it signs with (-1: no ring from etcd)."""
    keys_refused: str = ""
    """Why it refused the last ring ("" for none)."""
    drained: list[str] = field(default_factory=list)
    """The middlebox instances it leaves out of new sessions."""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> Report:
        raw = json_fields(cls, data)
        refused = raw.get("refused")
        if isinstance(refused, dict):
            raw["refused"] = Refusal(**refused)
        return cls(**raw)


def json_fields(cls: type, data: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not a JSON {cls.__name__.lower()}: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"not a JSON {cls.__name__.lower()}: {data[:40]!r}")
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    return {k: v for k, v in raw.items() if k in known}
