"""How closely the synthetic data behaves like the official data (issue 15), and how long its
truth takes on all cores. Raw JSON for docs/synthetic.md.

For each N and seed: 60000 generated inputs (nonzeros per row against the official count),
their categories on the generated N x L network (against the official 1812 / 1801 / 1918 /
1994) and the active rows after every layer; for N = 1024 also against the official profile
(the sample's, scaled to the 3.0% plateau: spdnn.generate.official_profile). Categories come
from the CUDA engine when --engine cuda (fast at every N; at N = 1024 the CPU reference is run
too and must agree), else from the CPU reference on all cores.

--real DIR (the official layout holding neuron1024.tar.gz) adds the synthetic inputs' profile
on the real layers. --truth N:L0:E times the CPU reference on all cores, as used for the
truth files, on N x L0 with all inputs, then E more layers on the rows still alive, and
extrapolates to 1920 layers (stated as such). --gil times the reference on threads against
processes.

  python benchmarks/bench_synthetic.py --out $OUT [--neurons 1024,4096] [--seeds 1,2,3] [--engine cuda]
  python benchmarks/bench_synthetic.py --calibrate 4096 --inputs 60000   # re-fit one N (docs/synthetic.md)
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp

from spdnn import challenge, generate
from spdnn.devices import cpu_model, default_workers, gpu_info
from spdnn.engines.cpu import reference, reference_rows
from spdnn.io.cache import Weights
from spdnn.provenance import git_commit


def log(*a):
    print(*a, flush=True)


OFFICIAL_CATEGORIES, OFFICIAL_NNZ = generate.OFFICIAL_CATEGORIES, generate.OFFICIAL_NNZ


# ----------------------------------------------------------------------------- calibration


def calibrate(neurons: int, n_inputs: int, seeds: list[int], width: float, steps: int = 3) -> dict:
    """Re-fit (width factor, pen factor) of one N: the pen to the official nonzeros per row,
    then the width (secant steps) to the official categories, on the generated networks."""
    target_nnz = OFFICIAL_NNZ[neurons] / challenge.N_INPUTS
    target = OFFICIAL_CATEGORIES[neurons] / challenge.N_INPUTS
    layers = 5 * generate.group_length(neurons)  # well past where the count stops changing
    pen = generate.size_fit(neurons)[1]
    history = []
    for _ in range(steps):
        for _ in range(3):  # nonzeros ~ pen: a few multiplicative steps
            generate._SIZE_FIT[neurons] = (width, pen)
            nnz = (
                np.mean(
                    [sum(img.size for *_, img, _ in generate.base_chunks(neurons, 8192, s)) / 8192 for s in (101, 102)]
                )
                * generate.base_shape(neurons)[2] ** 2
            )
            pen *= (target_nnz / nnz) ** 1.1
        generate._SIZE_FIT[neurons] = (width, pen)
        alive = np.mean([generate.folded_survival(neurons, n_inputs, s, layers)[0][-1] for s in seeds]) / n_inputs
        history.append({"width": width, "pen": pen, "categories_ratio": alive / target})
        log(history[-1])
        if len(history) > 1:  # secant on log(ratio) against width
            a, b = history[-2], history[-1]
            slope = (np.log(b["categories_ratio"]) - np.log(a["categories_ratio"])) / (b["width"] - a["width"])
        else:
            slope = 6.9  # measured: about +7 in log(categories) per unit of width factor
        width -= np.log(alive / target) / slope
    return {"neurons": neurons, "history": history}


# ----------------------------------------------------------------------------- measurements


def environment() -> dict:
    """Versions and hardware, GPU included where pycuda finds one."""
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu": cpu_model(),
        "workers": default_workers(),
        "host": platform.node(),
        "commit": git_commit(),
    }
    try:
        import pycuda
        import pycuda.driver as drv

        drv.init()
        env.update(gpu=drv.Device(0).name(), driver_cuda=drv.get_driver_version(), pycuda=pycuda.VERSION_TEXT)
        env["gpu_info"] = gpu_info()  # models, driver, memory and CUDA version (None without nvidia-smi)
    except Exception as err:  # no GPU here: the record says so
        env["gpu"] = f"none ({type(err).__name__}: {err})"
    return env


def categories_and_profile(neurons: int, layers: int, seed: int, inputs: sp.csr_matrix, engine: str) -> dict:
    """Categories and active rows per layer on the generated N x L network of `seed`."""
    t0 = time.perf_counter()
    mats = list(generate.generate_layers(neurons, layers, seed))
    out = {"network_seconds": time.perf_counter() - t0}
    if engine == "cuda":
        from spdnn.engines.cuda import CudaEngine

        eng = CudaEngine()
        eng.prepare(Weights.from_matrices(mats), layers)
        r = eng.infer(inputs, return_values=False)
        out.update(
            categories=int(r.categories.size),
            active_rows=r.active_rows,
            engine="cuda",
            infer_seconds=r.seconds,
            device=eng.device(),
        )
        eng.release()
    if engine == "cpu" or neurons == 1024:  # the reference, and at 1024 the check of the GPU's counts
        t0 = time.perf_counter()
        ref = reference(lambda: mats, challenge.bias(neurons), inputs, workers=None, keep_values=False)
        cpu = {
            "categories": int(ref.alive[layers].size),
            "active_rows": ref.active_rows,
            "seconds": time.perf_counter() - t0,
        }
        if engine == "cpu":
            out.update(categories=cpu["categories"], active_rows=cpu["active_rows"], engine="cpu")
        else:
            out["cpu_reference_agrees"] = cpu["active_rows"] == out["active_rows"]
        out["cpu_reference_seconds"] = cpu["seconds"]
    return out


def real_profile(real: Path, inputs: sp.csr_matrix, layers: int) -> list[int]:
    """Active rows of `inputs` on the first `layers` real 1024 layers (official layout at `real`)."""
    from spdnn.io.cache import convert_weights, load_weights

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "w.arrow"
        convert_weights(real / challenge.weights_archive(1024), cache, 1024, layers, progress=False)
        weights = load_weights(cache)
        mats = [weights.layer(k) for k in range(layers)]
        return reference(lambda: mats, weights.bias, inputs, workers=None, keep_values=False).active_rows


def time_truth(neurons: int, layers: int, extra: int, inputs: sp.csr_matrix, seed: int, target: int = 1920) -> dict:
    """The reference on all cores for N x layers (every input), then `extra` more layers on the
    rows alive after them; extrapolated to `target` layers at the per-layer time of the extra
    ones (the rows alive by then are the fixed points that every later layer keeps)."""
    bias = challenge.bias(neurons)
    t0 = time.perf_counter()
    first = reference(functools.partial(generate.generate_layers, neurons, layers, seed), bias, inputs, workers=None)
    t_first = time.perf_counter() - t0
    more = list(generate.generate_layers(neurons, layers + extra, seed))[layers:]
    t0 = time.perf_counter()
    rest = reference(lambda: more, bias, first.values, workers=None, keep_values=False)
    t_extra = time.perf_counter() - t0
    per_layer = t_extra / max(1, extra)
    return {
        "neurons": neurons,
        "layers": layers,
        "extra_layers": extra,
        "inputs": inputs.shape[0],
        "workers": default_workers(),
        "seconds_first": t_first,
        "seconds_extra": t_extra,
        "alive_after_first": int(first.alive[layers].size),
        "alive_after_extra": rest.active_rows[-1] if extra else None,
        "seconds_per_layer_after": per_layer,
        "extrapolated_target_layers": target,
        "extrapolated_seconds": t_first + (target - layers) * per_layer,
        "note": "measured for the first `layers` + `extra` layers; the rest is extrapolated",
    }


def time_gil(neurons: int, layers: int, inputs: sp.csr_matrix, seed: int) -> dict:
    """The reference in one process, on threads, and on processes (all cores)."""
    mats = list(generate.generate_layers(neurons, layers, seed))
    bias = challenge.bias(neurons)
    workers = default_workers()
    out = {"neurons": neurons, "layers": layers, "inputs": inputs.shape[0], "workers": workers}
    t0 = time.perf_counter()
    reference(lambda: mats, bias, inputs, workers=1, keep_values=False)
    out["one_process"] = time.perf_counter() - t0
    parts = [np.arange(i, inputs.shape[0], workers) for i in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda rows: reference_rows(mats, bias, inputs, rows, keep_values=False), parts))
    out["threads"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference(lambda: mats, bias, inputs, workers=workers, keep_values=False)
    out["processes"] = time.perf_counter() - t0
    return out


def measure(args) -> dict:
    record = {**environment(), "config": {k: v for k, v in vars(args).items() if k != "out"}, "results": []}
    log(json.dumps({k: v for k, v in record.items() if k != "results"}))
    target = generate.official_profile()
    for n in args.neurons:
        for seed in args.seeds:
            t0 = time.perf_counter()
            x = generate.generate_inputs(n, args.inputs, seed, workers=None)
            res = {
                "neurons": n,
                "seed": seed,
                "inputs": x.shape[0],
                "layers": args.layers,
                "generate_inputs_seconds": time.perf_counter() - t0,
                "nnz": int(x.nnz),
                "official_nnz": OFFICIAL_NNZ[n],
                "nnz_ratio": x.nnz / x.shape[0] / (OFFICIAL_NNZ[n] / challenge.N_INPUTS),
                "size_fit": generate.size_fit(n),
            }
            res.update(categories_and_profile(n, args.layers, seed, x, args.engine))
            res["official_categories"] = OFFICIAL_CATEGORIES[n]
            res["categories_ratio"] = res["categories"] / OFFICIAL_CATEGORIES[n] * challenge.N_INPUTS / x.shape[0]
            if n == 1024:
                frac = np.array(res["active_rows"][: len(target)]) / x.shape[0]
                res["profile_ratio"] = list(np.round(frac / target[: len(frac)], 4))
                if args.real:
                    res["real_layers_active_rows"] = real_profile(Path(args.real), x, min(args.layers, 120))
            log(json.dumps({k: v for k, v in res.items() if k not in ("active_rows", "real_layers_active_rows")}))
            record["results"].append(res)
            del x
    if args.gil:
        x = generate.generate_inputs(1024, args.gil, 1, workers=None)
        record["gil"] = time_gil(1024, 30, x, 1)
        log(json.dumps(record["gil"]))
    if args.truth:
        n, l0, extra = (int(v) for v in args.truth.split(":"))
        x = generate.generate_inputs(n, args.inputs, args.seeds[0], workers=None)
        record["truth"] = time_truth(n, l0, extra, x, args.seeds[0])
        log(json.dumps(record["truth"]))
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", type=lambda s: [int(v) for v in s.split(",")], default=[1024, 4096, 16384, 65536])
    ap.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    ap.add_argument("--inputs", type=int, default=challenge.N_INPUTS)
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--engine", choices=("cuda", "cpu"), default="cpu")
    ap.add_argument("--real", help="official layout folder with the real neuron1024.tar.gz")
    ap.add_argument("--truth", help="N:L0:E, time the all-core reference (see the module docstring)")
    ap.add_argument("--gil", type=int, default=0, help="inputs for the threads-against-processes timing (0: skip)")
    ap.add_argument("--calibrate", type=int, help="re-fit the size of one N instead of measuring")
    ap.add_argument("--width", type=float, help="--calibrate's starting width factor (default: the current fit)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    if args.calibrate:
        n = args.calibrate
        log(json.dumps(calibrate(n, args.inputs, args.seeds, args.width or generate.size_fit(n)[0])))
        return 0
    record = measure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"synthetic-{datetime.date.today().isoformat()}.json"
    (out / name).write_text(json.dumps(record, indent=1) + "\n")
    log(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
