"""``dysco agent`` (the host agent on a P4Runtime target) and ``dysco ctl`` (its management API,
in :mod:`dysco.runtime._ctl`)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from dysco import p4names
from dysco.errors import DyscoError, UserError
from dysco.runtime import _ctl as ctl
from dysco.runtime import _ctl_mbox as ctl_mbox
from dysco.runtime._mgmt import DEFAULT_SOCKET, ManagementServer
from dysco.runtime.core import STATE_HOOKS

READY_LINE = "dysco agent: ready ({name}, P4Runtime {p4runtime}, management {mgmt})"
METRICS_LINE = "dysco agent: metrics on"
APPLY_WAIT_S = 24 * 3600.0
"""A set from etcd waits this long at most for the agent's NIC connection."""

_AGENT_EPILOG = """\
example:
  dysco switch --no-p4 -i 1@nic-host -i 2@nic-net -- --cpu-port 255 --grpc-server-addr 127.0.0.1:9559
  dysco agent --p4runtime 127.0.0.1:9559 --address 10.0.1.2 --policies examples/chain.dysco \\
      --p4 p4src/dysco.p4 --mgmt /tmp/dysco-client.sock --metrics 127.0.0.1:9100

The agent pushes the pipeline (--p4, or --p4info with --device-config for bmv2), writes the
classifier compiled from --policies, and serves until SIGINT or SIGTERM.  Once it is primary
and the classifier is written it prints one line starting with "dysco agent: ready".  SIGHUP
reloads the policy file (as `dysco ctl policies reload` does; live sessions are not touched);
with --etcd it reads the agent's policy keys in etcd again instead.
See docs/operations.md.
"""


def _state_hook(args: argparse.Namespace) -> Any:
    """The hook of ``--state-hook`` (None without it)."""
    if args.state_netns and not args.state_hook:
        raise UserError("--state-netns is for --state-hook")
    if args.state_hook is None:
        return None
    from dysco.runtime._conntrack import ConntrackHook

    if args.state_netns and not os.path.exists(f"/run/netns/{args.state_netns}"):
        raise UserError(f"--state-netns {args.state_netns!r}: no such network namespace")
    return ConntrackHook(args.state_netns)


def register(subparsers: Any) -> None:
    a: argparse.ArgumentParser = subparsers.add_parser(
        "agent",
        help="run the Dysco host agent on a P4Runtime target",
        description="Run the Dysco agent: sets up service chains for the sessions the NIC punts, "
        "keeps the NIC's session tables and tears sessions down.",
        epilog=_AGENT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument(
        "--p4runtime", default="127.0.0.1:9559", metavar="ADDR", help="the target's P4Runtime server"
    )
    a.add_argument("--device-id", type=int, default=0, help="P4Runtime device id (default 0)")
    a.add_argument("--election-id", type=int, default=1, help="P4Runtime election id (default 1)")
    a.add_argument("--address", required=True, metavar="IP", help="this host's IPv4 address")
    a.add_argument("--name", help="name in logs and status (default: the address)")
    a.add_argument("--policies", metavar="FILE", help="policy file (docs/policy-language.md)")
    a.add_argument(
        "--p4", metavar="FILE", help="the data-plane program for `dysco switch`, e.g. p4src/dysco.p4"
    )
    a.add_argument("--p4info", metavar="FILE", help="P4Info (.txtpb, .txt or .bin), with --device-config")
    a.add_argument("--device-config", metavar="FILE", help="the target's device config (bmv2: p4c's JSON)")
    a.add_argument(
        "--control-port",
        type=int,
        default=p4names.CONTROL_UDP_PORT,
        help=f"UDP port of Dysco control messages (default {p4names.CONTROL_UDP_PORT})",
    )
    a.add_argument(
        "--mgmt", default=DEFAULT_SOCKET, metavar="SOCKET", help=f"management socket ({DEFAULT_SOCKET})"
    )
    a.add_argument(
        "--idle-timeout", type=float, default=300.0, metavar="SECONDS", help="session idle timeout"
    )
    a.add_argument("--linger", type=float, default=2.0, metavar="SECONDS", help="state kept after both FINs")
    a.add_argument(
        "--punt-limit",
        action="append",
        default=[],
        metavar="REASON=RATE[/BURST]",
        help="punts per second (and burst) the NIC lets through to the agent for one reason, e.g. "
        "policy_syn=500/100 or two_path=off; repeatable; the rest keep their defaults (docs/security.md)",
    )
    a.add_argument("--p4runtime-ca", metavar="PEM", help="use TLS: trust the switch by these CA certificates")
    a.add_argument("--p4runtime-cert", metavar="PEM", help="this agent's certificate (with --p4runtime-ca)")
    a.add_argument("--p4runtime-key", metavar="PEM", help="this agent's private key (with --p4runtime-cert)")
    a.add_argument(
        "--agentless",
        action="append",
        default=[],
        metavar="NET",
        help="destinations without an agent (CIDR, repeatable): chains toward them end at their last hop",
    )
    a.add_argument(
        "--splice",
        action="store_true",
        help="watch the handshakes of local applications' sessions, so a proxy here can splice them",
    )
    a.add_argument(
        "--keys",
        metavar="FILE",
        help="the trust domain's key file (docs/security.md): seal every Dysco SYN payload and control "
        "message this agent sends and refuse any it receives that does not verify",
    )
    a.add_argument(
        "--state-hook",
        choices=STATE_HOOKS,
        help="this middlebox's per-session state moves to the new instance when a reconfiguration "
        "replaces it (conntrack: the netfilter connection tracking entry; docs/operations.md)",
    )
    a.add_argument(
        "--state-netns",
        default="",
        metavar="NAME",
        help="the network namespace the middlebox application runs in (default: the agent's)",
    )
    a.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (port 0: any free port; "
        "docs/operations.md lists them)",
    )
    a.add_argument(
        "--etcd",
        metavar="URL",
        help="take policies from the fleet's etcd (http://HOST:PORT), register there and report "
        "(docs/fleet.md); without etcd the agent keeps serving on the policies it has",
    )
    a.add_argument(
        "--etcd-prefix", default="/dysco/", metavar="PREFIX", help="the fleet's keys in etcd (/dysco/)"
    )
    a.add_argument("--group", default="", metavar="NAME", help="this agent's group in the fleet")
    a.add_argument(
        "--etcd-ca", metavar="PEM", help="etcd over TLS (https://): trust its certificate by these CAs"
    )
    a.add_argument("--etcd-cert", metavar="PEM", help="this agent's certificate for etcd (with --etcd-key)")
    a.add_argument("--etcd-key", metavar="PEM", help="this agent's private key for etcd")
    a.add_argument("--etcd-user", metavar="NAME", help="this agent's etcd user (etcd with access control)")
    a.add_argument(
        "--etcd-password-file", metavar="FILE", help="that user's password (the file's first line)"
    )
    a.set_defaults(handler=agent_main)

    ctl_verbs, common = ctl.register(subparsers)
    ctl_mbox.register(ctl_verbs, common)
    from dysco.runtime.fleet import _cli as fleet_cli

    fleet_cli.register(subparsers)


# ---- dysco agent -------------------------------------------------------------------------------


def _pipeline(args: argparse.Namespace) -> Any:
    from google.protobuf import text_format

    from dysco.proto.p4.config.v1 import p4info_pb2
    from dysco.runtime.p4rt import Pipeline

    if args.p4 and (args.p4info or args.device_config):
        raise UserError("give either --p4 or --p4info with --device-config, not both")
    if args.p4:
        from dysco.softswitch import load_program

        path = Path(args.p4)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        program = load_program(str(path))
        return Pipeline(program.p4info, program.device_config())
    if not (args.p4info and args.device_config):
        raise UserError("the data-plane program is missing: give --p4 FILE or --p4info and --device-config")
    info = p4info_pb2.P4Info()
    p4info = Path(args.p4info)
    try:
        if p4info.suffix == ".bin":
            info.ParseFromString(p4info.read_bytes())
        else:
            text_format.Parse(p4info.read_text(), info, allow_unknown_field=True)
        config = Path(args.device_config).read_bytes()
    except OSError as exc:
        raise UserError(f"{exc.filename}: {exc.strerror}") from None
    except text_format.ParseError as exc:
        raise UserError(f"{p4info}: not a P4Info text file: {exc}") from None
    return Pipeline(info, config)


def settings_from_args(args: argparse.Namespace) -> Any:
    from dysco.compiler import Options, compile_text, read_policies
    from dysco.compiler.p4rt import classifier_capacity
    from dysco.runtime.core import SECOND, Config
    from dysco.runtime.core._types import ip_int
    from dysco.runtime.p4rt import Settings

    try:
        address = ip_int(args.address)
    except ipaddress.AddressValueError:
        raise UserError(f"--address {args.address!r}: not an IPv4 address") from None
    pipeline = _pipeline(args)
    policies = None
    if args.policies:  # placed within what the pipeline's classifier holds, the rest in software
        options = Options(capacity=classifier_capacity(pipeline.p4info))
        policies = compile_text(read_policies(args.policies), args.policies, options)
    try:
        agentless = tuple(ipaddress.IPv4Network(net) for net in args.agentless)
    except ValueError as exc:
        raise UserError(f"--agentless: {exc}") from None
    config = Config(
        address=address,
        name=args.name or args.address,
        agentless=agentless,
        idle_timeout=int(args.idle_timeout * SECOND),
        linger=int(args.linger * SECOND),
        splice=args.splice,
        keys=_keys(args.keys),
    )
    from dysco.runtime.p4rt import _limits

    limits = _limits.with_overrides(_limits.parse_limit(text) for text in args.punt_limit)
    return Settings(
        limits=limits,
        tls=_client_tls(args),
        p4runtime=args.p4runtime,
        config=config,
        pipeline=pipeline,
        policies=policies,
        device_id=args.device_id,
        election_id=args.election_id,
        control_port=args.control_port,
        policies_file=args.policies or "",
        state_hook=_state_hook(args),
    )


async def _status(service: Any, server: ManagementServer, fleet: Any) -> dict[str, object]:
    status: dict[str, object] = await service.status_with_drops()
    status = {**status, "management": dict(sorted(server.counters.items()))}
    if fleet is not None:
        status["fleet"] = fleet.status()
    return status


def _keys(path: str | None) -> Any:
    """The key ring of ``--keys``; None without it."""
    if path is None:
        return None
    from dysco.runtime.core._auth import KeyRing

    return KeyRing.load(path)


def _client_tls(args: argparse.Namespace) -> Any:
    """The TLS settings for the P4Runtime connection, files read now; None for plain text."""
    from dysco.runtime.p4rt import ClientTls

    if not args.p4runtime_ca:
        if args.p4runtime_cert or args.p4runtime_key:
            raise UserError("--p4runtime-cert and --p4runtime-key need --p4runtime-ca")
        return None
    if bool(args.p4runtime_cert) != bool(args.p4runtime_key):
        raise UserError("--p4runtime-cert and --p4runtime-key go together")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None

    ca = read(args.p4runtime_ca)
    assert ca is not None
    return ClientTls(ca, read(args.p4runtime_cert), read(args.p4runtime_key))


async def serve(settings: Any, mgmt: str, metrics: str | None = None, fleet: Any = None) -> None:
    """Run the agent and its management socket (and its metrics endpoint, and its side of the
    fleet when ``fleet`` has its settings) until SIGINT or SIGTERM."""
    from dysco.runtime.p4rt import AgentService

    service = AgentService(settings)
    member = _fleet_agent(service, fleet) if fleet is not None else None
    server = ManagementServer(
        mgmt,
        {
            "status": lambda _: _status(service, server, member),
            "sessions": lambda _: service.sessions(),
            "events": service.events,
            "reconfigure": service.reconfigure,
            "splice": service.splice,
            "leave": service.leave,
            "hops": service.hops,
            "delta": service.delta,
            "policies_reload": service.reload_policies,
        },
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    async def reload_on_hup() -> None:
        if member is not None:  # the policies come from etcd: read them there again
            try:
                line = await member.reread()
            except DyscoError as exc:
                print(f"dysco agent: SIGHUP: policies not re-read: {exc}", file=sys.stderr, flush=True)
                return
            print(f"dysco agent: SIGHUP: policies re-read from etcd: {line}", flush=True)
            return
        try:
            done = await service.reload_policies({})
        except DyscoError as exc:
            print(f"dysco agent: SIGHUP: policies not reloaded: {exc}", file=sys.stderr, flush=True)
            return
        print(f"dysco agent: SIGHUP: policies reloaded: {json.dumps(done)}", flush=True)

    def hup() -> None:
        task = loop.create_task(reload_on_hup(), name=f"{settings.config.name}-sighup")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)
    await server.start()
    exporter = _metrics(service, server, metrics, member) if metrics else None
    if member is not None and exporter is not None:  # the registration names the real port
        member.settings = replace(member.settings, metrics=f"http://{exporter.address}/metrics")
    try:
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(service.run(), name=f"{settings.config.name}-service")

            async def announce() -> None:
                await service.ready.wait()
                name, p4rt = settings.config.name, settings.p4runtime
                print(READY_LINE.format(name=name, p4runtime=p4rt, mgmt=mgmt), flush=True)

            ready = tg.create_task(announce(), name=f"{settings.config.name}-announce")
            tasks = [run, ready]
            if member is not None:
                tasks.append(tg.create_task(member.run(), name=f"{settings.config.name}-fleet"))
            await stop.wait()
            for task in tasks:
                task.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await server.close()
        if exporter is not None:
            exporter.close()


def _metrics(service: Any, server: ManagementServer, address: str, member: Any) -> Any:
    """The metrics endpoint of ``--metrics``, serving from now on (:mod:`dysco.runtime.p4rt._metrics`)."""
    from dysco import metrics
    from dysco.runtime.p4rt._metrics import AgentCollector

    extra = None
    if member is not None:
        from dysco.runtime.fleet import metric_families

        extra = functools.partial(metric_families, member)
    collector = AgentCollector(service, asyncio.get_running_loop(), lambda: server.counters, extra)
    exporter = metrics.serve(address, collector)
    print(f"{METRICS_LINE} http://{exporter.address}/metrics", flush=True)
    return exporter


def _fleet_settings(args: argparse.Namespace) -> Any:
    """The fleet settings of ``--etcd`` (None without it); bad flags refused now."""
    if args.etcd is None:
        if (
            args.group
            or args.etcd_prefix != "/dysco/"
            or args.etcd_ca
            or args.etcd_cert
            or args.etcd_key
            or (args.etcd_user or args.etcd_password_file)
        ):
            raise UserError("--group, --etcd-prefix, --etcd-ca/cert/key and --etcd-user are for --etcd")
        return None
    from dysco import __version__
    from dysco.runtime.fleet import FleetSettings, Layout, parse_url
    from dysco.runtime.fleet._layout import check_name
    from dysco.runtime.fleet._store import read_tls, read_user

    name = check_name(args.name or args.address, "--name")
    group = check_name(args.group, "--group") if args.group else ""
    metrics = f"http://{args.metrics}/metrics" if args.metrics else ""
    tls = read_tls(args.etcd_ca, args.etcd_cert, args.etcd_key)
    endpoint = parse_url(args.etcd, tls=tls, user=read_user(args.etcd_user, args.etcd_password_file))
    return FleetSettings(endpoint, name, args.address, group, Layout(args.etcd_prefix), metrics, __version__,
                         keys=args.keys is not None)  # fmt: skip


def _fleet_agent(service: Any, settings: Any) -> Any:
    """The agent's side of the fleet: sets from etcd go through the live reload."""
    from dysco.runtime.core._types import prefixed
    from dysco.runtime.fleet import FleetAgent

    async def apply(text: str, source: str) -> object:
        await service.wait_until(lambda: service.connected, APPLY_WAIT_S)  # the NIC's classifier
        done: object = await service.reload_policies({"file": source, "text": text})
        return done

    def sessions() -> int:
        return len(service.agent.sessions)

    def choose(addr: str, path: Any) -> str | None:
        """(drain) Another instance of ``addr``'s type for a session through it."""
        from dysco.runtime.core._types import ip_int, ip_str

        new = service.agent.drain_target(ip_int(addr), [ip_int(a) for a in path])
        return None if new is None else ip_str(new)

    def notes() -> list[str]:
        from dysco.runtime.core._types import ip_str

        drained = service.agent.drained_types().items()
        return [
            f"{kind}: every instance is drained ({' '.join(map(ip_str, addrs))}): its chains' new sessions "
            "are refused"
            for kind, addrs in drained
        ]

    async def execute(cmd: Any) -> Any:
        """A fleet command on the sessions this agent anchors on the left."""
        from dysco.runtime.fleet._commands import carry_out

        outcome = await carry_out(
            cmd, settings.name, settings.address, service.sessions(), service.reconfigure,
            choose=choose, notes=notes() if cmd.op == "drain" else (),
        )  # fmt: skip
        o = outcome
        counts = f"{o.moved} moved, {o.failed} failed, {o.skipped} skipped, {o.refused} refused"
        print(f"dysco agent: etcd: command {cmd.id} ({cmd}): {counts}", flush=True)
        return outcome

    log = prefixed("dysco.runtime.fleet", settings.name, "fleet")
    return FleetAgent(
        settings, apply, sessions, log, execute, lambda line: print(f"dysco agent: {line}", flush=True),
        drain=service.drain, set_keys=service.set_keys if settings.keys else None,
    )  # fmt: skip


def agent_main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.metrics:
        from dysco.metrics import parse_address

        parse_address(args.metrics)  # a bad flag is refused before anything starts
    fleet = _fleet_settings(args)
    asyncio.run(serve(settings, args.mgmt, args.metrics, fleet))
    return 0
