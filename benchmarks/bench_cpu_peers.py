"""The CPU side of the peers: spdnn's CPU reference next to SuiteSparse:GraphBLAS, same data.

    python benchmarks/bench_cpu_peers.py --networks 1024x120,4096x120 --out benchmarks/results

For every network (the same synthetic data and stored truth as bench_peers.py): the reference
with saturated rows carried and without (all cores, forked workers), and GraphBLAS written as
LAGraph's dnn does it (benchmarks/peers/graphblas.py, all cores), each timed around its layer
loop, median of --reps, categories checked row by row against the truth. Writes JSON (CPU,
versions, config) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from peers import data, graphblas, parsers

from spdnn import challenge
from spdnn.devices import cpu_model, default_workers
from spdnn.engines.cpu import reference
from spdnn.provenance import git_commit, package_versions

ROOT = Path(__file__).resolve().parents[1]


def timed(run, reps: int) -> tuple[np.ndarray, list[float]]:
    times, categories = [], None
    for _ in range(reps):
        categories, seconds = run()
        times.append(seconds)
    return categories, times


def reference_run(net: data.Network, carry: bool, workers: int):
    def run():
        t0 = time.perf_counter()
        result = reference(
            lambda: net.layers,
            challenge.bias(net.neurons),
            net.inputs,
            workers=workers,
            keep_values=False,
            carry_saturated=carry,
        )
        return result.alive[net.layer_count], time.perf_counter() - t0

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="1024x120", help="comma-separated NxL (synthetic)")
    ap.add_argument("--inputs", type=int, default=60000, help="synthetic inputs (all distinct)")
    ap.add_argument("--seed", type=int, default=1, help="the generator's seed")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each (median)")
    ap.add_argument("--workers", type=int, default=None, help="processes of the reference (default: all cores)")
    ap.add_argument("--truth-dir", default=str(ROOT / ".peers" / "truth"), help="stored truth (bench_peers.py)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of the JSON result")
    ap.add_argument("--json-name", default=None, help="the JSON's file name")
    args = ap.parse_args(argv)
    workers = args.workers or default_workers()
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "workers": workers,
        "python": platform.python_version(),
        "versions": {**package_versions(), **({} if graphblas.available() else graphblas.versions())},
        "spdnn_commit": git_commit(),
        "config": vars(args),
        "networks": [],
    }
    lines = ["| network | reference, carried | reference, plain | GraphBLAS (LAGraph dnn) |", "|---|---|---|---|"]
    for spec in args.networks.split(","):
        _real, n, layers = data.parse_spec(spec)
        net = data.synthetic(n, layers, args.inputs, args.seed, Path(args.truth_dir))
        entry = {
            "name": net.name,
            "inputs": args.inputs,
            "edges": net.edges,
            "truth": int(len(net.truth)),
            "truth_source": net.truth_source,
            "results": {},
        }
        runs = {
            "reference-carried": reference_run(net, True, workers),
            "reference-plain": reference_run(net, False, workers),
        }
        why = graphblas.available()
        if why is None:
            runs["graphblas"] = lambda: graphblas.infer(net.layers, net.inputs, challenge.bias(n))
        else:
            entry["results"]["graphblas"] = {"status": why}
        for key, run in runs.items():
            categories, times = timed(run, args.reps)
            check = parsers.compare_categories(np.asarray(categories, dtype=np.int64), net.truth)
            med = statistics.median(times)
            entry["results"][key] = {
                "seconds": med,
                "seconds_all": times,
                "edges_per_second": net.edges / med,
                "categories": check,
                "categories_ok": check["match"],
            }
            print(
                f"{net.name} {key:18s} {med:8.3f} s  {net.edges / med / 1e9:8.2f} Gedges/s  "
                f"categories {'ok' if check['match'] else check}",
                flush=True,
            )
        record["networks"].append(entry)
        cells = []
        for key in ("reference-carried", "reference-plain", "graphblas"):
            r = entry["results"].get(key, {})
            cells.append(
                f"{r['edges_per_second'] / 1e9:.2f} Gedges/s ({r['seconds']:.2f} s"
                f"{'' if r['categories_ok'] else ', WRONG categories'})"
                if "seconds" in r
                else r.get("status", "")
            )
        lines.append(f"| {net.name} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.json_name or f"cpu-peers-{record['date'][:10]}.json"
    (out / name).write_text(json.dumps(record, indent=1) + "\n")
    print("\n".join(lines))
    print(f"-> {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
