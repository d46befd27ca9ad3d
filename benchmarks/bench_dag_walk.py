"""The per-group cost of deep, narrow networks on the GPU: cuda-warp against dag_walk and dag_lane
layouts, one network, CUDA events, median of --reps after one warm-up; every output checked
against cuda-warp's (compare_outputs). docs/dag.md says what each layout is.

  python benchmarks/bench_dag_walk.py --out $OUT [--edges 1e6] [--batches 1,1000] [--population 1000]

--population N: also a population of N neat members of 1e4 edges (bench_dag.py's) through
PopulationCudaEngine's kernels, each checked against the default kernel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from spdnn.dag.generate import random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.registry import get_dag_engine
from spdnn.dag.shapes import generate_shape
from spdnn.dag.validate import compare_outputs
from spdnn.provenance import provenance

LAYOUTS = {  # name -> (engine, options)
    "cuda-warp": ("cuda-warp", {}),
    "walk (warp plan's lanes, tile 8, 128 threads)": ("cuda-walk", {}),
    "walk, one vector a lane, 32 threads, 4 KB ring": (
        "cuda-walk",
        {"walk_vec1": True, "walk_tile": 1, "walk_threads": 32, "walk_ring_bytes": 4096},
    ),
    "walk, one vector a lane, 32 threads, 16 KB ring": (
        "cuda-walk",
        {"walk_vec1": True, "walk_tile": 1, "walk_threads": 32, "walk_ring_bytes": 16384},
    ),
    "walk, one vector a lane, 64 threads, 4 KB ring": (
        "cuda-walk",
        {"walk_vec1": True, "walk_tile": 1, "walk_threads": 64, "walk_ring_bytes": 4096},
    ),
    "walk, one vector a lane, 32 threads, 4 KB ring, depth 2": (
        "cuda-walk",
        {"walk_vec1": True, "walk_tile": 1, "walk_threads": 32, "walk_ring_bytes": 4096, "walk_depth": 2},
    ),
    "cuda-lane": ("cuda-lane", {}),  # 4 warps, steps by 4
    "cuda-lane, steps by 2": ("cuda-lane", {"lane_step_block": 2}),
    "cuda-lane, 2 warps": ("cuda-lane", {"lane_warps": 2}),
    "cuda-lane, 8 warps": ("cuda-lane", {"lane_warps": 8}),
    "cuda-lane, steps by 1": ("cuda-lane", {"lane_step_block": 1}),
    "cuda-lane, steps by 8": ("cuda-lane", {"lane_step_block": 8}),
    "cuda-lane, 8 warps, steps by 8": ("cuda-lane", {"lane_warps": 8, "lane_step_block": 8}),
}


def time_layout(engine, net, x, reps: int, ref):
    """(seconds of each run after one warm-up, the last result, the reference outputs (these if
    ref is None), the comparison with it); the engine's buffers freed after."""
    engine.prepare(net)
    engine.infer(x)
    runs = [engine.infer(x) for _ in range(reps)]
    out = runs[-1].outputs
    ref = out if ref is None else ref
    if hasattr(engine, "release"):  # the GPU engines keep buffers between calls
        engine.release()
    return [r.seconds for r in runs], runs[-1], ref, compare_outputs(out, ref)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--kind", default="deep-narrow")
    ap.add_argument("--edges", type=float, default=1e6)
    ap.add_argument("--batches", default="1,1000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--population", type=int, default=0, help="members (0: none)")
    ap.add_argument(
        "--layouts",
        default="",
        help="only these layouts, by name, separated by ';' (a name ending in '*': every layout it begins; "
        "cuda-warp, the reference, always)",
    )
    args = ap.parse_args()
    wanted = [p.strip() for p in args.layouts.split(";") if p.strip()]

    def chosen(name: str) -> bool:
        return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in wanted)

    layouts = {name: v for name, v in LAYOUTS.items() if name == "cuda-warp" or not wanted or chosen(name)}
    if wanted and len(layouts) == 1:
        raise SystemExit(f"--layouts {args.layouts!r} names no layout; they are: {'; '.join(LAYOUTS)}")
    net = levelise(generate_shape(args.kind, int(args.edges), args.seed))
    record = {"benchmark": "dag-walk", "config": vars(args), "provenance": provenance(), "network": net.summary()}
    record["cases"] = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = random_inputs(net.n_inputs, batch, seed=batch)
        ref = None
        for name, (engine_name, options) in layouts.items():
            secs, last, ref, c = time_layout(get_dag_engine(engine_name, **options), net, x, args.reps, ref)
            row = {
                "batch": batch,
                "layout": name,
                "seconds": statistics.median(secs),
                "runs": secs,
                "us_per_group": statistics.median(secs) / (net.n_levels - 1) * 1e6,
                "valid_against_cuda_warp": bool(c.passed),
                "details": last.details,
            }
            record["cases"].append(row)
            print(
                f"B={batch:5d} {name:58s} {row['seconds'] * 1e3:8.2f} ms {row['us_per_group']:6.2f} us/group"
                f" valid={c.passed}",
                flush=True,
            )
    if args.population:
        population_cases(args, record)
    path = Path(args.out) / f"dag-walk-{time.strftime('%Y-%m-%d')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str))
    print("wrote", path)


POPULATION_LAYOUTS = {
    "cuda-population (one row per node)": {},
    "walk (warp plan's lanes, tile 8, 128 threads)": {"walk": True},
    "walk, one vector a lane, 32 threads": {"walk": True, "walk_vec1": True, "walk_tile": 1, "walk_threads": 32},
    "lane (a thread per vector, 4 warps)": {"lane": True},
    "lane, 8 warps": {"lane": True, "lane_warps": 8},
}


def population_cases(args, record: dict) -> None:
    from spdnn.dag.population import population
    from spdnn.dag.population_cuda import PopulationCudaEngine
    from spdnn.dag.shapes import neat

    pop = population([neat(10_000, seed=k, n_inputs=64, n_outputs=8) for k in range(args.population)])
    for batch in (int(b) for b in args.batches.split(",")):
        x = random_inputs(pop.n_inputs, batch, seed=7)
        ref = None
        for name, options in POPULATION_LAYOUTS.items():
            try:
                secs, last, ref, c = time_layout(PopulationCudaEngine(**options), pop, x, args.reps, ref)
            except ValueError as err:  # a kernel that cannot take these members says why
                record["cases"].append(
                    {"population": args.population, "batch": batch, "layout": name, "not_run": str(err)}
                )
                print(f"pop B={batch:5d} {name:50s} not run: {err}", flush=True)
                continue
            row = {
                "population": args.population,
                "batch": batch,
                "layout": name,
                "seconds": statistics.median(secs),
                "runs": secs,
                "valid_against_default": bool(c.passed),
                "details": last.details,
            }
            record["cases"].append(row)
            print(f"pop B={batch:5d} {name:50s} {row['seconds'] * 1e3:8.3f} ms valid={c.passed}", flush=True)


if __name__ == "__main__":
    main()
