"""p4runtime-shell's side of its compatibility test; runs in .venv-p4rtsh, not in the project.

    .venv-p4rtsh/bin/python p4rtsh_session.py ADDR setup --p4info P4INFO --config DEVICE_CONFIG
    .venv-p4rtsh/bin/python p4rtsh_session.py ADDR traffic --packet-out HEX

That environment holds p4runtime-shell 0.0.6 with the protobuf 3.20 and p4runtime 1.4.1 it pins
(requirements-p4rtsh.lock); this file imports nothing of dysco's. Each phase is one shell
session, used as a person would at its prompt, against ``dysco switch`` running
tests/softswitch_server/programs/fwd.p4. It prints one JSON object of what the shell saw, for
the test (test_p4runtime_shell.py) to judge; any shell error ends it with a traceback and a
non-zero status.

- ``setup``: push the pipeline (FwdPipeConfig), insert fwd 1 -> forward(2) and read it back,
  a duplicate insert (the shell's write error), fwd 2 -> to_cpu, a new default action, a
  multicast group, each read back.
- ``traffic``: connect without a config (the shell fetches the P4Info from the switch), read
  the port_in counter of ports 1 and 2, send a packet-out to port 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from typing import Any

import google.protobuf
import p4runtime_sh.shell as sh
from p4runtime_sh.p4runtime import P4RuntimeWriteException

FWD = "MyIngress.fwd"


def setup() -> dict[str, Any]:
    out: dict[str, Any] = {}
    te = sh.TableEntry(FWD)(action="MyIngress.forward")
    te.match["standard_metadata.ingress_port"] = "1"
    te.action["port"] = "2"
    te.insert()
    out["read_back"] = [
        [e.match["standard_metadata.ingress_port"].exact.value.hex(), e.action.action_name,
         e.action["port"].value.hex()]
        for e in sh.TableEntry(FWD).read()
    ]  # fmt: skip
    try:
        te.insert()
    except P4RuntimeWriteException as exc:
        out["duplicate"] = {"text": str(exc), "errors": [[i, e.canonical_code] for i, e in exc.errors]}
    punt = sh.TableEntry(FWD)(action="MyIngress.to_cpu")
    punt.match["standard_metadata.ingress_port"] = "2"
    punt.insert()
    default = sh.TableEntry(FWD)(is_default=True)
    default.action = sh.Action("MyIngress.forward")
    default.action["port"] = "5"
    default.modify()
    (got,) = list(sh.TableEntry(FWD)(is_default=True).read())
    out["default"] = [got.action.action_name, got.action["port"].value.hex()]
    sh.MulticastGroupEntry(7).add(1, 1).add(2, 1).insert()
    (group,) = list(sh.MulticastGroupEntry(7).read())
    out["multicast"] = [[r.egress_port, r.instance] for r in group.replicas]
    return out


def traffic(packet_out: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"counters": {}}
    for port in (1, 2):
        counter = sh.CounterEntry("MyIngress.port_in")
        counter.index = port
        (cell,) = list(counter.read())
        out["counters"][str(port)] = [cell.data.packet_count, cell.data.byte_count]
    sh.PacketOut(packet_out, egress_port="1", _pad="0").send()
    return out


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("addr")
    parser.add_argument("phase", choices=("setup", "traffic"))
    parser.add_argument("--p4info")
    parser.add_argument("--config")
    parser.add_argument("--packet-out", type=bytes.fromhex, default=b"")
    args = parser.parse_args()
    config = sh.FwdPipeConfig(args.p4info, args.config) if args.phase == "setup" else None
    sh.setup(device_id=0, grpc_addr=args.addr, election_id=(0, 1), config=config)
    try:
        out = setup() if args.phase == "setup" else traffic(args.packet_out)
    finally:
        sh.teardown()  # the stream's end follows the queued packet-out
    out["versions"] = {
        "protobuf": google.protobuf.__version__,
        "p4runtime-shell": metadata.version("p4runtime-shell"),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
