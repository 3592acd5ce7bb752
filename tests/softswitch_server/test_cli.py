"""``dysco switch`` argument handling (the process itself is tested in test_switch_process.py)."""

from __future__ import annotations

import argparse

import pytest

from dysco.cli import build_parser, main
from dysco.errors import UserError
from dysco.softswitch.server.cli import _target_options, backend_of, parse_interfaces


def test_parse_interfaces() -> None:
    assert parse_interfaces(["1@veth1", "2@eth0"]) == {1: "veth1", 2: "eth0"}
    with pytest.raises(UserError, match="expected N@IFACE"):
        parse_interfaces(["veth1"])
    with pytest.raises(UserError, match="port 1 given twice"):
        parse_interfaces(["1@a", "1@b"])


def parse(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["switch", *argv])
    _target_options(args)
    return args


def test_flags_like_simple_switch_grpc() -> None:
    args = parse("-i", "1@veth1", "-i", "2@veth3", "--device-id", "3", "--cpu-port", "255", "prog.p4")
    assert (args.interface, args.device_id, args.cpu_port, args.program) == (
        ["1@veth1", "2@veth3"],
        3,
        255,
        "prog.p4",
    )
    assert args.grpc_server_addr == "0.0.0.0:9559"


def test_target_options_after_double_dash() -> None:
    args = parse("--no-p4", "--", "--cpu-port", "510", "--grpc-server-addr", "127.0.0.1:1234")
    assert (args.program, args.cpu_port, args.grpc_server_addr) == (None, 510, "127.0.0.1:1234")
    args = parse("prog.json", "--", "--cpu-port", "64")
    assert (args.program, args.cpu_port) == ("prog.json", 64)
    with pytest.raises(UserError, match="unknown target options: --frobnicate"):
        parse("--no-p4", "--", "--frobnicate")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no program given"),
        (["--no-p4", "prog.p4"], "either a program or --no-p4"),
        (["--no-p4", "--cpu-port", "511"], "--cpu-port 511"),
        (["--no-p4", "--cpu-port", "0"], "--cpu-port 0"),
        (["--no-p4", "-i", "oops"], "expected N@IFACE"),
        (["--no-p4", "--cpu-port", "3", "-i", "3@veth0"], "also attached"),
    ],
)
def test_user_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["switch", *argv]) == 2
    assert message in capsys.readouterr().err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["switch", "--help"])
    assert "example:" in capsys.readouterr().out


def test_the_backend_is_the_flag_else_dysco_backend_else_ebpf_where_it_loads() -> None:
    def loads() -> None:
        return None

    def no_clang() -> str:
        return "the ebpf backend needs clang-16"

    ports = ("-i", "1@veth0", "x.p4")
    assert backend_of(parse("--backend", "python", *ports), {"DYSCO_BACKEND": "ebpf"}, loads) == (
        "python",
        None,
    )
    assert backend_of(parse(*ports), {"DYSCO_BACKEND": "python"}, loads) == ("python", None)
    assert backend_of(parse(*ports), {}, loads) == ("ebpf", None)
    assert backend_of(parse(*ports), {}, no_clang) == (
        "python",
        "the ebpf backend needs clang-16; the python backend carries packets",
    )
    # nothing to attach a TC program to: the in-process executor, said so
    assert backend_of(parse("x.p4"), {}, loads) == (
        "python",
        "no -i interfaces for TC programs, so the python backend carries packets",
    )
    assert backend_of(parse("x.p4"), {"DYSCO_BACKEND": "ebpf"}, no_clang) == ("ebpf", None)
    with pytest.raises(UserError, match="DYSCO_BACKEND=bpf: expected one of python, ebpf"):
        backend_of(parse(*ports), {"DYSCO_BACKEND": "bpf"}, loads)
