"""How far back a population's edges read, and what that bounds, on the CPU (issue 19, populations).

The one-launch population kernel keeps one global row per node; at batch 1000 it moves about 52 GB
and is bound by HBM bandwidth (docs/dag.md). This counts, for bench_dag's population (NEAT members
of --member-edges edges, 64 shared inputs), the share of edge reads that are the shared inputs (a
few hundred KB: always in L2) and the share that read a row at most K rows back in the member's
level order (what a shared-memory ring of K rows would serve), and the HBM bytes and time that
remain for each K: the reads from further back, and the rows written that such reads or the
outputs need.

  python benchmarks/population_reuse.py [--members 1000] [--member-edges 10000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spdnn.dag.population import blocked, population
from spdnn.dag.shapes import neat


def reuse(members: int, member_edges: int, rings: list[int]) -> dict:
    """Shares of the population's edge reads by distance, and the global traffic left per ring size."""
    b = blocked(population([neat(member_edges, seed=k, n_inputs=64, n_outputs=8) for k in range(members)]))
    reader = np.repeat(np.arange(b.n_rows), np.diff(b.indptr))
    src = b.sources.astype(np.int64)
    shared = src < b.n_inputs
    back = reader - src  # rows between a reader and its source (member rows only are meaningful)
    outputs = np.zeros(b.n_rows, bool)
    outputs[b.output_rows] = True
    rows = b.n_rows - b.n_inputs
    out = {"members": members, "member_edges": member_edges, "rows": rows, "edges": int(src.size)}
    out["shared_input_reads"] = float(shared.mean())
    table = []
    for k in rings:
        far = ~shared & (back > k)
        written = np.zeros(b.n_rows, bool)
        written[src[far]] = True
        written |= outputs
        table.append(
            {
                "ring_rows": k,
                "reads_on_chip": float((~shared & (back <= k)).mean()),
                "reads_far": float(far.mean()),
                "rows_written": int(written[b.n_inputs :].sum()),
            }
        )
    out["by_ring"] = table
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--member-edges", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rings", default="0,64,128,256,445,512,890,1024,2048")
    ap.add_argument("--bandwidth", type=float, default=4.3e12, help="HBM bytes/s (H200 device copy)")
    ap.add_argument("--one-at-a-time-ms", type=float, default=392.0, help="measured (docs/dag.md, H200)")
    ap.add_argument("--out", default=None, help="write the JSON here")
    args = ap.parse_args()
    res = reuse(args.members, args.member_edges, [int(v) for v in args.rings.split(",")])
    col = 4.0 * args.batch  # bytes of one row of values
    print(
        f"{res['members']} members, {res['rows']} rows, {res['edges']} edges; "
        f"{res['shared_input_reads']:.1%} of reads are the shared inputs"
    )
    print("ring rows | reads on chip | reads from HBM | rows written | HBM GB | bound ms | x one at a time")
    for row in res["by_ring"]:
        gb = col * (row["reads_far"] * res["edges"] + row["rows_written"]) / 1e9
        ms = gb * 1e9 / args.bandwidth * 1e3
        row.update(hbm_gb=gb, bound_ms=ms, bound_speedup=args.one_at_a_time_ms / ms)
        print(
            f"{row['ring_rows']:9d} | {row['reads_on_chip']:13.1%} | {row['reads_far']:14.1%} | "
            f"{row['rows_written']:12d} | {gb:6.1f} | {ms:8.2f} | {args.one_at_a_time_ms / ms:5.1f}x"
        )
    res.update(batch=args.batch, bandwidth=args.bandwidth, one_at_a_time_ms=args.one_at_a_time_ms)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
