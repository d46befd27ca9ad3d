"""How the per-layer kernel's time follows the span an SM works on, apart from the warps a block.

The cost model predicts the full-width (`dedup`) variant flat across warps a block at equal warps
an SM, while measured it is 2.6x slower at 2 warps than at 32 on 16384 x 120 (docs/model.md,
"Where the remaining bias sits"). This sweep fixes the blocks resident on an SM with
CudaEngine(layer_blocks_per_sm=k) (spdnn_layer's shared memory padded, results unchanged) and
varies the warps a block, so the two can be told apart:

  python benchmarks/layer_span.py --network 16384x120 --warps 2,8,32 --blocks 1,2,4,8,16 --out $OUT

Every configuration runs the same generated network and inputs; its categories and active rows
per layer are checked against the engine's default configuration in the same process (which the
GPU tests check against the CPU reference), and a mismatch stops the sweep. Times: median of
--reps runs after a warm-up (CUDA events, inputs on the device).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from bench_gpu import make_inputs

from spdnn.engines.cuda import CudaEngine
from spdnn.generate import generate_layers
from spdnn.io.cache import Weights
from spdnn.provenance import provenance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", default="16384x120", help="NxL")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--inputs", type=int, default=60000)
    ap.add_argument("--pool", type=int, default=6000, help="distinct inputs, repeated to --inputs")
    ap.add_argument("--variant", default="dedup")
    ap.add_argument("--warps", default="2,8,32")
    ap.add_argument("--blocks", default="0,1,2,4,8,16", help="layer_blocks_per_sm values (0: not capped)")
    ap.add_argument("--check-every", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    n, layers = (int(v) for v in args.network.split("x"))
    t0 = time.perf_counter()
    weights = Weights.from_matrices(list(generate_layers(n, layers, args.seed)))
    x = make_inputs(n, args.inputs, args.pool, args.seed)
    print(f"{args.network} seed {args.seed}: generated in {time.perf_counter() - t0:.1f} s")
    reference = CudaEngine()
    reference.prepare(weights, layers)
    want = reference.infer(x, return_values=False)
    rows = []
    for warps in [int(w) for w in args.warps.split(",") if w]:
        for blocks in [int(b) for b in args.blocks.split(",") if b]:
            options = dict(variant=args.variant, warps=warps, check_every=args.check_every, fuse_width=0)
            if blocks:
                options["layer_blocks_per_sm"] = blocks
            engine = CudaEngine(**options)
            engine.prepare(weights, layers)
            engine.infer(x, return_values=False)  # warm-up
            runs = [engine.infer(x, return_values=False) for _ in range(args.reps)]
            got = runs[-1]
            same = np.array_equal(got.categories, want.categories) and got.active_rows == want.active_rows
            if not same:
                raise SystemExit(f"{options}: categories or active rows differ from the default engine's")
            ms = statistics.median(r.seconds for r in runs) * 1e3
            rows.append(dict(options=options, ms=ms, runs_ms=[r.seconds * 1e3 for r in runs], checked=True))
            print(f"warps {warps:2d} blocks_per_sm {blocks or '-':>2}: {ms:9.3f} ms  categories ok")
    record = dict(
        benchmark="layer_span",
        network=args.network,
        seed=args.seed,
        inputs=args.inputs,
        pool=args.pool,
        default_ms=want.seconds * 1e3,
        rows=rows,
        provenance=provenance(),
    )
    out = Path(args.out) / f"layer-span-{args.network}-{args.variant}.json"
    out.write_text(json.dumps(record, indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
