"""The agent's local management API: JSON lines on a Unix socket only its owner may open (0600).

A request is one line ``{"command": NAME}``; the answer is one line ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": MESSAGE}``.  Commands: ``status`` and ``sessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from dysco.errors import PeerError, UserError

DEFAULT_SOCKET = "/tmp/dysco-agent.sock"
TIMEOUT_S = 5.0
MAX_LINE = 1 << 16

Handler = Callable[[], object]


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
                writer.write(json.dumps(self._answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            pass  # a client that went away or sent an over-long line
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, object]:
        try:
            req = json.loads(line)
            command = req["command"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'bad request: expected {"command": NAME}'}
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}; try {sorted(self.handlers)}"}
        return {"ok": True, "result": handler()}


def request(path: str, command: str, timeout: float = TIMEOUT_S) -> object:
    """Ask the agent listening on ``path``; raises :class:`UserError` when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as exc:
            raise UserError(
                f"no agent at {path} ({exc.strerror}); is `dysco agent --mgmt {path}` running?"
            ) from None
        s.sendall(json.dumps({"command": command}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise PeerError(f"{path}: the agent closed the connection")
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise PeerError(f"{path}: {answer.get('error')}")
    return answer["result"]
