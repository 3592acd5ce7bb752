"""An HTTP proxy that changes the length of the stream, declares it, and steps out (the middlebox
API of dysco.runtime: declare_delta, then splice).

    python examples/http_header_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000 \\
        --mgmt /tmp/ds-proxy.sock

For each connection it accepts on --listen it opens one to --server, passes the client's bytes
on as they are and puts the line ``Via: 1.1 dysco-http-proxy`` after the status line of every
HTTP/1.1 response (responses with a Content-Length, on a kept-alive connection).  So the
client's stream keeps its length and the server's grows by 27 bytes a response.  After each
response it declares the bytes it added so far to its agent::

    declare_delta(sock_in, 0, delta_rev=added)

A line ``splice`` on its standard input makes it step out of every connection: it stops adding
(a response it has not started yet goes on untouched), then hands the two sockets to the agent
with ``splice(sock_in, sock_out)``, giving no delta: the agent adds the one declared.  It keeps
relaying, untouched, until the agent answers, then leaves the two sockets alone and closes them
without a FIN (the NIC drops their packets).  Declaring and splicing take turns per connection
(a lock), so no removal starts between a header and its declaration.

Lines it prints::

    http_header_proxy: listening on 10.0.2.2:9000
    accepted 1 10.0.1.2:41000 -> 10.0.3.2:9000 (via 10.0.2.2:42000)
    declared 1 +81 after 3 responses
    splicing 1 after 3 responses (+81 declared)
    spliced 1 in 0.32s: 3 responses changed, 2 passed untouched (the proxy is out of the path)

The agent needs ``--splice`` and a policy that makes both legs Dysco sessions
(examples/splice.toml; docs/operations.md, "The middlebox API").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field

from dysco.errors import DyscoError
from dysco.runtime import declare_delta, splice

CHUNK = 1 << 16
VIA = b"Via: 1.1 dysco-http-proxy\r\n"
MAX_HEAD = 1 << 16


@dataclass
class Conn:
    n: int
    inbound: socket.socket
    outbound: socket.socket
    state: str = "relaying"
    """relaying | splicing | spliced | closed."""
    added: int = 0
    """Bytes added to the server's stream (declared)."""
    changed: int = 0
    untouched: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held from a header's insertion to its declaration, and by the splice's start."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conns: dict[int, Conn] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def say(self, text: str) -> None:
        print(text, flush=True)

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        threading.Thread(target=self.read_commands, args=(loop,), name="commands", daemon=True).start()
        host, port = self.args.listen
        with socket.create_server((host, port), backlog=64) as ls:
            ls.setblocking(False)
            self.say(f"http_header_proxy: listening on {host}:{port}")
            accept = asyncio.create_task(self.accept(ls), name="accept")
            await stop.wait()
            accept.cancel()

    def read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(self.command, line.strip())

    def command(self, line: str) -> None:
        if line == "splice":
            for c in self.conns.values():
                if c.state == "relaying":
                    self.spawn(self.splice(c), f"conn-{c.n}-splice")
        elif line:
            self.say(f"command {line!r}: unknown (splice)")

    async def accept(self, ls: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        while True:
            inbound, peer = await loop.sock_accept(ls)
            inbound.setblocking(False)
            n += 1
            self.spawn(self.relay(n, inbound, peer), f"conn-{n}")

    async def relay(self, n: int, inbound: socket.socket, peer: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        outbound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        outbound.setblocking(False)
        try:
            await loop.sock_connect(outbound, self.args.server)
        except OSError as exc:
            self.say(f"failed {n}: connect to the server: {exc.strerror}")
            inbound.close()
            outbound.close()
            return
        c = Conn(n, inbound, outbound)
        self.conns[n] = c
        local = outbound.getsockname()
        server = self.args.server
        self.say(f"accepted {n} {peer[0]}:{peer[1]} -> {server[0]}:{server[1]} (via {local[0]}:{local[1]})")
        c.tasks = [
            asyncio.create_task(self.up(c), name=f"conn-{n}-up"),
            asyncio.create_task(self.down(c), name=f"conn-{n}-down"),
        ]
        results = await asyncio.gather(*c.tasks, return_exceptions=True)
        if c.state != "spliced":
            c.state = "closed"
            inbound.close()
            outbound.close()
            errors = [r for r in results if isinstance(r, Exception)]
            self.say(f"closed {n}: {c.changed} responses changed" + (f" ({errors[0]!r})" if errors else ""))

    async def up(self, c: Conn) -> None:
        """The client's bytes, as they are."""
        loop = asyncio.get_running_loop()
        while data := await loop.sock_recv(c.inbound, CHUNK):
            await loop.sock_sendall(c.outbound, data)
        c.outbound.shutdown(socket.SHUT_WR)

    async def down(self, c: Conn) -> None:
        """The server's responses, each with the Via line after its status line while relaying."""
        loop = asyncio.get_running_loop()
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0 and len(buf) > MAX_HEAD:
                raise ValueError("a response head longer than 64 KiB")
            if end >= 0:
                length = _content_length(buf[:end])
                whole = end + 4 + length
                while len(buf) < whole:
                    data = await loop.sock_recv(c.outbound, CHUNK)
                    if not data:
                        raise EOFError("the server closed in a response")
                    buf += data
                response, buf = buf[:whole], buf[whole:]
                await self.respond(c, response)
                continue
            data = await loop.sock_recv(c.outbound, CHUNK)
            if not data:
                if buf:
                    await loop.sock_sendall(c.inbound, buf)
                c.inbound.shutdown(socket.SHUT_WR)
                return
            buf += data

    async def respond(self, c: Conn, response: bytes) -> None:
        loop = asyncio.get_running_loop()
        async with c.lock:
            if c.state != "relaying":  # the proxy is stepping out: the rest goes untouched
                await loop.sock_sendall(c.inbound, response)
                c.untouched += 1
                return
            status = response.index(b"\r\n") + 2
            await loop.sock_sendall(c.inbound, response[:status] + VIA + response[status:])
            c.added += len(VIA)
            c.changed += 1
            call = functools.partial(declare_delta, c.inbound, 0, delta_rev=c.added, mgmt=self.args.mgmt)
            await loop.run_in_executor(None, call)
            self.say(f"declared {c.n} {c.added:+d} after {c.changed} responses")

    async def splice(self, c: Conn) -> None:
        async with c.lock:  # not between a header and its declaration
            c.state = "splicing"
        self.say(f"splicing {c.n} after {c.changed} responses ({c.added:+d} declared)")
        started = time.monotonic()
        call = functools.partial(
            splice, c.inbound, c.outbound, mgmt=self.args.mgmt, timeout=self.args.timeout
        )
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, call)
        except DyscoError as exc:
            c.state = "relaying"
            self.say(f"splice failed {c.n}: {exc}; relaying on")
            return
        if not result.ok:
            c.state = "relaying"
            self.say(f"splice failed {c.n}: {result.outcome}: {result.message}; relaying on")
            return
        for t in c.tasks:  # from now on the proxy does not touch the two sockets
            t.cancel()
        c.state = "spliced"
        for s in (c.inbound, c.outbound):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no FIN
            s.close()
        elapsed = time.monotonic() - started
        self.say(
            f"spliced {c.n} in {elapsed:.2f}s: {c.changed} responses changed, {c.untouched} passed "
            f"untouched ({result.message})"
        )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return socket.inet_ntoa(socket.inet_aton(host)), int(port)
    except (OSError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="An HTTP proxy that adds a header line to every response, declares the bytes "
        "it added (dysco.runtime.declare_delta) and splices itself out on the command 'splice'.",
        epilog="example: python examples/http_header_proxy.py --listen 10.0.2.2:9000 "
        "--server 10.0.3.2:9000 --mgmt /tmp/ds-proxy.sock",
    )
    p.add_argument("--listen", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument("--server", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument("--mgmt", default="/tmp/dysco-agent.sock", metavar="SOCKET", help="the agent's socket")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS", help="wait for the agent")
    asyncio.run(Proxy(p.parse_args(argv)).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
