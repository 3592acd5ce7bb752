"""P4Runtime over TLS: server certificates, client authentication, and the CLI's checks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dysco.proto.p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from dysco.softswitch.server import SoftSwitchServer, TlsConfig
from tests.pki import make_pki

from .fake_device import FakeDevice


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _serve(pki: Path, client_auth: bool) -> SoftSwitchServer:
    tls = TlsConfig(
        (pki / "server.crt").read_bytes(),
        (pki / "server.key").read_bytes(),
        (pki / "ca.crt").read_bytes() if client_auth else None,
    )
    server = SoftSwitchServer(FakeDevice(time.monotonic_ns), address="127.0.0.1:0", tls=tls)
    server.start()
    return server


@pytest.fixture
def tls_server(pki: Path) -> Iterator[SoftSwitchServer]:
    server = _serve(pki, client_auth=False)
    yield server
    server.stop()


@pytest.fixture
def mtls_server(pki: Path) -> Iterator[SoftSwitchServer]:
    server = _serve(pki, client_auth=True)
    yield server
    server.stop()


def _capabilities(channel: grpc.Channel) -> str:
    reply = p4runtime_pb2_grpc.P4RuntimeStub(channel).Capabilities(
        p4runtime_pb2.CapabilitiesRequest(), timeout=5
    )
    return str(reply.p4runtime_api_version)


def _secure(server: SoftSwitchServer, pki: Path, with_client_cert: bool) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.crt").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if with_client_cert else None,
        certificate_chain=(pki / "client.crt").read_bytes() if with_client_cert else None,
    )
    return grpc.secure_channel(f"127.0.0.1:{server.port}", creds)


def test_tls_serves_a_client_that_trusts_the_ca(tls_server: SoftSwitchServer, pki: Path) -> None:
    with _secure(tls_server, pki, with_client_cert=False) as channel:
        assert _capabilities(channel)


def test_tls_refuses_plain_text(tls_server: SoftSwitchServer) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        _capabilities(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_auth_needs_a_client_certificate(mtls_server: SoftSwitchServer, pki: Path) -> None:
    with _secure(mtls_server, pki, with_client_cert=True) as channel:
        assert _capabilities(channel)
    with _secure(mtls_server, pki, with_client_cert=False) as channel, pytest.raises(grpc.RpcError) as info:
        _capabilities(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-server-cert", "x.pem"], "TLS options need --grpc-server-ssl"),
        (["--grpc-server-ssl"], "--grpc-server-ssl needs --grpc-server-cert and --grpc-server-key"),
        (
            [
                "--grpc-server-ssl",
                "--grpc-server-cert",
                "a",
                "--grpc-server-key",
                "b",
                "--grpc-server-with-client-auth",
            ],
            "--grpc-server-with-client-auth needs --grpc-server-cacert",
        ),
        (
            ["--", "--grpc-server-ssl", "--grpc-server-cert", "/nonexistent/c.pem", "--grpc-server-key", "k"],
            "cannot read /nonexistent/c.pem",
        ),
    ],
)
def test_cli_checks_tls_options(flags: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "dysco", "switch", "--no-p4", "--grpc-server-addr", "127.0.0.1:0", *flags]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
