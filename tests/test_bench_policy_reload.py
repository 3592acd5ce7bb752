"""bench.policy_reload on a small file: an agent over gRPC loads a classifier and reloads another
file, and the JSON says what was written (the python back end; no root needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_small_reload_reports_what_it_wrote() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.policy_reload", "--count", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    py = result["python_backend_over_grpc"]
    assert py["entries"] > 0 and py["first_load_s"] > 0
    reload = py["reload"]
    assert reload["policies"] == 300
    assert reload["added"] + reload["kept"] == reload["entries"]
    assert reload["removed"] + reload["kept"] == py["entries"]
    assert reload["total_s"] >= reload["writes_s"] > 0
    ebpf = result["ebpf_write_s"]
    assert "not_run" in ebpf or ebpf["entries"] == py["entries"]
