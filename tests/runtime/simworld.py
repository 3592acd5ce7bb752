"""Building simulated topologies for the tests: clients, middleboxes and servers on 10.0.0.0/24."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dysco.compiler import compile_text
from dysco.runtime.core._types import ip_int
from dysco.runtime.sim import Conn, Forwarder, Host, TcpStack, World
from dysco.softswitch.api import Program

CLIENT = "10.0.0.1"
SERVER = "10.0.0.100"


def request(i: int) -> bytes:
    return b"GET /%d " % i + bytes(range(256)) * (1 + i % 5)


def respond(req: bytes) -> bytes:
    return b"200 " + req[::-1] * 2


def chain_world(
    program: Program,
    n_mbs: int,
    *,
    seed: int = 0,
    mb_app: Callable[[int], Callable[[Host], Any]] | None = None,
    client_config: dict[str, Any] | None = None,
    **config: Any,
) -> tuple[World, TcpStack, TcpStack]:
    """client -> mb1 .. mbN -> server, every host with an agent; the policy sends port 80 through
    the middleboxes in order."""
    w = World(program, seed)
    mbs = [f"10.0.0.{10 + i}" for i in range(n_mbs)]
    lines = [f"middlebox mb{i} {{ instances {a}; }}" for i, a in enumerate(mbs)]
    hops = ", ".join(f"mb{i}" for i in range(n_mbs)) if n_mbs else SERVER
    lines.append(f"policy web: tcp dst port 80 -> {hops}")
    policies = compile_text("\n".join(lines) + "\n")
    if n_mbs == 0:
        # a chain with no middlebox: the subsession goes straight to the server's agent
        chain = next(iter(policies.chains.values()))
        object.__setattr__(chain, "hops", ())
    client = TcpStack(w.sim, ip_int(CLIENT), lambda f: None)
    c = w.host("client", ip_int(CLIENT), policies=policies, app=lambda h: client, **(client_config or config))
    client.emit = c.emit
    for i, a in enumerate(mbs):
        w.host(f"mb{i}", ip_int(a), app=(mb_app(i) if mb_app else Forwarder), **config)
    server = TcpStack(w.sim, ip_int(SERVER), lambda f: None)
    s = w.host("server", ip_int(SERVER), app=lambda h: server, **config)
    server.emit = s.emit
    server.listen(80, respond)
    return w, client, server


def check_exchange(conns: list[Conn], server: TcpStack) -> None:
    for i, c in enumerate(conns):
        assert c.done and not c.reset, f"connection {i} did not finish: {c}"
        req = request(i)
        assert bytes(c.received) == respond(req), f"connection {i}: response differs"
    served = sorted(bytes(s.received) for s in server.conns.values())
    assert served == sorted(request(i) for i in range(len(conns)))


def check_clean(w: World) -> None:
    assert w.leftovers() == {}


def feed(w: World, conn: Conn, chunk: bytes, every: int, until: int) -> None:
    """The application writes ``chunk`` every ``every`` ns until ``until``, then closes."""
    if w.sim.now >= until:
        conn.want_fin = True
    else:
        conn.data += chunk
        w.sim.after(every, lambda: feed(w, conn, chunk, every, until))
    conn.pump()
