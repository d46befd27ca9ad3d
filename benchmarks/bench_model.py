"""Design-space exploration rate of spdnn.model (designs evaluated per second, CPU).

    python benchmarks/bench_model.py [--networks 1024x120,4096x120,16384x120,65536x120] [--preset h100-sxm]

Writes benchmarks/results/model-dse-<host>.json: per network the number of designs (DEFAULT_SPACE:
gather / smem / fused dataflows x variants x mappings x compaction policies x batches), valid
designs, seconds (median of --reps runs, the whole evaluation: policy simulation, layer
compression, cost), designs per second, and the best designs by time and by energy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spdnn.model import NetworkProfile, load_hardware  # noqa: E402
from spdnn.model.explore import evaluate  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="1024x120,4096x120,16384x120,65536x120")
    ap.add_argument("--preset", default="h100-sxm")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    hw = load_hardware(args.preset)
    rec = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "preset": args.preset, "calibrated": list(hw.calibrated), "networks": []}
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
        best = {key: [{"seconds": float(res.seconds[i]), "joules": float(res.joules[i]), **res.design(i).to_dict()}
                      for i in res.best(3, key)] for key in ("seconds", "joules")}
        row = {"neurons": n, "layers": layers, "designs": len(res), "valid": int(res.valid.sum()),
               "seconds": sec, "seconds_all": times, "designs_per_second": len(res) / sec, "best": best}
        rec["networks"].append(row)
        print(f"N={n} L={layers}: {len(res)} designs ({row['valid']} valid) in {sec:.2f} s = "
              f"{row['designs_per_second'] / 1e6:.2f} M designs/s; best {best['seconds'][0]['dataflow']} "
              f"{best['seconds'][0]['variant']} {best['seconds'][0]['seconds'] * 1e3:.3f} ms", flush=True)
    out = Path(args.out) / f"model-dse-{platform.node() or 'host'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
