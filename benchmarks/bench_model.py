"""Design-space exploration rates of spdnn.model (distinct designs evaluated per second, CPU).

    python benchmarks/bench_model.py [--networks 1024x120,4096x120,16384x120,65536x120] [--preset h100-sxm]

Writes benchmarks/results/model-dse-<host>.json with two parts.
Mapping DSE, per network: the designs of DEFAULT_SPACE (the gather / smem / fused directive files
x the values of the Params each reads x variants x compaction policies x batches: every design a
distinct directive file), valid designs, seconds (median of --reps runs, the whole evaluation:
policy simulation, layer compression, analysis, time), designs per second, the best designs.
Hardware DSE, per network: the GPUs of the refined grid (hwdse.grid_axes(--hw-scale): every one
distinct, the Cartesian product of distinct axis values), each with the best of the engine's
designs (model cli hw_designs) or one design; seconds (median), GPUs per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from spdnn.model import NetworkProfile, load_hardware
from spdnn.model.explore import evaluate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="1024x120,4096x120,16384x120,65536x120")
    ap.add_argument("--preset", default="h100-sxm")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--hw-scale", type=int, default=2, help="refinement of the hardware grid (2: 2.0 M GPUs)")
    ap.add_argument("--hw-networks", default="1024x120,65536x120")
    args = ap.parse_args(argv)
    hw = load_hardware(args.preset)
    rec = {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "preset": args.preset,
        "calibrated": list(hw.calibrated),
        "networks": [],
    }
    import numpy as np

    rec["numpy"] = np.__version__
    for spec in args.networks.split(","):
        n, layers = (int(v) for v in spec.split("x"))
        prof = NetworkProfile.stored(n, layers)
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            res = evaluate(prof, hw)
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        from spdnn.model.cost import predict
        from spdnn.model.validated import measured_label

        best = {
            key: [
                {
                    "seconds": float(res.seconds[i]),
                    "joules": float(res.joules[i]),
                    "measured": measured_label(res.design(i)),
                    "fused_layers": predict(res.design(i), prof, hw).policy["fused_layers"],
                    **res.design(i).to_dict(),
                }
                for i in res.best(3, key)
            ]
            for key in ("seconds", "joules")
        }
        row = {
            "neurons": n,
            "layers": layers,
            "designs": len(res),
            "valid": int(res.valid.sum()),
            "seconds": sec,
            "seconds_all": times,
            "designs_per_second": len(res) / sec,
            "best": best,
        }
        rec["networks"].append(row)
        print(
            f"N={n} L={layers}: {len(res)} designs ({row['valid']} valid) in {sec:.2f} s = "
            f"{row['designs_per_second'] / 1e6:.2f} M designs/s; best {best['seconds'][0]['dataflow']} "
            f"({best['seconds'][0]['fused_layers']} layers fused) "
            f"{best['seconds'][0]['variant']} {best['seconds'][0]['seconds'] * 1e3:.3f} ms",
            flush=True,
        )
    rec["hardware"] = hardware_rates(args)
    out = Path(args.out) / f"model-dse-{platform.node() or 'host'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1, default=float))
    print(f"wrote {out}")
    return 0


def hardware_rates(args) -> list[dict]:
    """GPUs per second of the hardware DSE (distinct grid points), with one design and with the
    engine's designs (best per GPU)."""
    import numpy as np

    from spdnn.model.cli import hw_designs
    from spdnn.model.hwdse import evaluate_hw, grid_axes

    base = load_hardware(args.preset)
    axes = grid_axes(args.hw_scale)
    gpus = int(np.prod([len(v) for v in axes.values()]))
    assert all(len(np.unique(v)) == len(v) for v in axes.values())  # distinct by construction
    rows = []
    for spec in args.hw_networks.split(","):
        n, layers = (int(v) for v in spec.split("x"))
        prof = NetworkProfile.stored(n, layers)
        for label, designs in (
            ("engine default kernel per layer", hw_designs(None)[:1]),
            ("best of the engine's 3 designs", hw_designs(None)),
        ):
            times = []
            for _ in range(args.reps):
                t = time.perf_counter()
                res = evaluate_hw(prof, base, designs, axes)
                times.append(time.perf_counter() - t)
            sec = statistics.median(times)
            rows.append(
                {
                    "neurons": n,
                    "layers": layers,
                    "designs_per_gpu": len(designs),
                    "label": label,
                    "gpus": gpus,
                    "valid": int(np.isfinite(res.seconds).sum()),
                    "seconds": sec,
                    "seconds_all": times,
                    "gpus_per_second": gpus / sec,
                    "gpu_design_pairs_per_second": gpus * len(designs) / sec,
                }
            )
            print(
                f"hardware N={n} L={layers}: {gpus} GPUs x {len(designs)} design(s) in {sec:.2f} s = "
                f"{gpus / sec / 1e6:.2f} M GPUs/s",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
