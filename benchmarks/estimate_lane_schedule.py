"""What a dataflow schedule could gain over dag_lane's group-synchronous one, on the CPU.

dag_lane (spdnn/dag/kernels/dag_levels.cu) runs a group's nodes on its warps and waits at a block
barrier for the longest before the next group; Nsight Compute shows 30% of its stall samples at
that barrier. A schedule of per-node readiness flags would let a warp start a node as soon as its
sources are done. This estimates the ratio of the two (and of the critical path, the bound) with a
per-node cost of `node + step x steps` cycles (steps: in-degree padded to --step-block) and
`--barrier` cycles a group; the constants are assumptions, so read the ratios, not the cycles.

Three schedules besides the group-synchronous one: "dataflow" (any node to the first free warp,
per-node flags: an upper estimate of what flags give), "per-warp counters" (dag_lane's own
bundles and their warps, bundles w, w + warps, ... of each group as now, but instead of the
barrier each warp waits only for the warps whose earlier groups it reads, through a count of the
groups each warp has finished: the smallest change to the kernel), and the critical path.

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
    bundled, counters = per_warp_counters(net, args)
    print(f"{args.kind}, {net.n_edges} edges, {net.n_levels - 1} groups, {args.warps} warps")
    print(f"group-synchronous  {synced:12.0f} cycles")
    print(f"dataflow           {finish.max():12.0f} cycles  ({synced / finish.max():.2f}x)")
    print(f"bundles, barrier   {bundled:12.0f} cycles  (dag_lane's own bundles, a barrier a group)")
    print(f"per-warp counters  {counters:12.0f} cycles  ({bundled / counters:.2f}x the bundles with barriers)")
    print(f"critical path      {path.max():12.0f} cycles  ({synced / path.max():.2f}x, the bound)")


def per_warp_counters(net, args) -> tuple[float, float]:
    """dag_lane's bundles (lane_stream.bundle_layout) on their warps, a bundle costing its longest
    node (its P sums overlap); a warp starts a group once every other warp whose bundles wrote a
    source of its own has finished that source's group (+ a flag check per group), no barrier.
    The groups after the first (the inputs') only, as above. Returns (the same bundles with a barrier
    a group, with the counters)."""
    from spdnn.dag.lane_stream import bundle_layout

    indptr, src, lp = net.indptr, net.sources, net.level_ptr
    deg = np.diff(indptr)
    steps = -(-deg // args.step_block) * args.step_block
    n_nodes = np.diff(lp)[1:]
    bundle, _, width = bundle_layout(n_nodes, args.warps)
    rows = np.arange(int(lp[1]), net.n_nodes)
    group = np.repeat(np.arange(1, net.n_levels), n_nodes)
    b_steps = np.zeros(width.size)
    np.maximum.at(b_steps, bundle, steps[rows])
    b_cost = args.node + args.step * b_steps
    b_group = np.zeros(width.size, np.int64)
    b_group[bundle] = group
    g_first = np.searchsorted(b_group, np.arange(net.n_levels + 1))
    b_warp = (np.arange(width.size) - g_first[b_group]) % args.warps
    node_warp = np.full(net.n_nodes, -1)
    node_warp[rows] = b_warp[bundle]
    node_group = np.zeros(net.n_nodes, np.int64)
    node_group[rows] = group
    done = np.zeros((net.n_levels, args.warps))  # when warp x finished group g
    clock = np.zeros(args.warps)
    bundled = 0.0
    for g in range(1, net.n_levels):
        lo, hi = int(lp[g]), int(lp[g + 1])
        r_warp = node_warp[lo:hi]
        e_lo, e_hi = int(indptr[lo]), int(indptr[hi])
        e_reader = np.repeat(r_warp, np.diff(indptr[lo : hi + 1]))
        s = src[e_lo:e_hi]
        s_warp, s_group = node_warp[s], node_group[s]
        cost = np.zeros(args.warps)
        np.add.at(cost, b_warp[g_first[g] : g_first[g + 1]], b_cost[g_first[g] : g_first[g + 1]])
        bundled += cost.max() + args.barrier
        for w in range(args.warps):
            mine = (e_reader == w) & (s_warp >= 0) & (s_warp != w)
            ready = done[s_group[mine], s_warp[mine]].max() + args.flag if mine.any() else 0.0
            clock[w] = max(clock[w], ready) + cost[w] + args.flag
            done[g, w] = clock[w]
    return bundled, float(clock.max())


if __name__ == "__main__":
    main()
