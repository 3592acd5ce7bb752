"""Traffic for the end-to-end tests, run inside a host's network namespace.

    python peers.py blob-server PORT                  one connection: read, answer, print digests
    python peers.py blob-client ADDR PORT UP DOWN [hold]
                                                      send UP bytes, receive DOWN bytes; with hold,
                                                      close only when stdin has a line
    python peers.py duplex-server PORT                one connection: both directions at once
    python peers.py duplex-client ADDR PORT UP DOWN   send UP and receive DOWN bytes at the same time,
                                                      printing "progress K" after each MB received
    python peers.py http-server PORT                  GET /K answers body(K)
    python peers.py http-client ADDR PORT COUNT       COUNT requests, one connection each, checked
    python peers.py connect ADDR PORT TIMEOUT         prints "connect: connected" or "connect: timed out"

Each side prints the SHA-256 of what it sent and of what it received, so a test compares the
digests of both ends; the payload is pseudo-random (a byte lost, duplicated or moved shows).
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import random
import socket
import sys
import threading

CHUNK = 1 << 16


def payload(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


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
        with conn:
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
        with conn:
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
    with socket.create_connection((addr, port), timeout=60) as s:
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


def connect(addr: str, port: int, timeout: float) -> None:
    try:
        socket.create_connection((addr, port), timeout=timeout).close()
        print("connect: connected", flush=True)
    except TimeoutError:
        print("connect: timed out", flush=True)


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
    elif cmd == "http-server":
        http_server(int(args[0]))
    elif cmd == "http-client":
        http_client(args[0], int(args[1]), int(args[2]))
    else:
        connect(args[0], int(args[1]), float(args[2]))
