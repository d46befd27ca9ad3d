"""Run bench_dag_walk.py's layouts once each on one network, kernels compiled with -lineinfo, for a
profiler (Nsight Compute) to attach to: where a deep, narrow network's per-group time goes.

  ncu --clock-control none --set full --import-source yes -k regex:dag_ -o $OUT/dag \\
      python benchmarks/profile_dag_walk.py [--edges 1e5] [--batch 1000] [--layouts 0,2,6]

--leave-out 1,2,4,7: also time cuda-lane built with LANE_LEAVE_OUT set to each (dag_levels.cu: 1 no
barrier a group, 2 no global stores, 4 no sums), median of --reps after a warm-up: what each stage
costs. Those builds' outputs are wrong by design, so they are timed, never checked or kept.
"""

from __future__ import annotations

import argparse
import statistics

from bench_dag_walk import LAYOUTS

import spdnn.dag.cuda as dag_cuda
from spdnn.dag.generate import random_inputs
from spdnn.dag.levels import levelise
from spdnn.dag.registry import get_dag_engine
from spdnn.dag.shapes import generate_shape
from spdnn.dag.validate import compare_outputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="deep-narrow")
    ap.add_argument("--edges", type=float, default=1e5)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument(
        "--layouts",
        default=",".join(map(str, range(len(LAYOUTS)))),
        help="positions in bench_dag_walk.LAYOUTS (0: cuda-warp), comma-separated ('' for none)",
    )
    ap.add_argument("--leave-out", default="", help="LANE_LEAVE_OUT values, comma-separated ('' for none)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    compile_module = dag_cuda.compile_module
    extra: list[str] = []  # more nvcc options for the engines built from here on
    dag_cuda.compile_module = lambda src, arch, opts: compile_module(src, arch, [*opts, "-lineinfo", *extra])
    net = levelise(generate_shape(args.kind, int(args.edges), 1))
    x = random_inputs(net.n_inputs, args.batch, seed=args.batch)
    ref = None
    for name in (list(LAYOUTS)[int(k)] for k in args.layouts.split(",") if k):
        engine_name, options = LAYOUTS[name]
        engine = get_dag_engine(engine_name, **options)
        engine.prepare(net)
        out = engine.infer(x)
        ref = out.outputs if ref is None else ref
        print(
            f"{name}: {out.seconds * 1e3:.2f} ms, {out.details.get('walk_kernel', out.details['kernel'])}, "
            f"same as the first: {compare_outputs(out.outputs, ref).passed}",
            flush=True,
        )
    for k in (int(v) for v in args.leave_out.split(",") if v):
        extra[:] = [f"-DLANE_LEAVE_OUT={k}"]
        engine = get_dag_engine("cuda-lane")
        engine.prepare(net)
        engine.infer(x)
        ms = statistics.median(engine.infer(x).seconds for _ in range(args.reps)) * 1e3
        print(f"cuda-lane, LANE_LEAVE_OUT={k} (outputs not valid): {ms:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
