"""Traffic for the end-to-end tests, run inside a host's network namespace.

    python peers.py blob-server PORT                  one connection: read, answer, print digests
    python peers.py blob-client ADDR PORT UP DOWN [hold]
                                                      send UP bytes, receive DOWN bytes; with hold,
                                                      close only when stdin has a line
    python peers.py duplex-server PORT                one connection: both directions at once
    python peers.py duplex-client ADDR PORT UP DOWN   send UP and receive DOWN bytes at the same time,
                                                      printing "progress K" after each MB received
    python peers.py stream-server PORT                one connection: send until the client's FIN
    python peers.py stream-client ADDR PORT           both ways at once until a line on stdin (or its
                                                      end), printing "progress K" after each MB received
    python peers.py http-server PORT                  GET /K answers body(K)
    python peers.py http-client ADDR PORT COUNT       COUNT requests, one connection each, checked
    python peers.py keepalive-server PORT             one HTTP/1.1 connection: GET /K/N answers N
                                                      bytes payload(K, N); digests at the client's FIN
    python peers.py keepalive-client ADDR PORT        one connection; a line "get K N" on stdin sends
                                                      GET /K/N, "end" closes (see keepalive_client)
    python peers.py connect ADDR PORT TIMEOUT         prints "connect: connected" or "connect: timed out"
    python peers.py bundle-server PORT SESSIONS SIZE PERIOD
    python peers.py bundle-client ADDR PORT SESSIONS SIZE PERIOD
                                                      SESSIONS paced sessions (a bundle), below

Each side prints the SHA-256 of what it sent and of what it received, so a test compares the
digests of both ends; the payload is pseudo-random (a byte lost, duplicated or moved shows).

A bundle (asyncio, one process for all its sessions): the client opens SESSIONS connections,
numbered 1..SESSIONS, a few at a time, each starting with its number (8 bytes).  Both ends then
send SIZE random bytes every PERIOD seconds on every session (each at its own phase) until the
client reads a line ``stop`` (or the end of its input): it sends its FIN, the server its own
once it has the client's, and each side prints its digests.  Lines::

    started | listening
    connected N LOCAL_PORT             (the client; the server: connected N PEER_ADDR)
    all connected                      (the client, once every session is established)
    p MONOTONIC B1 ... BSESSIONS       every 0.5 s: bytes received so far per session
    done N sent SHA BYTES got SHA BYTES  (the server: done N got SHA BYTES sent SHA BYTES PEER)
    error N: WHAT                      a session that failed (the others go on)
    all done
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import http.server
import random
import socket
import sys
import threading
import time

CHUNK = 1 << 16


SO_MAX_PACING_RATE = 47
PACE = 2 << 20
"""Bytes per second each side of a duplex or stream session sends at most (TCP's own pacing).
During a two-path phase every packet of the session crosses the Python agents (about 1,500
packets a second each here); unpaced over the ebpf NICs a session has megabytes in flight and
the phase takes seconds.  These tests check what a reconfiguration does to a live session, so
the session runs at a rate the agents carry; how fast the path is, bench.e2e_goodput measures."""


def paced(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, PACE)
    return s


def payload(seed: int, n: int) -> bytes:
    """``n`` pseudo-random bytes, made a MiB at a time (``randbytes`` refuses more than 256 MiB)."""
    r = random.Random(seed)
    step = 1 << 20
    return b"".join(r.randbytes(min(step, n - i)) for i in range(0, n, step))


def body(k: int) -> bytes:
    return hashlib.sha256(str(k).encode()).digest() * (1 + k % 64)


def recv_exactly(s: socket.socket, n: int, digest: hashlib._Hash) -> None:
    left = n
    while left:
        chunk = s.recv(min(left, CHUNK))
        if not chunk:
            raise EOFError(f"connection closed after {n - left} of {n} bytes")
        digest.update(chunk)
        left -= len(chunk)


def blob_server(port: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as ls:
        print("listening", flush=True)
        conn, peer = ls.accept()
        with paced(conn):
            head = bytearray()
            while len(head) < 16:
                head += conn.recv(16 - len(head))
            up, down = int.from_bytes(head[:8], "big"), int.from_bytes(head[8:], "big")
            got = hashlib.sha256()
            recv_exactly(conn, up, got)
            data = payload(2, down)
            conn.sendall(data)
            print(
                "server got", got.hexdigest(), "sent", hashlib.sha256(data).hexdigest(), peer[0], flush=True
            )
            print("eof" if conn.recv(1) == b"" else "unexpected data", flush=True)


def blob_client(addr: str, port: int, up: int, down: int, hold: bool) -> None:
    data = payload(1, up)
    with socket.create_connection((addr, port), timeout=60) as s:
        s.sendall(up.to_bytes(8, "big") + down.to_bytes(8, "big") + data)
        got = hashlib.sha256()
        recv_exactly(s, down, got)
        sport = s.getsockname()[1]
        if hold:  # the session stays established until the test has looked at it
            print("client sent", hashlib.sha256(data).hexdigest(), "got", got.hexdigest(), sport, flush=True)
            sys.stdin.readline()
        s.shutdown(socket.SHUT_WR)
        eof = s.recv(1) == b""
        if not hold:
            print("client sent", hashlib.sha256(data).hexdigest(), "got", got.hexdigest(), sport, flush=True)
        print("eof" if eof else "unexpected data", flush=True)


def _send_all(s: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    for i in range(0, len(data), CHUNK):
        s.sendall(view[i : i + CHUNK])


def duplex_server(port: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as ls:
        print("listening", flush=True)
        conn, peer = ls.accept()
        with paced(conn):
            head = bytearray()
            while len(head) < 16:
                head += conn.recv(16 - len(head))
            up, down = int.from_bytes(head[:8], "big"), int.from_bytes(head[8:], "big")
            data = payload(2, down)
            sender = threading.Thread(target=_send_all, args=(conn, data), name="duplex-send")
            sender.start()
            got = hashlib.sha256()
            recv_exactly(conn, up, got)
            sender.join()
            print(
                "server got", got.hexdigest(), "sent", hashlib.sha256(data).hexdigest(), peer[0], flush=True
            )
            conn.shutdown(socket.SHUT_WR)
            print("eof" if conn.recv(1) == b"" else "unexpected data", flush=True)


def duplex_client(addr: str, port: int, up: int, down: int) -> None:
    data = payload(1, up)
    with paced(socket.create_connection((addr, port), timeout=60)) as s:
        print("connected", s.getsockname()[1], flush=True)
        s.sendall(up.to_bytes(8, "big") + down.to_bytes(8, "big"))
        sender = threading.Thread(target=_send_all, args=(s, data), name="duplex-send")
        sender.start()
        got = hashlib.sha256()
        left, mark = down, 1
        while left:
            chunk = s.recv(min(left, CHUNK))
            if not chunk:
                raise EOFError(f"connection closed after {down - left} of {down} bytes")
            got.update(chunk)
            left -= len(chunk)
            if down - left >= mark << 20:
                print("progress", mark, flush=True)
                mark += 1
        sender.join()
        print("client sent", hashlib.sha256(data).hexdigest(), "got", got.hexdigest(), flush=True)
        s.shutdown(socket.SHUT_WR)
        print("eof" if s.recv(1) == b"" else "unexpected data", flush=True)


def _stream_out(s: socket.socket, seed: int, stop: threading.Event, sent: hashlib._Hash) -> None:
    """Pseudo-random bytes on ``s`` until ``stop``, then this side's FIN."""
    r = random.Random(seed)
    while not stop.is_set():
        chunk = r.randbytes(CHUNK)
        s.sendall(chunk)
        sent.update(chunk)
    s.shutdown(socket.SHUT_WR)


def _stream_in(s: socket.socket, got: hashlib._Hash, progress: bool) -> int:
    """Everything ``s`` receives until the peer's FIN (``progress K`` after each MB): the count."""
    n, mark = 0, 1
    while chunk := s.recv(CHUNK):
        got.update(chunk)
        n += len(chunk)
        if progress and n >= mark << 20:
            print("progress", mark, flush=True)
            mark += 1
    return n


def stream_server(port: int) -> None:
    """One connection, both ways, open-ended: the server sends until the client's FIN arrives,
    then sends its own.  Prints ``server got SHA sent SHA PEER GOT_BYTES SENT_BYTES``, then ``eof``."""
    with socket.create_server(("0.0.0.0", port)) as ls:
        print("listening", flush=True)
        conn, peer = ls.accept()
        with paced(conn):
            stop, sent, got = threading.Event(), hashlib.sha256(), hashlib.sha256()
            sender = threading.Thread(target=_stream_out, args=(conn, 2, stop, sent), name="stream-send")
            sender.start()
            n = _stream_in(conn, got, progress=False)
            stop.set()
            sender.join()
            # the byte count is not known until the end: the sender's digest covers what it wrote
            print("server got", got.hexdigest(), "sent", sent.hexdigest(), peer[0], n, flush=True)
            print("eof", flush=True)


def stream_client(addr: str, port: int) -> None:
    """Both ways at once until a line (or the end) on standard input: then the client's FIN, and
    everything the server still sends until its FIN.  A session that must stay established while a
    test works on it ends only when the test says so.  Prints ``client sent SHA got SHA GOT_BYTES``,
    then ``eof``."""
    with paced(socket.create_connection((addr, port), timeout=60)) as s:
        s.settimeout(None)
        print("connected", s.getsockname()[1], flush=True)
        stop, sent, got = threading.Event(), hashlib.sha256(), hashlib.sha256()
        sender = threading.Thread(target=_stream_out, args=(s, 1, stop, sent), name="stream-send")
        sender.start()
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), name="stdin", daemon=True).start()
        n = _stream_in(s, got, progress=True)
        if not stop.is_set():
            print("unexpected eof: the server closed first", flush=True)
            stop.set()
        sender.join()
        print("client sent", sent.hexdigest(), "got", got.hexdigest(), n, flush=True)
        print("eof", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = body(int(self.path.lstrip("/")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def http_server(port: int) -> None:
    with http.server.HTTPServer(("0.0.0.0", port), Handler) as server:
        print("listening", flush=True)
        server.serve_forever()


def http_client(addr: str, port: int, count: int) -> None:
    ports = set()
    for k in range(count):
        conn = http.client.HTTPConnection(addr, port, timeout=30)
        conn.request("GET", f"/{k}")
        ports.add(conn.sock.getsockname()[1])
        answer = conn.getresponse()
        data = answer.read()
        if answer.status != 200 or data != body(k):
            print(f"request {k}: status {answer.status}, {len(data)} bytes, not the body", flush=True)
            sys.exit(1)
        conn.close()
    print("http ok", count, "sessions", len(ports), flush=True)


def keepalive_server(port: int) -> None:
    """Answers ``GET /K/N`` with N bytes of ``payload(K, N)`` on one kept-alive connection;
    prints ``server got SHA sent SHA PEER`` (of the raw streams) when the client closes."""
    with socket.create_server(("0.0.0.0", port)) as ls:
        print("listening", flush=True)
        conn, peer = ls.accept()
        got, sent = hashlib.sha256(), hashlib.sha256()
        buf = b""
        with conn:
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    data = conn.recv(CHUNK)
                    if not data:
                        break
                    got.update(data)
                    buf += data
                    continue
                line, buf = buf[:end].split(b"\r\n")[0], buf[end + 4 :]
                k, n = (int(x) for x in line.split()[1].decode().strip("/").split("/"))
                data = payload(k, n)
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + data
                conn.sendall(answer)
                sent.update(answer)
            print("server got", got.hexdigest(), "sent", sent.hexdigest(), peer[0], flush=True)
            print("eof", flush=True)


def keepalive_client(addr: str, port: int) -> None:
    """One connection; per line ``get K N`` on stdin a request, printing ``response K N via
    yes|no`` (whether a middlebox put a ``Via:`` line after the status line) once the whole
    body arrived and matched; ``end``: its FIN, then ``client sent SHA got SHA VIAS`` where
    ``got`` is the digest of the received stream without the Via lines (what the server sent,
    if nothing else changed), VIAS how many there were, and ``eof`` at the server's FIN."""
    with socket.create_connection((addr, port), timeout=60) as s:
        print("connected", s.getsockname()[1], flush=True)
        got, sent = hashlib.sha256(), hashlib.sha256()
        vias = 0
        buf = b""
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["end"]:
                break
            k, n = int(words[1]), int(words[2])
            req = b"GET /%d/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (k, n, addr.encode())
            s.sendall(req)
            sent.update(req)
            while b"\r\n\r\n" not in buf:
                data = s.recv(CHUNK)
                if not data:
                    raise EOFError(f"the connection closed before response {k}")
                buf += data
            end = buf.index(b"\r\n\r\n")
            lines = buf[:end].split(b"\r\n")
            via = len(lines) > 1 and lines[1].startswith(b"Via: ")
            if via:
                vias += 1
                del lines[1]
            head = b"\r\n".join(lines) + b"\r\n\r\n"
            length = next(int(x.split(b":")[1]) for x in lines[1:] if x.lower().startswith(b"content-length"))
            buf = buf[end + 4 :]
            while len(buf) < length:
                data = s.recv(CHUNK)
                if not data:
                    raise EOFError(f"the connection closed in response {k}")
                buf += data
            body, buf = buf[:length], buf[length:]
            got.update(head + body)
            ok = "ok" if lines[0].startswith(b"HTTP/1.1 200") and body == payload(k, n) else "WRONG"
            print(f"response {k} {n} via {'yes' if via else 'no'} {ok}", flush=True)
        s.shutdown(socket.SHUT_WR)
        eof = s.recv(1) == b"" and not buf
        print("client sent", sent.hexdigest(), "got", got.hexdigest(), vias, flush=True)
        print("eof" if eof else "unexpected data", flush=True)


def connect(addr: str, port: int, timeout: float) -> None:
    try:
        socket.create_connection((addr, port), timeout=timeout).close()
        print("connect: connected", flush=True)
    except TimeoutError:
        print("connect: timed out", flush=True)


REPORT_S = 0.5
CONNECTS = 2
"""Connection attempts a bundle client has under way at once."""
BUNDLE_TIMEOUT_S = 120.0


class Bundle:
    """Bytes received per session of a bundle, printed every REPORT_S."""

    def __init__(self, sessions: int, size: int, period: float) -> None:
        self.got = [0] * sessions
        self.size, self.period = size, period
        self.ok = self.failed = 0

    async def report(self) -> None:
        while True:
            self.print_counts()
            await asyncio.sleep(REPORT_S)

    def print_counts(self) -> None:
        print(f"p {time.monotonic():.3f} " + " ".join(map(str, self.got)), flush=True)

    async def send(
        self, n: int, writer: asyncio.StreamWriter, stop: asyncio.Event, digest: hashlib._Hash
    ) -> int:
        """SIZE bytes every PERIOD (phase by session) until ``stop``; returns the bytes sent."""
        rng = random.Random(n)
        loop = asyncio.get_running_loop()
        at = loop.time() + self.period * rng.random()
        sent = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, at - loop.time()))
            if stop.is_set():
                return sent
            data = rng.randbytes(self.size)
            writer.write(data)
            await writer.drain()
            digest.update(data)
            sent += len(data)
            at += self.period

    async def receive(self, n: int, reader: asyncio.StreamReader, digest: hashlib._Hash) -> None:
        """Until the end of the stream."""
        while data := await reader.read(CHUNK):
            digest.update(data)
            self.got[n - 1] += len(data)


async def bundle_server(port: int, sessions: int, size: int, period: float) -> None:
    b = Bundle(sessions, size, period)
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        peer = writer.get_extra_info("peername")[0]
        try:
            n = int.from_bytes(await reader.readexactly(8), "big")
            if not 1 <= n <= sessions:
                raise ValueError(f"session number {n} out of range")
            print(f"connected {n} {peer}", flush=True)
            got, sent, eof = hashlib.sha256(), hashlib.sha256(), asyncio.Event()
            sender = asyncio.create_task(b.send(1000 + n, writer, eof, sent), name=f"send-{n}")
            try:
                await b.receive(n, reader, got)
            except BaseException:
                sender.cancel()
                raise
            eof.set()
            up = await sender
            writer.write_eof()
            await writer.drain()
            b.ok += 1
            print(
                f"done {n} got {got.hexdigest()} {b.got[n - 1]} sent {sent.hexdigest()} {up} {peer}",
                flush=True,
            )
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as exc:
            b.failed += 1
            print(f"error {n}: {type(exc).__name__}: {exc}", flush=True)
        finally:
            writer.close()
            if b.ok + b.failed == sessions:
                done.set()

    server = await asyncio.start_server(serve, "0.0.0.0", port, backlog=1024)
    print("listening", flush=True)
    reporter = asyncio.create_task(b.report(), name="report")
    async with server:
        await done.wait()
    reporter.cancel()
    b.print_counts()
    print(f"all done ok {b.ok} failed {b.failed}", flush=True)


async def bundle_client(addr: str, port: int, sessions: int, size: int, period: float) -> None:
    b = Bundle(sessions, size, period)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        loop.call_soon_threadsafe(stop.set)  # "stop", or the end of the input: the test is done

    gate = asyncio.Semaphore(CONNECTS)
    connected = 0

    async def session(n: int) -> None:
        nonlocal connected
        try:
            async with gate:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), BUNDLE_TIMEOUT_S)
            print(f"connected {n} {writer.get_extra_info('sockname')[1]}", flush=True)
            connected += 1
            if connected == sessions:
                print("all connected", flush=True)
            try:
                writer.write(n.to_bytes(8, "big"))
                got, sent = hashlib.sha256(), hashlib.sha256()
                receiver = asyncio.create_task(b.receive(n, reader, got), name=f"receive-{n}")
                try:
                    up = await b.send(n, writer, stop, sent)
                    writer.write_eof()
                    await writer.drain()
                except BaseException:
                    receiver.cancel()
                    raise
                await receiver
            finally:
                writer.close()
            b.ok += 1
            print(f"done {n} sent {sent.hexdigest()} {up} got {got.hexdigest()} {b.got[n - 1]}", flush=True)
        except (OSError, EOFError, ValueError, TimeoutError) as exc:
            b.failed += 1
            print(f"error {n}: {type(exc).__name__}: {exc}", flush=True)

    print("started", flush=True)
    threading.Thread(target=stdin, name="stdin", daemon=True).start()
    reporter = asyncio.create_task(b.report(), name="report")
    async with asyncio.TaskGroup() as tg:
        for n in range(1, sessions + 1):
            tg.create_task(session(n), name=f"session-{n}")
    reporter.cancel()
    b.print_counts()
    print(f"all done ok {b.ok} failed {b.failed}", flush=True)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "blob-server":
        blob_server(int(args[0]))
    elif cmd == "blob-client":
        blob_client(args[0], int(args[1]), int(args[2]), int(args[3]), args[4:] == ["hold"])
    elif cmd == "duplex-server":
        duplex_server(int(args[0]))
    elif cmd == "duplex-client":
        duplex_client(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "stream-server":
        stream_server(int(args[0]))
    elif cmd == "stream-client":
        stream_client(args[0], int(args[1]))
    elif cmd == "http-server":
        http_server(int(args[0]))
    elif cmd == "http-client":
        http_client(args[0], int(args[1]), int(args[2]))
    elif cmd == "keepalive-server":
        keepalive_server(int(args[0]))
    elif cmd == "keepalive-client":
        keepalive_client(args[0], int(args[1]))
    elif cmd == "bundle-server":
        asyncio.run(bundle_server(int(args[0]), int(args[1]), int(args[2]), float(args[3])))
    elif cmd == "bundle-client":
        asyncio.run(bundle_client(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4])))
    else:
        connect(args[0], int(args[1]), float(args[2]))
