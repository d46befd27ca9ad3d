"""How far back a population's edges read, and what that bounds, on the CPU (issue 19, populations).

The one-launch population kernel keeps one global row per node; at batch 1000 it moves about 52 GB
and is bound by HBM bandwidth (docs/dag.md). This counts, for bench_dag's population (NEAT members
of --member-edges edges, 64 shared inputs), the share of edge reads that are the shared inputs (a
few hundred KB: always in L2) and the share that read a row at most K rows back in the member's
level order that no row written by the end of the reader's group has displaced (what a
shared-memory ring of K rows serves: spdnn.dag.population_ring), and the HBM bytes and time that
remain for each K: the reads from further back, and the rows written that such reads or the
outputs need. Beside that HBM bound, a latency bound for a kernel of blocks (member, tile of
--tile vectors) that keep the ring in shared memory and walk the member's groups one after
another at --group-us a group (dag_walk's measured 2-3 us on an H200, whatever the tile): as
many blocks an SM as the ring's K x tile x 4 bytes allow in --smem-kb (at most --max-blocks).

  python benchmarks/population_reuse.py [--members 1000] [--member-edges 10000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spdnn.dag.population import blocked, population
from spdnn.dag.population_ring import ring_tables
from spdnn.dag.shapes import neat


def reuse(members: int, member_edges: int, rings: list[int]) -> dict:
    """Shares of the population's edge reads by distance, and the global traffic left per ring size
    (the near-ring tables' own rule: spdnn.dag.population_ring.ring_tables)."""
    b = blocked(population([neat(member_edges, seed=k, n_inputs=64, n_outputs=8) for k in range(members)]))
    shared = b.sources < b.n_inputs
    groups = np.diff(b.member_levels)  # computed groups of each member
    out = {"members": members, "member_edges": member_edges, "rows": b.n_rows - b.n_inputs, "edges": int(shared.size)}
    out["groups_per_member"] = float(groups.mean())
    out["shared_input_reads"] = float(shared.mean())
    table = []
    for k in rings:
        t = ring_tables(b, k)
        near = t.codes < 0
        table.append(
            {
                "ring_rows": k,
                "reads_on_chip": float(near.mean()),
                "reads_far": float((~near & ~shared).mean()),
                "rows_written": int(t.stored[b.n_inputs :].sum()),
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
    ap.add_argument("--tile", type=int, default=128, help="input vectors a block (the latency bound)")
    ap.add_argument("--group-us", type=float, default=2.0, help="microseconds a block spends on a group")
    ap.add_argument("--smem-kb", type=float, default=227.0, help="shared memory an SM (KB)")
    ap.add_argument("--max-blocks", type=int, default=4, help="blocks an SM at most (threads)")
    ap.add_argument("--sms", type=int, default=132)
    ap.add_argument("--out", default=None, help="write the JSON here")
    args = ap.parse_args()
    res = reuse(args.members, args.member_edges, [int(v) for v in args.rings.split(",")])
    col = 4.0 * args.batch  # bytes of one row of values
    print(
        f"{res['members']} members, {res['rows']} rows, {res['edges']} edges; "
        f"{res['shared_input_reads']:.1%} of reads are the shared inputs"
    )
    block_groups = res["members"] * -(-args.batch // args.tile) * res["groups_per_member"]
    print(
        "ring rows | reads on chip | reads from HBM | rows written | HBM GB | HBM bound ms | "
        f"blocks an SM (tile {args.tile}) | latency bound ms | x one at a time (the larger bound)"
    )
    for row in res["by_ring"]:
        gb = col * (row["reads_far"] * res["edges"] + row["rows_written"]) / 1e9
        ms = gb * 1e9 / args.bandwidth * 1e3
        ring_kb = row["ring_rows"] * args.tile * 4 / 1024
        blocks = args.max_blocks if ring_kb == 0 else min(args.max_blocks, int(args.smem_kb // ring_kb))
        lat = block_groups * args.group_us * 1e-3 / (args.sms * blocks) if blocks else None
        row.update(hbm_gb=gb, bound_ms=ms, blocks_per_sm=blocks, latency_ms=lat)
        row["bound_speedup"] = args.one_at_a_time_ms / max(ms, lat) if lat is not None else None
        tail = f"{lat:16.2f} | {row['bound_speedup']:5.1f}x" if lat is not None else "the ring does not fit"
        print(
            f"{row['ring_rows']:9d} | {row['reads_on_chip']:13.1%} | {row['reads_far']:14.1%} | "
            f"{row['rows_written']:12d} | {gb:6.1f} | {ms:12.2f} | {blocks:21d} | {tail}"
        )
    res.update(
        batch=args.batch,
        bandwidth=args.bandwidth,
        one_at_a_time_ms=args.one_at_a_time_ms,
        tile=args.tile,
        group_us=args.group_us,
        smem_kb=args.smem_kb,
        max_blocks=args.max_blocks,
        sms=args.sms,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
