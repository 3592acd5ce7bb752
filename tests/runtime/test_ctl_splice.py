"""What ``dysco.runtime.splice`` and ``dysco ctl splice`` collect from a proxy's two sockets
(real Linux TCP over loopback: TCP_INFO, the queues, ``ss``'s view of the same sockets), and how
the agent checks a splice request."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from dysco.cli import main as dysco_main
from dysco.errors import UserError
from dysco.runtime import splice
from dysco.runtime._splicecall import Side, parse_pair, parse_request, side_from_ss, side_of
from dysco.runtime.core._types import FiveTuple, ip_int


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair over loopback: the accepted end and the connecting end."""
    with socket.create_server(("127.0.0.1", 0)) as ls:
        c = socket.create_connection(ls.getsockname())
        a, _ = ls.accept()
    with a, c:
        yield a, c


def test_the_kernel_view_of_a_socket(pair: tuple[socket.socket, socket.socket]) -> None:
    accepted, connecting = pair
    connecting.sendall(b"x" * 5000)
    got = b""
    while len(got) < 3000:
        got += accepted.recv(3000 - len(got))
    accepted.sendall(b"y" * 700)
    back = b""
    while len(back) < 700:
        back += connecting.recv(700 - len(back))
    side = side_of(accepted, "sock_in")
    assert side.local == accepted.getsockname() and side.peer == accepted.getpeername()
    k = side.kernel
    assert k is not None
    assert k.bytes_received == 5000 and k.unread == 2000, "received in order, and what is not read yet"
    assert k.bytes_acked == 700 and k.unsent == 0
    assert k.sack and k.wscale and 0 <= k.snd_wscale <= 14 and 0 <= k.rcv_wscale <= 14
    # ss sees the same socket the same way (dysco ctl splice reads it so)
    seen = side_from_ss(side.local, side.peer)
    assert seen.kernel is not None
    assert (seen.kernel.sack, seen.kernel.timestamps, seen.kernel.snd_wscale, seen.kernel.rcv_wscale) == (
        k.sack, k.timestamps, k.snd_wscale, k.rcv_wscale,
    )  # fmt: skip
    assert (seen.kernel.bytes_received, seen.kernel.unread, seen.kernel.bytes_acked) == (5000, 2000, 700)


def test_sockets_that_cannot_be_spliced(pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    accepted, connecting = pair
    mgmt = str(tmp_path / "none.sock")
    with pytest.raises(UserError, match="sock_in and sock_out are the same socket"):
        splice(accepted, accepted, mgmt=mgmt)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp, pytest.raises(UserError, match="sock_out is not a TCP socket over IPv4"):
        splice(accepted, udp, mgmt=mgmt)
    idle = socket.socket()
    with idle, pytest.raises(UserError, match="sock_out is not connected"):
        splice(accepted, idle, mgmt=mgmt)
    closed = socket.socket()
    closed.close()
    with pytest.raises(UserError, match="sock_in is closed"):
        splice(closed, accepted, mgmt=mgmt)
    with pytest.raises(UserError, match="delta must be an integer of magnitude below 2\\*\\*31"):
        splice(accepted, connecting, 1 << 31, mgmt=mgmt)
    with pytest.raises(UserError, match=f"no agent at {mgmt}"):
        splice(accepted, connecting, mgmt=mgmt)
    with pytest.raises(
        UserError, match=r"no established TCP connection 127\.0\.0\.1:1-127\.0\.0\.1:2 in this network"
    ):
        side_from_ss(("127.0.0.1", 1), ("127.0.0.1", 2))


def test_four_tuples_on_the_command_line() -> None:
    assert parse_pair("10.0.1.2:41000-10.0.2.2:9000", "--in") == (("10.0.1.2", 41000), ("10.0.2.2", 9000))
    assert parse_pair("10.0.2.2:42000->10.0.3.2:9000", "--out") == (("10.0.2.2", 42000), ("10.0.3.2", 9000))
    for bad, message in [
        ("10.0.1.2:41000", "expected SRC:PORT-DST:PORT"),
        ("10.0.1.2:41000-10.0.2:9000", "'10.0.2:9000' is not ADDR:PORT"),
        ("10.0.1.2:0-10.0.2.2:9000", "port '0' out of range"),
        ("10.0.1.2-10.0.2.2:9000", "is not ADDR:PORT"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_pair(bad, "--in")


def test_dysco_ctl_splice_refuses_what_it_cannot_find(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["ctl", "splice", "--in", "10.0.1.2:41000-10.0.2.2:9000", "--out", "10.0.2.2:42000-10.0.3.2:9000"]
    assert dysco_main([*argv, "--mgmt", str(tmp_path / "a.sock")]) == 2
    assert (
        "no established TCP connection 10.0.1.2:41000-10.0.2.2:9000 in this network"
        in capsys.readouterr().err
    )
    assert dysco_main([*argv, "--no-kernel-info", "--mgmt", str(tmp_path / "a.sock")]) == 2
    assert "no agent at" in capsys.readouterr().err
    bad = ["ctl", "splice", "--in", "10.0.1.2:41000-10.0.2.2:9000", "--out", "10.0.9.9:42000-10.0.3.2:9000"]
    assert dysco_main([*bad, "--no-kernel-info", "--mgmt", str(tmp_path / "a.sock")]) == 2
    assert "different local addresses (10.0.2.2, 10.0.9.9)" in capsys.readouterr().err
    # sockets of another process, found by ss in this namespace: the proxy's side of each is read
    with ExitStack() as stack:
        conns = []
        for _ in range(2):
            ls = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
            c = stack.enter_context(socket.create_connection(ls.getsockname()))
            conns.append((c, stack.enter_context(ls.accept()[0])))
        (client, _), (proxy_out, _) = conns
        args = [
            "ctl",
            "splice",
            "--in",
            tcp(client),
            "--out",
            tcp(proxy_out),
            "--mgmt",
            str(tmp_path / "a.sock"),
        ]
        assert dysco_main(args) == 2
        assert "no agent at" in capsys.readouterr().err, "both found, then the agent was asked"


def tcp(s: socket.socket) -> str:
    """The connection of ``s`` from its end to the other, as dysco ctl splice takes it."""
    (a, p), (b, q) = s.getsockname(), s.getpeername()
    return f"{a}:{p}-{b}:{q}"


def request_args(**changes: Any) -> dict[str, Any]:
    inbound = Side(("10.0.2.2", 9000), ("10.0.1.2", 41000)).as_json()
    outbound = Side(("10.0.2.2", 42000), ("10.0.3.2", 9000)).as_json()
    return {"in": inbound, "out": outbound, "delta": 0, "delta_rev": 0, "timeout": 5, **changes}


def test_the_agent_reads_a_splice_request_left_to_right() -> None:
    req = parse_request(request_args(delta=-5))
    assert req.inbound == FiveTuple(ip_int("10.0.1.2"), ip_int("10.0.2.2"), 41000, 9000)
    assert req.outbound == FiveTuple(ip_int("10.0.2.2"), ip_int("10.0.3.2"), 42000, 9000)
    assert (req.delta, req.delta_rev, req.kernel_in, req.timeout) == (-5, 0, None, 5.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"in": None}, "'in' must be an object"),
        ({"out": {"local": {"addr": "10.0.2.2", "port": 1}}}, "out.peer must be"),
        (
            {"out": {"local": {"addr": "10.0.2", "port": 1}, "peer": {}}},
            "out.local.addr '10.0.2' is not an IPv4",
        ),
        (
            {"out": {"local": {"addr": "10.0.2.2", "port": 70000}, "peer": {}}},
            "out.local.port 70000 is not a TCP",
        ),
        ({"delta": 1.5}, "delta must be an integer"),
        ({"delta_rev": True}, "delta_rev must be an integer"),
        ({"timeout": 0}, "timeout must be a number of seconds"),
    ],
)
def test_a_bad_splice_request_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_request(request_args(**changes))


def test_kernel_fields_are_checked(pair: tuple[socket.socket, socket.socket]) -> None:
    good = side_of(pair[0], "sock_in").as_json()
    out = Side(("127.0.0.1", 42000), ("10.0.3.2", 9000)).as_json()
    assert parse_request(request_args(**{"in": good, "out": out})).kernel_in is not None
    good["kernel"]["snd_wscale"] = 15
    with pytest.raises(UserError, match="window scales above 14"):
        parse_request(request_args(**{"in": good, "out": out}))
    good["kernel"]["sack"] = "yes"
    with pytest.raises(UserError, match=r"in\.kernel\.sack must be bool, not 'yes'"):
        parse_request(request_args(**{"in": good, "out": out}))
