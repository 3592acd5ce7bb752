"""The agent's P4Runtime connection over TLS, against a switch that requires client certificates."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dysco.compiler import compile_text
from dysco.runtime.core import Config
from dysco.runtime.core._types import ip_int
from dysco.runtime.p4rt import AgentService, ClientTls, Pipeline, Settings
from dysco.softswitch import Switch
from dysco.softswitch.api import Program
from dysco.softswitch.server import SoftSwitchServer, TlsConfig
from tests.pki import make_pki

WAIT_S = 20.0
POLICY = "middlebox fw { instances 10.0.2.2; }\npolicy web: tcp dst port 80 -> fw\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls_switch(pki: Path) -> Iterator[SoftSwitchServer]:
    tls = TlsConfig(
        (pki / "server.crt").read_bytes(), (pki / "server.key").read_bytes(), (pki / "ca.crt").read_bytes()
    )
    server = SoftSwitchServer(Switch(None, cpu_port=255), address="127.0.0.1:0", tls=tls)
    server.start()
    yield server
    server.stop()


def _settings(program: Program, port: int, tls: ClientTls) -> Settings:
    return Settings(
        p4runtime=f"127.0.0.1:{port}",
        config=Config(address=ip_int("10.0.1.2"), name="client"),
        pipeline=Pipeline(program.p4info, program.device_config()),
        policies=compile_text(POLICY),
        tls=tls,
    )


def test_agent_with_a_client_certificate_gets_ready(
    dysco_program: Program, mtls_switch: SoftSwitchServer, pki: Path
) -> None:
    tls = ClientTls(
        (pki / "ca.crt").read_bytes(), (pki / "client.crt").read_bytes(), (pki / "client.key").read_bytes()
    )
    service = AgentService(_settings(dysco_program, mtls_switch.port, tls))

    async def run() -> None:
        task = asyncio.create_task(service.run(), name="test-agent")
        await asyncio.wait_for(service.ready.wait(), WAIT_S)  # arbitrated, pipeline pushed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def test_agent_without_a_client_certificate_is_refused(
    dysco_program: Program, mtls_switch: SoftSwitchServer, pki: Path
) -> None:
    from dysco.runtime.p4rt import Connection

    log = AgentService(
        _settings(dysco_program, mtls_switch.port, ClientTls((pki / "ca.crt").read_bytes()))
    ).log

    async def connect() -> None:
        async with Connection(
            f"127.0.0.1:{mtls_switch.port}", 0, 1, log, ClientTls((pki / "ca.crt").read_bytes())
        ):
            pass

    with pytest.raises(grpc.RpcError) as info:  # the TLS handshake fails: no client certificate
        asyncio.run(asyncio.wait_for(connect(), WAIT_S))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--p4runtime-cert", "c.pem"], "--p4runtime-cert and --p4runtime-key need --p4runtime-ca"),
        (
            ["--p4runtime-ca", "ca.pem", "--p4runtime-cert", "c.pem"],
            "--p4runtime-cert and --p4runtime-key go together",
        ),
        (["--p4runtime-ca", "/nonexistent/ca.pem"], "cannot read /nonexistent/ca.pem"),
    ],
)
def test_agent_checks_tls_options(flags: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "dysco", "agent", "--p4runtime", "127.0.0.1:1", "--address", "10.0.1.2",
            "--p4", "p4src/dysco.p4", "--mgmt", "/nonexistent/x.sock", *flags]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
