"""Rendering compiled policies: the JSON document and a readable table."""

from __future__ import annotations

import json
from typing import Any

from dysco.compiler.boxes import PRange, Ternary, format_ip
from dysco.compiler.entries import Entry
from dysco.compiler.passes import AddressStep, Compiled, TypeStep

JSON_VERSION = 1
PROTOCOL_TCP = 6


def _port(c: PRange | Ternary) -> list[int]:
    return [c.low, c.high] if isinstance(c, PRange) else [c.value, c.mask]


def entry_json(e: Entry) -> dict[str, Any]:
    return {
        "priority": e.priority,
        "policy": e.policy,
        "action": e.action,
        "chain_id": e.chain_id,
        "match": {
            "ipv4.src": [format_ip(e.src.value), format_ip(e.src.mask)],
            "ipv4.dst": [format_ip(e.dst.value), format_ip(e.dst.mask)],
            "ipv4.protocol": [PROTOCOL_TCP, 0xFF],
            "tcp.src_port": _port(e.sport),
            "tcp.dst_port": _port(e.dport),
        },
    }


def to_json_obj(c: Compiled) -> dict[str, Any]:
    chains: dict[str, Any] = {}
    for name, chain in c.chains.items():
        hops: list[dict[str, Any]] = []
        for step in chain.hops:
            if isinstance(step, TypeStep):
                hops.append({"type": step.type, "instances": list(step.instances), "select": step.select})
            else:
                assert isinstance(step, AddressStep)
                hops.append({"address": step.address})
        chains[name] = {"id": chain.id, "hops": hops}
    return {
        "version": JSON_VERSION,
        "port_match": c.port_match,
        "classifier": [entry_json(e) for e in c.entries],
        "chains": chains,
    }


def to_json(c: Compiled) -> str:
    """The JSON document, one classifier entry and one chain per line."""
    obj = to_json_obj(c)
    entries = ",\n  ".join(json.dumps(e) for e in obj["classifier"])
    chains = ",\n  ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in obj["chains"].items())
    return (
        f'{{"version": {obj["version"]}, "port_match": {json.dumps(obj["port_match"])},\n'
        f' "classifier": [\n  {entries}\n ],\n'
        f' "chains": {{\n  {chains}\n }}}}\n'
    )


def _addr_text(t: Ternary) -> str:
    if t.mask == 0:
        return "*"
    if t.mask == 0xFFFFFFFF:
        return format_ip(t.value)
    inv = ~t.mask & 0xFFFFFFFF
    if inv & (inv + 1) == 0:  # contiguous mask
        return f"{format_ip(t.value)}/{32 - inv.bit_length()}"
    return f"{format_ip(t.value)}&{format_ip(t.mask)}"


def _port_text(c: PRange | Ternary) -> str:
    if isinstance(c, PRange):
        if (c.low, c.high) == (0, 0xFFFF):
            return "*"
        return str(c.low) if c.low == c.high else f"{c.low}-{c.high}"
    if c.mask == 0:
        return "*"
    return str(c.value) if c.mask == 0xFFFF else f"{c.value}&0x{c.mask:04x}"


def to_text(c: Compiled) -> str:
    header = ("prio", "policy", "action", "ipv4.src", "ipv4.dst", "proto", "sport", "dport")
    rows = [header]
    for e in c.entries:
        action = "bypass" if e.action == "bypass" else f"{e.action} {e.chain_id}"
        rows.append(
            (
                str(e.priority),
                e.policy,
                action,
                _addr_text(e.src),
                _addr_text(e.dst),
                "tcp",
                _port_text(e.sport),
                _port_text(e.dport),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"classifier ({len(c.entries)} entries, first match wins, miss = forward untouched)"]
    if any(e.action == "software" for e in c.entries):
        lines.append("(software N: the agent classifies the SYN, trying the policies from chain N on)")
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("chains")
    for name, chain in c.chains.items():
        hops = []
        for step in chain.hops:
            if isinstance(step, TypeStep):
                hops.append(f"{step.type}[{', '.join(step.instances)}; {step.select}]")
            else:
                assert isinstance(step, AddressStep)
                hops.append(step.address)
        lines.append(f"  {chain.id}  {name}: {' -> '.join(hops)}")
    return "\n".join(lines) + "\n"
