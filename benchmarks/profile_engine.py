"""Where the cuda engine's time goes: every kernel launch timed with CUDA events.

Runs a synthetic network once to warm up, then once with an event pair around every
launch on the compute stream. Prints the time per kernel (and per fused segment or layer)
and the span not covered by kernels (host launch gaps, check-point round trips).

  python benchmarks/profile_engine.py 1024x120 [--inputs 60000] [--option fuse_width=0 ...]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
from pathlib import Path

import numpy as np
from bench_gpu import make_inputs

from spdnn.engines.cuda import CudaEngine
from spdnn.generate import generate_layers
from spdnn.io.cache import Weights


def parse_option(text: str):
    key, _, value = text.partition("=")
    try:
        return key, int(value)
    except ValueError:
        return key, value


def profile(engine: CudaEngine, x) -> dict:
    """Re-run with every prepared launch of the engine's modules wrapped in a pair of events."""
    cuda = engine.cuda
    launches = []
    originals = []
    for _mod, fns in engine._modules.values():
        for name, fn in fns.items():
            if not hasattr(fn, "prepared_async_call"):
                continue
            original = fn.prepared_async_call

            def timed(*args, _orig=original, _name=name, **kw):
                a, b = cuda.Event(), cuda.Event()
                a.record(args[2])
                _orig(*args, **kw)
                b.record(args[2])
                launches.append(
                    (_name, engine._launch if _name in ("layer", "fused", "fused_scatter") else None, args[0][0], a, b)
                )

            fn.prepared_async_call = timed
            originals.append((fn, original))
    try:
        res = engine.infer(x, return_values=False)
    finally:
        for fn, original in originals:
            fn.prepared_async_call = original
    per_kernel = collections.defaultdict(float)
    rows = []
    for name, where, blocks, a, b in launches:
        ms = b.time_since(a)
        per_kernel[name] += ms
        rows.append({"kernel": name, "where": str(where[1]) if where else "", "blocks": int(blocks), "ms": ms})
    covered = sum(per_kernel.values())
    return {
        "seconds": res.seconds,
        "kernel_ms": dict(per_kernel),
        "uncovered_ms": res.seconds * 1e3 - covered,
        "launches": rows,
        "details": res.details,
        "active_rows": res.active_rows,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("network", help="NxL, e.g. 1024x120")
    ap.add_argument("--inputs", type=int, default=60000)
    ap.add_argument("--pool", type=int, default=0, help="distinct inputs, repeated to --inputs (0: all distinct)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--option", action="append", default=[], help="engine option key=value (repeatable)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    n, layers = (int(v) for v in args.network.split("x"))
    weights = Weights.from_matrices(list(generate_layers(n, layers, args.seed)))
    x = make_inputs(n, args.inputs, args.pool, args.seed)
    options = dict(parse_option(o) for o in args.option)
    engine = CudaEngine(**options)
    engine.prepare(weights, layers)
    plain = [engine.infer(x, return_values=False).seconds for _ in range(3)]
    prof = profile(engine, x)
    prof.update(network=args.network, options=options, plain_seconds=plain)
    print(
        f"{args.network} {options}: {np.median(plain) * 1e3:.3f} ms uninstrumented, "
        f"{prof['seconds'] * 1e3:.3f} ms instrumented, {prof['uncovered_ms']:.3f} ms outside kernels"
    )
    for name, ms in sorted(prof["kernel_ms"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:8s} {ms:8.3f} ms")
    for row in prof["launches"]:
        if row["kernel"] in ("layer", "fused", "fused_scatter", "compact"):
            print(f"    {row['kernel']:7s} {row['where']:>9s} {row['blocks']:7d} blocks {row['ms'] * 1e3:8.1f} us")
    out = Path(args.out) / f"profile-{args.network}-{'-'.join(f'{k}{v}' for k, v in options.items()) or 'default'}.json"
    out.write_text(json.dumps(prof, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
