"""DAG benchmark: GPU engines against the sequential CPU, the vectorised CPU and a CuPy peer.

Networks: spdnn.dag.generate (pruned layered nets with skip connections; evolved-style
DAGs) of about 1e4 .. 1e7 edges; batches of 1 .. 10000 random input vectors.
Engines: cuda-warp (this project's design), cuda-thread (the paper's one thread per neuron),
cupy (cupyx.scipy.sparse per group), vectorised (scipy.sparse per group, CPU), sequential
(node by node, CPU; the paper's baseline).
Timing: inference only. GPU: CUDA events around the kernels (inputs already on the GPU),
one warm-up, median of --reps. CPU: one run, wall clock; runs longer than --cpu-budget
seconds stop and are extrapolated per edge (the JSON says so: *_complete false, *_fraction).
Validation: every GPU result is compared with the vectorised CPU result when that ran
completely, else with cuda-warp's (categories exactly, values within float32 rounding).

  python benchmarks/bench_dag.py --out $OUT [--sizes 1e4,1e5,1e6,1e7] [--batches 1,100,1000,10000]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spdnn.dag.engine import get_dag_engine  # noqa: E402
from spdnn.dag.generate import generate, random_inputs  # noqa: E402
from spdnn.dag.levels import levelise  # noqa: E402
from spdnn.dag.validate import compare_outputs  # noqa: E402

GPU_ENGINES = ("cuda-warp", "cuda-thread", "cupy")


def log(*a):
    print(*a, flush=True)


def gpu_info() -> dict:
    try:
        import pycuda.driver as cuda

        cuda.init()
    except Exception as err:  # noqa: BLE001  (a CPU-only dry run)
        return {"gpu": None, "error": str(err)}
    dev = cuda.Device(0)
    info = {"gpu": dev.name(), "compute_capability": "%d.%d" % dev.compute_capability(),
            "memory_bytes": dev.total_memory(), "driver_cuda_version": cuda.get_driver_version(),
            "pycuda_cuda_version": ".".join(map(str, cuda.get_version()))}
    try:
        import subprocess

        info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        pass
    return info


def time_gpu(engine, x, reps: int):
    engine.infer(x)  # warm-up
    runs = [engine.infer(x) for _ in range(reps)]
    return statistics.median(r.seconds for r in runs), runs[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", default="1e4,1e5,1e6,1e7")
    ap.add_argument("--batches", default="1,100,1000,10000")
    ap.add_argument("--kinds", default="pruned,evolved")
    ap.add_argument("--seq-batches", default="1,100,1000", help="batches at which the sequential CPU runs")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cpu-budget", type=float, default=2.5, help="seconds per CPU run before extrapolating")
    ap.add_argument("--deadline", type=float, default=240.0, help="stop starting new cases after this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from spdnn.provenance import provenance

    sizes = [int(float(s)) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    seq_batches = {int(b) for b in args.seq_batches.split(",")}
    record = {"benchmark": "dag", "config": vars(args), "provenance": provenance(), "device": gpu_info(), "cases": []}
    log(json.dumps(record["device"]))
    engines = {}
    for name in GPU_ENGINES:
        try:
            engines[name] = get_dag_engine(name)
        except Exception as err:  # noqa: BLE001
            log(f"{name} unavailable: {err}")
            record.setdefault("unavailable", {})[name] = str(err)
    cpu = {"sequential": get_dag_engine("sequential", max_seconds=args.cpu_budget),
           "vectorised": get_dag_engine("vectorised", max_seconds=args.cpu_budget)}
    record["cpu"] = cpu["sequential"].device()
    stamp = time.strftime("%Y-%m-%d")
    path = out / f"dag-{stamp}.json"
    # the targets' cases first (>= 1e6 edges, batch 1000), then the rest
    cases = [(k, e, b) for k in args.kinds.split(",") for e in sizes for b in batches]
    cases.sort(key=lambda c: (not (c[1] >= 10**6 and c[2] == 1000), c[0] != "pruned", c[1], c[2]))
    nets: dict = {}
    for kind, edges, batch in cases:
        if time.perf_counter() - t_start > args.deadline:
            log(f"deadline: skipping {kind} {edges} x {batch}")
            record.setdefault("skipped", []).append([kind, edges, batch])
            continue
        if (kind, edges) not in nets:
            t0 = time.perf_counter()
            spec = generate(kind, edges, args.seed)
            t1 = time.perf_counter()
            net = levelise(spec)
            del spec
            nets[(kind, edges)] = (net, t1 - t0, time.perf_counter() - t1)
        net, gen_s, lev_s = nets[(kind, edges)]
        x = random_inputs(net.n_inputs, batch, seed=batch)
        row = {"kind": kind, "target_edges": edges, "batch": batch, **net.summary(),
               "generate_seconds": gen_s, "levelise_seconds": lev_s}
        results = {}
        for name, engine in engines.items():
            try:
                engine.prepare(net)
                seconds, res = time_gpu(engine, x, args.reps)
                row[f"{name}_seconds"] = seconds
                row[f"{name}_end_to_end_seconds"] = res.end_to_end_seconds
                row[f"{name}_details"] = res.details
                results[name] = res.outputs
            except Exception as err:  # noqa: BLE001  (out of memory for the peer at the largest sizes)
                row[f"{name}_error"] = f"{type(err).__name__}: {err}"[:300]
            finally:
                if hasattr(engine, "release"):
                    engine.release()
                if name == "cupy":
                    import cupy as cp

                    cp.get_default_memory_pool().free_all_blocks()
        for name, engine in cpu.items():
            if name == "sequential" and batch not in seq_batches:
                continue
            if name == "vectorised" and batch > 10000:
                continue
            engine.prepare(net)
            res = engine.infer(x)
            row[f"{name}_seconds"] = res.seconds
            row[f"{name}_complete"] = res.complete
            row[f"{name}_fraction"] = res.fraction
            if res.complete:
                results[name] = res.outputs
            del res
        ref_name = "vectorised" if "vectorised" in results else "cuda-warp"
        ref = results.get(ref_name)
        row["validated_against"] = ref_name
        for name in GPU_ENGINES + ("sequential",):
            if name in results and name != ref_name and ref is not None:
                comparison = compare_outputs(results[name], ref)
                row[f"{name}_valid"] = comparison.passed
                row[f"{name}_max_rel_error"] = comparison.max_rel_error
        for name in GPU_ENGINES + ("vectorised",):
            if f"{name}_seconds" in row:
                row[f"{name}_edges_per_second"] = net.n_edges * batch / row[f"{name}_seconds"]
        if "sequential_seconds" in row and "cuda-warp_seconds" in row:
            row["speedup_vs_sequential"] = row["sequential_seconds"] / row["cuda-warp_seconds"]
        if "cupy_seconds" in row and "cuda-warp_seconds" in row:
            row["speedup_vs_cupy"] = row["cupy_seconds"] / row["cuda-warp_seconds"]
        if "vectorised_seconds" in row and "cuda-warp_seconds" in row:
            row["speedup_vs_vectorised"] = row["vectorised_seconds"] / row["cuda-warp_seconds"]
        record["cases"].append(row)
        log(f"{kind:8s} E={net.n_edges:>9d} L={net.n_levels:>3d} B={batch:>6d} | "
            + " ".join(f"{n}={row.get(f'{n}_seconds', float('nan')):.3g}" for n in GPU_ENGINES + tuple(cpu))
            + f" | vs seq {row.get('speedup_vs_sequential', float('nan')):.0f}x"
            + f" vs cupy {row.get('speedup_vs_cupy', float('nan')):.2f}x"
            + f" valid {[row.get(f'{n}_valid') for n in GPU_ENGINES]}"
            + ("" if row.get("sequential_complete", True) else f" (seq extrapolated from {row['sequential_fraction']:.1%})"))
        record["elapsed_seconds"] = time.perf_counter() - t_start
        path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    log(f"wrote {path} in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
