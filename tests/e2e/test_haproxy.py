"""client -> HAProxy (mode tcp, unmodified, from Debian) -> server for the life of a session
(examples/haproxy.toml): the chain ends at the proxy, which opens its own session to the server;
data exact both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from dysco.testbed import Testbed

from .conftest import blob, ctl

pytestmark = [pytest.mark.root, pytest.mark.parametrize("testbed", ["haproxy"], indirect=True)]


def test_haproxy_for_the_life_of_a_session(testbed: Testbed, tmp_path: Path) -> None:
    tb = testbed
    pidfile = Path(tb.plan.haproxy_files(tb.plan.host("proxy"))[1])
    assert pidfile.read_text().split(), "HAProxy runs"
    server, _ = blob(tb, tmp_path, 9000, 3 << 20, 3 << 20)
    assert server[5] == "10.0.2.2", "the server's session is HAProxy's own"
    for name in ("client", "proxy"):
        status = ctl(tb, name, "status")
        assert isinstance(status, dict) and status["errors"] == [], (name, status)
