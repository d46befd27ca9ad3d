"""Measurements for validating spdnn.model on the GPU, the model frozen before anything is measured.

Steps (docs/model.md, "Re-validation"):
0. Freeze (any machine, before the device run; commit the file):
     python benchmarks/validate_model.py --freeze benchmarks/results/model-freeze.json --gpu "NVIDIA H200"
   the model's fingerprint (hash of spdnn/model), its calibration, this plan, and the tuned engine
   options of every challenge network on that GPU with their predicted seconds.
1. Validation (device, one call):
     python benchmarks/validate_model.py --out $OUT --deadline 540
   microbenchmarks (launch_s, kernel_min_s, sync_s, copy bandwidth), the calibration networks
   (--cal, seed --cal-seed: N=1024 L=480 and N=16384 L=30, seed 2) with a few configurations, then
   the validation networks: held-out N (--networks 4096,65536, never calibrated on) and held-out
   seed only (--seen 1024,16384), all with seed --seed 3 (never calibrated on), L = --layers 120,
   over the spread of configs() (the knobs tune may search, and a few with carry_saturated off).
   Writes $OUT/model-validation-raw.json after every network, with the model fingerprint of the
   measuring tree.
2. Tune against the engine defaults (device; every challenge network, one network per N per call
   if time is short):
     python benchmarks/validate_model.py --out $OUT --tune-vs-default --freeze-file benchmarks/results/model-freeze.json
   per network CudaEngine() and CudaEngine(**the frozen tuned options), median of --reps runs.
   Writes $OUT/model-tune-raw.json.
3. Analysis (any machine, at the frozen commit):
     python benchmarks/validate_model.py --analyse RAW --freeze-file benchmarks/results/model-freeze.json
     python benchmarks/validate_model.py --analyse-tune TUNE_RAW --freeze-file benchmarks/results/model-freeze.json
   -> benchmarks/results/model-validation-<gpu>.json/.png, model-tune-vs-default-<gpu>.json.
   Per network: Spearman, median signed error, first choice vs best measured, against the targets;
   the calibration fitted on this run's calibration networks, and the frozen other GPU's
   calibration transferred (nothing fitted here). Where the engine carried saturated rows, their
   counts per layer come from the CPU reference on the same generated network, checked against
   the measured active rows (spdnn.model.validation.saturated_rows; minutes at N = 65536).
Networks: spdnn.generate; 60000 inputs = 6000 distinct generated inputs repeated 10x (as
benchmarks/bench_gpu.py). --fake runs every mode on the CPU with a stand-in engine (times from the
model x noise), to test the script without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

T0 = time.perf_counter()


def log(*a):
    print(f"[{time.perf_counter() - T0:6.1f}s]", *a, flush=True)


def make_inputs(neurons: int, n_inputs: int, pool: int, seed: int) -> sp.csr_matrix:
    from spdnn.generate import generate_inputs

    base = sp.csr_matrix(generate_inputs(neurons, min(pool, n_inputs), seed), dtype=np.float32)
    reps = -(-n_inputs // base.shape[0])
    return sp.csr_matrix(sp.vstack([base] * reps)[:n_inputs], dtype=np.float32)


MICRO_SRC = r"""
extern "C" __global__ void empty_kernel(int *p) { if (p != nullptr && threadIdx.x == 1023) p[0] = 1; }
extern "C" __global__ void spin_kernel(long long cycles) {
    long long t0 = clock64(); while (clock64() - t0 < cycles) { }
}
extern "C" __global__ void flag_count(const int *f, int n, unsigned *c) {
    unsigned s = 0; for (int i = threadIdx.x; i < n; i += blockDim.x) s += f[i] != 0;
    if (s) atomicAdd(c, s);
}
// L1 throughput: every warp reads 16 lines a round from a 32 KB table that stays in L1, as the
// gather kernel reads its features (lane l of line i at y[32 i + l]: one 128-byte wavefront) or
// its weights (the same 16 bytes in every lane: a uniform LDG.128). Immediate offsets, so a load
// is one instruction; the round's window moves through the table.
extern "C" __global__ void l1_gather(const float *__restrict__ y, float *out, int rounds) {
    const int lane = threadIdx.x & 31, warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    float acc = 0.f;
    for (int r = 0; r < rounds; ++r) {
        const float *p = y + (((r + warp) & 7) << 10) + lane;  // one of 8 windows of 32 lines
        float g[16];
#pragma unroll
        for (int q = 0; q < 16; ++q) g[q] = __ldg(p + ((q * 13) & 31) * 32);
#pragma unroll
        for (int q = 0; q < 16; ++q) acc += g[q];
    }
    if (acc == 1234.5f) out[0] = acc;
}
extern "C" __global__ void l1_broadcast(const int4 *__restrict__ w, int *out, int rounds) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int acc = 0;
    for (int r = 0; r < rounds; ++r) {
        const int4 *p = w + (((r + warp) & 7) << 8);  // 8 windows of 256 int4 (32 KB)
        int4 g[16];
#pragma unroll
        for (int q = 0; q < 16; ++q) g[q] = __ldg(p + ((q * 13) & 255));
#pragma unroll
        for (int q = 0; q < 16; ++q) acc += g[q].x ^ g[q].y ^ g[q].z ^ g[q].w;
    }
    if (acc == 12345) out[0] = acc;
}
"""

L1_ROUNDS = 4000
L1_BLOCKS_PER_SM, L1_THREADS = 8, 256  # 64 warps an SM


def l1_cycles(cuda, fn, table, sms: int, clock: float, stream) -> float:
    """SM clocks per warp load of `fn` (16 loads a round per warp), median of 5 timed runs."""
    a, b = cuda.Event(), cuda.Event()
    out = cuda.mem_alloc(16)
    grid = (sms * L1_BLOCKS_PER_SM, 1)
    fn.prepared_async_call(grid, (L1_THREADS, 1, 1), stream, table, out, np.int32(L1_ROUNDS // 10))
    times = []
    for _ in range(5):
        a.record(stream)
        fn.prepared_async_call(grid, (L1_THREADS, 1, 1), stream, table, out, np.int32(L1_ROUNDS))
        b.record(stream)
        b.synchronize()
        times.append(a.time_till(b) / 1e3)
    out.free()
    loads_per_sm = L1_BLOCKS_PER_SM * L1_THREADS / 32 * L1_ROUNDS * 16
    return statistics.median(times) * clock / loads_per_sm


def microbench() -> dict:
    import pycuda.driver as cuda
    from pycuda.compiler import SourceModule

    cuda.init()
    dev = cuda.Device(0)
    ctx = dev.retain_primary_context()
    ctx.push()
    try:
        major, minor = dev.compute_capability()
        mod = SourceModule(MICRO_SRC, arch=f"sm_{major}{minor}", no_extern_c=True)
        empty, spin, count = (mod.get_function(n) for n in ("empty_kernel", "spin_kernel", "flag_count"))
        gather, bcast = mod.get_function("l1_gather"), mod.get_function("l1_broadcast")
        empty.prepare("P")
        spin.prepare("q")
        count.prepare("PiP")
        gather.prepare("PPi")
        bcast.prepare("PPi")
        st = cuda.Stream()
        nul = np.intp(0)
        for _ in range(200):
            empty.prepared_async_call((1, 1), (32, 1, 1), st, nul)
        st.synchronize()
        # host cost of a launch
        n = 3000
        t = time.perf_counter()
        for _ in range(n):
            empty.prepared_async_call((1, 1), (32, 1, 1), st, nul)
        launch = (time.perf_counter() - t) / n
        st.synchronize()
        # GPU time of back-to-back empty kernels, queued behind a spin kernel
        clock = dev.get_attribute(cuda.device_attribute.CLOCK_RATE) * 1e3
        a, b = cuda.Event(), cuda.Event()
        spin.prepared_async_call((1, 1), (32, 1, 1), st, np.int64(int(clock * 0.05)))
        a.record(st)
        m = 2000
        for _ in range(m):
            empty.prepared_async_call((1, 1), (32, 1, 1), st, nul)
        b.record(st)
        b.synchronize()
        kernel_min = a.time_till(b) / 1e3 / m
        # a check point: count kernel, 4-byte copy back, synchronise
        flags = cuda.mem_alloc(4 * 60000)
        cuda.memset_d32(flags, 1, 60000)
        cnt = cuda.mem_alloc(4)
        host = cuda.pagelocked_empty(4, np.uint32)
        reps = 500
        t = time.perf_counter()
        for _ in range(reps):
            count.prepared_async_call((1, 1), (256, 1, 1), st, flags, np.int32(60000), cnt)
            cuda.memcpy_dtoh_async(host[:1], cnt, st)
            st.synchronize()
        sync = (time.perf_counter() - t) / reps
        # copy bandwidth
        nbytes = 2 << 30
        x, y = cuda.mem_alloc(nbytes), cuda.mem_alloc(nbytes)
        cuda.memcpy_dtod(y, x, nbytes)
        times = []
        for _ in range(7):
            a.record(st)
            cuda.memcpy_dtod_async(y, x, nbytes, st)
            b.record(st)
            b.synchronize()
            times.append(a.time_till(b) / 1e3)
        copy = 2 * nbytes / statistics.median(times)
        # L1: clocks per wavefront of hits (a 4-byte gather is one; a uniform 16-byte load four, by
        # analysis.load_wavefronts(cached=True): the broadcast is recorded to check that rule, not used)
        sms = dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
        table = cuda.mem_alloc(32768)
        cuda.memset_d32(table, 0, 8192)
        l1_gather = l1_cycles(cuda, gather, table, sms, clock, st)
        l1_bcast = l1_cycles(cuda, bcast, table, sms, clock, st)
        table.free()
        x.free(), y.free(), flags.free(), cnt.free()
        return dict(
            launch_s=launch,
            kernel_min_s=kernel_min,
            sync_s=sync,
            copy_bandwidth=copy,
            gpu=dev.name(),
            sms=sms,
            clock_hz=clock,
            l1_gather_cycles=l1_gather,
            l1_broadcast_cycles=l1_bcast,
        )
    finally:
        ctx.pop()


class FakeEngine:
    """CPU stand-in with the CudaEngine attributes and options the script uses; seconds from the model,
    active rows (carried ones included) from the CPU reference on the network it was given."""

    def __init__(
        self,
        variant="auto",
        dataflow="gather",
        fuse_width=None,
        warps=16,
        grid_factor=16,
        check_every=8,
        batch_rows=None,
        check_bytes=64e6,
        compact_fraction=1 / 16,
        carry_saturated=True,
        **kw,
    ):
        self.variant, self.warps, self.grid_factor, self.check_every = variant, warps, grid_factor, check_every
        self.batch_rows, self.check_bytes, self.compact_fraction = batch_rows, check_bytes, compact_fraction
        self.dataflow = dataflow if fuse_width is None or fuse_width else "gather"
        self.carry_saturated = carry_saturated
        self._counts = None

    def prepare(self, weights, layers):
        self.weights, self.n, self.layers = weights, weights.neurons, layers

    def infer(self, x, return_values=False):
        from spdnn.model import Dataflow, NetworkProfile, load_hardware
        from spdnn.model.cost import predict
        from spdnn.model.network import survival

        if self._counts is None:  # (the same inputs every call)
            self._counts = survival((self.weights.layer(k) for k in range(self.layers)), self.weights.bias, x)
        act, sat = self._counts
        prof = NetworkProfile.from_active(self.n, act, x.shape[0], "fake", sat)
        fused = self.dataflow == "fused"
        df = Dataflow(
            variant="merged" if self.variant == "auto" else self.variant,
            warps=self.warps,
            grid_factor=self.grid_factor,
            check_every=self.check_every,
            batch_rows=self.batch_rows or 0,
            dataflow="fused" if fused else "gather",  # (dedup too: the engine's scatter segments)
            fuse=self.check_every if fused else 1,
            carry_saturated=self.carry_saturated,
        )
        p = predict(df, prof, load_hardware())
        sec = p.seconds * float(np.random.default_rng().uniform(0.8, 1.3))

        class R:
            pass

        r = R()
        r.seconds, r.active_rows = sec, [int(v) for v in act]
        r.categories = np.arange(int(act[-1]))
        r.details = dict(
            variant=df.variant,
            checks=p.policy["checks"],
            compactions=p.policy["compactions"],
            batch_rows=p.policy["batch_rows"],
            batches=p.policy["batches"],
            warps=self.warps,
            fused_layers=p.policy["fused_layers"] or 0,
            carry_from=p.policy["carry_from"],
            carried_rows=p.policy["carried_rows"],
        )
        return r

    def release(self):
        pass


def configs(full: bool, neurons: int = 1024) -> list[dict]:
    """The spread measured per network: the kernel per layer (dataflow gather) on both variants,
    and fused segments of the merged network (check_every = segment length) where layers fuse
    (N <= 4096), saturated rows carried (the engine's default); full: also a few with
    carry_saturated off. spdnn.model.validated.VALIDATED must cover what tune searches."""
    out = []
    for v in ("merged", "dedup"):
        for w in (2, 8, 32):
            for c in (1, 8, 32):
                if v == "merged" or c == 8:
                    out.append(dict(variant=v, dataflow="gather", warps=w, check_every=c))
        if full:
            out.append(dict(variant=v, dataflow="gather", warps=8, check_every=8, batch_rows=15008))
            for g in (4, 64):
                out.append(dict(variant=v, dataflow="gather", warps=8, check_every=8, grid_factor=g))
    if neurons <= 4096:
        for w in (4, 8, 16, 32):
            for c in (4, 8, 32):
                out.append(dict(variant="merged", dataflow="fused", warps=w, check_every=c))
    if full:  # saturated rows computed instead of carried (the model predicts both)
        out += [
            dict(variant="merged", dataflow="gather", warps=8, check_every=c, carry_saturated=False) for c in (1, 8)
        ]
        if neurons <= 4096:
            out.append(dict(variant="merged", dataflow="fused", warps=8, check_every=8, carry_saturated=False))
    return out


def large_configs() -> list[dict]:
    """N = 65536: a kernel per layer, merged, the knobs that matter there (fewer: each run is long)."""
    return [
        dict(variant="merged", dataflow="gather", warps=w, check_every=c, **({"grid_factor": g} if g else {}))
        for w, c, g in ((16, 8, 0), (2, 8, 0), (32, 8, 0), (8, 1, 0), (8, 32, 0), (16, 8, 4), (16, 8, 64))
    ] + [
        dict(variant="dedup", dataflow="gather", warps=16, check_every=8),
        dict(variant="merged", dataflow="gather", warps=16, check_every=8, carry_saturated=False),
    ]


# calibration networks (named, never validated: own seed, other depths): one deep and narrow
# (launch and latency bound), one shallow and wide (L2 and DRAM bound)
CAL_NETWORKS = "1024x480,16384x30"
CAL_CONFIGS = [
    dict(variant="merged", dataflow="gather", warps=8, check_every=8),
    dict(variant="dedup", dataflow="gather", warps=8, check_every=8),
    dict(variant="merged", dataflow="gather", warps=4, check_every=4),
    dict(variant="dedup", dataflow="gather", warps=16, check_every=16),
    dict(variant="merged", dataflow="fused", warps=8, check_every=8),
    dict(variant="merged", dataflow="fused", warps=16, check_every=16),
]


def measure_network(
    make_engine, n: int, layers: int, cfgs: list[dict], args, record: dict, role: str, seed: int, held_out: str = ""
):
    from spdnn.generate import generate_layers
    from spdnn.io.cache import Weights

    t = time.perf_counter()
    weights = Weights.from_matrices(list(generate_layers(n, layers, seed)))
    x = make_inputs(n, args.inputs, args.pool, seed)
    log(f"== {role} N={n} L={layers} seed={seed}: generated in {time.perf_counter() - t:.1f} s")
    net = {
        "neurons": n,
        "layers": layers,
        "inputs": x.shape[0],
        "role": role,
        "seed": seed,
        "held_out": held_out,
        "pool": min(args.pool, args.inputs),  # distinct inputs (the saturated counts' CPU reference)
        "runs": [],
        "active_rows": {},
    }
    record["networks"].append(net)
    groups = [(v, d, True) for v, d in (("merged", "gather"), ("dedup", "gather"), ("merged", "fused"))]
    for variant, dataflow, carry in groups + [("merged", "gather", False), ("merged", "fused", False)]:
        mine = [
            c
            for c in cfgs
            if c["variant"] == variant
            and c.get("dataflow", "gather") == dataflow
            and c.get("carry_saturated", True) == carry
        ]
        if not mine:
            continue
        # --val-instances engines of the group, one after another: every configuration of a group runs on
        # the same engine, so the ranking within a group never saw the ~9% by which two engines of the
        # same options differ (H200, 2026-12-03), while the ranking across groups (gather against fused:
        # the first choice at 4096) did; each configuration's figure is the median of the engines' medians
        measured: dict[int, list[dict]] = {}
        for instance in range(max(1, args.val_instances)):
            if time.perf_counter() - T0 > args.deadline:
                break
            eng = make_engine(variant, dataflow, carry)  # (carrying is decided at prepare)
            t = time.perf_counter()
            eng.prepare(weights, layers)
            log(
                f"   {variant} {dataflow}{'' if carry else ' carry off'} #{instance}:"
                f" prepared in {time.perf_counter() - t:.1f} s"
            )
            for k, cfg in enumerate(mine):
                if time.perf_counter() - T0 > args.deadline:
                    log("   deadline reached: skipping the rest")
                    net["truncated"] = True
                    break
                eng.warps = cfg.get("warps", 16)
                eng.grid_factor = cfg.get("grid_factor", 16)
                eng.check_every = cfg.get("check_every", 8)
                eng.batch_rows = cfg.get("batch_rows")
                try:
                    r = eng.infer(x, return_values=False)  # warm-up (compiles for these warps)
                    runs = [eng.infer(x, return_values=False) for _ in range(args.reps)]
                except Exception as err:  # recorded, not fatal
                    measured.setdefault(k, []).append({"error": f"{type(err).__name__}: {err}"[:300]})
                    log(f"   {cfg}: failed {type(err).__name__}: {str(err)[:200]}")
                    continue
                secs = [q.seconds for q in runs]
                r = runs[-1]
                net["active_rows"].setdefault(variant, r.active_rows)
                d = {
                    k2: r.details.get(k2)
                    for k2 in (
                        "variant",
                        "checks",
                        "compactions",
                        "batch_rows",
                        "batches",
                        "warps",
                        "fused_layers",
                        "carry_from",
                        "carried_rows",
                    )
                }
                measured.setdefault(k, []).append(
                    {
                        "seconds": statistics.median(secs),
                        "seconds_all": secs,
                        "details": d,
                        "categories": len(r.categories),
                    }
                )
                log(
                    f"   {cfg} #{instance}: {statistics.median(secs) * 1e3:8.3f} ms"
                    f"  checks {d['checks']} compactions {d['compactions']}"
                )
            eng.release()
            del eng
        for k, cfg in enumerate(mine):
            got = measured.get(k, [])
            ok = [m for m in got if "seconds" in m]
            if not ok:
                if got:
                    net["runs"].append({"config": cfg, "error": got[-1]["error"]})
                continue
            meds = [m["seconds"] for m in ok]
            net["runs"].append(
                {
                    "config": cfg,
                    "seconds": statistics.median(meds),
                    "seconds_all": [t for m in ok for t in m["seconds_all"]],
                    "instance_seconds": meds,
                    "details": ok[-1]["details"],
                    "categories": int(ok[-1]["categories"]),
                    "categories_all": sorted({int(m["categories"]) for m in ok}),
                }
            )
    (Path(args.out) / "model-validation-raw.json").write_text(json.dumps(record, indent=1, default=float))


def specs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in spec.split("x")) for spec in text.split(",") if spec]


def tune_vs_default(make_engine_opts, args, record: dict, frozen: dict) -> None:
    """Every network of --tvd-networks: the engine's defaults and the frozen tuned options, one
    process, the layers of a deeper network generated once and shared (they are its prefix)."""
    from spdnn.generate import generate_layers
    from spdnn.io.cache import Weights

    nets = specs(args.tvd_networks)
    for n in dict.fromkeys(n for n, _ in nets):
        depths = sorted(layers for m, layers in nets if m == n)
        t = time.perf_counter()
        mats = list(generate_layers(n, depths[-1], args.seed))
        x = make_inputs(n, args.inputs, args.pool, args.seed)
        log(f"== N={n}: {depths[-1]} layers generated in {time.perf_counter() - t:.1f} s")
        for layers in depths:
            key = f"{n}x{layers}"
            tuned = frozen["tuned"][key]
            net = {
                "neurons": n,
                "layers": layers,
                "inputs": x.shape[0],
                "seed": args.seed,
                "runs": [],
                "predicted_default": tuned["default_predicted_seconds"],
                "predicted_tuned": tuned["predicted_seconds"],
            }
            record["networks"].append(net)
            weights = Weights.from_matrices(mats[:layers])
            if layers == depths[-1]:
                mats = None  # (65536 x 1920: the generated matrices alone are ~32 GB)
            pair = [("default", {}), ("tuned", tuned["engine_options"])]
            # --instances engines of each, alternating: two engines of the same options measured a median
            # 9% apart on the H200 (2026-12-03), more than most option pairs differ
            turns = [
                (i, which, opts)
                for i in range(args.instances)
                for which, opts in (pair if (len(record["networks"]) + i) % 2 else pair[::-1])
            ]
            for instance, which, opts in turns:
                if time.perf_counter() - T0 > args.deadline:
                    log("   deadline reached: skipping the rest")
                    net["truncated"] = True
                    break
                try:
                    eng = make_engine_opts(opts)
                    eng.prepare(weights, layers)
                    eng.infer(x, return_values=False)  # warm-up
                    runs = [eng.infer(x, return_values=False) for _ in range(args.reps)]
                    eng.release()
                except Exception as err:  # recorded, not fatal
                    if "eng" in locals():
                        try:
                            eng.release()
                        except Exception:  # the error above is the one to record
                            pass
                    net["runs"].append(
                        {
                            "which": which,
                            "instance": instance,
                            "options": opts,
                            "error": f"{type(err).__name__}: {err}"[:300],
                        }
                    )
                    log(f"   {key} {which}: failed {type(err).__name__}: {str(err)[:200]}")
                    continue
                secs = [q.seconds for q in runs]
                net["runs"].append(
                    {
                        "which": which,
                        "instance": instance,
                        "options": opts,
                        "seconds": statistics.median(secs),
                        "seconds_all": secs,
                        "categories": int(len(runs[-1].categories)),
                        "details": {
                            k: runs[-1].details.get(k)
                            for k in (
                                "variant",
                                "checks",
                                "compactions",
                                "fused_layers",
                                "warps",
                                "carry_from",
                                "carried_rows",
                            )
                        },
                        "dataflow": tuned["dataflow"] if which == "tuned" else "engine default",
                        "measured": tuned["measured"] if which == "tuned" else "engine default",
                    }
                )
                log(f"   {key} {which} #{instance}: {statistics.median(secs) * 1e3:9.3f} ms {opts}")
                (Path(args.out) / "model-tune-raw.json").write_text(json.dumps(record, indent=1, default=float))


def plan(args) -> dict:
    return {
        "calibration": {"networks": args.cal, "seed": args.cal_seed, "configs": CAL_CONFIGS},
        "validation": {
            "held_out_n": args.networks,
            "held_out_seed_only": args.seen,
            "seed": args.seed,
            "layers": args.layers,
            "configs": "configs(True) per N (fused only at N <= 4096); large_configs() at N = 65536",
        },
        "tune_vs_default": {"networks": args.tvd_networks, "seed": args.seed},
        "inputs": args.inputs,
        "pool": args.pool,
        "reps": args.reps,
        "instances": args.instances,
        "val_instances": args.val_instances,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--cal", default=CAL_NETWORKS, help="calibration networks NxL (never validated)")
    ap.add_argument("--cal-seed", type=int, default=2)
    ap.add_argument("--networks", default="4096,65536", help="validation: N never calibrated on")
    ap.add_argument("--seen", default="1024,16384", help="validation: N calibrated on, at the held-out seed")
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--inputs", type=int, default=60000)
    ap.add_argument("--pool", type=int, default=6000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--instances",
        type=int,
        default=3,
        help="tune vs default: engines built of each option set (alternating; the median of their medians)",
    )
    ap.add_argument(
        "--val-instances",
        type=int,
        default=3,
        help="validation: engines built of each kernel group, one after another (the median of their"
        " medians per configuration; 1 before 2026-12-03)",
    )
    ap.add_argument("--seed", type=int, default=3, help="the held-out seed of validation and tune-vs-default")
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds: stop measuring after this")
    ap.add_argument("--fake", action="store_true", help="CPU stand-in engine (tests the script)")
    ap.add_argument("--freeze", default=None, metavar="FILE", help="write the frozen model and plan (no GPU)")
    ap.add_argument("--gpu", default="NVIDIA H200", help="with --freeze: the GPU the tuned options are for")
    ap.add_argument("--freeze-file", default=None, help="the frozen model (tune-vs-default, analyses)")
    ap.add_argument("--tune-vs-default", action="store_true")
    ap.add_argument(
        "--tvd-networks",
        default=",".join(f"{n}x{layers}" for n in (1024, 4096, 16384, 65536) for layers in (120, 480, 1920)),
    )
    ap.add_argument(
        "--analyse", default=None, metavar="RAW_JSON", help="on any machine: calibrate and validate from RAW_JSON"
    )
    ap.add_argument(
        "--analyse-tune",
        default=None,
        metavar="RAW_JSON[,RAW_JSON...]",
        help="tune-vs-default files (several calls of one device session, merged)",
    )
    ap.add_argument("--allow-changed", action="store_true", help="analyse although the model changed since freezing")
    ap.add_argument("--cal-grid", default="31x25", help="calibration grid: L2 bandwidths x launch costs")
    ap.add_argument(
        "--write-calibration",
        action="store_true",
        help="with --analyse: write the fitted constants to --calibration-out",
    )
    ap.add_argument(
        "--transfer-calibration",
        default=None,
        metavar="SRC:DST",
        help="write SRC's calibration as DST's (e.g. h100-sxm:h200) to --calibration-out, before freezing",
    )
    ap.add_argument(
        "--calibration-out",
        default=None,
        metavar="FILE",
        help="where calibrations are written (default RESULTS/calibration.json; started from the "
        "packaged spdnn/model/calibration.json, which is only read: copy FILE there to use it)",
    )
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    from spdnn.model.hardware import gpu_slug
    from spdnn.model.validation import analyse, analyse_tune, fingerprint, freeze

    res_dir = Path(args.results)
    if args.analyse or args.analyse_tune:
        res_dir.mkdir(parents=True, exist_ok=True)  # (a folder of its own keeps earlier analyses)
    calibration_out = Path(args.calibration_out) if args.calibration_out else res_dir / "calibration.json"
    if args.transfer_calibration:
        from spdnn.model.validation import transfer_calibration

        src, dst = args.transfer_calibration.split(":")
        log(json.dumps(transfer_calibration(src, dst, calibration_out)))
        log(f"calibration of {dst} -> {calibration_out}")
        return 0
    if args.freeze:
        rec = freeze(Path(args.freeze), args.gpu, plan(args), specs(args.tvd_networks))
        log(f"frozen {rec['fingerprint'][:16]} for {args.gpu}: {len(rec['tuned'])} tuned networks -> {args.freeze}")
        return 0
    if args.analyse:
        raw = json.loads(Path(args.analyse).read_text())
        slug = gpu_slug(raw.get("gpu"))
        r = analyse(
            Path(args.analyse),
            res_dir / f"model-validation-{slug}.json",
            res_dir / f"model-validation-{slug}.png",
            calibration_out=calibration_out if args.write_calibration else None,
            frozen_path=Path(args.freeze_file) if args.freeze_file else None,
            allow_changed=args.allow_changed,
            grid=tuple(int(v) for v in args.cal_grid.split("x")),
        )
        s = r["statistics"]
        print(
            r["model"],
            json.dumps(
                {
                    k: s.get(k)
                    for k in ("points", "spearman", "median_relative_error", "median_signed_error", "within_25pct")
                }
            ),
        )
        for key in [k for k in r if k.startswith("statistics")]:
            for net, v in r[key].get("per_network", {}).items():
                print(
                    f"{key:40s} {net:26s} {v['held_out']:8s} spearman {v['spearman']} signed "
                    f"{v['median_signed_error']:+.3f} first choice {v['first_choice_gap']:+.3f} {v['targets_met']}"
                )
        return 0
    if args.analyse_tune:
        files = args.analyse_tune.split(",")
        raws = [json.loads(Path(f).read_text()) for f in files]
        if len({r.get("gpu") for r in raws}) > 1 or len({r.get("model_fingerprint") for r in raws}) > 1:
            raise SystemExit("the tune-vs-default files come from different GPUs or models")
        raw = dict(raws[0], networks=[n for r in raws for n in r["networks"]], merged_from=files)
        merged = res_dir / "model-tune-raw-merged.json"
        merged.write_text(json.dumps(raw, indent=1, default=float))
        r = analyse_tune(
            merged,
            res_dir / f"model-tune-vs-default-{gpu_slug(raw.get('gpu'))}.json",
            Path(args.freeze_file) if args.freeze_file else None,
            args.allow_changed,
        )
        print(r["model"], "geometric mean speed-up", r["geometric_mean_speedup"], "slower:", r["tuned_slower"])
        for row in r["networks"]:
            print(row)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "numpy": np.__version__,
        "fake": args.fake,
        "model_fingerprint": fingerprint(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "networks": [],
    }
    try:
        from spdnn.provenance import git_commit

        record["commit"] = git_commit()
    except Exception:  # provenance is best effort here
        record["commit"] = None
    if args.fake:
        record["calibration"] = dict(
            launch_s=6e-6,
            kernel_min_s=2.5e-6,
            sync_s=2.5e-5,
            copy_bandwidth=2.98e12,
            gpu="fake",
            sms=132,
            clock_hz=1.98e9,
            l1_gather_cycles=1.0,
            l1_broadcast_cycles=2.0,
        )

        def make_engine(variant, dataflow, carry=True):
            return FakeEngine(variant=variant, dataflow=dataflow, carry_saturated=carry)

        def make_engine_opts(opts):
            return FakeEngine(dataflow="fused", **opts)
    else:
        from spdnn.engines.cuda import CudaEngine

        record["calibration"] = microbench()

        def make_engine(variant, dataflow, carry=True):  # gather: no fused segments; fused: the engine's rule
            return CudaEngine(variant=variant, fuse_width=0 if dataflow == "gather" else None, carry_saturated=carry)

        def make_engine_opts(opts):
            return CudaEngine(**opts)

    log("calibration", record["calibration"])
    record["gpu"] = record["calibration"]["gpu"]
    if args.tune_vs_default:
        if not args.freeze_file:
            raise SystemExit("--tune-vs-default needs --freeze-file (the tuned options, frozen before measuring)")
        frozen = json.loads(Path(args.freeze_file).read_text())
        record["frozen"] = {"fingerprint": frozen["fingerprint"], "gpu": frozen["gpu"]}
        if not args.fake and gpu_slug(frozen["gpu"]).split("-")[:2] != gpu_slug(record["gpu"]).split("-")[:2]:
            log(f"warning: options frozen for {frozen['gpu']}, measuring on {record['gpu']}")
        tune_vs_default(make_engine_opts, args, record, frozen)
        log("done")
        return 0
    for n, layers in specs(args.cal):
        measure_network(make_engine, n, layers, CAL_CONFIGS, args, record, "calibration", seed=args.cal_seed)
    for n, held in [(int(v), "N and seed") for v in args.networks.split(",") if v] + [
        (int(v), "seed") for v in args.seen.split(",") if v
    ]:
        cfgs = large_configs() if n >= 65536 else configs(True, n)
        measure_network(make_engine, n, args.layers, cfgs, args, record, "validation", seed=args.seed, held_out=held)
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
