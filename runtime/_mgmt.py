"""The agent's local management API: JSON lines on a Unix socket only its owner may open (0600).

A request is one line ``{"command": NAME, "args": {...}}`` (``args`` optional); the answer is one
line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": MESSAGE, "kind": KIND}``, KIND
``user`` (the request is wrong: bad arguments, no such session) or ``internal`` (a bug).  Commands:
``status``, ``sessions``, ``events``, ``reconfigure``, ``splice``, ``leave``, ``hops``, ``delta`` and
``policies_reload`` (see docs/operations.md).

A handler takes the request's ``args`` and returns the result, or an awaitable of it (a
reconfiguration answers when it has an outcome).  It raises :class:`UserError` for bad
arguments; that becomes the error answer.  Requests on one connection are answered in order;
connections are served concurrently.  Every refused request is counted in :attr:`counters`
(``status`` shows them), and no request can stop the server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from dysco.errors import PeerError, UserError

DEFAULT_SOCKET = "/tmp/dysco-agent.sock"
TIMEOUT_S = 5.0
MAX_LINE = 1 << 16

Args = Mapping[str, Any]
Handler = Callable[[Args], object | Awaitable[object]]

log = logging.getLogger(__name__)


def _check_path(path: Path) -> None:
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise UserError(f"{path} exists and is not a socket; not replacing it")
        if _answers(path):
            raise UserError(f"{path}: another agent is listening there")
        path.unlink()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


class ManagementServer:
    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = dict(handlers)
        self.counters: collections.Counter[str] = collections.Counter()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        _check_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)  # the socket is created 0600, not chmod-ed after others could connect
        try:
            self._server = await asyncio.start_unix_server(self._client, str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            self.counters["mgmt.dropped_clients"] += 1  # went away, or sent an over-long line
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, object]:
        self.counters["mgmt.requests"] += 1
        try:
            req = json.loads(line)
            command = req["command"]
            args = req.get("args", {})
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._refuse("bad_request", 'bad request: expected {"command": NAME, "args": {...}}')
        if not isinstance(args, dict):
            return self._refuse("bad_request", f"bad request: args must be an object, not {args!r}")
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return self._refuse(
                "unknown_command", f"unknown command {command!r}; try {sorted(self.handlers)}"
            )
        try:
            result = handler(args)
            if inspect.isawaitable(result):
                result = await result
        except UserError as exc:
            return self._refuse(f"refused.{command}", str(exc))
        except Exception as exc:  # a bug in a handler must not stop the agent; it is reported
            log.exception("management command %s failed", command)
            message = f"internal error: {type(exc).__name__}: {exc}"
            return self._refuse(f"internal.{command}", message, "internal")
        return {"ok": True, "result": result}

    def _refuse(self, counter: str, message: str, kind: str = "user") -> dict[str, object]:
        self.counters[f"mgmt.{counter}"] += 1
        return {"ok": False, "error": message, "kind": kind}


def request(path: str, command: str, args: Args | None = None, timeout: float = TIMEOUT_S) -> object:
    """Ask the agent listening on ``path``.  Raises :class:`UserError` when none answers or it
    refuses the request as wrong (the message is the agent's), :class:`PeerError` otherwise."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            raise UserError(
                f"no agent at {path} ({exc.strerror}); is `dysco agent --mgmt {path}` running?"
            ) from None
        req: dict[str, object] = {"command": command}
        if args:
            req["args"] = dict(args)
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise PeerError(f"{path}: the agent closed the connection")
                data += chunk
        except TimeoutError:
            raise PeerError(f"{path}: no answer to {command!r} in {timeout:g}s") from None
    answer = json.loads(data)
    if not answer.get("ok"):
        error = UserError if answer.get("kind") == "user" else PeerError
        raise error(f"{path}: {answer.get('error')}")
    return answer["result"]
