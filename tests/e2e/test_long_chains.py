"""Long chains on real TCP (issue 23): a session through 8 middleboxes, and one through 15, the
most the SYN payload carries (15 middleboxes and the server: 16 hops, docs/protocol.md), each
reconfigured in the middle of a transfer both ways: the middlebox in the middle of the chain is
deleted, asked at the client's agent and anchored by the middlebox in front of it.  Both ends'
digests agree, every agent of the chain held the session and lets go of it, nothing is left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dysco.runtime.core._syn_payload import MAX_HOPS
from dysco.testbed import Host, Plan, Testbed

from .conftest import ROOT, WAIT_S, ctl, free_port, needs_root, prefix
from .test_reconfigure import SERVER, Transfers, closed_everywhere, reconfigure

pytestmark = pytest.mark.root

PORT = 9000


def long_chain(n: int, tmp: Path) -> Plan:
    """client (10.0.1.2) -> m1 .. mN (10.0.4.2 ..) -> server (10.0.3.2), Linux forwarding."""
    mboxes = [Host(f"m{i}", f"m{i}", 3 + i, free_port(), "middlebox") for i in range(1, n + 1)]
    hosts = (
        Host("c", "client", 1, free_port(), "client"),
        *mboxes,
        Host("s", "server", 3, free_port(), "server"),
    )
    lines = [f"middlebox {m.name} {{ instances ${m.name}; }}" for m in mboxes]
    lines.append(f"policy long: tcp dst port {PORT} -> {', '.join(m.name for m in mboxes)}")
    return Plan(
        hosts,
        prefix=prefix(),
        p4=str(ROOT / "p4src" / "dysco.p4"),
        policies=str(tmp / "policy.dysco"),
        policy="\n".join(lines) + "\n",
        linger=0.5,
    )


@pytest.fixture(params=[8, MAX_HOPS - 1], ids=lambda n: f"{n}-middleboxes")
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Testbed]:
    needs_root()
    with Testbed(long_chain(request.param, tmp_path), tmp_path) as tb:
        yield tb


def test_a_long_chain_carries_a_session_and_loses_a_middlebox_mid_transfer(
    chain: Testbed, tmp_path: Path
) -> None:
    tb = chain
    mboxes = [h for h in tb.plan.hosts if h.role == "middlebox"]
    path = [m.address for m in mboxes] + [SERVER]
    with Transfers(tb, tmp_path, [PORT]) as t:
        session = t.five_tuple(PORT)
        rows = ctl(tb, "client", "sessions")
        assert isinstance(rows, list) and [r["chain"] for r in rows] == [path], rows
        for i, m in enumerate(mboxes):  # every middlebox holds it, knowing the chain from itself on
            (row,) = ctl(tb, m.name, "sessions")  # type: ignore[misc]
            assert (row["role"], row["chain"]) == ("middle", path[i:]), (m.name, row)
        gone = mboxes[len(mboxes) // 2]
        code, answer = reconfigure(tb, session, "--delete", gone.address)
        anchor = mboxes[len(mboxes) // 2 - 1]
        assert (code, answer["outcome"], answer["left"]) == (0, "reconfigured", anchor.address), answer
        assert answer["chain"] == [a for a in path if a != gone.address], answer
        t.still_running()
        t.check()
    assert "(reconfigured away)" in tb.agent_of(gone.name).wait_for("session_closed: ", WAIT_S)
    holders = {h.name: [session] for h in tb.plan.hosts if h.name != gone.name}
    closed_everywhere(tb, holders)
