"""A TCP client or server for the real-process test, run inside a host's network namespace.

    python tcp_peer.py server PORT        prints "listening", serves one connection
    python tcp_peer.py client ADDR PORT N prints "exchanged", then closes when stdin has a line

The client sends N bytes (after a 4-byte length), the server answers ``respond(request)``; each
side prints the SHA-256 of what it received, and the client waits for a line on stdin before its
FIN so the test can look at the session while it is established.
"""

from __future__ import annotations

import hashlib
import socket
import sys


def request(n: int) -> bytes:
    return bytes((i * 7 + i // 256) & 0xFF for i in range(n))


def respond(req: bytes) -> bytes:
    return b"200 " + req[::-1] * 2


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def server(port: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as ls:
        print("listening", flush=True)
        conn, peer = ls.accept()
        with conn:
            n = int.from_bytes(recv_exactly(conn, 4), "big")
            req = recv_exactly(conn, n)
            print("request", hashlib.sha256(req).hexdigest(), peer[0], flush=True)
            conn.sendall(respond(req))
            rest = conn.recv(1)
            print("eof" if rest == b"" else "unexpected data", flush=True)


def client(addr: str, port: int, n: int) -> None:
    req = request(n)
    with socket.create_connection((addr, port), timeout=30) as s:
        s.sendall(len(req).to_bytes(4, "big") + req)
        answer = recv_exactly(s, len(respond(req)))
        print("exchanged", hashlib.sha256(answer).hexdigest(), s.getsockname()[1], flush=True)
        sys.stdin.readline()
        s.shutdown(socket.SHUT_WR)
        print("eof" if s.recv(1) == b"" else "unexpected data", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
