"""One analysis for every directive file: loop nest -> data volume, reuse and traffic per tensor and level.

Input: a parsed nest (spdnn.model.nest), its Param values, the workload of one launch (rows
present and alive, the layer's widths, layers per launch) and a GPU; all of them numpy arrays
that broadcast, so one call analyses one design or millions. Output (`Analysis`): for each
tensor (W, Yin, Yout) and level (reg, smem, l2, dram) the tile volume, the bytes requested
from below, the bytes moved to or from the level above, the temporal reuse, the spatial
multicast and reduction; the work, the occupancy and the critical path the time model needs.

The rules (docs/model.md has them with their reasons):

1. Chunks (MAESTRO): a level's SpatialMap(s) d gives each unit s indices of d; with u units
   and P indices, ceil(P / s) chunks run on min(u, ceil(P / s)) units, folded in time
   (ceil(P / (s u)) steps); the grid has as many top units as it needs (never folded). A
   TemporalMap(s) d steps every unit through P in ceil(P / s) steps. Several SpatialMaps at one
   level share its units in order. Directive order is loop order. A chunk of rows is never cut
   short (the feature layout pads every tile), a chunk of the other dimensions ends at the extent.
2. Footprints: W[l, j, k] 8 B; Yin[l, r, c] 4 B, the gathered c = min(win, j k) lines for a
   cache or registers (the lines the chunk's nonzeros touch, at most), all of win for a tile
   staged in shared memory (a dense copy cannot know which lines the indices need);
   Yout[l, r, j] 4 B times wout / ucols (each distinct column is written that many times).
3. Explicit buffers (registers per lane; a tile staged in shared memory per block, filled per
   step of the block's TemporalMaps): fills = the trip counts of the loops outside the buffer
   down to the innermost loop over a dimension the tensor depends on (the loops inside it keep
   the tile: temporal reuse). The lanes of a warp that differ only in dimensions a tensor does
   not depend on get one broadcast access (spatial multicast). A reduction dimension (k) outside
   the output's buffer re-reads partial sums; a SpatialMap over k sums partials across units
   (spatial reduction, 2 (units - 1) x outputs through the parent level). Yout of layer l is
   Yin of layer l + 1: with both staged in shared memory, the launch's loops over l move neither.
4. Caches (L1 per SM, for reads; L2): compulsory traffic = per cache instance the distinct data
   its units touch; the other accesses hit with the fraction of their working set (the
   resident units' footprints) that the capacity holds, given to the tensors with most accesses
   per byte first (what LRU keeps). Stores bypass L1; every output line is written to DRAM.
   L1 time: a cached read's warp loads cost their wavefronts (load_wavefronts(cached=True): as
   shared memory's, but no two registers packed a wavefront) and every line filled from L2 one
   more (the cost model's t_l1).
5. Occupancy: threads = 32 x warps; registers = 29 + a lane's gathered operands and
   accumulators (for the engine's own kernels at KW = 32, ptxas's count: registers.py);
   shared memory = the staged tiles (x 2 double-buffered) at the widest layer the
   kernel is sized for, + 128 B; blocks per SM by the usual limits.
6. Scatter (Stage Yout smem scatter): Yout shares Yin's tile (no buffer of its own); a lane holds
   the values of its warp's column folds in registers until a barrier, then writes each to its
   wout / ucols output neurons (the stores of rule 3, one wavefront per warp and neuron) after
   reading the neuron's position from the layer's output lists (a broadcast shared-memory read
   per neuron, two per column for its range). The lists (4 B x (wout + ucols + 1)) are staged in
   shared memory once per layer and block from L2 (their HBM traffic is the per-layer metadata),
   in one buffer: the block waits an L2 latency for them per layer (rule 3's unbuffered tiles);
   a second barrier per layer (after the scatter) costs a shared-memory latency on the critical path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .nest import RELEVANT, TENSORS, Nest
from .registers import compiled_registers

BYTES = {"W": 8.0, "Yin": 4.0, "Yout": 4.0}
REGS_BASE = 29.0  # addresses, loop counters, the column's value vector: the compiled kernel's base
COPY_INFLIGHT = 2048.0  # bytes a warp keeps in flight staging a tile (16 B per lane, 4 deep)
VECTOR_BYTES = 16.0  # widest load per lane per instruction
WAVEFRONT = 128.0  # bytes of shared memory per SM per clock (32 banks x 4 B)


@dataclass
class Workload:
    """One launch: rows present n and alive entering a, the layer's widths, layers per launch."""

    n: np.ndarray
    a: np.ndarray
    win: np.ndarray
    wout: np.ndarray
    ucols: np.ndarray
    kw: np.ndarray
    seg: np.ndarray = 1.0  # type: ignore[assignment]  # made an array in __post_init__

    def __post_init__(self):
        for f in ("n", "a", "win", "wout", "ucols", "kw", "seg"):
            setattr(self, f, np.asarray(getattr(self, f), dtype=float))

    @property
    def extents(self) -> dict:
        return {"l": self.seg, "r": self.n, "j": self.ucols, "k": self.kw}


@dataclass
class Loop:
    section: int
    dim: str
    trips: np.ndarray  # per unit, the slowest (ceil)
    avg: np.ndarray  # per unit on average (exact totals)
    spatial: bool
    line: int
    index: int  # position of its map inside the section
    size: np.ndarray = 1.0  # type: ignore[assignment]  # the map's chunk
    act: np.ndarray = 1.0  # type: ignore[assignment]  # units it runs on (spatial)


@dataclass
class Analysis:
    """What the time and energy model needs, per launch (see the module docstring)."""

    tensors: dict  # tensor -> level -> {volume, accesses, traffic, reuse, multicast, hit, reduction}
    level_bytes: dict  # reg, smem, l2, dram
    smem_wavefront_bytes: np.ndarray  # staged shared-memory traffic in 128-byte wavefronts (time)
    l1_wavefronts: np.ndarray  # wavefronts of the reads cached in L1: loads (load_wavefronts) and fills
    macs: np.ndarray
    warp_instructions: np.ndarray
    blocks: np.ndarray  # live blocks
    blocks_per_cluster: np.ndarray
    warps: np.ndarray  # warps per block
    threads: np.ndarray
    regs: np.ndarray
    smem_block: np.ndarray
    bsm: np.ndarray
    inflight_warp: np.ndarray
    warp_steps: np.ndarray  # sequential steps of a warp (critical path), per launch
    step_latency: np.ndarray
    fill_latency: np.ndarray
    lockstep: bool  # a block-wide barrier per step (TemporalMap among the warps)
    launches: np.ndarray  # per analysed launch unit (grid TemporalMaps)
    exact_order: bool  # k summed serially in one lane (the engine's bit-exact order)
    violations: list = field(default_factory=list)  # (line, message, mask)

    def ok(self) -> np.ndarray:
        out = np.asarray(True)
        for _, _, mask in self.violations:
            out = out & ~np.asarray(mask)
        return out

    def reasons(self, index=None) -> list[str]:
        """The violated directives (all elements, or the element `index` of the broadcast shape)."""
        out = []
        for line, msg, mask in self.violations:
            m = np.asarray(mask)
            bad = bool(m.any()) if index is None else bool(np.broadcast_to(m, np.broadcast(m, self.macs).shape)[index])
            if bad:
                out.append(f"line {line}: {msg}" if line else msg)
        return out


def load_wavefronts(lane_bytes, multicast, cached: bool = False) -> np.ndarray:
    """Wavefronts of one warp-wide load of `lane_bytes` per lane, `multicast` lanes reading each
    address (32: every lane the same, a broadcast). Two limits, the larger counts: the distinct
    bytes through the 32 banks (128 B a wavefront), and the data return path, one 32-bit register
    per lane a wavefront (32 x 4 B = 128 B a clock). From shared memory the return path packs two
    registers per lane per wavefront when lanes pairwise share an address (uniform loads: Volta and
    later), so a 4-byte gather is 1 wavefront and a 16-byte broadcast (LDS.128, the engine's int4 /
    float4 column loads from shared memory) 2. `cached`: a global load through L1, which does not
    pack: its 16-byte broadcast is 4 (H200 microbenchmark, 2026-12-04: 4.04 clocks against 1.05
    for a 128-byte gather; benchmarks/validate_model.py)."""
    lane_bytes = np.asarray(lane_bytes, float)
    multicast = np.asarray(multicast, float)
    banks = np.ceil((32.0 / multicast) * lane_bytes / WAVEFRONT)
    regs = np.ceil(lane_bytes / 4.0)
    ret = regs if cached else np.ceil(regs / np.where(multicast >= 2.0, 2.0, 1.0))
    return np.maximum(banks, ret)


def _footprint(tensor: str, chunk: dict, wl: Workload, dense: bool = False) -> np.ndarray:
    """Elements of `tensor` touched by a chunk of the iteration space (rule 2)."""
    if tensor == "W":
        return chunk["l"] * chunk["j"] * chunk["k"]
    if tensor == "Yin":
        c = wl.win if dense else np.minimum(wl.win, chunk["j"] * chunk["k"])
        return chunk["l"] * chunk["r"] * c
    return chunk["l"] * chunk["r"] * chunk["j"] * (wl.wout / np.maximum(wl.ucols, 1.0))


def _fills(loops: list, tensor: str, avg: bool = True, skip=()) -> np.ndarray:
    """Fills of a buffer per unit: the loops outside it, down to the innermost relevant one (rule 3)."""
    rel = RELEVANT[tensor]
    inner = -1
    for i, lp in enumerate(loops):
        if lp.dim in rel and id(lp) not in skip:
            inner = i
    out = np.asarray(1.0)
    for lp in loops[: inner + 1]:
        if id(lp) in skip:
            continue
        out = out * (lp.avg if avg else lp.trips)
    return out


def _greedy_hits(acc: dict, ws: dict, cap) -> dict:
    """Hit fraction per tensor sharing a cache: capacity given to the most accesses per byte first."""
    dens = {t: acc[t] / np.maximum(ws[t], 1.0) for t in acc}
    order = list(acc)
    hits = {}
    for i, t in enumerate(order):
        hotter = np.asarray(0.0)
        for j, u in enumerate(order):
            if u == t:
                continue
            first = (dens[u] > dens[t]) | ((dens[u] == dens[t]) & (j < i))
            hotter = hotter + np.where(first, ws[u], 0.0)
        alloc = np.clip(cap - hotter, 0.0, None)
        hits[t] = np.minimum(1.0, alloc / np.maximum(ws[t], 1.0))
    return hits


def _prod(xs) -> np.ndarray:
    out = np.asarray(1.0)
    for x in xs:
        out = out * x
    return out


def analyse(nest: Nest, params: dict, wl: Workload, hw, capacity: Workload | None = None) -> Analysis:
    """The analysis of `nest` with Param values `params` (defaults from the file) on `wl` and `hw`.

    capacity: the widest layer the kernel's shared memory is sized for (default: wl itself).
    """
    cap = capacity or wl
    env: dict[str, Any] = {k: np.asarray(v[0], float) for k, v in nest.params.items()}
    env.update({k: np.asarray(v, float) for k, v in params.items()})
    ext = wl.extents
    env.update(
        SMS=np.asarray(hw.sms, float),
        KW=wl.kw,
        WIN=wl.win,
        WOUT=wl.wout,
        UCOLS=wl.ucols,
        ROWS=wl.n,
        FUSE=wl.seg,
        Sz=ext,
    )
    violations = []

    # --- rule 1: chunks, units, loops -------------------------------------------------------
    P = dict(ext)
    loops: list[Loop] = []
    sec_units: list = []
    sec_count: list = []  # per section: its unit count (None for the grid)
    sec_lc: list = []
    sec_out: list = []
    lane_spatial = {}  # dim -> active lanes
    last_temporal_warp = None
    units = np.asarray(1.0)
    for si, sec in enumerate(nest.sections):
        count = None if sec.count is None else np.asarray(sec.count(env), float)
        if count is not None:
            violations.append((sec.line, f"Cluster({sec.count.text}) {sec.kind}: fewer than one unit", count < 1))
            if sec.kind == "lane":
                violations.append((sec.line, f"Cluster({sec.count.text}) lane: a warp has 32 lanes", count != 32))
        left = count
        C, lc = dict(P), dict(P)
        for mi, m in enumerate(sec.maps):
            size = np.asarray(m.size(env), float)
            violations.append((m.line, f"{m.text()}: size below 1", size < 1))
            s = np.maximum(size, 1.0)
            need = np.ceil(P[m.dim] / s)
            # loops stop at the extent, but rows are padded to the tile (the engine's tile-interleaved
            # layout: a kernel processes every row of a tile, present or not)
            C[m.dim] = s if m.dim == "r" else np.minimum(s, P[m.dim])
            if m.spatial:
                act = need if left is None else np.maximum(np.minimum(left, need), 1.0)
                if left is not None:
                    left = np.floor(left / act)
                loops.append(Loop(si, m.dim, np.ceil(need / act), need / act, True, m.line, mi, C[m.dim], act))
                lc[m.dim] = C[m.dim] * need / act  # a unit's share over its folds
                units = units * act
                if sec.kind == "lane":
                    lane_spatial[m.dim] = act
            else:
                loops.append(Loop(si, m.dim, need, need, False, m.line, mi, C[m.dim]))
                if sec.kind == "warp":
                    last_temporal_warp = mi
                if si == 0:
                    lc[m.dim] = C[m.dim]  # a launch per step: the units live one step
        sec_units.append(units)
        sec_count.append(count)
        sec_lc.append(lc)
        sec_out.append(C)
        P = C
    kinds = [s.kind for s in nest.sections]
    bsec = kinds.index("block") if "block" in kinds else 0
    wsec, lsec = kinds.index("warp"), kinds.index("lane")
    warps = sec_count[wsec]
    lane_chunk = sec_out[lsec]

    # --- liveness: a block whose rows are all dead exits at once -----------------------------
    frac = np.where(wl.n > 0, np.minimum(wl.a / np.where(wl.n > 0, wl.n, 1.0), 1.0), 0.0)
    rb = sec_out[bsec]["r"]  # a block's rows
    live = 1.0 - (1.0 - frac) ** rb
    blocks = sec_units[bsec] * live
    per_cluster = sec_units[bsec] / sec_units[0] if bsec > 0 else np.asarray(1.0)
    warps_active = blocks * (sec_units[wsec] / sec_units[bsec])
    lanes = blocks * (sec_units[lsec] / sec_units[bsec])
    ext_exec = dict(ext)
    ext_exec["r"] = np.ceil(ext["r"] / np.maximum(rb, 1.0)) * rb * live  # live tiles, padded

    # --- work ---------------------------------------------------------------------------------
    steps_lane = _prod(lp.avg for lp in loops)
    lane_elems = lane_chunk["l"] * lane_chunk["r"] * lane_chunk["j"] * lane_chunk["k"]
    macs = lanes * steps_lane * lane_elems
    k_splits = [lp for lp in loops if lp.spatial and lp.dim == "k"]
    exact = not k_splits

    tensors: dict[str, dict[str, Any]] = {t: {} for t in TENSORS}
    level = {"reg": 8.0 * macs, "smem": np.asarray(0.0), "l2": np.asarray(0.0), "dram": np.asarray(0.0)}
    wavefronts = np.asarray(0.0)
    l1_wavefronts = np.asarray(0.0)  # cached reads' load wavefronts through L1 (rule 4), fills added below
    instr_step = 2.0 * lane_elems  # a multiply and an add per nonzero per lane (never an FMA)
    inflight = np.asarray(0.0)
    step_lat = lane_chunk["k"] * 4.0 / hw.clock_hz  # the ordered adds of a lane step
    lat = {"smem": hw.smem_latency_s, "l1": hw.l2_latency_s, "l2": hw.l2_latency_s}

    # --- rule 3: registers (every loop is outside a lane's register tile) ----------------------
    to_block, out_final = {}, np.asarray(0.0)
    list_reads = np.asarray(0.0)  # the scatter's output-list reads (rule 6)
    for t in TENSORS:
        elems = _footprint(t, lane_chunk, wl)
        tile = elems * BYTES[t]
        mc = _prod(act for d, act in lane_spatial.items() if d not in RELEVANT[t])
        fills = _fills(loops, t)
        moved = lanes * fills * tile / mc
        entry = {
            "volume": tile,
            "accesses": lanes * steps_lane * tile,
            "traffic": moved,
            "multicast": mc,
            "reuse": steps_lane / np.maximum(fills, 1e-30),
        }
        src = nest.stage(t)
        per_step = fills / np.maximum(steps_lane, 1e-30)  # fraction of a lane's steps that refill t
        if t == "Yout":
            distinct = _fills(loops, t, skip={id(lp) for lp in loops if lp.dim == "k"})
            entry["partial_reads"] = lanes * np.maximum(fills - distinct, 0.0) * tile / mc
            out_final = lanes * distinct * tile / mc
            to_block[t] = moved + entry["partial_reads"]
            instr_step = instr_step + elems * per_step  # one store per output neuron
            if src == "smem":
                wavefronts = wavefronts + warps_active * fills * elems * np.ceil(32.0 * BYTES[t] / mc / WAVEFRONT)
            if nest.scatter:  # rule 6: the neuron's list entry (broadcast), the column's range
                list_reads = warps_active * fills * (elems + 2.0) * 4.0
                instr_step = instr_step + (elems + 2.0) * per_step
                wavefronts = wavefronts + warps_active * fills * (elems + 2.0)
        else:
            to_block[t] = moved
            n_instr = elems if t == "Yin" else np.ceil(tile / VECTOR_BYTES)  # gathers are scalar
            instr_step = instr_step + n_instr * per_step
            step_lat = step_lat + lat[src] * per_step
            loads = (
                warps_active
                * fills
                * n_instr
                * load_wavefronts(np.minimum(tile, BYTES[t] if t == "Yin" else VECTOR_BYTES), mc, cached=src != "smem")
            )
            if src == "smem":
                wavefronts = wavefronts + loads
            else:
                if src == "l1":
                    l1_wavefronts = l1_wavefronts + loads
                inflight = np.maximum(inflight, tile * 32.0 / mc)
        tensors[t]["reg"] = entry

    # --- rule 3: shared-memory tiles of a block, filled per step of its TemporalMaps -----------
    cut = -1 if last_temporal_warp is None else last_temporal_warp
    pos = dict(sec_out[wsec - 1])
    outside = [lp for lp in loops if lp.section < wsec or (lp.section == wsec and lp.index <= cut)]
    for lp in outside:
        if lp.section == wsec:  # one step of the warps' loop: the chunk (temporal) or its union (spatial)
            pos[lp.dim] = np.minimum(pos[lp.dim], lp.size * lp.act)
    cap_pos = {d: np.where(pos[d] >= ext[d], cap.extents[d], pos[d]) if d in "jk" else pos[d] for d in pos}
    chain = nest.staged("Yin") and nest.staged("Yout")
    in_launch_l = {id(lp) for lp in outside if lp.dim == "l" and lp.section > 0} if chain else set()
    smem_block = np.asarray(128.0)
    fill_lat = np.asarray(0.0)
    staged_lines = [s.line for s in nest.stages.values() if s.level == "smem"]
    to_l2 = {}
    dense_rel = {"W": "ljk", "Yin": "lr", "Yout": "lrj"}  # a dense Yin tile does not depend on j, k
    for t in TENSORS:
        if nest.stage(t) != "smem":
            continue
        loops_t = [
            Loop(lp.section, lp.dim if lp.dim in dense_rel[t] else "_", lp.trips, lp.avg, lp.spatial, lp.line, lp.index)
            for lp in outside
        ]
        skip = {id(x) for x, lp in zip(loops_t, outside) if id(lp) in in_launch_l and t in ("Yin", "Yout")}
        tile = _footprint(t, pos, wl, dense=True) * BYTES[t]
        fills = _fills(loops_t, t, skip=skip)
        moved = blocks * fills * tile  # loads (W, Yin) or write-backs (Yout: the launch's last layer when chained)
        if not (t == "Yout" and nest.scatter):  # scattered outputs live in Yin's tile (rule 6)
            smem_block = smem_block + _footprint(t, cap_pos, cap, dense=True) * BYTES[t] * (
                2.0 if nest.double(t) else 1.0
            )
        wavefronts = wavefronts + moved / WAVEFRONT
        if t != "Yout":
            inflight = np.maximum(inflight, COPY_INFLIGHT)
            if not nest.double(t):  # the block waits for its tile
                fill_lat = fill_lat + _fills(loops_t, t, avg=False, skip=skip) * hw.dram_latency_s
        acc = to_block[t]
        tensors[t]["smem"] = {
            "volume": tile,
            "accesses": acc,
            "traffic": moved,
            "fills_per_block": fills,
            "reuse": acc / np.maximum(moved, 1e-30),
            "multicast": np.asarray(1.0),
        }
        level["smem"] = level["smem"] + acc + moved
        to_l2[t] = moved
        if t == "Yout":
            out_final = moved

    # --- rule 6: the scatter's output lists, staged per layer and block; its second barrier -----
    held = np.asarray(0.0)
    if nest.scatter:
        steps_l = _prod(lp.avg for lp in outside if lp.dim == "l")  # layers a block steps through
        lists = 4.0 * (wl.wout + wl.ucols + 1.0)
        moved_lists = blocks * steps_l * lists
        smem_block = smem_block + 4.0 * np.floor((cap.wout + cap.ucols + 4.0) / 4.0) * 4.0
        wavefronts = wavefronts + moved_lists / WAVEFRONT
        # the output lists: a pseudo-tensor of the scatter (read by every warp, staged per layer and block)
        tensors["Lists"] = {
            "smem": {
                "volume": lists,
                "accesses": list_reads,
                "traffic": moved_lists,
                "reuse": list_reads / np.maximum(moved_lists, 1e-30),
                "multicast": np.asarray(32.0),
            },
            "l2": {"volume": lists, "accesses": moved_lists, "traffic": steps_l * lists, "hit": np.asarray(1.0)},
            "dram": {"accesses": steps_l * lists},
        }
        level["smem"] = level["smem"] + list_reads + moved_lists
        level["l2"] = level["l2"] + moved_lists
        # the block waits for its lists (staged once per layer, one buffer: the rule of tiles without
        # double buffering, from L2 where they stay), and a second barrier per layer
        fill_lat = fill_lat + _prod(lp.trips for lp in outside if lp.dim == "l" and lp.section > 0) * (
            hw.l2_latency_s + hw.smem_latency_s
        )
        # a lane's values of its warp's folds of j, held until the barrier
        held = _prod(lp.trips for lp in loops if lp.section == wsec and lp.dim == "j")

    # --- rule 5: occupancy ------------------------------------------------------------------
    threads = 32.0 * warps
    wline = nest.sections[wsec].line
    violations.append((wline, "more threads per block than the GPU allows", (threads > hw.max_threads_block)))
    violations.append(
        (
            staged_lines[0] if staged_lines else wline,
            "the staged tiles need more shared memory than one block may have",
            smem_block > hw.smem_per_block,
        )
    )
    need = REGS_BASE + _footprint("Yin", lane_chunk, wl) + lane_chunk["l"] * lane_chunk["r"] * lane_chunk["j"] + held
    regs = np.minimum(need, np.minimum(hw.max_regs_thread, hw.regs_per_sm // np.maximum(threads, 32.0)))
    # the engine's own kernels: ptxas's count (registers.json) instead of the estimate
    compiled, known = compiled_registers(nest, warps, wl.kw)
    regs = np.where(known, compiled, regs)
    bsm = np.minimum(hw.max_blocks_sm, hw.max_threads_sm // np.maximum(threads, 32.0))
    bsm = np.minimum(bsm, hw.regs_per_sm // np.maximum(regs * threads, 1.0))
    bsm = np.minimum(bsm, np.floor(hw.smem_per_sm / smem_block))
    violations.append((wline, "no block fits on an SM (threads, registers, shared memory)", bsm < 1))
    bsm1 = np.maximum(bsm, 1.0)

    # --- rule 4: L1 (per SM, reads) ---------------------------------------------------------------
    lc_block = sec_lc[bsec]
    cached = [t for t in ("W", "Yin") if nest.stage(t) == "l1"]
    if cached:
        inst = np.minimum(hw.sms, np.maximum(blocks, 1.0))
        resident = np.minimum(bsm1, np.maximum(np.ceil(blocks / hw.sms), 1.0))
        acc, ws, comp = {}, {}, {}
        for t in cached:
            fp = _footprint(t, lc_block, wl) * BYTES[t]
            distinct = _footprint(t, ext_exec, wl) * BYTES[t]
            acc[t] = to_block[t]
            comp[t] = np.minimum(acc[t], inst * np.minimum(distinct, blocks / inst * fp))
            ws[t] = np.minimum(distinct, resident * fp)
        hits = _greedy_hits(acc, ws, np.maximum(hw.l1_bytes - bsm1 * smem_block, 0.0))
        for t in cached:
            miss = comp[t] + np.maximum(acc[t] - comp[t], 0.0) * (1.0 - hits[t])
            tensors[t]["smem"] = {
                "volume": ws[t],
                "accesses": acc[t],
                "traffic": miss,
                "hit": hits[t],
                "reuse": acc[t] / np.maximum(miss, 1e-30),
                "multicast": np.asarray(1.0),
            }
            level["smem"] = level["smem"] + acc[t]
            l1_wavefronts = l1_wavefronts + miss / WAVEFRONT  # the lines filled from L2
            to_l2[t] = miss
    for t in TENSORS:
        if nest.stage(t) == "l2":
            to_l2[t] = to_block[t]

    # spatial reduction: partial sums of the units splitting k meet in their parent's memory
    red = np.asarray(0.0)
    for lp in k_splits:
        outs = _footprint("Yout", ext_exec, wl) * BYTES["Yout"]
        r = 2.0 * np.maximum(lp.act - 1.0, 0.0) * outs
        where = {"lane": "reg", "warp": "smem"}.get(nest.sections[lp.section].kind, "l2")
        level[where] = level[where] + r
        red = red + r
    tensors["Yout"]["reg"]["reduction"] = red

    # --- rule 4: L2 (one instance): reads cached, every output line written to DRAM -------------
    resident_cl = np.minimum(np.maximum(blocks / per_cluster, 1.0), hw.sms * bsm1 / per_cluster)
    reads = [t for t in ("W", "Yin") if t in to_l2]
    acc2, ws2, comp2 = {}, {}, {}
    for t in reads:
        dense = nest.staged(t)
        distinct = _footprint(t, ext_exec, wl, dense=dense) * BYTES[t]
        if t == "Yin" and chain:
            distinct = distinct / np.maximum(ext["l"], 1.0)  # only the launch's first layer comes from memory
        acc2[t] = to_l2[t]
        comp2[t] = np.minimum(acc2[t], distinct)
        ws2[t] = np.minimum(distinct, resident_cl * _footprint(t, sec_lc[0], wl, dense=dense) * BYTES[t])
    hits2 = _greedy_hits(acc2, ws2, hw.l2_fraction * hw.l2_bytes) if reads else {}
    for t in reads:
        dram_t = comp2[t] + np.maximum(acc2[t] - comp2[t], 0.0) * (1.0 - hits2[t])
        tensors[t]["l2"] = {
            "volume": ws2[t],
            "accesses": acc2[t],
            "traffic": dram_t,
            "hit": hits2[t],
            "reuse": acc2[t] / np.maximum(dram_t, 1e-30),
            "multicast": np.asarray(1.0),
        }
        level["l2"] = level["l2"] + acc2[t]
        level["dram"] = level["dram"] + dram_t
    out_l2 = to_l2.get("Yout", np.asarray(0.0))
    tensors["Yout"]["l2"] = {
        "volume": out_l2,
        "accesses": out_l2,
        "traffic": out_final,
        "reuse": out_l2 / np.maximum(out_final, 1e-30),
        "multicast": np.asarray(1.0),
    }
    level["l2"] = level["l2"] + out_l2
    # outputs, and the metadata of every layer: out_ptr / out_list, the rows' flags
    level["dram"] = level["dram"] + out_final + ext["l"] * (4.0 * (wl.ucols + wl.wout) + 16.0 * wl.n)
    for t in TENSORS:
        tensors[t]["dram"] = {"accesses": tensors[t]["l2"]["traffic"]} if "l2" in tensors[t] else {}

    launches = _prod(lp.trips for lp in loops if lp.section == 0 and not lp.spatial)
    return Analysis(
        tensors=tensors,
        level_bytes=level,
        smem_wavefront_bytes=wavefronts * WAVEFRONT,
        l1_wavefronts=l1_wavefronts,
        macs=macs,
        warp_instructions=warps_active * steps_lane * instr_step,
        blocks=blocks,
        blocks_per_cluster=per_cluster,
        warps=warps,
        threads=threads,
        regs=regs,
        smem_block=smem_block,
        bsm=bsm,
        inflight_warp=np.maximum(inflight, 128.0),
        warp_steps=_prod(lp.trips for lp in loops),
        step_latency=step_lat,
        fill_latency=fill_lat,
        lockstep=any(not m.spatial for m in nest.sections[wsec].maps),
        launches=launches,
        exact_order=exact,
        violations=violations,
    )
