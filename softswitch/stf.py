"""Run tests in p4c's STF format against the softswitch, with the bmv2 STF runner's semantics.

Statements run in file order; ``expect`` lines only record expectations.  At the
end every port's received packets are compared, in order, with its expectations:
``*`` is a don't-care nibble, a trailing ``$`` demands the exact length (otherwise
the expectation is a prefix), and the number of packets per port must match.
Tables, actions and keys are named exactly or by a unique dotted suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dysco.errors import SourceError, SourcePos, UserError
from dysco.proto.p4.config.v1 import p4info_pb2

from .api import (
    ActionCall,
    CloneSession,
    CounterValue,
    Device,
    EntryError,
    FieldMatch,
    MeterConfig,
    Replica,
    TableEntry,
)
from .program import P4Program
from .switch import Switch


@dataclass
class Expectation:
    port: int
    data: str | None  # upper-case hex with '*', None: any packet
    exact: bool
    line: int


@dataclass
class StfResult:
    passed: bool
    report: str
    received: dict[int, list[bytes]] = field(default_factory=dict)


class _Runner:
    def __init__(self, program: P4Program, path: str, text: str, device: Device) -> None:
        self.prog = program
        self.path = path
        self.text = text
        self.sw = device
        self.info = program.p4info
        self.expect: list[Expectation] = []
        self.received: dict[int, list[bytes]] = {}
        self.entries: dict[str, TableEntry] = {}
        self.nodes: list[tuple[int, tuple[int, ...]]] = []
        self.groups: dict[int, list[int]] = {}
        self.line = 0
        self.notes: list[str] = []

    def err(self, msg: str, col: int = 1) -> SourceError:
        return SourceError(msg, SourcePos(self.path, self.line, col), self.text)

    # ------------------------------------------------------------ names
    def resolve(self, name: str, names: list[str], what: str) -> str:
        name = name.replace("$", ".").replace("[", ".").replace("]", "")
        if name in names:
            return name
        hits = [
            n
            for n in names
            if n.endswith("." + name) or n.replace("[", ".").replace("]", "").endswith("." + name)
        ]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise self.err(f"unknown {what} {name!r}")
        raise self.err(f"ambiguous {what} {name!r}: {', '.join(sorted(hits))}")

    def table(self, name: str) -> object:
        tables = {t.preamble.name: t for t in self.info.tables}
        return tables[self.resolve(name, list(tables), "table")]

    # ------------------------------------------------------------ statements
    def run(self) -> StfResult:
        for n, raw in enumerate(self.text.splitlines(), start=1):
            self.line = n
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            cmd, _, rest = line.partition(" ")
            try:
                self.statement(cmd.lower(), rest.strip())
            except EntryError as exc:
                raise self.err(f"{cmd}: {exc.message} ({exc.code})") from None
        return self.compare()

    def statement(self, cmd: str, rest: str) -> None:
        if cmd == "packet":
            port, data = self.port_and_data(rest)
            if data is None or "*" in data:
                raise self.err("packet needs hex data without wildcards")
            for p, frame in self.sw.process(port, bytes.fromhex(data)):
                self.received.setdefault(p, []).append(frame)
        elif cmd == "expect":
            exact = rest.endswith("$")
            port, data = self.port_and_data(rest.rstrip("$").strip())
            self.expect.append(Expectation(port, data, exact, self.line))
        elif cmd == "add":
            self.add(rest)
        elif cmd == "setdefault":
            self.setdefault(rest)
        elif cmd == "remove":
            if rest.strip() != "all":
                raise self.err("only `remove all` is supported")
            for e in self.sw.read_entries():
                self.sw.write_entry("delete", e)
        elif cmd in ("wait", "no_packet"):
            pass
        elif cmd == "mirroring_add":
            sid, port = self.ints(rest, 2)
            self.sw.set_clone_session(CloneSession(sid, (Replica(port, 0),)))
        elif cmd == "mc_mgrp_create":
            (grp,) = self.ints(rest, 1)
            self.groups[grp] = []
            self.sync_group(grp)
        elif cmd == "mc_node_create":
            vals = self.ints(rest, -1)
            if not vals:
                raise self.err("mc_node_create needs a replication id and ports")
            self.nodes.append((vals[0], tuple(vals[1:])))
        elif cmd == "mc_node_associate":
            grp, node = self.ints(rest, 2)
            if grp not in self.groups or not 0 <= node < len(self.nodes):
                raise self.err(f"no multicast group {grp} or node {node}")
            self.groups[grp].append(node)
            self.sync_group(grp)
        elif cmd in ("register_write", "register_read", "register_reset"):
            self.register(cmd, rest)
        elif cmd in ("counter_write", "counter_read", "counter_reset", "check_counter"):
            self.counter(cmd, rest)
        elif cmd in ("meter_set_rates", "meter_array_set_rates"):
            self.meter(rest)
        else:
            raise self.err(f"unknown STF command {cmd!r}")

    def ints(self, rest: str, n: int) -> list[int]:
        try:
            vals = [int(x, 0) for x in rest.split()]
        except ValueError:
            raise self.err(f"expected numbers, got {rest!r}") from None
        if n >= 0 and len(vals) != n:
            raise self.err(f"expected {n} numbers, got {len(vals)}")
        return vals

    def sync_group(self, grp: int) -> None:
        reps = [
            Replica(port, rid)
            for node in self.groups[grp]
            for rid, ports in [self.nodes[node]]
            for port in ports
        ]
        self.sw.set_multicast_group(grp, reps)

    def port_and_data(self, rest: str) -> tuple[int, str | None]:
        parts = rest.split(None, 1)
        if not parts:
            raise self.err("missing port")
        try:
            port = int(parts[0], 0)
        except ValueError:
            raise self.err(f"bad port {parts[0]!r}") from None
        if len(parts) == 1:
            return port, None
        data = re.sub(r"\s+", "", parts[1]).upper()
        if not re.fullmatch(r"[0-9A-F*]*", data):
            raise self.err("packet data must be hex digits (and * in expect)")
        if len(data) % 2:
            raise self.err("packet data has an odd number of hex digits")
        return port, data

    # ------------------------------------------------------------ tables
    def parse_call(self, text: str) -> tuple[str, dict[str, str]]:
        m = re.fullmatch(r"\s*([\w$.\[\]]+)\s*(?:\((.*)\))?\s*", text)
        if m is None:
            raise self.err(f"expected an action call, got {text!r}")
        args: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
            k, sep, v = part.partition(":")
            if not sep:
                raise self.err(f"action argument {part!r} needs name:value")
            args[k.strip()] = v.strip()
        return m.group(1), args

    def action(self, table: object, name: str, args: dict[str, str]) -> ActionCall:
        acts = {a.preamble.name: a for a in self.info.actions}
        allowed = {r.id for r in table.action_refs}  # type: ignore[attr-defined]
        names = [n for n, a in acts.items() if a.preamble.id in allowed]
        a = acts[self.resolve(name, names, "action")]
        vals = []
        for p in a.params:
            if p.name not in args:
                raise self.err(f"action {a.preamble.name}: missing argument {p.name}")
            vals.append(self.number(args.pop(p.name), p.bitwidth))
        if args:
            raise self.err(f"action {a.preamble.name} has no parameter {', '.join(args)}")
        return ActionCall(a.preamble.id, tuple(vals))

    def number(self, text: str, width: int) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise self.err(f"bad number {text!r}") from None
        return v & ((1 << width) - 1)

    def add(self, rest: str) -> None:
        entry_id = None
        if "=" in rest.rsplit(")", 1)[-1]:
            rest, _, eid = rest.rpartition("=")
            entry_id = eid.strip()
        head, paren, tail = rest.partition("(")
        words = head.split()
        if len(words) < 2 or not paren:
            raise self.err("add needs: add TABLE [PRIORITY] KEY:VALUE ... ACTION(ARGS)")
        tname, *keys, aname = words
        table = self.table(tname)
        priority = 0
        if keys and re.fullmatch(r"\d+", keys[0]):
            priority = int(keys.pop(0))
        fields = {f.name: f for f in table.match_fields}  # type: ignore[attr-defined]
        match: list[FieldMatch] = []
        for kv in keys:
            k, sep, v = kv.rpartition(":")
            if not sep:
                raise self.err(f"key {kv!r} needs name:value")
            k = valid_key(k)
            f = fields[self.resolve(k, list(fields), "key")]
            fm = self.field_match(f, v)
            if fm is not None:
                match.append(fm)
        kinds = {p4info_pb2.MatchField.MatchType.Name(f.match_type) for f in fields.values()}
        needs_prio = bool(kinds & {"TERNARY", "RANGE", "OPTIONAL"})
        if needs_prio and priority == 0:
            priority = 1
        if not needs_prio:
            priority = 0
        call = self.action(table, aname, self.parse_call(aname + paren + tail)[1])
        entry = TableEntry(table.preamble.id, tuple(sorted(match, key=lambda m: m.field_id)), call, priority)  # type: ignore[attr-defined]
        self.sw.write_entry("insert", entry)
        if entry_id:
            self.entries[entry_id] = entry

    def field_match(self, f: object, text: str) -> FieldMatch | None:
        fid, w, mt = f.id, f.bitwidth, f.match_type  # type: ignore[attr-defined]
        full = (1 << w) - 1
        kind = p4info_pb2.MatchField.MatchType.Name(mt).lower()
        if text in ("*", "_"):
            if kind == "exact":
                raise self.err(f"exact key {f.name} cannot be a wildcard")  # type: ignore[attr-defined]
            return None
        if "&&&" in text:
            v, m = (self.number(x, w) for x in text.split("&&&"))
            return FieldMatch(fid, "ternary", v & m, mask=m)
        for sep in ("->", ".."):
            if sep in text and kind == "range":
                lo, hi = (self.number(x, w) for x in text.split(sep))
                return FieldMatch(fid, "range", lo, high=hi)
        if "/" in text:
            vtext, ptext = text.split("/", 1)
            val = self.number(vtext, w)
            p = int(ptext) if ptext.isdigit() else -1
            if not 0 <= p <= w:
                raise self.err(f"bad prefix length in {text!r}")
            if kind == "ternary":
                m = full ^ ((1 << (w - p)) - 1)
                return FieldMatch(fid, "ternary", val & m, mask=m)
            return FieldMatch(fid, "lpm", val & (full ^ ((1 << (w - p)) - 1)), prefix_len=p) if p else None
        if "*" in text:
            base = 16 if text.lower().startswith("0x") else 2 if text.lower().startswith("0b") else 0
            if not base:
                raise self.err(f"wildcards need a hex or binary value: {text!r}")
            digits = text[2:]
            bits = 4 if base == 16 else 1
            value = int(digits.replace("*", "0"), base)
            mask = int("".join("0" if d == "*" else ("F" if base == 16 else "1") for d in digits), base)
            shift = max(0, w - len(digits) * bits)
            value, mask = (
                (value << shift) & full if shift else value & full,
                (mask << shift) & full if shift else mask & full,
            )
            if kind == "lpm":
                nbits = bin(mask).count("1")
                return FieldMatch(fid, "lpm", value & mask, prefix_len=nbits) if nbits else None
            return FieldMatch(fid, "ternary", value & mask, mask=mask)
        v = self.number(text, w)
        if kind == "lpm":
            return FieldMatch(fid, "lpm", v, prefix_len=w)
        if kind == "ternary":
            return FieldMatch(fid, "ternary", v, mask=full)
        if kind == "range":
            return FieldMatch(fid, "range", v, high=v)
        return FieldMatch(fid, "optional" if kind == "optional" else "exact", v)

    def setdefault(self, rest: str) -> None:
        words = rest.split(None, 1)
        if len(words) != 2:
            raise self.err("setdefault needs: setdefault TABLE ACTION(ARGS)")
        table = self.table(words[0])
        name, args = self.parse_call(words[1])
        call = self.action(table, name, args)
        self.sw.set_default_entry(TableEntry(table.preamble.id, (), call, is_default_action=True))  # type: ignore[attr-defined]

    # ------------------------------------------------------------ externs
    def extern_id(self, name: str, kind: str) -> int:
        objs: dict[str, int] = {o.preamble.name: o.preamble.id for o in getattr(self.info, kind)}
        return objs[self.resolve(name, list(objs), kind[:-1])]

    def register(self, cmd: str, rest: str) -> None:
        words = rest.split()
        rid = self.extern_id(words[0], "registers") if words else 0
        if cmd == "register_write" and len(words) == 3:
            self.sw.write_register(rid, int(words[1], 0), int(words[2], 0))
        elif cmd == "register_reset" and len(words) == 1:
            reg = next(r for r in self.info.registers if r.preamble.id == rid)
            for i in range(reg.size):
                self.sw.write_register(rid, i, 0)
        elif cmd == "register_read" and len(words) == 2:
            self.notes.append(
                f"line {self.line}: {words[0]}[{words[1]}] = {self.sw.read_register(rid, int(words[1], 0))}"
            )
        else:
            raise self.err(f"bad {cmd} arguments")

    def counter(self, cmd: str, rest: str) -> None:
        if cmd == "check_counter":
            m = re.fullmatch(
                r"([\w$.\[\]]+)\((\w+)\)(?:\s+(packets|bytes)\s*(==|!=|<=|>=|<|>)\s*(\d+))?", rest
            )
            if m is None:
                raise self.err("check_counter needs: check_counter NAME(INDEX) [packets|bytes OP NUMBER]")
            name, idx, what, op, num = m.groups()
            if idx in self.entries:
                value = self.sw.read_direct_counter(self.entries[idx])
            else:
                value = self.sw.read_counter(self.extern_id(name, "counters"), int(idx, 0))
            if what is not None:
                got = value.packets if what == "packets" else value.bytes
                ok = {"==": got == int(num), "!=": got != int(num), "<": got < int(num), ">": got > int(num),
                      "<=": got <= int(num), ">=": got >= int(num)}[op]  # fmt: skip
                if not ok:
                    self.notes.append(
                        f"line {self.line}: FAIL check_counter {name}({idx}): {what} is {got}, not {op} {num}"
                    )
            return
        words = rest.split()
        cid = self.extern_id(words[0], "counters") if words else 0
        if cmd == "counter_write" and len(words) == 4:
            self.sw.write_counter(cid, int(words[1], 0), CounterValue(int(words[2], 0), int(words[3], 0)))
        elif cmd == "counter_reset" and len(words) == 1:
            for i in range(self.sw.counter_size(cid)):
                self.sw.write_counter(cid, i, CounterValue())
        elif cmd == "counter_read" and len(words) == 2:
            v = self.sw.read_counter(cid, int(words[1], 0))
            self.notes.append(
                f"line {self.line}: {words[0]}[{words[1]}] = {v.packets} packets, {v.bytes} bytes"
            )
        else:
            raise self.err(f"bad {cmd} arguments")

    def meter(self, rest: str) -> None:
        m = re.fullmatch(r"(\S+)\s+(\d+)\s+([\d.]+):(\d+)\s+([\d.]+):(\d+)", rest.strip())
        if m is None:
            raise self.err("meter_set_rates needs: NAME INDEX CIR:CBURST PIR:PBURST (rates per microsecond)")
        mid = self.extern_id(m.group(1), "meters")
        cir, pir = float(m.group(3)) * 1e6, float(m.group(5)) * 1e6
        cfg = MeterConfig(int(cir), int(m.group(4)), int(pir), int(m.group(6)))
        self.sw.set_meter(mid, int(m.group(2)), cfg)

    # ------------------------------------------------------------ verdict
    def compare(self) -> StfResult:
        problems: list[str] = [n for n in self.notes if "FAIL" in n]
        by_port: dict[int, list[Expectation]] = {}
        for e in self.expect:
            by_port.setdefault(e.port, []).append(e)
        for port in sorted(set(by_port) | set(self.received)):
            exps, got = by_port.get(port, []), self.received.get(port, [])
            for i in range(max(len(exps), len(got))):
                if i >= len(got):
                    problems.append(
                        f"port {port}: expected packet {i + 1} (line {exps[i].line}) did not arrive"
                    )
                    continue
                if i >= len(exps):
                    problems.append(f"port {port}: unexpected packet {i + 1}: {got[i].hex().upper()}")
                    continue
                diff = match(exps[i], got[i])
                if diff:
                    problems.append(f"port {port}, packet {i + 1} (expect on line {exps[i].line}): {diff}")
        if problems:
            return StfResult(False, "\n".join(problems), self.received)
        n = sum(len(v) for v in self.received.values())
        return StfResult(True, f"passed: {len(self.expect)} expectations, {n} packets out", self.received)


def valid_key(key: str) -> str:
    """STF spells a header's validity bit ``valid``, ``h.valid`` or ``h.$valid$``; P4Info ``h.isValid()``."""
    key = key.replace("$valid$", ".valid").replace("..", ".").lstrip(".")
    if key == "valid" or key.endswith(".valid"):
        return key[: -len("valid")] + "isValid()"
    return key


def match(e: Expectation, frame: bytes) -> str:
    """'' if ``frame`` meets the expectation, else a readable difference."""
    if e.data is None:
        return ""
    got = frame.hex().upper()
    want = e.data
    problem = ""
    if len(got) < len(want):
        problem = f"received {len(frame)} bytes, expected at least {len(want) // 2}"
    elif e.exact and len(got) != len(want):
        problem = f"received {len(frame)} bytes, expected exactly {len(want) // 2}"
    first = next((i for i, (w, g) in enumerate(zip(want, got, strict=False)) if w not in ("*", g)), None)
    if first is not None:
        problem = f"bytes differ from byte {first // 2}"
    if not problem:
        return ""
    mark = " " * first + "^" if first is not None else ""
    return f"{problem}\n    expected {want}{'$' if e.exact else ''}\n    received {got}\n             {mark}"


def stf_ports(text: str) -> list[int]:
    """The port numbers an STF test sends into or expects on."""
    return sorted({int(m.group(1)) for m in _PORT_RE.finditer(text)})


_PORT_RE = re.compile(r"^\s*(?:packet|expect)\s+(\d+)", re.MULTILINE | re.IGNORECASE)


def run_stf(program: P4Program, stf_path: str | Path, *, backend: str = "python") -> StfResult:
    """Run the STF test at ``stf_path`` against a fresh switch running ``program``.

    ``backend="ebpf"`` compiles the program for the TC hook and sends the packets through
    veth pairs in a network namespace of its own (named after this process), all removed
    again when the test ends, also on failure."""
    path = Path(stf_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SourceError(f"cannot read the STF file: {exc.strerror}", SourcePos(str(path), 1, 1)) from None
    if backend == "python":
        return _Runner(program, str(path), text, Switch(program)).run()
    if backend != "ebpf":
        raise UserError(f"unknown backend {backend!r} (python or ebpf)")
    from .targets.ebpf import EbpfSwitch, VethRig, unavailable

    why = unavailable()
    if why is not None:
        raise UserError(why)
    ports = stf_ports(text)
    with VethRig(ports) as rig:
        sw = EbpfSwitch(program, ports={p: rig.switch_if(p) for p in ports}, netns=rig.name, rig=rig)
        try:
            return _Runner(program, str(path), text, sw).run()
        finally:
            sw.close()
