"""A TCP proxy that splices itself out of the sessions it relays (dysco.runtime.splice).

    python examples/splice_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000 \\
        --splice-after 1000000 --mgmt /tmp/dy-proxy.sock

It accepts connections on --listen, opens one to --server for each and relays bytes both ways.
Once a connection has relayed --splice-after bytes (both directions together), or when the
process gets SIGUSR1 (every connection at once), it hands the two sockets to the local Dysco
agent with ``splice(inbound, outbound, delta=0)`` and keeps relaying while the agent works (the
old path drains through it).  When the agent answers that the proxy is out of the path, it stops
touching the two sockets and closes them without a FIN (their packets are dropped by the NIC
anyway); if the splice fails it simply goes on relaying.

It prints one line per event, each with the bytes it relayed so far and its own CPU time, so
that a test or an operator sees the proxy go quiet::

    splice_proxy: listening on 10.0.2.2:9000
    accepted 1 10.0.1.2:41000 -> 10.0.3.2:9000 (via 10.0.2.2:42000)
    splicing 1 after up 1048576 down 1048576
    spliced 1 in 0.41s: up 1310720 down 1245184 (the proxy is out of the path)
    stats connections 1 relaying 0 spliced 1 up 1310720 down 1245184 cpu_s 0.31

SIGUSR2 prints the stats line; SIGINT or SIGTERM prints it and exits.  The proxy needs an agent
started with ``--splice`` and a policy that makes both legs Dysco sessions (docs/operations.md,
"Splicing out a proxy by hand").
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field

from dysco.errors import DyscoError
from dysco.runtime import splice

CHUNK = 1 << 16


@dataclass
class Conn:
    n: int
    inbound: socket.socket
    outbound: socket.socket
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
        self.stats()

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
        self.say(f"accepted {n} {peer[0]}:{peer[1]} -> {self.args.server[0]}:{self.args.server[1]} "
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
            result = await asyncio.to_thread(
                splice, c.inbound, c.outbound, self.args.delta, mgmt=self.args.mgmt, timeout=self.args.timeout
            )
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
        self.say(f"spliced {c.n} in {elapsed:.2f}s: up {c.up} down {c.down} ({result.message})")
        self.stats()


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return socket.inet_ntoa(socket.inet_aton(host)), int(port)
    except (OSError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDR:PORT") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="A TCP proxy that splices itself out with dysco.runtime.splice.",
        epilog="example: python examples/splice_proxy.py --listen 10.0.2.2:9000 --server 10.0.3.2:9000 "
        "--splice-after 1000000 --mgmt /tmp/dy-proxy.sock",
    )
    p.add_argument("--listen", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument("--server", type=_endpoint, required=True, metavar="ADDR:PORT")
    p.add_argument("--splice-after", type=int, metavar="BYTES", help="splice a connection after BYTES")
    p.add_argument("--delta", type=int, default=0, help="bytes the proxy adds to the client's stream")
    p.add_argument("--mgmt", default="/tmp/dysco-agent.sock", metavar="SOCKET", help="the agent's socket")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS", help="wait for the agent")
    args = p.parse_args(argv)
    if args.splice_after is not None and args.splice_after < 0:
        p.error("--splice-after must not be negative")
    asyncio.run(Proxy(args).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
