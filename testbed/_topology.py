"""Topology files: the TOML a user writes (examples/chain.toml shows every key) read into a
:class:`~dysco.testbed._netns.Plan`, every mistake a :class:`UserError` naming the file and key."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

from dysco.errors import UserError
from dysco.runtime.core import STATE_HOOKS
from dysco.runtime.fleet._layout import check_name
from dysco.testbed._netns import CHAIN_POLICY, KINDS, ROLES, Host, Plan

_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
_TOP_KEYS = {"prefix", "p4", "linger", "grpc_port", "policy", "host", "etcd", "etcd_port", "etcd_tls",
             "etcd_members", "etcd_auth", "keys"}  # fmt: skip
_HOST_KEYS = {
    "name",
    "role",
    "agent",
    "kind",
    "rules",
    "port",
    "p4",
    "sysctls",
    "policy",
    "agentless",
    "splice",
    "state_hook",
    "group",
}
_SYSCTL = re.compile(r"[a-z0-9_.]+=[A-Za-z0-9_.-]+")


def _get(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{where}: {key} must be {kind.__name__}, not {value!r}")
    return value


def load_topology(path: Path, **overrides: Any) -> Plan:
    """The plan of a TOML topology file (examples/chain.toml shows every key); ``overrides``
    replace the plan's fields (a test gives its own prefix, ports and paths)."""
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}") from None
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise UserError(f"{path}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    tables = doc.get("host", [])
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{path}: no [[host]] tables")
    base = _get(doc, "grpc_port", int, 9561, str(path))
    ports: tuple[int, ...] = overrides.pop("ports", tuple(range(base, base + len(tables))))
    counts: dict[str, int] = {}
    hosts = []
    for i, t in enumerate(tables):
        where = f"{path}: host {i + 1}"
        unknown = set(t) - _HOST_KEYS
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        name = _get(t, "name", str, "", where)
        if not _NAME.fullmatch(name):
            raise UserError(
                f"{where}: name {name!r} must be a lower-case identifier of at most 16 characters"
            )
        role = _get(t, "role", str, "", where)
        if role not in ROLES:
            raise UserError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        kind = _get(t, "kind", str, "forward", where)
        if kind not in KINDS:
            raise UserError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        rules = _get(t, "rules", list, [], where)
        if not all(isinstance(r, str) for r in rules):
            raise UserError(f"{where}: rules must be strings (iptables arguments)")
        sysctls = _get(t, "sysctls", list, [], where)
        bad = [x for x in sysctls if not (isinstance(x, str) and _SYSCTL.fullmatch(x))]
        if bad:
            raise UserError(f"{where}: sysctls must be NAME=VALUE strings, not {bad[0]!r}")
        agentless = _get(t, "agentless", list, [], where)
        for net in agentless:
            try:
                ipaddress.IPv4Network(net)
            except (ValueError, TypeError):
                raise UserError(f"{where}: agentless {net!r} is not an IPv4 network") from None
        counts[role] = counts.get(role, 0) + 1
        key = role[0] + (str(counts[role]) if counts[role] > 1 else "")
        agent = _get(t, "agent", bool, True, where)
        p4 = _get(t, "p4", str, "", where)
        if p4 and agent:
            raise UserError(f"{where}: p4 is for a NIC without an agent (agent = false)")
        hosts.append(
            Host(
                key,
                name,
                i + 1,
                ports[i],
                role,
                agent,
                kind,
                tuple(rules),
                _get(t, "port", int, 80, where),
                p4,
                tuple(sysctls),
                _get(t, "policy", str, "", where),
                tuple(agentless),
                _get(t, "splice", bool, False, where),
                _get(t, "state_hook", str, "", where),
                _get(t, "group", str, "", where),
            )
        )
    if len({h.name for h in hosts}) != len(hosts):
        raise UserError(f"{path}: two hosts have the same name")
    if [h.role for h in hosts if h.agent][:1] != ["client"]:
        raise UserError(f"{path}: the first host with an agent must be a client (it holds the policy)")
    fields: dict[str, Any] = {
        "prefix": _get(doc, "prefix", str, "dy", str(path)),
        "p4": _get(doc, "p4", str, "p4src/dysco.p4", str(path)),
        "linger": float(_get(doc, "linger", (int, float), 2.0, str(path))),  # type: ignore[arg-type]
        "policy": _get(doc, "policy", str, CHAIN_POLICY, str(path)),
        "etcd": _get(doc, "etcd", bool, False, str(path)),
        "etcd_tls": _get(doc, "etcd_tls", bool, False, str(path)),
    }
    fields["etcd_auth"] = _get(doc, "etcd_auth", bool, False, str(path))
    fields["etcd_members"] = _get(doc, "etcd_members", int, 1, str(path))
    fields["keys"] = _get(doc, "keys", bool, False, str(path))
    for key in ("etcd_tls", "etcd_auth"):
        if fields[key] and not fields["etcd"]:
            raise UserError(f"{path}: {key} is for etcd = true")
    if fields["etcd_members"] not in (1, 3):
        raise UserError(f"{path}: etcd_members = {fields['etcd_members']}: 1 or 3")
    etcd_port = _get(doc, "etcd_port", int, 2379, str(path))
    fields["etcd_ports"] = tuple(range(etcd_port, etcd_port + 2 * fields["etcd_members"]))
    fields["policies"] = f"/tmp/{fields['prefix']}-policy.dysco"
    fields.update(overrides)
    plan = Plan(tuple(hosts), **fields)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", plan.prefix):
        raise UserError(f"{path}: prefix {plan.prefix!r}: at most 8 lower-case letters and digits")
    for h in plan.hosts:
        if h.state_hook and h.state_hook not in STATE_HOOKS:
            hooks = ", ".join(STATE_HOOKS)
            raise UserError(f"{path}: host {h.name}: state_hook {h.state_hook!r} is not one of: {hooks}")
        if h.group and not (plan.etcd and h.agent):
            raise UserError(f"{path}: host {h.name}: group is for a host with an agent, with etcd = true")
        if h.group:
            try:
                check_name(h.group, "group")
            except UserError as exc:
                raise UserError(f"{path}: host {h.name}: {exc}") from None
        if (h.policy or h.splice or h.agentless or h.state_hook) and not h.agent:
            raise UserError(
                f"{path}: host {h.name}: policy, agentless and splice are for a host with an agent"
            )
    try:
        plan.policy_files()  # every $NAME in a policy names a host
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    return plan
