"""Simulation: agents on softswitches running p4src/dysco.p4, on a faulty network, fake clock."""

from __future__ import annotations

import pytest

from dysco.runtime._core import SECOND
from dysco.runtime._types import ip_int
from dysco.softswitch.api import Program

from .simworld import SERVER, chain_world, check_clean, check_exchange, request

LINGER = 30 * SECOND  # more than the linger and the idle poll


@pytest.mark.parametrize("n_mbs", [0, 1, 2, 3, 4])
def test_chain_carries_a_session_and_leaves_nothing(dysco_program: Program, n_mbs: int) -> None:
    w, client, server = chain_world(dysco_program, n_mbs)
    conns = [client.connect(ip_int(SERVER), 80, request(0))]
    w.sim.run_for(LINGER)
    check_exchange(conns, server)
    # the server saw the client's own five-tuple
    (srv,) = server.conns.values()
    assert (srv.remote, srv.remote_port) == (ip_int("10.0.0.1"), conns[0].local_port)
    check_clean(w)
    mbs = [h for n, h in w.hosts.items() if n.startswith("mb")]
    assert all(h.app is not None and h.app.frames > 0 for h in mbs)  # type: ignore[attr-defined]
