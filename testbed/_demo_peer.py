"""The traffic of ``dysco demo`` on the testbed, run inside a host's network namespace::

    python -m dysco.testbed._demo_peer server PORT SESSIONS
    python -m dysco.testbed._demo_peer client ADDR PORT SESSIONS

The client opens SESSIONS connections at once; each sends an 8-byte header (its session number)
and then pseudo-random bytes until a line ``stop`` arrives on its standard input, then its FIN;
the server sends its own stream back on each until the client's FIN arrived, then its FIN.  Both
ends hash every byte they send and receive (SHA-256) and print, one line each::

    started                                    (the client; the server says "listening")
    connected N LOCAL_PORT                     the client's session N is established
    p MONOTONIC B1 B2 ...                      every 0.1 s: bytes received so far per session
    done N sent SHA BYTES got SHA BYTES        (the client; the server says "done N got ... sent ...")
    all done

A side that fails prints ``error N: ...`` and goes on with the other sessions.
"""

from __future__ import annotations

import hashlib
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

CHUNK = 1 << 16
REPORT_S = 0.1
TIMEOUT_S = 120.0


def chunks(seed: int, stop: threading.Event) -> Iterator[bytes]:
    """The pseudo-random stream number ``seed`` in CHUNK pieces until ``stop`` is set (the same
    bytes on every run; a byte lost, duplicated or moved changes the digest)."""
    rng = random.Random(seed)
    while not stop.is_set():
        yield rng.randbytes(CHUNK)


class Counters:
    """Bytes received per session, reported every REPORT_S by a thread of its own."""

    def __init__(self, sessions: int) -> None:
        self.got = [0] * sessions
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def report(self) -> None:
        while not self.stop.wait(REPORT_S):
            self.say(f"p {time.monotonic():.3f} " + " ".join(map(str, self.got)))
        self.say(f"p {time.monotonic():.3f} " + " ".join(map(str, self.got)))


class Worker(threading.Thread):
    """A thread whose exception :meth:`result` raises in the thread that waits for it."""

    def __init__(self, target: Callable[..., object], *args: object) -> None:
        super().__init__(name=target.__name__, daemon=True)
        self.work, self.args_ = target, args
        self.error: BaseException | None = None
        self.value: Any = None

    def run(self) -> None:
        try:
            self.value = self.work(*self.args_)
        except (OSError, EOFError, ValueError) as exc:
            self.error = exc

    def result(self) -> Any:
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def _send(sock: socket.socket, pieces: Iterable[bytes], digest: hashlib._Hash) -> int:
    sent = 0
    for piece in pieces:
        sock.sendall(piece)
        digest.update(piece)
        sent += len(piece)
    return sent


def _recv(sock: socket.socket, digest: hashlib._Hash, counters: Counters, i: int) -> None:
    """Receive until the end of the stream."""
    while data := sock.recv(CHUNK):
        digest.update(data)
        counters.got[i] += len(data)


def server(port: int, sessions: int) -> None:
    counters = Counters(sessions)
    reporter = threading.Thread(target=counters.report, name="report", daemon=True)
    with socket.create_server(("0.0.0.0", port), backlog=sessions) as ls:
        counters.say("listening")
        reporter.start()
        threads = []
        for _ in range(sessions):
            conn, peer = ls.accept()
            t = threading.Thread(target=_serve, args=(conn, peer, counters), name="serve", daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
    counters.stop.set()
    reporter.join()
    counters.say("all done")


def _serve(conn: socket.socket, peer: tuple[str, int], counters: Counters) -> None:
    n = 0
    try:
        with conn:
            conn.settimeout(TIMEOUT_S)
            head = b""
            while len(head) < 8:
                more = conn.recv(8 - len(head))
                if not more:
                    raise EOFError("no header")
                head += more
            n = int.from_bytes(head, "big")
            if not 1 <= n <= len(counters.got):
                raise ValueError(f"session number {n} out of range")
            got, sent, eof = hashlib.sha256(), hashlib.sha256(), threading.Event()
            sender = Worker(_send, conn, chunks(1000 + n, eof), sent)
            sender.start()
            _recv(conn, got, counters, n - 1)
            eof.set()
            down = sender.result()
            conn.shutdown(socket.SHUT_WR)
            up = counters.got[n - 1]
            counters.say(f"done {n} got {got.hexdigest()} {up} sent {sent.hexdigest()} {down} {peer[0]}")
    except (OSError, EOFError, ValueError) as exc:
        counters.say(f"error {n}: {exc}")


def client(addr: str, port: int, sessions: int) -> None:
    counters = Counters(sessions)
    counters.say("started")
    reporter = threading.Thread(target=counters.report, name="report", daemon=True)
    reporter.start()
    stop = threading.Event()
    threading.Thread(target=_wait_for_stop, args=(stop,), name="stdin", daemon=True).start()
    threads = [
        threading.Thread(target=_session, args=(addr, port, n, stop, counters), name="session", daemon=True)
        for n in range(1, sessions + 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counters.stop.set()
    reporter.join()
    counters.say("all done")


def _wait_for_stop(stop: threading.Event) -> None:
    sys.stdin.readline()  # a line, or the end of the input: the demo is done (or gone)
    stop.set()


def _session(addr: str, port: int, n: int, stop: threading.Event, counters: Counters) -> None:
    try:
        with socket.create_connection((addr, port), timeout=TIMEOUT_S) as s:
            counters.say(f"connected {n} {s.getsockname()[1]}")
            got, sent = hashlib.sha256(), hashlib.sha256()
            s.sendall(n.to_bytes(8, "big"))
            receiver = Worker(_recv, s, got, counters, n - 1)
            receiver.start()
            up = _send(s, chunks(n, stop), sent)
            s.shutdown(socket.SHUT_WR)
            receiver.result()
            down = counters.got[n - 1]
            counters.say(f"done {n} sent {sent.hexdigest()} {up} got {got.hexdigest()} {down}")
    except (OSError, EOFError, ValueError) as exc:
        counters.say(f"error {n}: {exc}")


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["server"] and len(argv) == 3:
            server(int(argv[1]), int(argv[2]))
            return 0
        if argv[:1] == ["client"] and len(argv) == 4:
            client(argv[1], int(argv[2]), int(argv[3]))
            return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
