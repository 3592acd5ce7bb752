"""``dysco compile --stats``: where the policies went and what each pass cost.

Per policy, the entries it has in the classifier (chain, bypass and software entries that
name it, not counting the software entries that cover the policies a full table left out);
which policies the NIC holds and which are left to the agent's software evaluator (a policy
past its budget, or every policy after a full table); seconds per pass.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dysco.compiler.passes import Compiled


def _buckets(counts: list[int]) -> dict[str, int]:
    """How many policies have 0, 1, 2-3, 4-7, ... entries."""
    out: Counter[str] = Counter()
    for n in counts:
        if n < 2:
            out[str(n)] += 1
        else:
            lo = 1 << (n.bit_length() - 1)
            out[f"{lo}-{2 * lo - 1}"] += 1
    return dict(sorted(out.items(), key=lambda kv: int(kv[0].split("-")[0])))


def stats_json(c: Compiled) -> dict[str, Any]:
    policies = [pol.name for pol in c.source.policies]
    nic = c.stats.nic_policies
    # the entries that cover the policies a full table left out come last; they are no one's
    cover = 0
    for e in reversed(c.entries):
        if e.action != "software" or e.chain_id != nic + 1:
            break
        cover += 1
    per_policy = Counter(e.policy for e in c.entries[: len(c.entries) - cover])
    actions = Counter(e.action for e in c.entries)
    over = set(c.stats.over_budget)
    in_nic = sum(1 for name in policies[:nic] if name not in over)
    counts = [per_policy.get(name, 0) for name in policies]
    top = sorted(zip(counts, policies, strict=True), key=lambda cp: -cp[0])[:5]
    return {
        "policies": len(policies),
        "entries": len(c.entries),
        "capacity": c.stats.capacity,
        "entries_by_action": {a: actions.get(a, 0) for a in ("chain", "bypass", "software")},
        "policies_in_nic": in_nic,
        "policies_in_software": len(policies) - in_nic,
        "policies_over_budget": sorted(over),
        "table_full_from": policies[nic] if nic < len(policies) else None,
        "cover_entries": cover,
        "entries_per_policy": {
            "mean": round(sum(counts) / len(policies), 3) if policies else 0,
            "max": max(counts, default=0),
            "histogram": _buckets(counts),
            "most": [{"policy": name, "entries": n} for n, name in top if n],
        },
        "seconds": {k: round(v, 4) for k, v in c.stats.seconds.items()},
    }


def stats_text(c: Compiled) -> str:
    s = stats_json(c)
    n = s["policies"] or 1
    acts = s["entries_by_action"]
    per = s["entries_per_policy"]
    lines = [
        f"stats: {s['policies']} policies, {s['entries']} classifier entries of {s['capacity']} "
        f"({acts['chain']} chain, {acts['bypass']} bypass, {acts['software']} software)",
        f"  laid out in the NIC  {s['policies_in_nic']} policies ({100 * s['policies_in_nic'] / n:.1f}%)",
        f"  left to software     {s['policies_in_software']} policies "
        f"({100 * s['policies_in_software'] / n:.1f}%): {len(s['policies_over_budget'])} past their budget"
        + (
            f", the table full from policy {s['table_full_from']} on"
            f" ({s['cover_entries']} entries cover them)"
            if s["table_full_from"]
            else ""
        ),
        f"  entries per policy   mean {per['mean']}, max {per['max']}; "
        + ", ".join(f"{k}: {v}" for k, v in per["histogram"].items()),
    ]
    most = per["most"]
    if most:
        lines.append("  most entries         " + ", ".join(f"{m['policy']} {m['entries']}" for m in most))
    total = sum(s["seconds"].values())
    lines.append(
        "  seconds per pass     "
        + ", ".join(f"{k} {v:.3f}" for k, v in s["seconds"].items())
        + f"; total {total:.3f}"
    )
    return "\n".join(lines) + "\n"
