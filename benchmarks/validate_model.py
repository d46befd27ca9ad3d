"""Measurements for validating spdnn.model on the GPU: one process, one device call.

1. Calibration (a few hardware constants, from microbenchmarks and one calibration network
   that is not a validation network):
     launch_s      host time of one asynchronous pycuda kernel launch (empty kernel, 3000 launches)
     kernel_min_s  GPU time of one empty kernel back to back (queued behind a spin kernel)
     sync_s        one check point: a small kernel, a 4-byte copy back, stream synchronise
     copy          device-to-device copy bandwidth (bytes read + written) -> hbm_efficiency
     calibration networks N=1024, L=480 and N=16384, L=30, seed + 1 (weights and inputs unlike
       any validation network's, other depths): a few engine configurations (used to fit
       l2_bandwidth and launch_s). Off-size
       networks (2048, 8192) are no use: the generator's biases are the challenge's four, and
       at other sizes every row dies within 3 layers.
2. Validation: the cuda engine on N = 1024, 4096, 16384 (L = 120; 65536 if time is left) over a
   spread of configurations (variant, warps per block, check_every, grid_factor, batch_rows);
   median of `--reps` runs after a warm-up, CUDA events (the engine's own `seconds`).
Networks: spdnn.generate, seed 1; 60000 inputs = 6000 distinct generated inputs repeated 10x
(as benchmarks/bench_gpu.py). Writes $OUT/model-validation-raw.json after every network.

    python benchmarks/validate_model.py --out $OUT [--deadline 330] [--fake]

--fake runs the whole flow on the CPU with a stand-in engine (times from the model), to test
the script without a GPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
"""


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
        empty.prepare("P")
        spin.prepare("q")
        count.prepare("PiP")
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
        x.free(), y.free(), flags.free(), cnt.free()
        return dict(launch_s=launch, kernel_min_s=kernel_min, sync_s=sync, copy_bandwidth=copy,
                    gpu=dev.name(), sms=dev.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT),
                    clock_hz=clock)
    finally:
        ctx.pop()


class FakeEngine:
    """CPU stand-in with the CudaEngine attributes the script sets; seconds from the model."""

    def __init__(self, variant="auto", dataflow="gather", **kw):
        self.variant, self.dataflow = variant, dataflow
        self.warps, self.grid_factor, self.check_every, self.batch_rows = 8, 16, 8, None
        self.check_bytes, self.compact_fraction = 64e6, 1 / 16

    def prepare(self, weights, layers):
        self.n, self.layers = weights.neurons, layers

    def infer(self, x, return_values=False):
        from spdnn.model import Dataflow, NetworkProfile, load_hardware
        from spdnn.model.cost import predict

        prof = NetworkProfile.stored(self.n, self.layers, x.shape[0])
        fused = self.dataflow == "fused"
        df = Dataflow(variant="merged" if self.variant == "auto" else self.variant, warps=self.warps,
                      grid_factor=self.grid_factor, check_every=self.check_every, batch_rows=self.batch_rows or 0,
                      dataflow=self.dataflow, fuse=self.check_every if fused else 1)
        p = predict(df, prof, load_hardware())
        sec = p.seconds * float(np.random.default_rng().uniform(0.8, 1.3))

        class R:
            pass

        r = R()
        r.seconds, r.active_rows = sec, [int(v) for v in prof.active]
        r.categories = np.arange(int(prof.active[-1]))
        r.details = dict(variant=df.variant, checks=p.policy["checks"], compactions=p.policy["compactions"],
                         batch_rows=p.policy["batch_rows"], batches=p.policy["batches"], warps=self.warps)
        return r

    def release(self):
        pass


def configs(full: bool) -> list[dict]:
    """The spread measured per network: the kernel per layer (dataflow gather) on both variants,
    and fused segments of the merged network (check_every = segment length)."""
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
    for w in (4, 8, 16, 32):
        for c in (4, 8, 32):
            out.append(dict(variant="merged", dataflow="fused", warps=w, check_every=c))
    return out


# calibration networks, never validated (own seed, other depths): one deep and narrow (launch and
# latency bound), one shallow and wide (L2 and DRAM bound)
CAL_NETWORKS = ((1024, 480), (16384, 30))
CAL_CONFIGS = [dict(variant="merged", dataflow="gather", warps=8, check_every=8),
               dict(variant="dedup", dataflow="gather", warps=8, check_every=8),
               dict(variant="merged", dataflow="gather", warps=4, check_every=4),
               dict(variant="dedup", dataflow="gather", warps=16, check_every=16),
               dict(variant="merged", dataflow="fused", warps=8, check_every=8),
               dict(variant="merged", dataflow="fused", warps=16, check_every=16)]


def measure_network(make_engine, n: int, layers: int, cfgs: list[dict], args, record: dict, role: str,
                    seed: int | None = None):
    from spdnn.generate import generate_layers
    from spdnn.io.cache import Weights

    t = time.perf_counter()
    seed = args.seed if seed is None else seed
    weights = Weights.from_matrices(list(generate_layers(n, layers, seed)))
    x = make_inputs(n, args.inputs, args.pool, seed)
    log(f"== {role} N={n} L={layers}: generated in {time.perf_counter() - t:.1f} s")
    net = {"neurons": n, "layers": layers, "inputs": x.shape[0], "role": role, "seed": seed, "runs": [],
           "active_rows": {}}
    record["networks"].append(net)
    for variant, dataflow in (("merged", "gather"), ("dedup", "gather"), ("merged", "fused")):
        mine = [c for c in cfgs if c["variant"] == variant and c.get("dataflow", "gather") == dataflow]
        if not mine:
            continue
        eng = make_engine(variant, dataflow)
        t = time.perf_counter()
        eng.prepare(weights, layers)
        log(f"   {variant} {dataflow}: prepared in {time.perf_counter() - t:.1f} s")
        for cfg in mine:
            if time.perf_counter() - T0 > args.deadline:
                log("   deadline reached: skipping the rest")
                net["truncated"] = True
                break
            eng.warps = cfg.get("warps", 8)
            eng.grid_factor = cfg.get("grid_factor", 16)
            eng.check_every = cfg.get("check_every", 8)
            eng.batch_rows = cfg.get("batch_rows")
            try:
                r = eng.infer(x, return_values=False)  # warm-up (compiles for these warps)
                runs = [eng.infer(x, return_values=False) for _ in range(args.reps)]
            except Exception as err:  # recorded, not fatal
                net["runs"].append({"config": cfg, "error": f"{type(err).__name__}: {err}"[:300]})
                log(f"   {cfg}: failed {type(err).__name__}: {str(err)[:200]}")
                continue
            secs = [q.seconds for q in runs]
            r = runs[-1]
            net["active_rows"].setdefault(variant, r.active_rows)
            d = {k: r.details.get(k) for k in ("variant", "checks", "compactions", "batch_rows", "batches", "warps",
                                               "fused_layers")}
            net["runs"].append({"config": cfg, "seconds": statistics.median(secs), "seconds_all": secs,
                                "details": d, "categories": int(len(r.categories))})
            log(f"   {cfg}: {statistics.median(secs) * 1e3:8.3f} ms  checks {d['checks']} compactions {d['compactions']}")
        eng.release()
        del eng
    (Path(args.out) / "model-validation-raw.json").write_text(json.dumps(record, indent=1, default=float))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--networks", default="1024,4096,16384")
    ap.add_argument("--extra", default="65536", help="networks run only while time is left (merged-only configs)")
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--inputs", type=int, default=60000)
    ap.add_argument("--pool", type=int, default=6000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=330.0, help="seconds: stop measuring after this")
    ap.add_argument("--fake", action="store_true", help="CPU stand-in engine (tests the script)")
    ap.add_argument("--analyse", default=None, metavar="RAW_JSON",
                    help="on any machine: calibrate from RAW_JSON, write benchmarks/results/model-validation.{json,png}")
    args = ap.parse_args(argv)
    if args.analyse:
        from spdnn.model.validation import analyse

        res_dir = Path(__file__).resolve().parent / "results"
        r = analyse(Path(args.analyse), res_dir / "model-validation.json", res_dir / "model-validation.png")
        s = r["statistics"]
        print(json.dumps({k: s[k] for k in ("points", "spearman", "median_relative_error", "within_25pct")}, indent=1))
        for n, v in s["per_network"].items():
            print(n, v["spearman"], v["median_relative_error"], v["first_choice_gap"], v["model_choice"])
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "numpy": np.__version__, "fake": args.fake,
              "config": {k: v for k, v in vars(args).items() if k != "out"}, "networks": []}
    if args.fake:
        record["calibration"] = dict(launch_s=6e-6, kernel_min_s=2.5e-6, sync_s=2.5e-5, copy_bandwidth=2.98e12,
                                     gpu="fake", sms=132, clock_hz=1.98e9)

        def make_engine(variant, dataflow):
            return FakeEngine(variant=variant, dataflow=dataflow)
    else:
        from spdnn.engines.cuda import CudaEngine

        record["calibration"] = microbench()

        def make_engine(variant, dataflow):  # gather: no fused segments; fused: the engine's rule
            return CudaEngine(variant=variant, fuse_width=0 if dataflow == "gather" else None)
    log("calibration", record["calibration"])
    record["gpu"] = record["calibration"]["gpu"]
    for n, layers in CAL_NETWORKS:
        measure_network(make_engine, n, layers, CAL_CONFIGS, args, record, "calibration", seed=args.seed + 1)
    for n in (int(v) for v in args.networks.split(",") if v):
        measure_network(make_engine, n, args.layers, configs(True), args, record, "validation")
    for n in (int(v) for v in args.extra.split(",") if v):
        if time.perf_counter() - T0 > args.deadline - 150:
            log(f"no time left for N={n}")
            continue
        cfgs = [dict(variant="merged", dataflow="gather", warps=w, check_every=c)
                for w, c in ((8, 8), (2, 8), (32, 8), (8, 1), (8, 32))]
        measure_network(make_engine, n, args.layers, cfgs, args, record, "validation")
    log("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
