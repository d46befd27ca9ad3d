"""benchmarks/bench_dag.py end to end on the CPU, tiny: every case kind runs, checks pass, tables render."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dag.py"


def test_bench_dag_cpu_only_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(BENCH), "--out", str(tmp_path), "--cpu-only", "--sizes", "3000",
                          "--batches", "1,40", "--kinds", "pruned,deep-narrow", "--reps", "2", "--population", "4",
                          "--member-edges", "800", "--population-batch", "8", "--snicit-batches", "",
                          "--memory-kinds", "neat", "--memory-edges", "5000", "--memory-batch", "16", "--tag", "t"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (path,) = tmp_path.glob("dag-t-*.json")
    record = json.loads(path.read_text())
    cases = [c for c in record["cases"] if "levels" in c and c["kind"] in ("pruned", "deep-narrow")]
    assert len(cases) == 4
    for c in cases:
        assert all(c[k] for k in c if k.endswith("_valid")) and len(c["compiled_runs"]) == 2
        assert not any("extrapolat" in str(v) for v in c.values())
    memory = [c for c in record["cases"] if c["kind"] == "memory-neat"][0]
    assert memory["identical_outputs"] and memory["freed_peak_bytes"] < memory["kept_peak_bytes"]
    table = subprocess.run([sys.executable, str(BENCH), "--table", str(path)], capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0 and "| deep-narrow |" in table.stdout and "peak MB freed" in table.stdout
