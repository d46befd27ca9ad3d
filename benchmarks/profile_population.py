"""Run the population kernels once each (after a warm-up) on bench_dag's population, for a profiler
(Nsight Compute) to attach to: where dag_population's time goes at batch 1000, and why a ring of
the member's recent rows on chip (dag_population_ring) moves fewer bytes in the same time.

  ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \\
      --section WarpStateStats --section MemoryWorkloadAnalysis -k regex:dag_population \\
      -o $OUT/population python benchmarks/profile_population.py [--variants default,ring128]

Every output is checked against the default kernel's (rounding for ring_tile < 128), so a profile
is never taken of a wrong run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spdnn.dag.generate import random_inputs
from spdnn.dag.population import population
from spdnn.dag.population_cuda import PopulationCudaEngine
from spdnn.dag.shapes import neat

VARIANTS = {
    "default": {},
    "ring128": {"ring_rows": 128},
    "ring256": {"ring_rows": 256},
    "ring256-tile64": {"ring_rows": 256, "ring_tile": 64},
    "bounds2": {"min_blocks": 2},  # launch bounds: registers for 2 blocks of 512 an SM (the default's)
    "bounds3": {"min_blocks": 3},
    "bounds4": {"min_blocks": 4},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--member-edges", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--variants", default="default,ring128", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--blocks", default="512", help="threads a block, comma-separated (each variant at each)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    # bench_dag.py's population: the same members, seeds and inputs
    pop = population([neat(args.member_edges, seed=k, n_inputs=64, n_outputs=8) for k in range(args.members)])
    x = random_inputs(pop.n_inputs, args.batch, seed=7)
    print(f"population of {args.members} ({pop.n_edges} edges) built in {time.perf_counter() - t0:.1f} s")
    reference = None
    runs = [(v, int(t)) for v in args.variants.split(",") if v for t in args.blocks.split(",") if t]
    for variant, threads in runs:
        name = f"{variant} block {threads}"
        options = dict(VARIANTS[variant])
        if "min_blocks" in options:  # the same threads an SM at any block size
            options["min_blocks"] = max(1, options["min_blocks"] * 512 // threads)
        engine = PopulationCudaEngine(block=threads, **options)
        engine.prepare(pop)
        engine.infer(x)  # warm-up: compiled and loaded before the profiled launch
        res = engine.infer(x)
        if reference is None:
            reference = res.outputs
        exact = np.array_equal(res.outputs, reference)
        close = exact or np.allclose(res.outputs, reference, rtol=1e-5, atol=1e-6)
        regs = res.details.get("registers")
        match = "bit for bit" if exact else "to rounding" if close else "WRONG"
        print(f"{name}: {res.seconds * 1e3:.3f} ms, {regs} registers, {match}")
        if not close:
            raise SystemExit(f"{name}: outputs differ from the first variant's")


if __name__ == "__main__":
    main()
