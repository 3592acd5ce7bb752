"""Compile one file of 10,000 generated policies and compare with libpcap on the same predicates.

The file (3-6 primitives a policy, mixed and/or/not, port ranges) goes through every pass of
``dysco compile`` (parse, hulls, normal forms and decision lists as the placement reaches
them, placement in a 4,096-entry classifier); libpcap compiles the same predicate texts with
``pcap_compile`` (optimiser on, as tcpdump does), in the same run.  Targets: at most 1.0 s
wall-clock and at most 3 times libpcap.  Then 100,000 random SYNs go through the deployed
classifier (the entries as the NIC looks them up, the agent's evaluator for software punts):
the share the NIC decides alone.  The same for a file of 10,000 policies that seldom overlap
(10,000 SYNs: most go to the agent, which tries thousands of policies for each).  Last, entry
counts as the file grows (1,000 to 10,000 policies, no capacity limit), for both files, to
show the growth is linear.  Prints JSON.

    python -m bench.compile_policies [--count N] [--seed S] [--repeat R] [--syns M]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter

from dysco.compiler.deployed import Deployed
from dysco.compiler.generate import PredicateGenerator, disjoint_predicates
from dysco.compiler.passes import DEFAULT_CAPACITY, Compiled, Options, compile_text
from dysco.compiler.pcap import PcapFilter, PcapFilterError
from dysco.compiler.stats import stats_json

HEADER = "middlebox fw { instances 10.0.2.1, 10.0.2.2; }\nmiddlebox px { instances 10.0.3.1; }\n"
TARGET_S = 1.0
TARGET_RATIO = 3.0
UNLIMITED = 1 << 30


def _file(preds: list[str]) -> str:
    return HEADER + "".join(f"policy p{i}: {p} -> fw, px\n" for i, p in enumerate(preds))


def _growth(preds: list[str], sizes: list[int]) -> dict[str, int]:
    return {
        str(n): len(compile_text(_file(preds[:n]), "bench.dysco", Options(capacity=UNLIMITED)).entries)
        for n in sizes
    }


def _share(compiled: Compiled, seed: int, count: int) -> tuple[Counter[str], float]:
    """Where ``count`` random SYNs are decided, and the seconds that took."""
    deployed = Deployed(compiled)
    syn_gen = PredicateGenerator(random.Random(seed))
    where: Counter[str] = Counter()
    t0 = time.perf_counter()
    for _ in range(count):
        where[deployed.classify(syn_gen.syn()).where] += 1
    return where, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    ap.add_argument("--syns", type=int, default=100_000, help="random SYNs through the deployed classifier")
    args = ap.parse_args(argv)

    gen = PredicateGenerator(random.Random(args.seed), primitives=(3, 6))
    preds = [gen.expression() for _ in range(args.count)]
    text = _file(preds)

    ours: list[float] = []
    ours_cpu: list[float] = []
    compiled: Compiled | None = None
    for run in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        compiled = compile_text(text, "bench.dysco", Options(capacity=DEFAULT_CAPACITY))
        ours.append(time.perf_counter() - t0)
        ours_cpu.append(time.process_time() - c0)
        print(f"dysco run {run + 1}/{args.repeat}: {ours[-1]:.3f} s", file=sys.stderr)
    assert compiled is not None

    theirs: list[float] = []
    theirs_cpu: list[float] = []
    refused = 0
    for run in range(args.repeat):
        refused = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for p in preds:
            try:
                PcapFilter(p).close()
            except PcapFilterError:
                refused += 1  # contradictions: libpcap's optimiser refuses them
        theirs.append(time.perf_counter() - t0)
        theirs_cpu.append(time.process_time() - c0)
        print(f"libpcap run {run + 1}/{args.repeat}: {theirs[-1]:.3f} s", file=sys.stderr)

    where, classify_s = _share(compiled, args.seed + 1, args.syns)
    print("the disjoint file ...", file=sys.stderr)
    disjoint_preds = disjoint_predicates(random.Random(args.seed), args.count)
    t0 = time.perf_counter()
    disjoint = compile_text(_file(disjoint_preds), "disjoint.dysco", Options(capacity=DEFAULT_CAPACITY))
    disjoint_s = time.perf_counter() - t0
    d_stats = stats_json(disjoint)
    d_where, d_classify_s = _share(disjoint, args.seed + 1, args.syns // 10)

    sizes = sorted({n for n in (1_000, 2_000, 5_000, 10_000) if n <= args.count} | {args.count})
    print("entry growth ...", file=sys.stderr)
    growth = {
        "generated": _growth(preds, sizes),
        "disjoint": _growth(disjoint_preds, sizes),
    }

    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    stats = stats_json(compiled)
    result = {
        "benchmark": "compile_policies",
        "policies": args.count,
        "primitives_per_policy": [3, 6],
        "one_file": True,
        "runs": args.repeat,
        "dysco_seconds_median": round(ours_s, 3),
        "libpcap_seconds_median": round(theirs_s, 3),
        "ratio_dysco_to_libpcap": round(ours_s / theirs_s, 2),
        "dysco_cpu_seconds_median": round(statistics.median(ours_cpu), 3),
        "libpcap_cpu_seconds_median": round(statistics.median(theirs_cpu), 3),
        "libpcap_refused_contradictions": refused,
        "seconds_per_pass": stats["seconds"],
        "capacity": DEFAULT_CAPACITY,
        "entries": stats["entries"],
        "entries_by_action": stats["entries_by_action"],
        "policies_in_nic": stats["policies_in_nic"],
        "policies_in_software": stats["policies_in_software"],
        "random_syns": args.syns,
        "share_decided_by_nic_alone": round(where["nic"] / max(1, args.syns), 4),
        "classify_us_per_syn": round(classify_s / max(1, args.syns) * 1e6, 2),
        "entries_without_a_capacity_limit": growth,
        "disjoint_file": {
            "dysco_seconds": round(disjoint_s, 3),
            "entries": d_stats["entries"],
            "entries_by_action": d_stats["entries_by_action"],
            "policies_in_nic": d_stats["policies_in_nic"],
            "cover_entries": d_stats["cover_entries"],
            "random_syns": args.syns // 10,
            "share_decided_by_nic_alone": round(d_where["nic"] / max(1, args.syns // 10), 4),
            "classify_us_per_syn": round(d_classify_s / max(1, args.syns // 10) * 1e6, 2),
        },
        "target_seconds": TARGET_S,
        "target_ratio": TARGET_RATIO,
        "meets_target": ours_s <= TARGET_S and ours_s <= TARGET_RATIO * theirs_s,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
