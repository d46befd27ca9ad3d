"""What a dataflow schedule could gain over dag_lane's group-synchronous one, on the CPU.

dag_lane (spdnn/dag/kernels/dag_levels.cu) runs a group's nodes on its warps and waits at a block
barrier for the longest before the next group; Nsight Compute shows 30% of its stall samples at
that barrier. A schedule of per-node readiness flags would let a warp start a node as soon as its
sources are done. This estimates the ratio of the two (and of the critical path, the bound) with a
per-node cost of `node + step x steps` cycles (steps: in-degree padded to --step-block) and
`--barrier` cycles a group; the constants are assumptions, so read the ratios, not the cycles.

  python benchmarks/estimate_lane_schedule.py [--kind deep-narrow] [--edges 1e6] [--warps 4]
"""

from __future__ import annotations

import argparse
import heapq

import numpy as np

from spdnn.dag.levels import levelise
from spdnn.dag.shapes import generate_shape


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="deep-narrow")
    ap.add_argument("--edges", type=float, default=1e6)
    ap.add_argument("--warps", type=int, default=4)
    ap.add_argument("--step-block", type=int, default=4)
    ap.add_argument("--node", type=float, default=60.0, help="cycles a node besides its steps")
    ap.add_argument("--step", type=float, default=12.0, help="cycles a step")
    ap.add_argument("--barrier", type=float, default=40.0, help="cycles a group barrier")
    ap.add_argument("--flag", type=float, default=10.0, help="cycles a readiness check (dataflow)")
    args = ap.parse_args()
    net = levelise(generate_shape(args.kind, int(args.edges), 1))
    indptr, src, lp = net.indptr, net.sources, net.level_ptr
    deg = np.diff(indptr)
    cost = args.node + args.step * (-(-deg // args.step_block) * args.step_block)
    synced = 0.0
    for g in range(1, net.n_levels):
        loads = np.zeros(args.warps)
        for c in sorted(cost[lp[g] : lp[g + 1]], reverse=True):
            loads[np.argmin(loads)] += c
        synced += loads.max() + args.barrier
    finish, path = np.zeros(net.n_nodes), np.zeros(net.n_nodes)
    free = [0.0] * args.warps
    for v in range(int(lp[1]), net.n_nodes):
        s = src[indptr[v] : indptr[v + 1]]
        start = max(heapq.heappop(free), finish[s].max() if s.size else 0.0) + args.flag
        finish[v] = start + cost[v]
        heapq.heappush(free, finish[v])
        path[v] = (path[s].max() if s.size else 0.0) + cost[v] + args.flag
    print(f"{args.kind}, {net.n_edges} edges, {net.n_levels - 1} groups, {args.warps} warps")
    print(f"group-synchronous  {synced:12.0f} cycles")
    print(f"dataflow           {finish.max():12.0f} cycles  ({synced / finish.max():.2f}x)")
    print(f"critical path      {path.max():12.0f} cycles  ({synced / path.max():.2f}x, the bound)")


if __name__ == "__main__":
    main()
