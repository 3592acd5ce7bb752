"""``dysco switch``: the softswitch as a process, command-line compatible with simple_switch_grpc.

    dysco switch -i 1@veth1 -i 2@veth3 --cpu-port 255 build/prog.p4
    dysco switch --no-p4 -i 1@veth1 -- --cpu-port 255 --grpc-server-addr 127.0.0.1:9559

Target options may also follow ``--`` as simple_switch_grpc takes them.  It serves
until SIGINT or SIGTERM, then shuts down cleanly and exits 0; on the ebpf back end a clean stop
removes the program, its maps and pins, unless ``--keep-datapath`` was given or the signal was
SIGUSR1 (an upgrade: the kernel keeps forwarding and the next ``dysco switch`` on the same
interfaces re-adopts the pipeline and its tables, as after a crash).  Once the gRPC server
listens it prints one line, ``softswitch: P4Runtime server listening on ADDR (port N), B
backend``, to stdout, so launchers can wait for it and see which back end (ebpf or python)
carries the packets.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from dysco.errors import UserError
from dysco.softswitch.server._grpc import TlsConfig
from dysco.softswitch.server._ports import PortError, RawSocketPorts
from dysco.softswitch.server._switchd import DEFAULT_ADDRESS, SoftSwitchServer

_log = logging.getLogger("dysco.softswitch.server.cli")

METRICS_LINE = "softswitch: metrics on"
READY_LINE = "softswitch: P4Runtime server listening on {address} (port {port}), {backend} backend"

_EPILOG = """\
example:
  dysco switch -i 1@veth1 -i 2@veth3 --cpu-port 255 --grpc-server-addr 127.0.0.1:9559 prog.p4
  dysco switch --no-p4 -i 1@veth1 -- --cpu-port 255     (simple_switch_grpc style)
  dysco switch --backend ebpf -i 1@veth1 -i 2@veth3 router.p4   (TC programs in the kernel)
  dysco switch --no-p4 --metrics 127.0.0.1:9101 -- --cpu-port 255   (metrics for Prometheus)

The program is a .p4 source (compiled on start) or a device config written by
`dysco p4c`; with --no-p4 a controller pushes it with SetForwardingPipelineConfig.

On the ebpf backend the program and tables are pinned in /sys/fs/bpf/dysco/ and outlive
the process: after a crash (or a stop with --keep-datapath, or SIGUSR1) the kernel keeps
forwarding, and the next `dysco switch` on the same interfaces re-adopts the pipeline,
its entries and its cookie.  A plain stop (SIGINT, SIGTERM) removes everything:
  dysco switch --backend ebpf --no-p4 -i 1@veth1 -i 2@veth3 --keep-datapath
  kill -USR1 PID      (stop this switch now, leave the data path running for an upgrade)
"""


BACKENDS = ("python", "ebpf")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "switch",
        help="run the softswitch P4 target behind a P4Runtime server",
        description="Run the softswitch (a v1model P4 target) behind a P4Runtime gRPC server, "
        "with packet I/O on network interfaces. Flags follow simple_switch_grpc.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target_options(parser)
    parser.add_argument(
        "-i",
        "--interface",
        action="append",
        default=[],
        metavar="N@IFACE",
        help="attach port N to interface IFACE (repeatable)",
    )
    parser.add_argument("--device-id", type=int, default=0, help="P4Runtime device id (default 0)")
    parser.add_argument("--no-p4", action="store_true", help="start without a program")
    parser.add_argument("--drop-port", type=int, default=511, help="the drop port (default 511)")
    parser.add_argument("--thrift-port", type=int, help="accepted for compatibility; ignored")
    parser.add_argument("--log-console", action="store_true", help="accepted for compatibility; use -v")
    parser.add_argument(
        "--idle-poll-interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="how often entries are checked for idle timeout (default 0.5)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="ebpf: the program is compiled for the kernel's TC hook and attached to every -i "
        "interface (needs root, clang-16); python: packets run through the in-process executor. "
        "Default: $DYSCO_BACKEND, else ebpf where it can load (root, clang, libbpf, -i interfaces), "
        "else python with a notice saying why",
    )
    parser.add_argument(
        "--keep-datapath",
        action="store_true",
        help="ebpf: on SIGINT/SIGTERM leave the program, its maps and their pins in the kernel, "
        "still forwarding, for the next `dysco switch` on the same interfaces to re-adopt (an "
        "upgrade); SIGUSR1 does the same without this flag. Default: a stop removes them",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR:PORT",
        help="serve Prometheus metrics (tables, counters, streams) at http://ADDR:PORT/metrics",
    )
    parser.add_argument("program", nargs="?", help="a .p4 program or a device config file")
    parser.add_argument("target_options", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu-port", type=int, help="port whose packets become P4Runtime PacketIn")
    # TLS, with simple_switch_grpc's option names
    parser.add_argument("--grpc-server-ssl", action="store_true", help="serve P4Runtime over TLS")
    parser.add_argument("--grpc-server-cert", metavar="PEM", help="the server's certificate (chain)")
    parser.add_argument("--grpc-server-key", metavar="PEM", help="the server's private key")
    parser.add_argument(
        "--grpc-server-cacert", metavar="PEM", help="CA certificates for client authentication"
    )
    parser.add_argument(
        "--grpc-server-with-client-auth",
        action="store_true",
        help="require a client certificate issued by --grpc-server-cacert",
    )
    parser.add_argument(
        "--grpc-server-addr",
        default=DEFAULT_ADDRESS,
        metavar="ADDR:PORT",
        help=f"where the P4Runtime server listens (default {DEFAULT_ADDRESS})",
    )


def _target_options(args: argparse.Namespace) -> None:
    """Apply options given after ``--`` (simple_switch_grpc's target options)."""
    rest: list[str] = list(args.target_options)
    if args.program is not None and args.program.startswith("-"):
        rest.insert(0, args.program)
        args.program = None
    if not rest:
        return
    target = argparse.ArgumentParser(prog="dysco switch ... --", add_help=False, exit_on_error=False)
    _add_target_options(target)
    tls_names = ("grpc_server_ssl", "grpc_server_cert", "grpc_server_key", "grpc_server_cacert",
                 "grpc_server_with_client_auth")  # fmt: skip
    target.set_defaults(
        cpu_port=args.cpu_port,
        grpc_server_addr=args.grpc_server_addr,
        **{name: getattr(args, name) for name in tls_names},
    )
    try:
        parsed, unknown = target.parse_known_args(rest)
    except argparse.ArgumentError as exc:
        raise UserError(f"bad target option: {exc}") from exc
    positional = [u for u in unknown if not u.startswith("-")]
    if args.program is None and len(positional) == 1:
        args.program = positional[0]
        unknown.remove(positional[0])
    if unknown:
        raise UserError(f"unknown target options: {' '.join(unknown)}")
    args.cpu_port = parsed.cpu_port
    args.grpc_server_addr = parsed.grpc_server_addr
    for name in tls_names:
        setattr(args, name, getattr(parsed, name))


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    """The TLS settings from the options, with every file read now (errors before serving)."""
    if not args.grpc_server_ssl:
        given = [o for o in ("cert", "key", "cacert") if getattr(args, f"grpc_server_{o}")]
        if given or args.grpc_server_with_client_auth:
            raise UserError("TLS options need --grpc-server-ssl")
        return None
    if not args.grpc_server_cert or not args.grpc_server_key:
        raise UserError("--grpc-server-ssl needs --grpc-server-cert and --grpc-server-key")
    if args.grpc_server_with_client_auth and not args.grpc_server_cacert:
        raise UserError("--grpc-server-with-client-auth needs --grpc-server-cacert")

    def read(path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None

    ca = read(args.grpc_server_cacert) if args.grpc_server_with_client_auth else None
    return TlsConfig(read(args.grpc_server_cert), read(args.grpc_server_key), ca)


def parse_interfaces(specs: list[str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for spec in specs:
        num, sep, iface = spec.partition("@")
        if not sep or not iface or not num.isdigit():
            raise UserError(f"bad interface {spec!r}: expected N@IFACE, e.g. 1@veth1")
        port = int(num)
        if port in out:
            raise UserError(f"port {port} given twice ({out[port]} and {iface})")
        out[port] = iface
    return out


def _load(path_text: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        from dysco import softswitch
    except ImportError as exc:  # pragma: no cover - the package is ours
        raise UserError(f"the softswitch executor is not available: {exc}") from exc
    if path.suffix == ".p4":
        return softswitch.load_program(path)  # type: ignore[attr-defined, unused-ignore]
    return softswitch.program_from_device_config(path.read_bytes())  # type: ignore[attr-defined, unused-ignore]


def _make_device(args: argparse.Namespace, program: Any, interfaces: dict[int, str]) -> tuple[Any, Any]:
    """The device for ``--backend`` and the ports the server moves packets through (None: the
    kernel forwards them itself)."""
    if args.backend == "ebpf":
        from dysco.softswitch.targets.ebpf import EbpfSwitch, unavailable

        why = unavailable()
        if why is not None:
            raise UserError(why)
        dev = EbpfSwitch(program, ports=interfaces, cpu_port=args.cpu_port, drop_port=args.drop_port)
        # the kernel forwards between data ports; the server reads only the CPU veth (packet-ins)
        cpu = dev.cpu_interface
        try:
            # with offloads on, packet-ins may be GSO packets: the kernel says so (vnet header)
            return dev, (RawSocketPorts({args.cpu_port: cpu}, vnet_hdr=True) if cpu is not None else None)
        except PortError as exc:
            dev.close()
            raise UserError(str(exc)) from exc
    from dysco.softswitch import Switch  # type: ignore[attr-defined, unused-ignore]

    device = Switch(program, cpu_port=args.cpu_port, drop_port=args.drop_port)
    try:
        # Without interfaces frames leaving on data ports are discarded (packet I/O via P4Runtime only).
        return device, (RawSocketPorts(interfaces) if interfaces else None)
    except PortError as exc:
        raise UserError(str(exc)) from exc


def backend_of(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    why_not_ebpf: Callable[[], str | None] | None = None,
) -> tuple[str, str | None]:
    """The back end for these arguments and, when the default fell back to python, a notice why.

    --backend wins; else :func:`default_backend`, where a switch without interfaces has nothing
    to attach TC programs to and runs on python."""
    if args.backend is not None:
        return str(args.backend), None
    if not args.interface and not environ.get("DYSCO_BACKEND"):
        return "python", "no -i interfaces for TC programs, so the python backend carries packets"
    return default_backend(environ, why_not_ebpf)


def default_backend(
    environ: Mapping[str, str], why_not_ebpf: Callable[[], str | None] | None = None
) -> tuple[str, str | None]:
    """$DYSCO_BACKEND (so launchers that start `dysco switch`, such as the PTF runner's, pick
    the back end without a flag of their own), else ebpf where it can load, else python with
    the one-line reason as the second item."""
    chosen = environ.get("DYSCO_BACKEND")
    if chosen:
        if chosen not in BACKENDS:
            raise UserError(f"DYSCO_BACKEND={chosen}: expected one of {', '.join(BACKENDS)}")
        return chosen, None
    why = (why_not_ebpf or _why_not_ebpf)()
    if why is not None:
        return "python", f"{why}; the python backend carries packets"
    return "ebpf", None


def _why_not_ebpf() -> str | None:
    from dysco.softswitch.targets.ebpf import unavailable

    return unavailable()


def settle_heap() -> None:
    """Once the switch is up, and after each pipeline commit: collect, then move what is alive
    (the compiled program, the server) into the collector's permanent generation, so that the
    collections a large Write sets off walk only what the Write allocated.  With upb protobuf
    a million session entries went in at 52,000 entries/s instead of 44,000 (the program's
    objects were walked again and again).  The previous pipeline's objects are unfrozen first,
    so that its garbage is collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _metrics(server: SoftSwitchServer, backend: str, address: str) -> Any:
    """The metrics endpoint of ``--metrics`` (:mod:`._metrics`), serving from now on."""
    from dysco import metrics
    from dysco.softswitch.server._metrics import SwitchCollector

    exporter = metrics.serve(address, SwitchCollector(server.core, backend, server.kernel_drops))
    print(f"{METRICS_LINE} http://{exporter.address}/metrics", flush=True)
    return exporter


def run(args: argparse.Namespace) -> int:
    _target_options(args)
    args.backend, notice = backend_of(args, os.environ)
    if notice is not None:
        print(f"dysco switch: {notice}", file=sys.stderr, flush=True)
    if args.program is not None and args.no_p4:
        raise UserError("give either a program or --no-p4, not both")
    if args.program is None and not args.no_p4:
        raise UserError("no program given (use --no-p4 to start without one)")
    cpu_port = args.cpu_port
    if cpu_port is not None and not (0 < cpu_port < 512 and cpu_port != args.drop_port):
        raise UserError(f"--cpu-port {cpu_port}: must fit 9 bits, not be 0 nor the drop port")
    interfaces = parse_interfaces(args.interface)
    if cpu_port is not None and cpu_port in interfaces:
        raise UserError(f"--cpu-port {cpu_port} is also attached to interface {interfaces[cpu_port]}")
    if args.thrift_port is not None:
        _log.info("[switch] --thrift-port %d ignored (softswitch has no Thrift server)", args.thrift_port)

    tls = _tls(args)
    if args.metrics:
        from dysco.metrics import parse_address

        parse_address(args.metrics)  # refused before anything starts
    program = _load(args.program) if args.program is not None else None
    device, ports = _make_device(args, program, interfaces)
    server = SoftSwitchServer(
        device,
        device_id=args.device_id,
        address=args.grpc_server_addr,
        ports=ports,
        idle_poll_interval=args.idle_poll_interval,
        tls=tls,
        on_commit=settle_heap,
    )
    stop = threading.Event()
    keep = [bool(args.keep_datapath)]
    exporter: Any = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            keep[0] = True
        _log.info("[switch] signal %d: stopping%s", signum, " (keeping the data path)" if keep[0] else "")
        stop.set()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    previous = {s: signal.signal(s, on_signal) for s in signals}
    try:
        try:
            server.start()
        except OSError as exc:
            if ports is not None:
                ports.close()
            raise UserError(str(exc)) from exc
        if args.metrics:
            exporter = _metrics(server, args.backend, args.metrics)
        settle_heap()
        ready = READY_LINE.format(address=args.grpc_server_addr, port=server.port, backend=args.backend)
        print(ready, flush=True)
        for port, iface in sorted(interfaces.items()):
            _log.info("[switch] port %d <-> %s", port, iface)
        stop.wait()
    finally:
        if exporter is not None:
            exporter.close()
        server.stop()
        if args.backend == "ebpf":
            # removes its qdiscs, filters, maps and pins, or leaves them forwarding
            device.close(keep_datapath=keep[0])
        elif keep[0]:
            _log.warning("[switch] the python backend keeps nothing: its tables end with the process")
        for s, handler in previous.items():
            signal.signal(s, handler)
    sys.stdout.flush()
    return 0
