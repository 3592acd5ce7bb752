"""``dysco ctl``'s own logic, without an agent: edits -> right anchor and hops, choosing sessions
(pcap-filter predicates through dysco.compiler), the command line's mistakes, and the
management socket's protocol (real Unix sockets, an asyncio server in a thread)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dysco.cli import main as dysco_main
from dysco.compiler import compile_text
from dysco.compiler.evaluate import Syn, chain_policy_for
from dysco.errors import PeerError, SourceErrors, UserError
from dysco.runtime._ctl import ME, Edit, path_right_of, plan, predicate, select, tuple_text
from dysco.runtime._mgmt import Args, ManagementServer, request

FW, SCRUB, SERVER = "10.0.2.2", "10.0.5.2", "10.0.3.2"


# ---- edits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "edit", "expected"),
    [
        ([FW, SERVER], Edit("insert", SCRUB), (ME, FW, [SCRUB])),
        ([FW, SERVER], Edit("insert", SCRUB, at=1), (FW, SERVER, [SCRUB])),  # FW anchors it
        ([SCRUB, FW, SERVER], Edit("delete", SCRUB), (ME, FW, [])),
        ([SCRUB, FW, SERVER], Edit("delete", FW), (SCRUB, SERVER, [])),
        ([FW, SERVER], Edit("replace", FW, "10.0.4.2"), (ME, SERVER, ["10.0.4.2"])),
        ([SCRUB, FW, SERVER], Edit("replace", FW, "10.0.4.2"), (SCRUB, SERVER, ["10.0.4.2"])),
        ([FW, SERVER], Edit("hops", hops=(SCRUB,)), (ME, SERVER, [SCRUB])),
        ([FW, SERVER], Edit("hops"), (ME, SERVER, [])),
        ([SCRUB, FW, SERVER], Edit("hops", hops=("10.0.4.2",), right=FW), (ME, FW, ["10.0.4.2"])),
    ],
)
def test_an_edit_is_the_shortest_changed_segment(
    path: list[str], edit: Edit, expected: tuple[str, str, list[str]]
) -> None:
    assert plan(path, edit) == expected


@pytest.mark.parametrize(
    ("path", "edit", "message"),
    [
        ([FW, SERVER], Edit("insert", FW), "10.0.2.2 is on the session's path already (10.0.2.2 10.0.3.2)"),
        ([FW, SERVER], Edit("insert", SCRUB, at=2), "--at 2: the path has 1 middleboxes"),
        ([FW, SERVER], Edit("delete", SCRUB), "10.0.5.2 is not on the session's path"),
        ([FW, SERVER], Edit("delete", SERVER), "10.0.3.2 is the session's right end (10.0.2.2 10.0.3.2); it"),
        ([FW, SERVER], Edit("replace", SERVER, SCRUB), "it cannot be replaced"),
        ([SCRUB, FW, SERVER], Edit("replace", FW, SCRUB), "10.0.5.2 is on the session's path already"),
        ([FW, SERVER], Edit("hops", right=SCRUB), "--right 10.0.5.2 is not on the session's path"),
        ([FW, SERVER], Edit("hops", hops=(SERVER,)), "--hops names the right anchor 10.0.3.2"),
        ([], Edit("delete", FW), "the session has no hop to the right of this agent"),
    ],
)
def test_an_edit_that_does_not_apply_says_why(path: list[str], edit: Edit, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan(path, edit)


def test_a_middle_agent_edits_the_part_of_the_chain_to_its_right() -> None:
    row = {"chain": [FW, SCRUB, SERVER]}
    assert path_right_of(row, FW) == [SCRUB, SERVER]
    assert path_right_of(row, "10.0.1.2") == [FW, SCRUB, SERVER]


# ---- predicates and selection -------------------------------------------------------------------


def five(sport: int = 40000, dport: int = 9000, src: str = "10.0.1.2", dst: str = SERVER) -> dict[str, Any]:
    return {"src": src, "dst": dst, "sport": sport, "dport": dport, "proto": 6}


def test_a_predicate_tests_the_sessions_five_tuple() -> None:
    web = predicate("tcp dst port 80 or 443 and src net 10.0.1.0/24")
    assert web(five(dport=80)) and web(five(dport=443))
    assert not web(five(dport=9000)) and not web(five(dport=80, src="10.0.9.2"))
    assert predicate("not dst host 10.0.3.2")(five(dst="10.0.4.2"))


def test_a_bad_predicate_is_located_in_its_own_text() -> None:
    with pytest.raises(SourceErrors) as info:
        predicate("tcp dst port 80 and udp")
    text = str(info.value)
    assert text.startswith("--match:1:21: 'udp' can never match"), text
    assert text.splitlines()[1:] == ["    tcp dst port 80 and udp", "                        ^"]
    with pytest.raises(SourceErrors, match=r"--match:1:1: not a predicate"):
        predicate("tcp -> 10.0.0.1, 10.0.0.2")
    with pytest.raises(UserError, match="the predicate is empty"):
        predicate("  ")
    with pytest.raises(UserError, match="the predicate is one line"):
        predicate("tcp\npolicy x: tcp -> 10.0.0.1")


PREDICATES = [
    "tcp dst port 80",
    "src net 10.0.1.0/24 and not dst port 22",
    "portrange 9000-9009 or host 10.0.3.2",
]


@given(
    st.sampled_from(PREDICATES),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 32) - 1),
    st.integers(1, 65535),
    st.integers(1, 65535),
)
def test_a_predicate_selects_what_the_classifier_would(
    pred: str, src: int, dst: int, sp: int, dp: int
) -> None:
    """--match agrees with the compiled classifier entries of the same predicate."""
    import ipaddress

    compiled = compile_text(f"policy match: {pred} -> 10.0.0.1\n")
    syn = Syn(src, dst, sp, dp)
    t = five(sp, dp, str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst)))
    assert predicate(pred)(t) == (chain_policy_for(compiled.entries, syn) == "match")


def row(sid: int, chain: list[str], dport: int = 9000, state: str = "established", right: bool = True) -> Any:
    subs = [{"side": "right", "five_tuple": five(), "state": "open"}] if right else []
    return {
        "id": sid,
        "five_tuple": five(40000 + sid, dport),
        "chain": chain,
        "state": state,
        "subsessions": subs,
    }


def test_many_sessions_through_a_middlebox_or_by_predicate() -> None:
    rows = [
        row(1, [FW, SERVER]),
        row(2, [SCRUB, FW, SERVER], dport=80),
        row(3, ["10.0.4.2", SERVER]),
        row(4, [FW, SERVER], state="closing"),
        row(5, [FW, SERVER], right=False),
    ]
    me = "10.0.1.2"
    jobs = select(rows, me, Edit("replace", FW, "10.0.4.2"), None)
    assert [(j.row["id"], j.left, j.right, j.hops, j.skip) for j in jobs] == [
        (1, ME, SERVER, ("10.0.4.2",), ""),
        (2, SCRUB, SERVER, ("10.0.4.2",), ""),  # the scrubber in front anchors it
    ]
    jobs = select(rows, me, Edit("insert", SCRUB), predicate("dst port 80 or dst port 9000"))
    assert [(j.row["id"], j.right, j.hops) for j in jobs if not j.skip] == [
        (1, FW, (SCRUB,)),
        (3, "10.0.4.2", (SCRUB,)),
    ]
    assert [j.row["id"] for j in jobs if j.skip] == [2]
    jobs = select(rows, me, Edit("delete", SCRUB), predicate("dst port 80"))
    assert [(j.row["id"], j.right, j.hops) for j in jobs] == [(2, FW, ())]


def test_a_dead_middlebox_is_gone_around_in_every_session_through_it() -> None:
    """--failed changes no plan (the same anchors, the same new middleboxes); each job names the
    dead middlebox, which the agent hands to the left anchor."""
    rows = [row(1, [FW, SERVER]), row(2, [SCRUB, FW, SERVER]), row(3, [SCRUB, SERVER])]
    edit = Edit("replace", FW, "10.0.4.2", failed=True)
    assert str(edit) == "replace 10.0.2.2 by 10.0.4.2 (10.0.2.2 dead)"
    jobs = select(rows, "10.0.1.2", edit, None)
    assert [(j.row["id"], j.left, j.right, j.hops, j.failed) for j in jobs] == [
        (1, ME, SERVER, ("10.0.4.2",), FW),
        (2, SCRUB, SERVER, ("10.0.4.2",), FW),
    ]
    assert [j.failed for j in select(rows, "10.0.1.2", Edit("delete", SCRUB), None)] == ["", ""]
    edit = Edit("delete", FW, failover=True)
    assert str(edit) == "delete 10.0.2.2 (10.0.2.2 or around it)"
    assert [(j.failed, j.failover) for j in select(rows, "10.0.1.2", edit, None)] == [("", True)] * 2
    with pytest.raises(UserError, match=r"10\.0\.9\.9 is not on the session's path"):
        plan([FW, SERVER], Edit("replace", "10.0.9.9", "10.0.4.2", failed=True))


def test_sessions_print_their_five_tuple_as_session_takes_it() -> None:
    assert tuple_text(five(41000, 80)) == "10.0.1.2:41000->10.0.3.2:80"


# ---- the command line's mistakes, before any agent is asked -------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["3", "--delete", FW, "--all"], "give one SESSION, or --all or --match PREDICATE for many"),
        (["--delete", FW], "give one SESSION, or --all or --match PREDICATE for many"),
        (["3", "--delete", FW, "--at", "1"], "--at goes with --insert"),
        (["3", "--delete", FW, "--right", SERVER], "--right goes with --hops"),
        (["3", "--insert", FW, "--at", "-1"], "--at -1: positions count from 0"),
        (["3", "--delete", "10.0.2"], "--delete: '10.0.2' is not an IPv4 address"),
        (["3", "--replace", FW, FW], "the same middlebox"),
        (["3", "--hops", "10.0.2.2,x"], "--hops: 'x' is not an IPv4 address"),
        (["--all", "--hops", FW], "--hops is for one SESSION"),
        (["3", "--delete", FW, "--timeout", "0"], "--timeout 0: between 0 and 600 seconds"),
        (["--all", "--delete", FW, "--parallel", "0"], "--parallel 0: at least 1"),
        (["--match", "udp", "--delete", FW], "--match:1:1: 'udp' can never match"),
        (["3", "--insert", SCRUB, "--failed"], "--failed goes with --replace DEAD NEW or --delete DEAD"),
        (["3", "--hops", SCRUB, "--failed"], "--failed goes with --replace DEAD NEW or --delete DEAD"),
        (["3", "--insert", SCRUB, "--failover"], "--failover goes with --replace DEAD NEW or --delete DEAD"),
    ],
)
def test_reconfigure_refuses_bad_arguments(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = dysco_main(["ctl", "reconfigure", *argv, "--mgmt", str(tmp_path / "none.sock")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_failed_and_failover_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        dysco_main(["ctl", "reconfigure", "3", "--delete", FW, "--failed", "--failover", "--mgmt", "x"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "argument --failover: not allowed with argument --failed" in err, err


def test_without_an_agent_the_command_says_where_it_looked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sock = tmp_path / "none.sock"
    assert dysco_main(["ctl", "reconfigure", "3", "--delete", FW, "--mgmt", str(sock)]) == 2
    assert f"no agent at {sock}" in capsys.readouterr().err


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for what in ("reconfigure", "splice", "leave", "hops", "delta"):
        with pytest.raises(SystemExit):
            dysco_main(["ctl", what, "--help"])
        assert "dysco ctl " + what in capsys.readouterr().out


# ---- the management socket ------------------------------------------------------------------------


class Server:
    """A ManagementServer on its own event loop in a thread."""

    def __init__(self, path: Path, handlers: Mapping[str, Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ManagementServer(str(path), handlers)
        self.thread = threading.Thread(target=self.loop.run_forever, name="mgmt-test", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def mgmt(tmp_path: Path) -> Iterator[tuple[str, Server]]:
    async def slow(args: Args) -> object:
        await asyncio.sleep(0)  # an awaitable handler (like reconfigure)
        return {"echo": dict(args)}

    def refuse(args: Args) -> object:
        raise UserError(f"no session {args.get('session')}")

    def bug(args: Args) -> object:
        raise RuntimeError("oops")

    path = tmp_path / "agent.sock"
    with Server(path, {"echo": lambda a: dict(a), "slow": slow, "refuse": refuse, "bug": bug}) as srv:
        yield str(path), srv


def raw(path: str, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(line)
        answer: dict[str, Any] = json.loads(s.makefile().readline())
        return answer


def test_requests_carry_arguments_and_handlers_may_wait(mgmt: tuple[str, Server]) -> None:
    path, _ = mgmt
    assert Path(path).stat().st_mode & 0o777 == 0o600
    assert request(path, "echo", {"session": 3, "hops": ["10.0.2.2"]}) == {"session": 3, "hops": ["10.0.2.2"]}
    assert request(path, "slow", {"x": 1}) == {"echo": {"x": 1}}
    assert request(path, "echo") == {}


def test_refused_and_broken_requests_are_answered_and_counted(mgmt: tuple[str, Server]) -> None:
    path, srv = mgmt
    with pytest.raises(UserError, match="no session 7"):
        request(path, "refuse", {"session": 7})
    with pytest.raises(PeerError, match="internal error: RuntimeError: oops"):
        request(path, "bug")
    with pytest.raises(UserError, match="unknown command 'nope'"):
        request(path, "nope")
    assert raw(path, b"not json\n") == {
        "ok": False,
        "error": 'bad request: expected {"command": NAME, "args": {...}}',
        "kind": "user",
    }
    assert (
        raw(path, b'{"command": "echo", "args": [1]}\n')["error"]
        == "bad request: args must be an object, not [1]"
    )
    # the server still answers, and counted each refusal by its kind
    assert request(path, "echo", {"a": 1}) == {"a": 1}
    c = srv.server.counters
    assert (c["mgmt.refused.refuse"], c["mgmt.internal.bug"], c["mgmt.unknown_command"]) == (1, 1, 1)
    assert c["mgmt.bad_request"] == 2 and c["mgmt.requests"] == 6
