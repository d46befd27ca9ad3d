"""The time and energy model on top of the analysis: bytes per level -> time per layer, and `predict`.

The analysis (spdnn.model.analysis) derives from a directive file what each launch moves at
each level, its work, occupancy and critical path. Here, per layer (a launch's totals divided
by its layers):

  t_dram  = DRAM bytes / (B_hbm eta_dram)     eta = min(1, in-flight bytes / (bandwidth x latency)):
  t_l2    = L2 bytes / (B_l2 eta_l2)          Little's law, resident warps x bytes in flight per warp
  t_smem  = staged shared-memory wavefronts x 128 B / (128 B x clock x SMs used)
  t_l1    = L1 wavefronts of cached reads x cycles a wavefront / (clock x SMs used): the cycles
            from a microbenchmark of L1-resident gathers (benchmarks/validate_model.py); on an H200
            the gather kernel's narrow layers are bound here (ncu: L1 92% busy, 2026-12-04)
  t_fma   = MACs / (FMA rate x SMs used)
  t_issue = warp instructions / (4 schedulers x clock x SMs used)
  t_lat   = waves x (a warp's sequential steps x step latency + the waits for unbuffered tiles)
  kernel  = kernel_min + max(t_dram, t_l2, t_smem, t_l1, t_fma, t_issue, t_lat), or their sum with t_lat
            when a block-wide barrier ends every step (a TemporalMap among the warps: the fused
            segments' layers), since then the chains are not hidden behind other warps' traffic
  layer   = max(host launch cost, kernel) per launch: launches are asynchronous, so the GPU waits
            for the host only when kernels are shorter than a launch
Per batch: check points (a host round trip each), compactions (scan + copy), carried rows (a count
of the saturated rows per check point, a drop before a compaction), the input load.
Energy = bytes per level x pJ/byte + FMAs x pJ (hardware.json): for comparing designs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .analysis import Analysis, Workload, analyse
from .directives import Dataflow
from .hardware import Hardware, energy_table
from .nest import Nest
from .network import NetworkProfile
from .policy import PolicyResult, auto_batch, segment_length, simulate

LEVELS = ("dram", "l2", "smem", "reg")


def time_terms(hw: Hardware, an: Analysis, wl: Workload) -> dict:
    """The time terms of one layer (the launch's analysis divided by its layers); all broadcast."""
    seg = np.maximum(wl.seg, 1.0)
    blocks = an.blocks
    bsm1 = np.maximum(an.bsm, 1.0)
    warps_res = np.minimum(blocks, hw.sms * bsm1) * an.warps
    inflight = warps_res * an.inflight_warp
    bw_d = hw.hbm_bandwidth * hw.hbm_efficiency
    eta_d = np.minimum(1.0, inflight / (bw_d * hw.dram_latency_s))
    eta_l2 = np.minimum(1.0, inflight / (hw.l2_bandwidth * hw.l2_latency_s))
    util = np.maximum(np.minimum(1.0, np.maximum(blocks, 1.0) / hw.sms), 1e-6)
    waves = np.ceil(np.maximum(blocks, 1.0) / (hw.sms * bsm1))
    lb = an.level_bytes
    return dict(
        t_dram=lb["dram"] / (bw_d * np.maximum(eta_d, 1e-6)) / seg,
        t_l2=lb["l2"] / (hw.l2_bandwidth * np.maximum(eta_l2, 1e-6)) / seg,
        t_smem=an.smem_wavefront_bytes / (hw.smem_bandwidth * util) / seg,
        t_l1=an.l1_wavefronts * hw.l1_wavefront_cycles / (hw.clock_hz * hw.sms * util) / seg,
        t_fma=an.macs / (hw.fma_rate * util) / seg,
        t_issue=an.warp_instructions / (4.0 * hw.sms * hw.clock_hz * util) / seg,
        t_lat=waves * (an.warp_steps * an.step_latency + an.fill_latency) / seg,
        t_min=hw.kernel_min_s * an.launches / seg,
        t_launch=hw.launch_s * an.launches / seg,
        present=wl.n > 0,
        live=blocks > 0,
        eta_dram=eta_d,
    )


def combine(t: dict, lockstep: bool) -> tuple[np.ndarray, np.ndarray]:
    """(layer time, kernel time) from time_terms (the same equations for every caller)."""
    core = np.maximum(
        np.maximum(np.maximum(t["t_dram"], t["t_l2"]), t["t_issue"]),
        np.maximum(np.maximum(t["t_smem"], t["t_l1"]), t["t_fma"]),
    )
    kernel = t["t_min"] + (core + t["t_lat"] if lockstep else np.maximum(core, t["t_lat"]))
    if not np.all(t["live"]):  # no live tile: every block exits at once
        kernel = np.where(t["live"], kernel, t["t_min"])
    if np.all(t["present"]):  # (the test is cheaper than the select on millions of designs)
        return np.maximum(t["t_launch"], kernel), kernel
    kernel = np.where(t["present"], kernel, 0.0)
    return np.where(t["present"], np.maximum(t["t_launch"], kernel), 0.0), kernel


def launched(wl: Workload) -> tuple[Workload, np.ndarray]:
    """(the workload to analyse, the layers that run). A layer after its batch ended (no rows
    present: all died or were carried) is never launched: it is analysed as one tile of 32 dead
    rows, so that every value and check stays finite, and its time, bytes and work are zeroed."""
    ran = np.asarray(wl.n) > 0
    if ran.all():
        return wl, ran
    tile = Workload(np.where(ran, wl.n, 32.0), np.where(ran, wl.a, 0.0), wl.win, wl.wout, wl.ucols, wl.kw, wl.seg)
    return tile, ran


def layer_cost(hw: Hardware, nest: Nest, params: dict, wl: Workload, capacity: Workload | None = None) -> dict:
    """Bytes per level, MACs and time of one layer per batch (arrays broadcast), with its analysis."""
    wl, ran = launched(wl)
    an = analyse(nest, params, wl, hw, capacity)
    terms = time_terms(hw, an, wl)
    terms["present"] = terms["present"] & ran
    t_layer, t_kernel = combine(terms, an.lockstep)
    seg = np.maximum(wl.seg, 1.0)
    out: dict = {lv: np.where(ran, an.level_bytes[lv] / seg, 0.0) for lv in LEVELS}
    out.update(
        terms,
        macs=np.where(ran, an.macs / seg, 0.0),
        t_layer=t_layer,
        t_kernel=t_kernel,
        ok=an.ok(),
        analysis=an,
        blocks=an.blocks,
        gx=an.blocks_per_cluster,
        bsm=an.bsm,
        smem_block=an.smem_block,
    )
    return out


def _select(mask, a: dict, b: dict) -> dict:
    out = {}
    for k, v in a.items():
        if k == "analysis":
            continue
        out[k] = np.where(mask, v, b[k])
    return out


# shared memory a fused segment leaves to the block besides its dynamic buffers (layer_plan.fusable:
# fuse_bytes <= smem_optin - 1024); the analysis' smem_block has 128 B of its own on top of the tiles
FUSE_SMEM_RESERVE = 1024.0


def fusable(nest: Nest, params: dict, win, wout, ucols=None, kw=None, hw: Hardware | None = None) -> np.ndarray:
    """Layers the nest runs itself (the engine's rule, spdnn.engines.layer_plan.fusable): all, or
    those no wider than its `Fuse ... upto WIDTH`, with at most `cols COLS` distinct columns
    (ucols; the scatter's registers) and, given a GPU (hw), whose segment's shared memory at the
    widest such layer (the analysis' staged tiles, at the layer's own KW) fits one block with the
    engine's reserve. Without hw the shared memory is only the analysis' validity check.
    COLS may vary with the designs (WARPS); WIDTH may not."""
    if nest.fuse.width is None:
        return np.ones(np.shape(win), bool)
    env = {k: np.asarray(v[0], float) for k, v in nest.params.items()}
    env.update({k: np.asarray(v, float) for k, v in params.items()})
    width = np.asarray(nest.fuse.width(env), float)
    if width.size != 1:
        raise ValueError("a Fuse width must not vary between the designs of one evaluation")
    mask = np.maximum(win, wout) <= float(width)
    if nest.fuse.cols is not None:
        if ucols is None:
            raise ValueError(f"{nest.source}: Fuse ... cols needs the layers' distinct columns")
        mask = mask & (np.asarray(ucols, float) <= np.asarray(nest.fuse.cols(env), float))
    if hw is not None and np.any(mask):
        if ucols is None or kw is None or np.ndim(mask) != 1:
            raise ValueError("the shared-memory rule needs one design's layers: ucols and kw")
        win_, wout_, uc_, kw_ = (np.asarray(x, float) for x in (win, wout, ucols, kw))
        cap = Workload(1.0, 1.0, win_[mask].max(), wout_[mask].max(), uc_[mask].max(), kw_)  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
        one = Workload(32.0, 32.0, win_, wout_, uc_, kw_, 2.0)  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
        smem = analyse(nest, params, one, hw, cap).smem_block - 128.0
        mask = mask & (smem <= hw.smem_per_block - FUSE_SMEM_RESERVE)
    return mask


def design_cost(
    hw: Hardware, nest: Nest, fallback: Nest | None, params: dict, wl: Workload, fused_mask, capacity: Workload
) -> dict:
    """A layer of a design: the nest's cost where it runs the layer, its fallback kernel's elsewhere
    (a launch per layer); the fallback's validity counts only where it runs."""
    own = layer_cost(hw, nest, params, wl, capacity)
    if fallback is None or bool(np.all(fused_mask)):
        own.pop("analysis")
        return own
    wl1 = Workload(wl.n, wl.a, wl.win, wl.wout, wl.ucols, wl.kw, 1.0)  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
    other = layer_cost(hw, fallback, params, wl1)
    other.pop("analysis")
    return _select(fused_mask, own, other)


def check_launches(hw: Hardware, launches, gpu_seconds):
    """Time of the check points' own kernels (counts, drops, compactions): after a check point the
    host queues them one prepared call each (call_s, not the layer loop's launch_s) while the GPU
    runs them (gpu_seconds in all), so the longer of the two streams counts, not their sum."""
    return np.maximum(np.asarray(launches, float) * hw.call_s, gpu_seconds)


def overhead_cost(hw: Hardware, pol: PolicyResult, win0, neurons):
    """Per-batch time outside the layer kernels: input load, check points, compactions, carried
    rows (spdnn_saturated counts and drops), readout.

    With several batches, the next batch's CSR inputs (~0.1 N nonzeros per row, 8 bytes each)
    are staged by the host thread that also launches the kernels: (batches - 1) / batches of a
    staging per batch, at host_copy_bandwidth.
    """
    bw_d = hw.hbm_bandwidth * hw.hbm_efficiency
    n0 = pol.batch
    stage = (pol.batches - 1) / pol.batches * n0 * (0.1 * neurons * 8 + 8) / hw.host_copy_bandwidth
    t_start = 6 * hw.launch_s + 4.0 * n0 * win0 / bw_d + stage
    t_checks = pol.checks * hw.sync_s
    # A compaction is 3 launches (scan, compact, the flags' memset), queued by the host one prepared
    # call each (call_s) while the GPU runs them: the longer of the two streams counts.
    scan = pol.compactions * hw.kernel_min_s + np.ceil(pol.scan_rows / 1024) * 300 / hw.clock_hz
    copy = pol.compactions * hw.kernel_min_s + 8.0 * pol.compact_rows / bw_d
    t_comp = check_launches(hw, 3 * pol.compactions, scan + copy + pol.compactions * hw.kernel_min_s)
    # carried rows: each spdnn_saturated launch reads the batch's features; a drop also scans its rows
    drop_scan = np.ceil(pol.drop_rows / 1024) * 300 / hw.clock_hz
    t_carry = check_launches(
        hw, pol.carry_launches, pol.carry_launches * hw.kernel_min_s + drop_scan + 4.0 * pol.carry_floats / bw_d
    )
    dram = 4.0 * n0 * win0 + 8.0 * pol.compact_rows + 8.0 * pol.scan_rows + 4.0 * pol.carry_floats
    return t_start + t_checks + t_comp + t_carry + hw.sync_s, dram


def energy(bytes_by_level: dict, macs) -> np.ndarray:
    """Dynamic energy (joules) from access counts: bytes x pJ/byte per level + FMAs x pJ (hardware.json)."""
    e = energy_table()
    pj = sum(bytes_by_level[lv] * e[lv] for lv in LEVELS) + macs * e["fma_pj"]
    return pj * 1e-12


@dataclass
class Prediction:
    """The scalar model's answer for one design on one network."""

    dataflow: Dataflow
    valid: bool
    seconds: float
    joules: float
    layer_seconds: np.ndarray = field(repr=False)
    bytes: dict = field(default_factory=dict)  # per level, whole network
    layer_bytes: dict = field(default_factory=dict, repr=False)  # per level, per layer
    reuse: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)  # tensor -> level -> accesses, traffic, reuse, ... (network)
    occupancy: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)
    reason: str = ""
    measured: str = ""

    def to_dict(self) -> dict:
        return dict(
            dataflow=self.dataflow.to_dict(),
            measured=self.measured,
            valid=self.valid,
            seconds=self.seconds,
            joules=self.joules,
            bytes=self.bytes,
            reuse=self.reuse,
            tensors=self.tensors,
            occupancy=self.occupancy,
            policy=self.policy,
            reason=self.reason,
            layer_seconds=[float(x) for x in self.layer_seconds],
        )


def network_shapes(prof: NetworkProfile, variant: str):
    s = prof.shapes(variant)
    return s.win.astype(float), s.wout.astype(float), s.ucols.astype(float), s.kw.astype(float)


def capacity_of(nest: Nest, params: dict, shapes, hw: Hardware | None = None) -> tuple[np.ndarray, Workload]:
    """(the layers the nest runs, the widest of them: what its shared memory is sized for)."""
    win, wout, ucols, kw = shapes
    mask = fusable(nest, params, win, wout, ucols, kw, hw)
    pick = mask if mask.any() else np.ones_like(mask)
    cap = Workload(1.0, 1.0, win[pick].max(), wout[pick].max(), ucols[pick].max(), kw[pick].max())  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
    return mask, cap


def _tensor_totals(parts: list) -> dict:
    """Network totals per tensor and level from (analysis, layer weights) pairs: byte counts summed,
    multicast and hit rates averaged over the layers that ran with each analysis."""
    out: dict = {}
    for an, weight in parts:
        w = np.asarray(weight, float)
        if not w.any():
            continue
        for t, levels in an.tensors.items():
            for lv, d in levels.items():
                row = out.setdefault(t, {}).setdefault(lv, {})
                for k in ("accesses", "traffic", "partial_reads", "reduction"):
                    if k in d:
                        row[k] = row.get(k, 0.0) + float(np.sum(np.broadcast_to(d[k], w.shape) * w))
                for k in ("multicast", "hit"):
                    if k in d:
                        v = np.broadcast_to(d[k], w.shape)
                        row.setdefault("_" + k, []).append((float(np.sum(v * (w > 0))), float(np.sum(w > 0))))
    for levels in out.values():
        for row in levels.values():
            for k in ("multicast", "hit"):
                if "_" + k in row:
                    pairs = row.pop("_" + k)
                    row[k] = sum(a for a, _ in pairs) / max(1.0, sum(b for _, b in pairs))
            if "accesses" in row and "traffic" in row:
                row["reuse"] = row["accesses"] / row["traffic"] if row["traffic"] else float("inf")
    return out


def dataflow_policy(df: Dataflow, prof: NetworkProfile, shapes, any_fused: bool, memory_bytes: float):
    """(fuse, the check-point policy's simulation) of one dataflow on a profile: the engine's
    check points, batch and carried rows for the dataflow's options. Nothing fused: the
    engine checks as a kernel per layer does."""
    win, wout = shapes[0], shapes[1]
    fuse = df.fuse if any_fused else 1
    check_every = df.check_every if fuse == df.fuse else df.fuse  # ... every Fuse F layers (engine_options)
    batch = df.batch_rows or float(auto_batch(prof, max(win.max(), wout.max()), memory_bytes))
    pol = simulate(
        prof,
        wout[None, :],
        [check_every],
        [df.check_bytes],
        [df.compact_fraction],
        [batch],
        [fuse],
        [df.carry_saturated],
    )
    return fuse, pol


def predict(df: Dataflow, prof: NetworkProfile, hw: Hardware) -> Prediction:
    """The scalar model: one design, layer by layer (the reference for the vectorised explorer)."""
    from .validated import measured_label

    nest, fallback, params = df.nest(), df.fallback(), df.params()
    shapes = network_shapes(prof, df.variant)
    win, wout, ucols, kw = shapes
    fmask, cap = capacity_of(nest, params, shapes)
    fuse, pol = dataflow_policy(df, prof, shapes, bool(fmask.any()), hw.memory_bytes)
    assert pol.points is not None  # simulate() gives the check points
    seg = float(segment_length(fuse, pol.points[0], pol.layers_run[0]))
    wl = Workload(pol.present[0], pol.alive_in[0], win, wout, ucols, kw, np.where(fmask, seg, 1.0))
    c = design_cost(hw, nest, fallback, params, wl, fmask, cap)
    wl_run, ran = launched(wl)
    an = analyse(nest, params, wl_run, hw, cap)
    reasons = an.reasons() if fmask.any() else []
    parts = [(an, np.where(fmask & ran, 1.0, 0.0))]
    if fallback is not None and not fmask.all():
        fb = analyse(fallback, params, Workload(wl_run.n, wl_run.a, win, wout, ucols, kw, 1.0), hw)  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
        reasons += [f"{fallback.source} {r}" for r in fb.reasons()]
        parts.append((fb, np.where(~fmask & ran, 1.0, 0.0)))
    ok = bool(np.all(c["ok"]))
    nb = float(pol.batches[0])
    t_over, dram_over = overhead_cost(hw, pol.classes(0), win[0], prof.neurons)
    layer_seconds = nb * np.asarray(c["t_layer"], float)
    seconds = float(layer_seconds.sum() + nb * t_over)
    layer_bytes = {lv: nb * np.broadcast_to(c[lv], win.shape).astype(float) for lv in LEVELS}
    tot = {lv: float(v.sum()) for lv, v in layer_bytes.items()}
    tot["dram"] += nb * float(dram_over)
    macs = nb * float(np.sum(c["macs"]))
    joules = float(energy(tot, macs))
    last = -1
    bsm0 = float(np.broadcast_to(c["bsm"], win.shape)[last])
    sb = float(np.broadcast_to(c["smem_block"], win.shape)[last])
    per_layer = nb / np.where(fmask, seg, 1.0)
    yin = an.tensors["Yin"]
    reuse = {
        "Yin_per_line": float(np.mean(ucols * kw / win)),
        "Yin_l1_hit": float(np.mean(yin["smem"].get("hit", 1.0))) if "smem" in yin else None,
        "Yin_l2_hit": float(np.mean(yin["l2"].get("hit", 1.0))) if "l2" in yin else None,
        "W_multicast_lanes": float(np.mean(an.tensors["W"]["reg"]["multicast"])),
        "Yout_on_chip_layers": float(seg if nest.staged("Yout") and nest.staged("Yin") else 1.0),
        "macs_per_dram_byte": macs / max(1.0, tot["dram"]),
    }
    occ = {
        "blocks_per_sm": bsm0,
        "warps_per_sm": bsm0 * df.warps,
        "occupancy": bsm0 * df.warps * 32 / hw.max_threads_sm,
        "smem_per_block": sb,
        "regs_per_thread": float(np.broadcast_to(an.regs, win.shape)[last]),
    }
    polinfo = {
        "batch_rows": float(pol.batch[0]),
        "batches": nb,
        "checks": float(pol.checks[0]),
        "compactions": float(pol.compactions[0]),
        "carry_saturated": bool(df.carry_saturated),
        "carry_from": prof.carry_from if df.carry_saturated else prof.layers,
        "carried_rows": float(np.asarray(pol.carried)[0]) * nb,
        "drops": float(np.asarray(pol.drops)[0]),
        "layers_run": int(pol.layers_run[0]),
        "segment_layers": seg,
        "fused_layers": int(fmask.sum()) if nest.fuse.width is not None else None,
    }
    return Prediction(
        df,
        ok,
        seconds if ok else float("inf"),
        joules,
        layer_seconds,
        tot,
        layer_bytes,
        reuse,
        _tensor_totals([(a_, w_ * per_layer) for a_, w_ in parts]),
        occ,
        polinfo,
        "; ".join(reasons),
        measured_label(df),
    )
