"""A TCP proxy that splices itself out of the sessions it relays (dysco.runtime.splice).

    python examples/splice_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000 \\
        --splice-after 1000000 --mgmt /tmp/dy-proxy.sock

It accepts connections on --listen, opens one to --server for each (or, with --route
CLIENT=ADDR:PORT, to ADDR:PORT for connections from the client address CLIENT) and relays bytes
both ways.  Once a connection has relayed --splice-after bytes (both directions together), when
the process gets SIGUSR1 (every connection at once), or, with --commands, when a line
``splice NETWORK`` on its standard input names the network of the connection's client (see
below), it hands the two sockets to the local Dysco agent with ``splice(inbound, outbound,
delta=0)`` and keeps relaying while the agent works (the old path drains through it).  When the
agent answers that the proxy is out of the path, it stops touching the two sockets and closes
them without a FIN (their packets are dropped by the NIC anyway); if the splice fails it simply
goes on relaying.

It prints one line per event, each with the bytes it relayed so far and its own CPU time, so
that a test or an operator sees the proxy go quiet::

    splice_proxy: listening on 10.0.2.2:9000
    accepted 1 10.0.1.2:41000 -> 10.0.3.2:9000 (via 10.0.2.2:42000)
    splicing 1 after up 1048576 down 1048576
    spliced 1 in 0.41s: up 1310720 down 1245184 (the proxy is out of the path) agent_s 0.352
    stats connections 1 relaying 0 spliced 1 up 1310720 down 1245184 cpu_s 0.31

``spliced N in S`` is the time from the proxy's decision, ``agent_s`` the agent's own, from the
request's arrival to the old path gone.  The splice calls wait in threads, --splice-threads of
them: more connections than that to splice at once wait for a free thread.

SIGUSR2 prints the stats line; SIGINT or SIGTERM prints it and exits.  With --commands the proxy
reads lines from its standard input (the end of the input ends nothing):

    splice 10.0.1.2       splice every connection still relaying whose client is in the network
                          (an address or ADDR/PREFIX; ``splice`` alone: all of them), after
                          ``splice 10.0.1.2/32: 150 connections``
    stats                 print the stats line

The proxy needs an agent started with ``--splice`` and a policy that makes both legs Dysco
sessions (docs/operations.md, "Splicing out a proxy by hand"; examples/scale.toml routes four
clients' connections to four servers and splices one bundle at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dysco.errors import DyscoError
from dysco.runtime import splice

CHUNK = 1 << 16


@dataclass
class Conn:
    n: int
    inbound: socket.socket
    outbound: socket.socket
    client: str
    """The client's address."""
    up: int = 0
    """Bytes relayed client -> server."""
    down: int = 0
    state: str = "relaying"
    """relaying | splicing | spliced | closed."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.conns: dict[int, Conn] = {}
        self.count = 0
        self.tasks: set[asyncio.Task[None]] = set()
        """Connections' and splices' tasks (kept, so that none is collected while it runs)."""
        self.routes: dict[str, tuple[str, int]] = dict(args.route)
        """Client address -> the server its connections go to (else --server)."""
        self.pool: ThreadPoolExecutor | None = None
        """The threads the splice calls wait in (--splice-threads; None: asyncio's default)."""

    def spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def stats(self) -> None:
        states = [c.state for c in self.conns.values()]
        up, down = sum(c.up for c in self.conns.values()), sum(c.down for c in self.conns.values())
        self.say(
            f"stats connections {len(states)} relaying {states.count('relaying') + states.count('splicing')} "
            f"spliced {states.count('spliced')} up {up} down {down} cpu_s {time.process_time():.2f}"
        )

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.splice_all)
        loop.add_signal_handler(signal.SIGUSR2, self.stats)
        if self.args.splice_threads is not None:
            self.pool = ThreadPoolExecutor(self.args.splice_threads, thread_name_prefix="splice")
        if self.args.commands:
            threading.Thread(target=self.read_commands, args=(loop,), name="commands", daemon=True).start()
        host, port = self.args.listen
        with socket.create_server((host, port), backlog=128) as ls:
            ls.setblocking(False)
            self.say(f"splice_proxy: listening on {host}:{port}")
            accept = asyncio.create_task(self.accept(ls), name="accept")
            await stop.wait()
            accept.cancel()
        for c in list(self.conns.values()):
            for t in c.tasks:
                t.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.stats()

    def read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        """--commands: each line of the standard input, handled on the loop (a thread of its own:
        the reading blocks)."""
        for line in sys.stdin:
            loop.call_soon_threadsafe(self.command, line.strip())

    def command(self, line: str) -> None:
        word, _, arg = line.partition(" ")
        if word == "splice":
            try:
                net = ipaddress.IPv4Network(arg.strip() or "0.0.0.0/0", strict=False)
            except ValueError:
                self.say(f"command {line!r}: {arg.strip()!r} is not an IPv4 address or network")
                return
            chosen = [
                c
                for c in self.conns.values()
                if c.state == "relaying" and ipaddress.IPv4Address(c.client) in net
            ]
            self.say(f"splice {net}: {len(chosen)} connections")
            for c in chosen:
                self.start_splice(c)
        elif word == "stats":
            self.stats()
        elif word:
            self.say(f"command {line!r}: unknown (splice [NETWORK], stats)")

    async def accept(self, ls: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            inbound, peer = await loop.sock_accept(ls)
            inbound.setblocking(False)
            self.count += 1
            self.spawn(self.relay(self.count, inbound, peer), f"conn-{self.count}")

    async def relay(self, n: int, inbound: socket.socket, peer: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        outbound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        outbound.setblocking(False)
        server = self.routes.get(peer[0], self.args.server)
        try:
            await loop.sock_connect(outbound, server)
        except OSError as exc:
            self.say(f"failed {n}: connect to the server: {exc.strerror}")
            inbound.close()
            outbound.close()
            return
        c = Conn(n, inbound, outbound, peer[0])
        self.conns[n] = c
        local = outbound.getsockname()
        self.say(f"accepted {n} {peer[0]}:{peer[1]} -> {server[0]}:{server[1]} "
                 f"(via {local[0]}:{local[1]})")  # fmt: skip
        c.tasks = [
            asyncio.create_task(self.pump(c, inbound, outbound, "up"), name=f"conn-{n}-up"),
            asyncio.create_task(self.pump(c, outbound, inbound, "down"), name=f"conn-{n}-down"),
        ]
        results = await asyncio.gather(*c.tasks, return_exceptions=True)
        if c.state != "spliced":
            c.state = "closed"
            inbound.close()
            outbound.close()
            errors = [r for r in results if isinstance(r, OSError)]
            self.say(f"closed {n}: up {c.up} down {c.down}" + (f" ({errors[0]})" if errors else ""))

    async def pump(self, c: Conn, src: socket.socket, dst: socket.socket, way: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(src, CHUNK)
            if not data:
                dst.shutdown(socket.SHUT_WR)
                return
            await loop.sock_sendall(dst, data)
            setattr(c, way, getattr(c, way) + len(data))
            after = self.args.splice_after
            if after is not None and c.state == "relaying" and c.up + c.down >= after:
                self.start_splice(c)

    def splice_all(self) -> None:
        for c in self.conns.values():
            if c.state == "relaying":
                self.start_splice(c)

    def start_splice(self, c: Conn) -> None:
        c.state = "splicing"
        self.say(f"splicing {c.n} after up {c.up} down {c.down}")
        self.spawn(self.do_splice(c), f"conn-{c.n}-splice")

    async def do_splice(self, c: Conn) -> None:
        started = time.monotonic()
        try:
            # a blocking request to the agent: in a thread, so that relaying goes on meanwhile
            call = functools.partial(
                splice, c.inbound, c.outbound, self.args.delta, mgmt=self.args.mgmt, timeout=self.args.timeout
            )
            result = await asyncio.get_running_loop().run_in_executor(self.pool, call)
        except DyscoError as exc:
            c.state = "relaying" if c.state == "splicing" else c.state
            self.say(f"splice failed {c.n}: {exc}; relaying on")
            return
        if not result.ok:
            c.state = "relaying" if c.state == "splicing" else c.state
            self.say(f"splice failed {c.n}: {result.outcome}: {result.message}; relaying on")
            return
        for t in c.tasks:  # from now on the proxy does not touch the two sockets
            t.cancel()
        c.state = "spliced"
        for s in (c.inbound, c.outbound):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no FIN
            s.close()
        elapsed = time.monotonic() - started
        agent = result.details.get("seconds")
        agent_s = f" agent_s {agent:.3f}" if isinstance(agent, int | float) else ""
        self.say(f"spliced {c.n} in {elapsed:.2f}s: up {c.up} down {c.down} ({result.message}){agent_s}")
        self.stats()


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return socket.inet_ntoa(socket.inet_aton(host)), int(port)
    except (OSError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT") from None


def _route(text: str) -> tuple[str, tuple[str, int]]:
    client, _, server = text.partition("=")
    try:
        return socket.inet_ntoa(socket.inet_aton(client)), _endpoint(server)
    except (OSError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not CLIENT=ADDR:PORT") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="A TCP proxy that splices itself out with dysco.runtime.splice.",
        epilog="example: python examples/splice_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000 "
        "--splice-after 1000000 --mgmt /tmp/dy-proxy.sock",
    )
    p.add_argument("--listen", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument("--server", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument(
        "--route",
        type=_route,
        action="append",
        default=[],
        metavar="CLIENT=ADDR:PORT",
        help="connections from the address CLIENT go to ADDR:PORT, not --server (repeatable)",
    )
    p.add_argument("--splice-after", type=int, metavar="BYTES", help="splice a connection after BYTES")
    p.add_argument("--delta", type=int, default=0, help="bytes the proxy adds to the client's stream")
    p.add_argument("--mgmt", default="/tmp/dysco-agent.sock", metavar="SOCKET", help="the agent's socket")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS", help="wait for the agent")
    p.add_argument(
        "--splice-threads", type=int, metavar="N", help="splice calls at once (default: asyncio's threads)"
    )
    p.add_argument(
        "--commands", action="store_true", help="read commands from stdin: splice [NETWORK], stats"
    )
    args = p.parse_args(argv)
    if args.splice_after is not None and args.splice_after < 0:
        p.error("--splice-after must not be negative")
    if args.splice_threads is not None and args.splice_threads < 1:
        p.error("--splice-threads must be at least 1")
    asyncio.run(Proxy(args).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
