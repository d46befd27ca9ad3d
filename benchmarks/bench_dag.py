"""DAG benchmark: GPU engines against compiled CPU baselines, on emergent-level and real networks.

One command measures everything issue 19 asks for, in one run, on whatever the machine has:

  python benchmarks/bench_dag.py --out benchmarks/results            # GPU machine: everything
  python benchmarks/bench_dag.py --out benchmarks/results --cpu-only  # the CPU baselines alone
  python benchmarks/bench_dag.py --table benchmarks/results/dag-....json  # Markdown tables of a run

Cases (each skipped when --deadline passes, and said so in the JSON):
* networks: generate.py (pruned, evolved: level = generation) and shapes.py (random-order,
  deep-narrow, neat: levels emerge) of --sizes edges, at --batches random input vectors;
* SNICIT's pruned MNIST networks A-D when exported to .peers/ (MNIST test images as inputs
  when present, else random [0, 1] ones), through the DAG engines, the layered CPU engine and
  (--layered-cuda, with a GPU) the challenge's CUDA engine run as a layered network
  (CudaEngine.prepare_layered: cuda-layered with its default options, cuda-layered-fused with
  unstaged fused segments up to 256 wide); its outputs are checked bit for bit against the
  layered CPU engine's (`<name>_bits_equal_layered`) and its classes against the DAG engines';
* a population of --population members (neat networks of --member-edges edges): one launch
  (cuda-population) against the members one at a time (cuda-warp), and on the CPU;
* memory: peak bytes of one compiled-CPU inference with and without value rows freed.
Engines: compiled (numba, one thread), threaded (numba, all cores), vectorised (scipy per
group); sequential (Python per node) only up to --python-max-edges; cuda-warp, cuda-lane (runs
of small groups, a thread per input vector), cuda-walk (runs of small groups walked in shared
memory), cuda-thread, cupy when a GPU is there; the population
through its default kernel (cuda-population), dag_walk (cuda-population-walk), dag_lane
(cuda-population-lane) and dag_population_ring with rings of 128 and 256 rows
(cuda-population-ring128, -ring256, -ring256-tile64) and built for 4 blocks an SM
(cuda-population-bounds4); its speedup over one member at a time is the fastest of them
that passed.
Timing: inference only, one warm-up then the median of --reps runs (GPU: CUDA events; CPU:
wall clock around the kernel). No extrapolation: a CPU case whose predicted time (from the
same engine's largest case of that kind, or of any kind with 4x slack) passes
--cpu-max-seconds is not run, nor is one whose warm-up shows the repetitions would pass it;
both are listed as skipped.
Checking: every GPU output against the compiled CPU engine: all of it when the CPU case ran,
else on --check-columns sampled input vectors run on the CPU for the purpose.
Targets (issue 19): GPU >= 100x compiled and >= 10x threaded at about 1e6 edges (>= 0.8e6),
batch 1000, the fastest GPU engine of each case counting (`best_gpu`); the population >= 50x
faster than one at a time. `targets` in the JSON says met or not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from spdnn.dag.generate import generate, random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.registry import get_dag_engine
from spdnn.dag.shapes import SHAPES, generate_shape
from spdnn.dag.validate import compare_outputs

GPU_ENGINES = ("cuda-warp", "cuda-lane", "cuda-walk", "cuda-thread", "cupy")
# the challenge's CUDA engine on SNICIT's networks as layered networks: name -> CudaEngine options
LAYERED_CUDA = {"cuda-layered": {}, "cuda-layered-fused": {"fuse_width": 256, "stage_weights": False}}
CPU_ENGINES = ("compiled", "threaded", "vectorised", "sequential")


def log(*a) -> None:
    print(*a, flush=True)


def gpu_info() -> dict:
    try:
        import pycuda.driver as cuda

        cuda.init()
        dev = cuda.Device(0)
        return {
            "gpu": dev.name(),
            "compute_capability": "{}.{}".format(*dev.compute_capability()),
            "memory_bytes": dev.total_memory(),
            "driver_cuda_version": cuda.get_driver_version(),
        }
    except Exception as err:  # noqa: BLE001  (CPU-only run)
        return {"gpu": None, "error": str(err)[:200]}


def timed(engine, x, reps: int):
    """(median seconds over reps after one warm-up, last result, all seconds)."""
    engine.infer(x)
    runs = [engine.infer(x) for _ in range(reps)]
    secs = [r.seconds for r in runs]
    return statistics.median(secs), runs[-1], secs


def build(kind: str, edges: int, seed: int):
    t0 = time.perf_counter()
    spec = generate(kind, edges, seed) if kind in ("pruned", "evolved") else generate_shape(kind, edges, seed)
    t1 = time.perf_counter()
    net = levelise(spec)
    return net, {"generate_seconds": t1 - t0, "levelise_seconds": time.perf_counter() - t1}


class Runner:
    def __init__(self, args):
        self.args = args
        self.t_start = time.perf_counter()
        # (CPU engine, network kind) -> (work, seconds per edge x vector) of its largest case so far:
        # per-edge costs fall with size (fixed costs per group), so the largest case predicts best
        self.rate: dict[tuple[str, str], tuple[int, float]] = {}
        self.gpu = {}
        if not args.cpu_only:
            for name in args.gpu_engines.split(","):
                if name not in GPU_ENGINES:
                    raise SystemExit(f"--gpu-engines: unknown {name!r}; choose from {', '.join(GPU_ENGINES)}")
                try:
                    self.gpu[name] = get_dag_engine(name)
                except Exception as err:  # noqa: BLE001
                    log(f"{name} unavailable: {err}")
        self.cpu = {name: get_dag_engine(name) for name in args.cpu_engines.split(",")}

    def late(self) -> bool:
        return time.perf_counter() - self.t_start > self.args.deadline

    def cpu_case(self, name: str, engine, net, x, row: dict, results: dict) -> None:
        work = net.n_edges * x.shape[0]
        key = (name, row["kind"])
        if name == "sequential" and net.n_edges > self.args.python_max_edges:
            return
        budget, reps = self.args.cpu_max_seconds, self.args.reps
        known = self.rate.get(key)
        if known is None:  # no case of this kind yet: the engine's rate on any kind, with slack
            others = [r for (n, _), r in self.rate.items() if n == name]
            known = max(others) if others else (0, 0.0)
            budget *= 4
        predicted = known[1] * work * (reps + 1)
        if predicted > budget:
            row[f"{name}_skipped"] = f"predicted {predicted:.0f} s for warm-up + {reps} runs"
            return
        engine.prepare(net)
        t0 = time.perf_counter()
        engine.infer(x)  # warm-up, timed only to decide whether the repetitions fit
        warm = time.perf_counter() - t0
        self.rate[key] = max(self.rate.get(key, (0, 0.0)), (work, warm / work))
        if warm * reps > self.args.cpu_max_seconds:
            row[f"{name}_skipped"] = (
                f"one run took {warm:.1f} s: {reps} more would pass {self.args.cpu_max_seconds:.0f} s"
            )
            return
        runs = [engine.infer(x) for _ in range(reps)]
        secs = [r.seconds for r in runs]
        seconds, res = statistics.median(secs), runs[-1]
        row[f"{name}_seconds"] = seconds
        row[f"{name}_runs"] = secs
        row[f"{name}_details"] = res.details
        results[name] = res.outputs

    def gpu_case(self, name: str, engine, net, x, row: dict, results: dict) -> None:
        try:
            engine.prepare(net)
            seconds, res, secs = timed(engine, x, self.args.reps)
            row[f"{name}_seconds"] = seconds
            row[f"{name}_runs"] = secs
            row[f"{name}_end_to_end_seconds"] = res.end_to_end_seconds
            row[f"{name}_details"] = res.details
            results[name] = res.outputs
        except Exception as err:  # noqa: BLE001  (the peer runs out of memory at the largest sizes)
            row[f"{name}_error"] = f"{type(err).__name__}: {err}"[:300]
        finally:
            if hasattr(engine, "release"):
                engine.release()
            if name == "cupy":
                import cupy as cp

                cp.get_default_memory_pool().free_all_blocks()

    def check(self, net, x, row: dict, results: dict) -> None:
        """Every GPU output against the compiled CPU engine: all of it, or sampled input vectors."""
        ref = results.get("compiled")
        cols = None
        if ref is None and results:
            rng = np.random.default_rng(0)
            cols = np.sort(rng.choice(x.shape[0], size=min(self.args.check_columns, x.shape[0]), replace=False))
            e = get_dag_engine("compiled")
            e.prepare(net)
            ref = e.infer(x[cols]).outputs
        row["checked_against"] = "compiled" + ("" if cols is None else f" on {cols.size} sampled input vectors")
        for name, out in results.items():
            if name == "compiled" or ref is None:
                continue
            c = compare_outputs(out if cols is None else out[cols], ref)
            row[f"{name}_valid"] = c.passed
            row[f"{name}_max_rel_error"] = c.max_rel_error

    def network_case(self, kind: str, edges: int, batch: int, net, extra: dict) -> dict:
        x = random_inputs(net.n_inputs, batch, seed=batch)
        row = {"kind": kind, "target_edges": edges, "batch": batch, **net.summary(), **extra}
        results: dict = {}
        for name, engine in self.gpu.items():
            self.gpu_case(name, engine, net, x, row, results)
        for name, engine in self.cpu.items():
            self.cpu_case(name, engine, net, x, row, results)
        self.check(net, x, row, results)
        finish_row(row, net.n_edges * batch)
        return row


def finish_row(row: dict, work: int) -> None:
    names = [
        k[: -len("_seconds")]
        for k in list(row)
        if k.endswith("_seconds")
        and not k.endswith("end_to_end_seconds")
        and k not in ("generate_seconds", "levelise_seconds")
    ]
    for name in names:
        row[f"{name}_edges_per_second"] = work / row[f"{name}_seconds"]
    gpu = row.get("cuda-warp_seconds")
    for base in ("compiled", "threaded", "vectorised", "sequential", "cupy"):
        if gpu and f"{base}_seconds" in row:
            row[f"warp_vs_{base}"] = row[f"{base}_seconds"] / gpu
    best = best_gpu(row)
    if best:
        row["best_gpu"] = best
        for base in ("compiled", "threaded"):
            if f"{base}_seconds" in row:
                row[f"gpu_vs_{base}"] = row[f"{base}_seconds"] / row[f"{best}_seconds"]


def best_gpu(row: dict) -> str | None:
    """The fastest GPU engine of a case whose outputs were not found wrong (None: no GPU engine ran)."""
    ran = [n for n in GPU_ENGINES if f"{n}_seconds" in row and row.get(f"{n}_valid", True)]
    return min(ran, key=lambda n: row[f"{n}_seconds"]) if ran else None


def layered_cuda_case(name: str, options: dict, lnet, x, row: dict, results: dict, reps: int) -> None:
    """The challenge's CUDA engine on a layered network: median seconds (CUDA events, inputs on the
    device) over reps after a warm-up, and its agreement with the layered CPU engine (bit for bit)
    and with the DAG engines (classes)."""
    from spdnn.engines.cuda import CudaEngine

    try:
        engine = CudaEngine(**options)
        engine.prepare_layered(lnet)
        engine.infer_layered(x)  # warm-up (kernels compiled in prepare_layered's first use)
        runs = [engine.infer_layered(x) for _ in range(reps)]
    except Exception as err:  # noqa: BLE001  (recorded, the other cases go on)
        row[f"{name}_error"] = f"{type(err).__name__}: {err}"[:300]
        return
    out, res = runs[-1]
    secs = [r.seconds for _, r in runs]
    row[f"{name}_seconds"] = statistics.median(secs)
    row[f"{name}_runs"] = secs
    row[f"{name}_options"] = options
    row[f"{name}_details"] = {k: v for k, v in res.details.items() if k not in ("wall_seconds",)}
    layered = results.get("layered")
    if layered is not None:
        row[f"{name}_bits_equal_layered"] = bool(np.array_equal(out.view(np.uint32), layered.view(np.uint32)))
        row[f"{name}_max_abs_diff_layered"] = float(np.max(np.abs(out - layered))) if out.size else 0.0
    classes = out.argmax(axis=1)
    for other in [n for n in results if n != "layered"]:
        row[f"{name}_classes_equal_{other}"] = bool(np.array_equal(classes, results[other].argmax(axis=1)))
    results[name] = out


def snicit_cases(runner: Runner, record: dict) -> None:
    from spdnn.dag import mnist, snicit
    from spdnn.dag.layered import LayeredEngine

    root = snicit.default_root()
    if not (root / "tsv_biases").is_dir():
        record["snicit"] = f"not exported to {root}"
        return
    try:
        images, labels = mnist.load_test_set()
    except FileNotFoundError:
        images, labels = None, None
    for letter, name in snicit.NETWORKS.items():
        if runner.late():
            record.setdefault("skipped", []).append(["snicit", letter])
            continue
        lnet = snicit.read_snicit(letter, allow_missing_input_layer=True)
        net = levelise(lnet.to_spec())
        for batch in [int(b) for b in runner.args.snicit_batches.split(",")]:
            if lnet.widths[0] == 784 and images is not None:
                x, inputs = images[:batch], "MNIST test images"
            else:
                x, inputs = (
                    np.random.default_rng(batch).random((batch, lnet.widths[0]), dtype=np.float32),
                    "random [0, 1]",
                )
            row = {
                "kind": f"snicit-{letter}",
                "network": name,
                "input_layer": lnet.meta["input_layer"],
                "inputs": inputs,
                "batch": batch,
                **net.summary(),
            }
            results: dict = {}
            for gname, engine in runner.gpu.items():
                runner.gpu_case(gname, engine, net, x, row, results)
            for cname, engine in runner.cpu.items():
                runner.cpu_case(cname, engine, net, x, row, results)
            layered = LayeredEngine()
            layered.prepare(lnet)
            row["layered_seconds"], res, row["layered_runs"] = timed(layered, x, runner.args.reps)
            results["layered"] = res.outputs
            if not runner.args.cpu_only:
                for name in [n for n in runner.args.layered_cuda.split(",") if n]:
                    layered_cuda_case(name, LAYERED_CUDA[name], lnet, x, row, results, runner.args.reps)
                best = best_gpu(row)
                for name in LAYERED_CUDA:
                    if best and f"{name}_seconds" in row:
                        row[f"{name}_vs_{best}"] = row[f"{best}_seconds"] / row[f"{name}_seconds"]
            runner.check(net, x, row, results)
            if labels is not None and lnet.widths[0] == 784:
                row["accuracy"] = float(np.mean(res.outputs.argmax(axis=1) == labels[:batch]))
            finish_row(row, net.n_edges * batch)
            record["cases"].append(row)
            log(summary_line(row))


def population_case(runner: Runner, record: dict) -> None:
    from spdnn.dag.population import population, union_spec
    from spdnn.dag.shapes import neat

    args = runner.args
    members, edges = args.population, args.member_edges
    t0 = time.perf_counter()
    pop = population([neat(edges, seed=k, n_inputs=64, n_outputs=8) for k in range(members)])
    union = levelise(union_spec(pop))
    build = time.perf_counter() - t0
    try:
        from spdnn.dag.population_cuda import PopulationCudaEngine

        gpu_pop, gpu_error = PopulationCudaEngine(), None
        gpu_pop.prepare(pop)
    except Exception as err:  # noqa: BLE001
        gpu_pop, gpu_error = None, f"{type(err).__name__}: {err}"[:300]
    variants = {}  # the other kernels, for comparison (each its own try: the default runs without them)
    kinds = (
        ("cuda-population-walk", {"walk": True}),
        ("cuda-population-lane", {"lane": True}),
        ("cuda-population-ring128", {"ring_rows": 128}),  # dag_population_ring (docs/dag.md)
        ("cuda-population-ring256", {"ring_rows": 256}),
        ("cuda-population-ring256-tile64", {"ring_rows": 256, "ring_tile": 64}),  # 3 blocks an SM
        ("cuda-population-bounds4", {"min_blocks": 4}),  # registers for 4 blocks of 512 an SM
    )
    for name, options in kinds:
        try:
            variants[name] = PopulationCudaEngine(**options)
            variants[name].prepare(pop)
        except Exception as err:  # noqa: BLE001
            variants.pop(name, None)
            record.setdefault("population_variants_not_run", {})[name] = f"{type(err).__name__}: {err}"[:300]
    for batch in [int(b) for b in str(args.population_batch).split(",")]:
        if runner.late():
            record.setdefault("skipped", []).append(["population", members, batch])
            continue
        x = random_inputs(pop.n_inputs, batch, seed=7)
        row = {
            "kind": "population",
            "members": members,
            "member_edges": edges,
            "batch": batch,
            "edges": pop.n_edges,
            "levels": union.n_levels,
            "build_seconds": build,
        }
        outs: dict = {}
        if gpu_pop is not None:
            row["cuda-population_seconds"], res, row["cuda-population_runs"] = timed(gpu_pop, x, args.reps)
            row["cuda-population_details"] = res.details
            outs["cuda-population"] = res.outputs
        else:
            row["cuda-population_error"] = gpu_error
        for name, engine in variants.items():
            row[f"{name}_seconds"], res, row[f"{name}_runs"] = timed(engine, x, args.reps)
            row[f"{name}_details"] = res.details
            outs[name] = res.outputs
        if "cuda-warp" in runner.gpu:
            warp = runner.gpu["cuda-warp"]
            warp.prepare(union)
            row["cuda-warp-union_seconds"], res, _ = timed(warp, x, args.reps)
            outs["cuda-warp-union"] = res.outputs
            # one at a time: each member prepared beforehand (untimed), its inference timed
            total, timed_members = 0.0, pop.members[: args.one_at_a_time]
            for m in timed_members:
                warp.prepare(m)
                warp.infer(x)
                total += warp.infer(x).seconds
            row["cuda-warp-one-at-a-time_seconds"] = total * members / len(timed_members)
            row["one_at_a_time_members_timed"] = len(timed_members)
            warp.release()
        cpu = runner.cpu.get("threaded") or runner.cpu.get("compiled")
        if cpu is not None:
            cpu.prepare(union)
            row[f"{cpu.name}-union_seconds"], res, _ = timed(cpu, x, args.reps)
            outs["cpu"] = res.outputs
        ref = outs.get("cpu")
        for name, out in outs.items():
            if name != "cpu" and ref is not None:
                row[f"{name}_valid"] = compare_outputs(out, ref).passed
        one = row.get("cuda-warp-one-at-a-time_seconds")
        passed = [n for n in ("cuda-population", *variants) if row.get(f"{n}_valid") and f"{n}_seconds" in row]
        if one and passed:  # the fastest population kernel whose outputs passed
            best = min(passed, key=lambda n: row[f"{n}_seconds"])
            row["population_best"] = best
            row["population_speedup"] = one / row[f"{best}_seconds"]
        record["cases"].append(row)
        log(json.dumps({k: v for k, v in row.items() if not k.endswith("_runs")}, default=str))


def memory_cases(runner: Runner, record: dict) -> None:
    from spdnn.dag.memory import measure_peak

    for kind in runner.args.memory_kinds.split(","):
        net, _ = build(kind, int(float(runner.args.memory_edges)), runner.args.seed)
        x = random_inputs(net.n_inputs, runner.args.memory_batch, seed=3)
        row = {"kind": f"memory-{kind}", "batch": x.shape[0], **net.summary()}
        outs = []
        for free in (False, True):
            engine = get_dag_engine("compiled", free_values=free)
            engine.prepare(net)
            engine.infer(x[:1])  # compile outside the measurement
            res, peak = measure_peak(engine, x)
            key = "freed" if free else "kept"
            row[f"{key}_peak_bytes"] = peak
            row[f"{key}_value_rows"] = res.details["value_slots"]
            row[f"{key}_seconds"] = res.seconds
            outs.append(res.outputs)
        row["identical_outputs"] = bool(np.array_equal(outs[0], outs[1]))
        row["peak_ratio"] = row["freed_peak_bytes"] / row["kept_peak_bytes"]
        record["cases"].append(row)
        log(json.dumps(row, default=str))


def targets(record: dict) -> dict:
    big = [
        r
        for r in record["cases"]
        # "about 1e6 edges": the generators land within ~15% of the size asked (896k-1.04M at
        # 1e6), so a strict 1e6 threshold would judge the target on whichever shape overshot
        if r.get("edges", 0) >= 0.8e6
        and r.get("batch") == 1000
        and best_gpu(r)
        and r.get("kind") in ("pruned", "evolved", *SHAPES)
    ]
    out = {}
    for base, goal in (("compiled", 100), ("threaded", 10)):
        # the fastest GPU engine of each case (recomputed, so records written before best_gpu read alike)
        by_kind = {r["kind"]: r[f"{base}_seconds"] / r[f"{best_gpu(r)}_seconds"] for r in big if f"{base}_seconds" in r}
        vals = list(by_kind.values())
        out[f"gpu_vs_{base}"] = {
            "goal": goal,
            "min": min(vals) if vals else None,
            "met": bool(vals) and min(vals) >= goal,
            "by_kind": by_kind,
        }
    pop = {r["batch"]: r["population_speedup"] for r in record["cases"] if "population_speedup" in r}
    out["population"] = {"goal": 50, "by_batch": pop, "met_at_batches": [b for b, v in pop.items() if v >= 50]}
    return out


def summary_line(row: dict) -> str:
    names = [n for n in GPU_ENGINES + CPU_ENGINES + ("layered", *LAYERED_CUDA) if f"{n}_seconds" in row]
    return (
        f"{row['kind']:13s} E={row.get('edges', 0):>9d} L={row.get('levels', 0):>5d} B={row['batch']:>6d} | "
        + " ".join(f"{n}={row[f'{n}_seconds']:.3g}" for n in names)
        + "".join(f" {k}" for k in row if k.endswith("_skipped"))
        + f" | valid {[row.get(f'{n}_valid') for n in names if f'{n}_valid' in row]}"
    )


def _ratio(v: float) -> str:
    return f"{v:.0f}x" if v >= 10 else f"{v:.1f}x"


def _fmt(v) -> str:
    return "-" if v is None else (f"{v * 1e3:.3g}" if isinstance(v, float) else str(v))


def markdown(record: dict) -> str:
    """Markdown tables of a results JSON (times in ms, medians): networks, SNICIT, population, memory."""
    engines = GPU_ENGINES + CPU_ENGINES + ("layered", *LAYERED_CUDA)
    names = [n for n in engines if any(f"{n}_seconds" in r for r in record["cases"])]
    gpu = any(n in GPU_ENGINES for n in names)
    lines = [
        "| network | edges | groups | batch | "
        + " | ".join(f"{n} ms" for n in names)
        + (" | best GPU | GPU vs compiled | GPU vs threaded" if gpu else "")
        + " | checked |",
        "|---|---|---|---|" + "---|" * len(names) + ("---|---|---|" if gpu else "") + "---|",
    ]
    for r in record["cases"]:
        if "levels" not in r or r["kind"].startswith(("memory", "population")):
            continue
        cells = [
            _fmt(r.get(f"{n}_seconds")) if f"{n}_seconds" in r else ("skipped" if f"{n}_skipped" in r else "-")
            for n in names
        ]
        if gpu:
            best = best_gpu(r)
            cells.append(best or "-")
            for base in ("compiled", "threaded"):
                ok = best and f"{base}_seconds" in r
                cells.append(_ratio(r[f"{base}_seconds"] / r[f"{best}_seconds"]) if ok else "-")
        valid = [r[k] for k in r if k.endswith(("_valid", "_bits_equal_layered"))]
        lines.append(
            f"| {r['kind']} | {r['edges']:,} | {r['levels']} | {r['batch']} | "
            + " | ".join(cells)
            + f" | {'all pass' if valid and all(valid) else ('-' if not valid else 'FAILED')} |"
        )
    for r in record["cases"]:
        if r["kind"] == "population":
            lines += [
                "",
                "population: "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in r.items()
                    if not k.endswith(("_runs", "_details"))
                ),
            ]
    mem = [r for r in record["cases"] if r["kind"].startswith("memory")]
    if mem:
        lines += [
            "",
            "| network | nodes | batch | value rows kept / freed | peak MB kept | peak MB freed | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in mem:
            lines.append(
                f"| {r['kind'][7:]} | {r['nodes']:,} | {r['batch']} | {r['kept_value_rows']:,} / "
                f"{r['freed_value_rows']:,} | {r['kept_peak_bytes'] / 1e6:.1f} | {r['freed_peak_bytes'] / 1e6:.1f} | "
                f"{r['peak_ratio']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":  # python bench_dag.py --table RESULTS.json
        print(markdown(json.loads(Path(sys.argv[2]).read_text())), end="")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-only", action="store_true", help="no GPU engines (CPU baselines only)")
    ap.add_argument("--sizes", default="1e4,1e5,1e6,1e7")
    ap.add_argument("--batches", default="1,100,1000,10000")
    ap.add_argument("--kinds", default="pruned,evolved," + ",".join(SHAPES))
    ap.add_argument("--cpu-engines", default="compiled,threaded,vectorised,sequential")
    ap.add_argument("--gpu-engines", default=",".join(GPU_ENGINES), help="of " + ", ".join(GPU_ENGINES))
    ap.add_argument("--python-max-edges", type=float, default=1e5, help="largest network for the Python engine")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu-max-seconds", type=float, default=120.0, help="skip a CPU case predicted to take longer")
    ap.add_argument("--check-columns", type=int, default=64)
    ap.add_argument("--snicit-batches", default="1000,10000", help="'' for none")
    ap.add_argument(
        "--layered-cuda",
        default=",".join(LAYERED_CUDA),
        help=f"the CUDA engine's layered runs on the SNICIT networks, of {', '.join(LAYERED_CUDA)} ('' for none)",
    )
    ap.add_argument("--population", type=int, default=1000, help="members; 0 for none")
    ap.add_argument("--member-edges", type=int, default=10_000)
    ap.add_argument("--population-batch", default="1,100,1000", help="batches for the population, comma-separated")
    ap.add_argument("--one-at-a-time", type=int, default=100, help="members timed one at a time (scaled to all)")
    ap.add_argument("--memory-kinds", default="pruned,deep-narrow,neat", help="'' for none")
    ap.add_argument("--memory-edges", default="1e6")
    ap.add_argument("--memory-batch", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=540.0, help="start no new case after this many seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default=None, help="file name part (default: the GPU's name or 'cpu')")
    args = ap.parse_args()
    unknown = [n for n in args.layered_cuda.split(",") if n and n not in LAYERED_CUDA]
    if unknown:
        ap.error(f"--layered-cuda: unknown {unknown}; choose from {', '.join(LAYERED_CUDA)}")
    from spdnn.provenance import provenance

    runner = Runner(args)
    record = {
        "benchmark": "dag",
        "config": vars(args),
        "provenance": provenance(),
        "device": gpu_info() if not args.cpu_only else {"gpu": None},
        "cpu": get_dag_engine("compiled").device(),
        "cases": [],
    }
    import numba

    record["cpu_threads"] = numba.config.NUMBA_NUM_THREADS
    try:
        import os

        record["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or (
        "cpu" if args.cpu_only or not record["device"].get("gpu") else record["device"]["gpu"].split()[-1].lower()
    )
    path = out / f"dag-{tag}-{time.strftime('%Y-%m-%d')}.json"

    def save() -> None:
        record["elapsed_seconds"] = time.perf_counter() - runner.t_start
        record["targets"] = targets(record)
        path.write_text(json.dumps(record, indent=1, default=str) + "\n")

    sizes = [int(float(s)) for s in args.sizes.split(",") if s]  # '' : no network cases (a population only)
    batches = [int(b) for b in args.batches.split(",")]
    # the targets' cases first (>= 1e6 edges, batch 1000), then small to large
    cases = [(k, e, b) for k in args.kinds.split(",") for e in sizes for b in batches]
    cases.sort(key=lambda c: (not (c[1] >= 10**6 and c[2] == 1000), c[1], c[2], c[0]))
    nets: dict = {}
    if args.population:
        population_case(runner, record)
        save()
    for kind, edges, batch in cases:
        if runner.late():
            record.setdefault("skipped", []).append([kind, edges, batch])
            continue
        if (kind, edges) not in nets:
            nets[(kind, edges)] = build(kind, edges, args.seed)
        net, extra = nets[(kind, edges)]
        row = runner.network_case(kind, edges, batch, net, extra)
        record["cases"].append(row)
        log(summary_line(row))
        save()
    if args.snicit_batches:
        snicit_cases(runner, record)
        save()
    if args.memory_kinds:
        memory_cases(runner, record)
    save()
    log(f"wrote {path} in {time.perf_counter() - runner.t_start:.0f} s; targets {json.dumps(record['targets'])}")


if __name__ == "__main__":
    main()
