"""Access control in etcd (docs/security.md): one etcd user and role per agent, whose
permissions cover its own scope and what every agent shares, and nothing else.

An agent NAME of group GROUP may (keys under the fleet's prefix):

* read ``policies/all``, ``policies/group/GROUP``, ``policies/agent/NAME`` (each one key: not
  another group's or agent's set), ``commands/``, ``drained/`` and ``keys/ring``;
* read and write ``agents/NAME`` and ``status/NAME`` (its registration and report) and
  ``results/`` (it claims a command by a transaction there; etcd's permissions are key ranges, so
  ``results/ID/NAME`` for every ID is no range of NAME's own: an agent's credentials could write
  another agent's outcome, which changes what the CLI prints, not what any agent does).

The operator (the ``root`` user, or one granted ``readwrite`` on the prefix) writes the rest.
:func:`grant_agent` creates the user and role; :func:`enable` creates ``root`` and turns access
control on.  Both through the store's Auth RPCs (etcdctl's ``user add``, ``role grant-permission``,
``auth enable`` do the same).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aetcd.rpc

from dysco.runtime.fleet._layout import Layout, Scope, check_name

if TYPE_CHECKING:
    from dysco.runtime.fleet._store import Store


class Access(enum.Enum):
    READ = 0
    WRITE = 1
    READWRITE = 2


@dataclass(frozen=True, slots=True)
class Permission:
    access: Access
    key: bytes
    end: bytes = b""
    """The end of the range (exclusive); empty: ``key`` alone."""

    def __str__(self) -> str:
        what = self.key.decode() + ("*" if self.end else "")
        return f"{self.access.name.lower()} {what}"


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def role_of(name: str) -> str:
    return f"dysco-agent-{name}"


def agent_permissions(layout: Layout, name: str, group: str) -> list[Permission]:
    """What the agent ``name`` of ``group`` ("" for none) may do."""
    check_name(name, "agent")
    read = [
        Permission(Access.READ, layout.policy(Scope.ALL)),
        Permission(Access.READ, layout.policy(Scope.AGENT, name)),
    ]
    if group:
        read.append(Permission(Access.READ, layout.policy(Scope.GROUP, group)))
    read += [Permission(Access.READ, p, prefix_end(p)) for p in (layout.commands, layout.drained_all)]
    read.append(Permission(Access.READ, layout.keys))
    own = [
        Permission(Access.READWRITE, layout.agent(name)),
        Permission(Access.READWRITE, layout.status(name)),
    ]
    results = layout.key("results", "")
    return [*read, *own, Permission(Access.READWRITE, results, prefix_end(results))]


async def grant_agent(store: Store, layout: Layout, name: str, group: str, password: str) -> list[Permission]:
    """The user ``name`` with ``password`` and its role with :func:`agent_permissions`."""
    role = role_of(name)
    await store.auth(
        f"add user {name}", "UserAdd", aetcd.rpc.AuthUserAddRequest(name=name, password=password)
    )
    await store.auth(f"add role {role}", "RoleAdd", aetcd.rpc.AuthRoleAddRequest(name=role))
    perms = agent_permissions(layout, name, group)
    for p in perms:
        perm = aetcd.rpc.Permission(permType=p.access.value, key=p.key, range_end=p.end)
        request = aetcd.rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm)
        await store.auth(f"grant {role} {p}", "RoleGrantPermission", request)
    request = aetcd.rpc.AuthUserGrantRoleRequest(user=name, role=role)
    await store.auth(f"grant {name} {role}", "UserGrantRole", request)
    return perms


async def enable(store: Store, root_password: str) -> None:
    """The ``root`` user (role ``root``) with ``root_password``, and access control on: from now
    on every request needs a user."""
    await store.auth(
        "add user root", "UserAdd", aetcd.rpc.AuthUserAddRequest(name="root", password=root_password)
    )
    await store.auth(
        "grant root root", "UserGrantRole", aetcd.rpc.AuthUserGrantRoleRequest(user="root", role="root")
    )
    await store.auth("enable access control", "AuthEnable", aetcd.rpc.AuthEnableRequest())
