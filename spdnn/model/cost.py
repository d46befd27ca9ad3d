"""The analytical model: directives + network + hardware -> reuse, bytes per level, time, energy.

One set of equations (layer_cost) written with numpy broadcasting, so the same code evaluates
one layer of one design (predict, the scalar model) or millions of designs x layers at once
(explore.evaluate). Units: bytes and seconds, per batch of rows.

Per layer, with R rows per tile, tiles = ceil(n / R) for the n rows present (not yet
compacted), tau = tiles * (1 - (1 - a/n)^R) tiles holding a live row (a alive entering; a tile
of dead rows is skipped), a "line" = one neuron of the R rows of a tile (4 R bytes), and the
layer's win, wout, ucols distinct columns of KW nonzeros:

  uses of Y_in lines      U = tau ucols KW       (reuse of a line: ucols KW / win)
  MACs                    M = R U
  gather: Y_in read from DRAM once per tile, again for the second use when the tiles resident
          at once (min(tau, SMs * blocks/SM / gx)) overflow half the L2:
          DRAM_in = 4R tau win (1 + (reuse-1)(1-hit)); L2->SM: each block fetches the lines it
          touches (4R min(win, ucols KW / gx)) once, the other uses hit L1 with probability
          hit1 = min(1, L1 / (blocks/SM x lines touched)): more, smaller blocks per SM put more
          distinct tiles in one L1 (the measured effect of warps per block)
  smem:   every block of a tile loads the tile into shared memory once (gx blocks per tile):
          L2->SM = 4R tau win gx, smem = 4R (tau win gx + U)
  fused:  the tile stays in shared memory for F layers: DRAM_in, DRAM_out divided by F,
          smem = 4R (U + tau wout)
  Y_out:  DRAM_out = 4R tau wout
  W:      DRAM_W = 8 ucols KW + 4 (ucols + wout) (L2-resident), L2->SM = 8 ucols KW min(tau, SMs)
  registers: 8 M bytes (both operands of every FMA)

Occupancy: blocks/SM = min(max blocks, threads/SM / 32W, regs/SM / (regs 32W), smem/SM / smem
per block); memory-level parallelism from Little's law: a warp of the gather kernel keeps KW
line loads in flight, so eta = min(1, warps_resident KW 128 / (bandwidth latency)).
Kernel time = kernel_min + max(DRAM/(B_dram eta), L2/(B_L2 eta), smem/B_smem', FMA/peak',
critical path of one warp), and a layer costs max(host launch / F, kernel): launches are
asynchronous, so the GPU waits for the host only when kernels are shorter than a launch.
Per batch: check points (a host round trip each), compactions (scan + copy), the input load.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .directives import Dataflow
from .hardware import Hardware, energy_table
from .network import NetworkProfile
from .policy import PolicyResult, auto_batch, segment_length, simulate

GATHER, SMEM, FUSED = 0, 1, 2
CODES = {"gather": GATHER, "smem": SMEM, "fused": FUSED}
LEVELS = ("dram", "l2", "smem", "reg")


def regs_per_thread(code, kw, warps, hw: Hardware):
    """Registers per thread: the gather kernel holds its KW gathered values; capped by __launch_bounds__."""
    need = np.where(code == GATHER, 30 + np.minimum(kw, 32), np.where(code == SMEM, 32, 40))
    return np.minimum(need, np.minimum(hw.max_regs_thread, hw.regs_per_sm // (32 * warps)))


def smem_per_block(code, row_tile, win_max, wout_max, w_max=0.0, fused_width=None):
    """Shared memory of one block (bytes): the row tile (smem); in and out tiles and two layers'
    staged columns (fused: w_max bytes per layer, fused_width the widest fused layer: the
    engine runs the input layer, N wide, unfused)."""
    fw = win_max if fused_width is None else fused_width
    return np.where(code == GATHER, 128.0,
                    np.where(code == SMEM, 4.0 * row_tile * win_max + 128,
                             4.0 * row_tile * 2 * fw + 2.0 * w_max + 128))


def fused_extent(win, wout, ucols, kw) -> tuple[float, float]:
    """(widest layer, bytes of the largest layer's columns) over the layers a fused design keeps
    on chip: all but the first (N wide, run unfused)."""
    lo = 1 if len(win) > 1 else 0
    return float(max(win[lo:].max(), wout[lo:].max())), float((8.0 * ucols[lo:] * kw[lo:]).max())


def blocks_per_sm(code, warps, kw, smem_block, hw: Hardware):
    threads = 32 * warps
    regs = regs_per_thread(code, kw, warps, hw)
    lim = np.minimum(hw.max_blocks_sm, hw.max_threads_sm // threads)
    lim = np.minimum(lim, hw.regs_per_sm // (regs * threads))
    return np.minimum(lim, np.floor(hw.smem_per_sm / smem_block))


def valid(code, warps, row_tile, fuse, smem_block, hw: Hardware, layers: int):
    """The constraints: threads per block, shared memory per block and per SM, row tile, fusion depth."""
    threads = 32 * np.asarray(warps)
    ok = (threads >= 32) & (threads <= hw.max_threads_block)
    ok = ok & (smem_block <= hw.smem_per_block)
    ok = ok & np.isin(row_tile, (8, 16, 32)) & ((code != GATHER) | (row_tile == 32))
    ok = ok & (fuse >= 1) & (fuse <= layers) & ((code == FUSED) | (fuse == 1))
    return ok


def layer_cost(hw: Hardware, code, R, F, warps, gf, n, a, win, wout, ucols, kw, smem_block, bsm):
    """Bytes per level, FMAs and time of one layer (per batch); all arguments broadcast."""
    sms = hw.sms
    n_pos = n > 0
    tiles = np.ceil(n / R)
    frac = np.where(n_pos, np.minimum(a / np.where(n_pos, n, 1.0), 1.0), 0.0)
    tau = tiles * (1.0 - (1.0 - frac) ** R)
    fused = code == FUSED
    gx = np.where(fused, 1.0, np.maximum(1.0, np.minimum(np.ceil(ucols / warps),
                                                          np.ceil(sms * gf / np.maximum(tiles, 1.0)))))
    line = 4.0 * R
    uses = tau * ucols * kw
    macs = R * uses
    reuse = ucols * kw / win
    resident = np.maximum(1.0, np.minimum(tau, sms * bsm / gx))
    hit = np.minimum(1.0, 0.5 * hw.l2_bytes / np.maximum(resident * line * win, 1.0))
    in_once = line * tau * win
    dram_in = np.where(code == GATHER, in_once * (1.0 + np.maximum(reuse - 1.0, 0.0) * (1.0 - hit)),
                       np.where(code == SMEM, in_once * (1.0 + (gx - 1.0) * (1.0 - hit)), in_once / F))
    out = line * tau * wout
    dram_out = np.where(fused, out / F, out)
    w_bytes = 8.0 * ucols * kw
    dram = dram_in + dram_out + w_bytes + 4.0 * (ucols + wout) + 16.0 * n
    # weights: L2 -> SM once per SM (register-streamed, L1 reuse), or once per block (fused:
    # every block stages the layer's columns in shared memory)
    l2_w = w_bytes * np.where(fused, tau, np.minimum(tau, sms))
    # L1: the distinct tiles resident on one SM (one per block) and the lines a block touches
    touched = line * np.minimum(win, ucols * kw / gx)
    l1_free = np.maximum(hw.l1_bytes - bsm * smem_block, 0.0)
    hit1 = np.minimum(1.0, l1_free / np.maximum(bsm * touched, 1.0))
    gath_l2 = tau * gx * touched + (line * uses - tau * gx * touched) * (1.0 - hit1)
    l2 = np.where(code == GATHER, gath_l2, np.where(code == SMEM, in_once * gx, dram_in)) + dram_out + l2_w
    # fused: gathers + output writes + the staged columns' broadcast reads (an int4 and a float4
    # wavefront per 4 nonzeros per warp: half a gather's traffic)
    smem = np.where(code == GATHER, 0.0, np.where(code == SMEM, in_once * gx + line * uses,
                                                  line * (1.5 * uses + tau * wout) + w_bytes * tau))
    reg = 8.0 * macs
    # time
    blocks = tau * gx
    warps_res = np.minimum(blocks, sms * bsm) * warps
    inflight = warps_res * np.where(code == GATHER, np.minimum(kw, 32) * 128.0, 2048.0)
    bw_d = hw.hbm_bandwidth * hw.hbm_efficiency
    eta_d = np.minimum(1.0, inflight / (bw_d * hw.dram_latency_s))
    eta_l2 = np.minimum(1.0, inflight / (hw.l2_bandwidth * hw.l2_latency_s))
    sm_util = np.minimum(1.0, np.maximum(blocks, 1.0) / sms)
    t_dram = dram / (bw_d * np.maximum(eta_d, 1e-6))
    t_l2 = l2 / (hw.l2_bandwidth * np.maximum(eta_l2, 1e-6))
    t_smem = smem / (hw.smem_bandwidth * sm_util)
    t_fma = macs / (hw.fma_rate * sm_util)
    iters = np.ceil(ucols / (gx * warps))
    waves = np.ceil(np.maximum(blocks, 1.0) / (sms * np.maximum(bsm, 1.0)))
    # critical path of a warp per layer: per column, gathers then KW ordered adds (4 cycles each,
    # never fused into FMAs: exactness); fused columns are staged, so no L2 round trip
    chain = kw * 4.0 / hw.clock_hz
    step = np.where(code == GATHER, 2.0 * hw.l2_latency_s + chain,
                    np.where(fused, 2.0 * hw.smem_latency_s + chain, hw.l2_latency_s + hw.smem_latency_s + chain))
    t_lat = waves * (iters * step + np.where(code == SMEM, hw.dram_latency_s, 0.0))
    # instruction issue: per nonzero a gather load, a multiply and an add, plus the column's
    # index/value loads (a quarter each), on 4 schedulers per SM
    t_issue = tau * ucols * kw * 3.5 / (4.0 * sms * hw.clock_hz * np.maximum(sm_util, 1e-6)) * np.minimum(R / 32.0, 1.0)
    t_core = np.maximum(np.maximum(np.maximum(t_dram, t_l2), t_issue), np.maximum(t_smem, t_fma))
    # fused: a barrier ends every layer inside the block, so the warps' chains are not hidden
    # behind other work (a layer costs its traffic plus its critical path); per-layer kernels
    # overlap one with the other (the slower of the two)
    t_kernel = hw.kernel_min_s / F + np.where(fused, t_core + t_lat, np.maximum(t_core, t_lat))
    # no live tile: every block exits at once
    t_kernel = np.where(n_pos, np.where(tau > 0, t_kernel, hw.kernel_min_s / F), 0.0)
    t_layer = np.where(n_pos, np.maximum(hw.launch_s / F, t_kernel), 0.0)
    return dict(dram=dram, l2=l2, smem=smem, reg=reg, macs=macs, t_layer=t_layer, t_kernel=t_kernel,
                t_dram=t_dram, t_l2=t_l2, t_smem=t_smem, t_lat=t_lat, eta_dram=eta_d, tau=tau, gx=gx,
                hit=hit, hit_l1=hit1, reuse_in=reuse)


def overhead_cost(hw: Hardware, pol: PolicyResult, win0, code, F, neurons):
    """Per-batch time outside the layer kernels: input load, check points, compactions, readout.

    With several batches, the next batch's CSR inputs (~0.1 N nonzeros per row, 8 bytes each)
    are staged by the host thread that also launches the kernels: (batches - 1) / batches of a
    staging per batch, at host_copy_bandwidth.
    """
    bw_d = hw.hbm_bandwidth * hw.hbm_efficiency
    n0 = pol.batch
    stage = (pol.batches - 1) / pol.batches * n0 * (0.1 * neurons * 8 + 8) / hw.host_copy_bandwidth
    t_start = 6 * hw.launch_s + 4.0 * n0 * win0 / bw_d + stage
    t_checks = pol.checks * hw.sync_s
    scan = pol.compactions * hw.kernel_min_s + np.ceil(pol.scan_rows / 1024) * 300 / hw.clock_hz
    t_comp = pol.compactions * 3 * hw.launch_s + scan + 8.0 * pol.compact_rows / bw_d
    dram = 4.0 * n0 * win0 + 8.0 * pol.compact_rows + 8.0 * pol.scan_rows
    return t_start + t_checks + t_comp + hw.sync_s, dram


def energy(bytes_by_level: dict, macs) -> np.ndarray:
    """Dynamic energy (joules) from access counts: bytes x pJ/byte per level + FMAs x pJ (hardware.json)."""
    e = energy_table()
    pj = sum(bytes_by_level[lv] * e[lv] for lv in LEVELS) + macs * e["fma_pj"]
    return pj * 1e-12


@dataclass
class Prediction:
    """The scalar model's answer for one dataflow on one network."""

    dataflow: Dataflow
    valid: bool
    seconds: float
    joules: float
    layer_seconds: np.ndarray = field(repr=False)
    bytes: dict = field(default_factory=dict)  # per level, whole network
    layer_bytes: dict = field(default_factory=dict, repr=False)  # per level, per layer
    reuse: dict = field(default_factory=dict)
    occupancy: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(dataflow=self.dataflow.to_dict(), valid=self.valid, seconds=self.seconds, joules=self.joules,
                    bytes=self.bytes, reuse=self.reuse, occupancy=self.occupancy, policy=self.policy,
                    reason=self.reason, layer_seconds=[float(x) for x in self.layer_seconds])


def network_shapes(prof: NetworkProfile, variant: str):
    s = prof.shapes(variant)
    return s.win.astype(float), s.wout.astype(float), s.ucols.astype(float), s.kw.astype(float)


def predict(df: Dataflow, prof: NetworkProfile, hw: Hardware) -> Prediction:
    """The scalar model: one dataflow, layer by layer (the reference for the vectorised explorer)."""
    code = CODES[df.dataflow]
    win, wout, ucols, kw = network_shapes(prof, df.variant)
    fw, wmax = fused_extent(win, wout, ucols, kw)
    sb = float(smem_per_block(code, df.row_tile, win.max(), wout.max(), wmax, fw))
    ok = bool(valid(code, df.warps, df.row_tile, df.fuse, sb, hw, prof.layers))
    batch = df.batch_rows or float(auto_batch(prof, max(win.max(), wout.max()), hw.memory_bytes))
    pol = simulate(prof, wout[None, :], [df.check_every], [df.check_bytes], [df.compact_fraction], [batch], [df.fuse])
    per_layer = []
    seg = float(segment_length(df.fuse, pol.points[0], prof.layers))
    for k in range(prof.layers):
        bsm = float(blocks_per_sm(code, df.warps, kw[k], sb, hw))
        per_layer.append(layer_cost(hw, code, float(df.row_tile), seg, float(df.warps), float(df.grid_factor),
                                    float(pol.present[0, k]), float(pol.alive_in[0, k]), win[k], wout[k], ucols[k], kw[k],
                                    sb, bsm))
    nb = float(pol.batches[0])
    t_over, dram_over = overhead_cost(hw, PolicyResult(*(np.asarray(getattr(pol, f))[0] for f in
                                                         ("batch", "batches", "present", "alive_in", "checks",
                                                          "compactions", "compact_rows", "scan_rows"))),
                                      win[0], code, df.fuse, prof.neurons)
    layer_seconds = nb * np.array([float(c["t_layer"]) for c in per_layer])
    seconds = float(layer_seconds.sum() + nb * t_over)
    layer_bytes = {lv: nb * np.array([float(c[lv]) for c in per_layer]) for lv in LEVELS}
    tot = {lv: float(v.sum()) for lv, v in layer_bytes.items()}
    tot["dram"] += nb * float(dram_over)
    macs = nb * sum(float(c["macs"]) for c in per_layer)
    joules = float(energy(tot, macs))
    bsm0 = float(blocks_per_sm(code, df.warps, kw[-1], sb, hw))
    fetched = sum(float(c["dram"]) for c in per_layer)
    reuse = {
        "W_per_dram_fetch": macs / max(1.0, nb * sum(8.0 * ucols[k] * kw[k] / 8 for k in range(prof.layers))),
        "W_in_registers": float(df.row_tile),
        "Yin_per_line": float(np.mean([float(c["reuse_in"]) for c in per_layer])),
        "Yin_l2_hit": float(np.mean([float(c["hit"]) for c in per_layer])),
        "Yout_on_chip_layers": float(df.fuse),
        "macs_per_dram_byte": macs / max(1.0, nb * fetched),
    }
    occ = {"blocks_per_sm": bsm0, "warps_per_sm": bsm0 * df.warps,
           "occupancy": bsm0 * df.warps * 32 / hw.max_threads_sm, "smem_per_block": sb,
           "regs_per_thread": float(regs_per_thread(code, kw[-1], df.warps, hw))}
    polinfo = {"batch_rows": float(pol.batch[0]), "batches": nb, "checks": float(pol.checks[0]),
               "compactions": float(pol.compactions[0])}
    return Prediction(df, ok, seconds if ok else float("inf"), joules, layer_seconds, tot, layer_bytes, reuse, occ,
                      polinfo, "" if ok else "violates a constraint (threads, shared memory, tile or fusion depth)")
