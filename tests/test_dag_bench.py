"""benchmarks/bench_dag.py end to end on the CPU, tiny: every case kind runs, checks pass, tables render."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_dag.py"


def test_bench_dag_cpu_only_smoke(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--out",
            str(tmp_path),
            "--cpu-only",
            "--sizes",
            "3000",
            "--batches",
            "1,40",
            "--kinds",
            "pruned,deep-narrow",
            "--reps",
            "2",
            "--population",
            "4",
            "--member-edges",
            "800",
            "--population-batch",
            "8",
            "--snicit-batches",
            "",
            "--memory-kinds",
            "neat",
            "--memory-edges",
            "5000",
            "--memory-batch",
            "16",
            "--tag",
            "t",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
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
    table = subprocess.run(
        [sys.executable, str(BENCH), "--table", str(path)], capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0 and "| deep-narrow |" in table.stdout and "peak MB freed" in table.stdout


def test_bench_dag_gpu_paths_with_stand_in_engines(tmp_path, monkeypatch):
    """The GPU branches of the benchmark (never run on this machine) with CPU engines standing in."""
    import importlib.util

    import spdnn.dag.population_cuda as population_cuda
    from spdnn.dag.compiled import CompiledEngine
    from spdnn.dag.engine import DagResult, EngineUnavailable
    from spdnn.dag.population import blocked, run_blocked_cpu
    from spdnn.dag.registry import get_dag_engine

    spec = importlib.util.spec_from_file_location("bench_dag", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class StandIn(CompiledEngine):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def release(self):
            pass

    def engines(name, **options):
        if name in ("cuda-warp", "cuda-thread"):
            return StandIn(name)
        if name == "cupy":
            raise EngineUnavailable("no cupy here")
        return get_dag_engine(name, **options)

    class Population:
        def prepare(self, pop):
            self.layout = blocked(pop)

        def infer(self, x):
            return DagResult(
                run_blocked_cpu(self.layout, x), 1e-3, 1e-3, "cuda-population", "stand-in", details={"launches": 1}
            )

    monkeypatch.setattr(bench, "get_dag_engine", engines)
    monkeypatch.setattr(bench, "gpu_info", lambda: {"gpu": "Stand-in GPU"})
    monkeypatch.setattr(population_cuda, "PopulationCudaEngine", Population)
    monkeypatch.setattr(
        "sys.argv",
        [
            "bench_dag.py",
            "--out",
            str(tmp_path),
            "--sizes",
            "2000",
            "--batches",
            "1,40",
            "--kinds",
            "neat",
            "--reps",
            "1",
            "--population",
            "3",
            "--member-edges",
            "600",
            "--population-batch",
            "1,8",
            "--one-at-a-time",
            "2",
            "--snicit-batches",
            "",
            "--memory-kinds",
            "",
            "--cpu-engines",
            "compiled,vectorised",
            "--tag",
            "s",
        ],
    )
    bench.main()
    (path,) = tmp_path.glob("dag-s-*.json")
    record = json.loads(path.read_text())
    nets = [c for c in record["cases"] if c["kind"] == "neat"]
    assert len(nets) == 2 and all(c["cuda-warp_valid"] and c["cuda-thread_valid"] for c in nets)
    assert all("warp_vs_compiled" in c for c in nets)
    pops = [c for c in record["cases"] if c["kind"] == "population"]
    assert [c["batch"] for c in pops] == [1, 8]
    assert all(c["cuda-population_valid"] and c["cuda-warp-union_valid"] and c["population_speedup"] > 0 for c in pops)
    assert all(c["population_best"].startswith("cuda-population") for c in pops)  # the fastest that passed
    assert set(record["targets"]["population"]["by_batch"]) == {"1", "8"}  # JSON keys
