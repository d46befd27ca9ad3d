"""Saturated rows for the cost model's stored survival profiles (spdnn/model/profiles.json).

The stored active rows were measured by the cuda engine (benchmarks/results/gpu-2026-11-25.json)
on the synthetic networks of seed 1, 6000 distinct inputs repeated 10x, made by the generator of
that day (commit 96be6bd). Its inputs were recalibrated since (issue 15, 2026-12-01); its layers
are unchanged. This script regenerates those networks with that generator (`git show
REV:spdnn/generate.py`), runs the CPU reference's arithmetic on them
(spdnn.model.network.survival: layer_step and saturated() of spdnn.engines.cpu) and writes, per N,
the rows saturated (all 32) after each layer next to the active ones ("saturated", scaled as the
profile is), after checking that the reference's active rows are the stored ones: equal on the
plateau (the last layer), the layers that differ named in "_saturated_source". The stored active
rows are kept as measured.

    python benchmarks/model_profiles.py              # every N of profiles.json, its stored depth
    python benchmarks/model_profiles.py --check      # compare only, write nothing

About 4 minutes on 2 cores (N = 65536: 120 layers of 6000 rows, most of it).

`--current` makes the profiles of TODAY's generator instead (the working tree's spdnn.generate,
after issue 15's input calibration): the CPU reference's active and saturated rows after each
layer for CURRENT_INPUTS (60000) distinct inputs of seed 1, in passes of `--chunk` rows (their
counts add up: rows are independent), written BESIDE the measured ones as profiles.json
"current" (the set the model predicts with by default, NetworkProfile.stored); the measured set
stays (the 2026-11 validation measurements were made on it).

    python benchmarks/model_profiles.py --current --neurons 1024,4096,16384 [--layers 1920,1920,120]

N = 1024 and 4096 take a few minutes each on 2 cores, 16384 about 10; 65536 ~18 min and 11 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "spdnn" / "model" / "profiles.json"
REV = "96be6bd"  # the generator the stored profiles were measured on
SEED, POOL = 1, 6000
CURRENT_INPUTS = 60000  # today's profiles: every input distinct
CURRENT_LAYERS = {1024: 1920, 4096: 1920, 16384: 120, 65536: 120}  # the measured set's depths


def generator_at(rev: str) -> ModuleType:
    """spdnn/generate.py as it was at `rev`, loaded as a module of the spdnn package (its relative
    imports resolve against today's package: challenge, engines.cpu.layer_step, io.atomic)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:spdnn/generate.py"], capture_output=True, text=True, check=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"spdnn._generate_{rev}", loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "spdnn"
    exec(compile(src, f"{rev}:spdnn/generate.py", "exec"), mod.__dict__)
    return mod


def counts(gen: ModuleType, neurons: int, layers: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, saturated) after each layer for the POOL distinct inputs of seed SEED."""
    import scipy.sparse as sp

    from spdnn.challenge import bias
    from spdnn.model.network import survival_parallel

    x = sp.csr_matrix(gen.generate_inputs(neurons, POOL, SEED), dtype=np.float32)
    return survival_parallel(lambda: gen.generate_layers(neurons, layers, SEED), bias(neurons), x, workers)


def current_counts(neurons: int, layers: int, workers: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(active, saturated) after each layer for CURRENT_INPUTS inputs of today's generator (seed
    SEED), in passes of `chunk` rows (0: one pass), each split over `workers` processes."""
    from spdnn.challenge import bias
    from spdnn.generate import generate_inputs, generate_layers
    from spdnn.model.network import survival_parallel

    x = generate_inputs(neurons, CURRENT_INPUTS, SEED)
    step = chunk or x.shape[0]
    act = np.zeros(layers, np.int64)
    sat = np.zeros(layers, np.int64)
    for lo in range(0, x.shape[0], step):
        a, s = survival_parallel(
            lambda: generate_layers(neurons, layers, SEED), bias(neurons), x[lo : lo + step], workers
        )
        act += np.asarray(a, np.int64)
        sat += np.asarray(s, np.int64)
    return act, sat


def make_current(args, path: Path) -> int:
    """profiles.json "current": today's generator, CPU reference, CURRENT_INPUTS inputs, seed SEED."""
    from spdnn import generate

    wanted = [int(n) for n in args.neurons.split(",") if n] or sorted(CURRENT_LAYERS)
    depths = [int(x) for x in args.layers.split(",") if x] or [CURRENT_LAYERS.get(n, 120) for n in wanted]
    if len(depths) != len(wanted):
        raise SystemExit("--layers: one depth per N of --neurons")
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout
    gen_hash = __import__("hashlib").sha256(Path(generate.__file__).read_bytes()).hexdigest()[:12]
    for n, layers in zip(wanted, depths):
        t = time.perf_counter()
        act, sat = current_counts(n, layers, args.workers, args.chunk)
        first = int(np.argmax((sat == act) & (act > 0))) if np.any((sat == act) & (act > 0)) else None
        print(
            f"N={n}: {layers} layers in {time.perf_counter() - t:.0f} s; {act[-1]} of {CURRENT_INPUTS} survive, "
            f"every survivor saturated from layer {first}",
            flush=True,
        )
        data = json.loads(path.read_text())  # re-read: one N at a time is kept, whatever comes after
        cur = data.setdefault("current", {"inputs": CURRENT_INPUTS, "profiles": {}, "saturated": {}})
        cur["profiles"][str(n)] = act.tolist()
        cur["saturated"][str(n)] = sat.tolist()
        cur["profiles"] = {k: cur["profiles"][k] for k in sorted(cur["profiles"], key=int)}
        cur["saturated"] = {k: cur["saturated"][k] for k in sorted(cur["saturated"], key=int)}
        cur["_source"] = (
            "benchmarks/model_profiles.py --current: the CPU reference (spdnn.model.network.survival: layer_step "
            f"and saturated() of spdnn.engines.cpu) on today's generator (spdnn/generate.py sha256 {gen_hash}..., "
            f"tree {rev.strip() or '?'}, after issue 15's input calibration), seed {SEED}, {CURRENT_INPUTS} distinct "
            "inputs: active and saturated rows after each layer"
        )
        path.write_text(json.dumps(data) + "\n")
    print(f"current profiles of N={wanted} -> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from spdnn.devices import default_workers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default=REV, help=f"the generator's commit (default {REV})")
    ap.add_argument("--neurons", default="", help="N to do, comma separated (default: every stored N)")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--check", action="store_true", help="compare with the stored active rows, write nothing")
    ap.add_argument("--profiles", default=str(PROFILES))
    ap.add_argument("--current", action="store_true", help="today's generator's profiles (profiles.json 'current')")
    ap.add_argument("--layers", default="", help="--current: depth per N, comma separated")
    ap.add_argument("--chunk", type=int, default=15000, help="--current: rows per pass (0: all at once)")
    args = ap.parse_args(argv)
    path = Path(args.profiles)
    if args.current:
        return make_current(args, path)
    data = json.loads(path.read_text())
    gen = generator_at(args.rev)
    wanted = [int(n) for n in args.neurons.split(",") if n] or sorted(int(n) for n in data["profiles"])
    saturated = dict(data.get("saturated", {}))
    notes = []
    for n in wanted:
        stored = np.asarray(data["profiles"][str(n)], dtype=np.int64)
        t = time.perf_counter()
        act, sat = counts(gen, n, len(stored), args.workers)
        scale = data["inputs"] // POOL  # the pool repeated to the profile's inputs
        act, sat = act * scale, sat * scale
        differ = np.flatnonzero(act != stored)
        first = int(np.argmax((sat == act) & (act > 0))) if np.any((sat == act) & (act > 0)) else None
        print(
            f"N={n}: {len(stored)} layers in {time.perf_counter() - t:.0f} s; active rows differ from the "
            f"stored at layers {differ.tolist()} ({act[differ].tolist()} vs {stored[differ].tolist()}); "
            f"every survivor saturated from layer {first}",
            flush=True,
        )
        if act[-1] != stored[-1]:
            print(f"N={n}: the plateau differs ({act[-1]} vs {stored[-1]}): not the stored network", file=sys.stderr)
            return 1
        if np.any(sat > stored):
            print(f"N={n}: more saturated rows than stored active ones at some layer", file=sys.stderr)
            return 1
        saturated[str(n)] = sat.tolist()
        notes.append(f"N={n}: layers {differ.tolist()} differ" if differ.size else f"N={n}: all equal")
    if args.check:
        return 0
    data["saturated"] = {k: saturated[k] for k in sorted(saturated, key=int)}
    data["_saturated_source"] = (
        f"benchmarks/model_profiles.py: rows all 32 after each layer, the CPU reference on the same networks "
        f"(generator of commit {args.rev}, seed {SEED}, {POOL} distinct inputs, x{data['inputs'] // POOL}); its "
        f"active rows against the stored ones (0-based layers): {'; '.join(notes)}"
    )
    path.write_text(json.dumps(data) + "\n" if path.read_text().endswith("\n") else json.dumps(data))
    print(f"saturated rows of N={wanted} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
