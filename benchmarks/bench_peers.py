"""The field's record holders next to spdnn's engines: same GPU, same data, one run.

Peers (benchmarks/peers/recipes.py): the 2020 champion's code (Hidayetoglu et al.,
singlegpu/), IDEA-CUHK's SDGC driver with BF (2019), SNIG (2020), XY (2021 champion) and
SNICIT (2023, approximate inside), and GLARE's fork of that driver (2023: glare-bf,
glare-snig, glare-xy, glare-snicit, each kernel with GLARE's skipping of saturated blocks).
Each is exported at a pinned commit into an ignored folder (default .peers/), patched with
the patches kept in benchmarks/peers/patches and built (`--prepare`, needs nvcc and git);
the GPU machine only runs what was built.

For every network: the data are generated (or read, for real-NxL) once; spdnn's engines run
on it (CUDA events around inference, median of --reps); then every peer runs on files
written from the same matrices, each timed by its own timer (the JSON says what each timer
covers), and its categories are checked row by row against the truth (the CPU reference's,
or the official file for the real network).

  python benchmarks/bench_peers.py --prepare [--mirror-root /work/.mirror]
  python benchmarks/bench_peers.py --truth-only --networks 1024x120,4096x120
  python benchmarks/bench_peers.py --networks real-1024x120,1024x120,4096x120 \\
      --peers hidayetoglu,xy,snicit,bf,snig --out $OUT [--deadline 480]
  python benchmarks/bench_peers.py --networks 16384x120,4096x120 \\
      --peers glare-snicit,glare-xy,snicit,xy --out $OUT --deadline 480
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

# the local package benchmarks/peers: importable as the script's folder is the first on sys.path
# (python benchmarks/bench_peers.py); spdnn is the installed package (pip install -e .)
from peers import data, parsers, recipes, runner, sources, table, writers

from spdnn import challenge
from spdnn.devices import gpu_info
from spdnn.provenance import git_commit, package_versions

ROOT = Path(__file__).resolve().parent.parent  # the checkout: .peers/ and spdnn/generate.py

# dedup: full width, duplicate neurons not merged; *-nocarry: every row computed at every layer
# (saturated rows not carried), to show what carrying them gives
ENGINES = {
    "default": {},
    "dedup": {"variant": "dedup"},
    "nocarry": {"carry_saturated": False},
    "dedup-nocarry": {"variant": "dedup", "carry_saturated": False},
}


def log(*a) -> None:
    print(*a, flush=True)


def write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    tmp.replace(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nvcc_version() -> str:
    try:
        return (
            subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=30)
            .stdout.strip()
            .splitlines()[-1]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


# ----------------------------------------------------------------------------- prepare


def prepare(args) -> int:
    """Export, patch and build every source the chosen peers need."""
    root = Path(args.root)
    for source in {m.source.name: m.source for m in recipes.methods(args.peers)}.values():
        mirror = Path(args.mirror_root) / source.repo.replace("/", "+") / "repo" if args.mirror_root else None
        tree = sources.export(source, root, mirror)
        log(f"{source.name}: {source.repo}@{source.commit[:12]} in {tree}, patches {', '.join(source.patches)}")
        binary = sources.build(source, root, log=root / "logs" / f"build-{source.name}.log")
        log(f"{source.name}: built {binary}")
    return 0


def ensure_binary(source: recipes.Source, root: Path) -> tuple[Path | None, str]:
    """bin/<name>, built here from src/<name> when only the source came along."""
    binary = root / "bin" / source.name
    if binary.is_file():
        return binary, "carried"
    if (root / "src" / source.name).is_dir():
        try:
            return sources.build(source, root, log=root / "logs" / f"build-{source.name}.log"), "built here"
        except RuntimeError as err:
            return None, str(err)[-600:]
    return None, f"neither {binary} nor its source under {root / 'src'}"


# ----------------------------------------------------------------------------- truth only


def truth_only(args) -> int:
    """Compute the CPU reference's truth for synthetic networks and store it in --truth-dir."""
    for spec in args.networks.split(","):
        is_real, n, layers = data.parse_spec(spec)
        if is_real:
            continue
        t0 = time.perf_counter()
        # the layers are generated as the reference walks them, never all held: any size fits
        net = data.synthetic(
            n, layers, args.inputs, args.seed, Path(args.truth_dir), generator=args.gen, keep_layers=False
        )
        if "computed in this run" in net.truth_source:
            path = data.save_truth(
                net,
                Path(args.truth_dir),
                args.seed,
                f"spdnn {git_commit()} on {platform.node()}, {datetime.date.today()}",
            )
            log(f"{spec}: {len(net.truth)} categories in {time.perf_counter() - t0:.0f} s -> {path}")
        else:
            log(f"{spec}: stored truth matches ({len(net.truth)} categories)")
    return 0


# ----------------------------------------------------------------------------- engines


def layer_bytes(net: data.Network) -> int:
    return sum(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes for w in net.layers)


def run_engines(net: data.Network, names: list[str], reps: int, budget: float, instances: int = 3) -> dict:
    """Each engine built `instances` times (one after another), each warmed up and timed `reps`
    times within its share of `budget`: the figure is the median of the instances' medians, since
    two engines of the same options measured a median 9% apart on the H200 (2026-12-03,
    docs/model.md), more than their repetitions vary. Every instance's categories are checked."""
    from spdnn.engines.cuda import CudaEngine
    from spdnn.io.cache import Weights

    weights = Weights.from_matrices(net.layers)
    results = {}
    for name in names:
        key = f"spdnn-{name}"
        per_instance: list[dict] = []
        try:
            for _ in range(max(1, instances)):
                eng = CudaEngine(**ENGINES[name])
                t0 = time.perf_counter()
                eng.prepare(weights, net.layer_count)
                prep = time.perf_counter() - t0
                t0 = time.perf_counter()
                eng.infer(net.inputs, return_values=False)  # warm-up: compiles, allocates
                warm = time.perf_counter() - t0
                share = budget / max(1, instances)
                n = reps if warm * reps < share else max(1, int(share / max(warm, 1e-9)))
                runs = [eng.infer(net.inputs, return_values=False) for _ in range(n)]
                eng.release()
                cats = parsers.compare_categories(np.asarray(runs[-1].categories, dtype=np.int64), net.truth)
                times = [r.seconds for r in runs]
                per_instance.append(
                    {
                        "seconds": statistics.median(times),
                        "seconds_all": times,
                        "prepare_seconds": prep,
                        "categories": cats,
                        "details": runs[-1].details,
                    }
                )
        except Exception as err:  # recorded, the peers still run
            results[key] = {
                "kind": "spdnn",
                "label": f"spdnn {name}",
                "status": f"failed: {type(err).__name__}: {err}"[:300],
            }
            log(f"{key}: failed: {err}")
            continue
        meds = [r["seconds"] for r in per_instance]
        med = statistics.median(meds)
        wrong = [r["categories"] for r in per_instance if not r["categories"]["match"]]
        cats = wrong[0] if wrong else per_instance[-1]["categories"]
        results[key] = {
            "kind": "spdnn",
            "label": f"spdnn {name}" + (" (variant dedup: full width)" if name == "dedup" else ""),
            "exact": True,
            "options": ENGINES[name],
            "seconds": med,
            "seconds_all": [t for r in per_instance for t in r["seconds_all"]],
            "instances": len(per_instance),
            "instance_seconds": meds,
            "instance_spread": max(meds) / min(meds),
            "edges_per_second": net.edges / med,
            "prepare_seconds": per_instance[0]["prepare_seconds"],
            "categories": cats,
            "categories_ok": not wrong,
            "details": per_instance[-1]["details"],
            "timer": "CUDA events, first kernel to categories (inputs staged on the host, weights on the GPU);"
            " the median of the engines' medians",
        }
        log(
            f"{key:18s} {med * 1e3:9.2f} ms  {net.edges / med / 1e12:8.2f} Tedges/s"
            f"  ({len(meds)} engines, spread {max(meds) / min(meds):.3f})"
            f"  categories {'ok' if not wrong else cats}"
        )
    return results


# ----------------------------------------------------------------------------- peers


def peer_files(method: recipes.Method, net: data.Network, work: Path, cache: dict) -> dict:
    """Write the network once per input format (the SDGC driver's XY/SNICIT share one folder, so
    XY's schedule cache serves SNICIT too)."""
    if method.inputs not in cache:
        t0 = time.perf_counter()
        kept = writers.kept_files(work / method.inputs, net.extra.get("digest"))
        if kept is not None:  # written by an earlier call with --keep-files, same data
            cache[method.inputs] = kept | {"write_seconds": 0.0, "reused": True}
            return cache[method.inputs]
        (work / method.inputs / writers.FILES_MARK).unlink(missing_ok=True)  # complete again only once rewritten
        if method.inputs == "hidayetoglu":
            folder = work / "hidayetoglu"
            env = writers.write_hidayetoglu(
                folder, net.layer_source(), net.inputs, net.truth, net.neurons, net.layer_count
            )
            cache[method.inputs] = {"folder": folder, "env": env}
        else:
            cache[method.inputs] = writers.write_sdgc(
                work / "sdgc", net.layer_source(), net.inputs, net.truth, net.neurons, net.layer_count
            )
        cache[method.inputs]["write_seconds"] = time.perf_counter() - t0
        writers.mark_files(work / method.inputs, net.extra.get("digest"), cache[method.inputs])
    return cache[method.inputs]


def run_peer(method: recipes.Method, binary: Path, net: data.Network, files: dict, args, peer_log) -> dict:
    out = {
        "kind": "peer",
        "label": method.label,
        "exact": method.exact,
        "timer": method.timer,
        "source": f"{method.source.repo}@{method.source.commit[:12]}",
        "runs": [],
    }
    inv = runner.invocation(
        method,
        binary,
        files,
        net.neurons,
        net.layer_count,
        net.inputs.shape[0],
        Path(args.work) / f"categories-{method.key}.txt",
        args.threads,
    )
    for rep in range(args.peer_reps):
        r = runner.run_once(method, inv, net.truth, args.peer_timeout, peer_log)
        out["runs"].append(r)
        if not r["complete"] and "schedule" in files:
            # XY/SNICIT take an existing ../scheduled_bm/neuron{N} as complete: a run killed
            # while scheduling leaves a partial one that fails the next (seen at 16384 x 120)
            runner.reset_schedule(files["schedule"])
        log(
            f"{method.key:18s} run {rep + 1}: exit {r['returncode']}"
            f"  {r.get('inference_seconds', float('nan')) * 1e3:9.2f} ms"
            f"  wall {r['wall_seconds']:.1f} s  categories {r['categories']}  own check {r.get('self_check')}"
        )
        if not r["complete"] or r["wall_seconds"] > args.rep_wall or out_of_time(args):
            break
    done = [r for r in out["runs"] if r["complete"]]
    if not done:
        last = out["runs"][-1]
        out["status"] = "failed: " + (
            "timed out"
            if last["timed_out"]
            else f"exit {last['returncode']}, {first_error(last.get('error_tail', ''))}"
        )
        return out
    med = statistics.median(r["inference_seconds"] for r in done)
    out.update(
        seconds=med,
        seconds_all=[r["inference_seconds"] for r in done],
        edges_per_second=net.edges / med,
        categories_ok=all(r["categories"]["match"] for r in done),
        categories=done[-1]["categories"],
    )
    return out


def first_error(text: str) -> str:
    """The line of a peer's output that says what went wrong (else its last line), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    hits = [line for line in lines if any(w in line.lower() for w in ("error", "failed", "abort", "what()"))]
    return ((hits or lines or ["no output"])[0])[:160]


_START = time.perf_counter()


def out_of_time(args, need: float = 0.0) -> bool:
    return bool(args.deadline) and time.perf_counter() - _START + need > args.deadline


# ----------------------------------------------------------------------------- main


def header(args, methods: list[recipes.Method], binaries: dict) -> dict:
    gpu = gpu_info() or {}
    srcs = {m.source.name: m.source for m in methods}
    root = Path(args.root)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "gpu": gpu,
        "nvcc": nvcc_version(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "spdnn_commit": args.commit or git_commit(),
        # the generator may differ from the commit's in a working copy: its own digest says which ran
        "generator": args.generator or "spdnn/generate.py",
        "generator_sha256": sha256(Path(args.generator) if args.generator else ROOT / "spdnn" / "generate.py"),
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "gen")},
        "peers": {
            name: {
                "repo": s.repo,
                "url": s.url,
                "commit": s.commit,
                "licence": s.licence,
                "patches": sources.patch_digest(s.patches),
                "build": s.build,
                "tree_stamp": sources.stamp_of(s, root),
                "binary": binaries[name][1],
                "binary_sha256": sha256(binaries[name][0]) if binaries[name][0] else None,
            }
            for name, s in srcs.items()
        },
        "methods": {
            m.key: {
                "label": m.label,
                "source": m.source.name,
                "mode": m.mode,
                "exact": m.exact,
                "inputs": m.inputs,
                "timer": m.timer,
            }
            for m in methods
        },
        "edges": "inputs x 32 x N x L per inference; edges/s = edges / the timer's seconds",
        "networks": [],
        "not_run": [],
    }


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(args.root)
    methods = recipes.methods(args.peers)
    binaries = {s.name: ensure_binary(s, root) for s in {m.source.name: m.source for m in methods}.values()}
    for name, (path, how) in binaries.items():
        log(f"peer program {name}: {path or 'MISSING'} ({how})")
    record = header(args, methods, binaries)
    json_path = out / args.json_name
    log_file = open(out / "peers.log", "a")

    def peer_log(text: str) -> None:
        log_file.write(text)
        log_file.flush()

    for spec in args.networks.split(","):
        is_real, n, layers = data.parse_spec(spec)
        if out_of_time(args, need=args.network_margin):
            record["not_run"].append(
                {"network": spec, "reason": f"did not fit: the run's {args.deadline:.0f} s were spent"}
            )
            log(f"== {spec}: skipped (time)")
            continue
        t0 = time.perf_counter()
        net = (
            data.real(Path(args.real_dir), n, layers)
            if is_real
            else data.synthetic(n, layers, args.inputs, args.seed, Path(args.truth_dir), generator=args.gen)
        )
        log(
            f"\n== {net.name}: {net.source}; {net.inputs.shape[0]} inputs, {len(net.truth)} categories "
            f"({net.truth_source}); ready in {time.perf_counter() - t0:.1f} s"
        )
        entry = {
            "name": net.name,
            "source": net.source,
            "neurons": n,
            "layers": layers,
            "inputs": int(net.inputs.shape[0]),
            "input_nonzeros": int(net.inputs.nnz),
            "edges": net.edges,
            "truth": {"count": int(len(net.truth)), "source": net.truth_source},
            "data": net.extra,
            "setup_seconds": time.perf_counter() - t0,
            "results": {},
        }
        record["networks"].append(entry)
        work = Path(args.work) / net.name
        files: dict = {}
        if args.files_first:  # while the layers are in memory anyway: no second generation
            for method in methods:
                if binaries[method.source.name][0] is not None:
                    try:
                        peer_files(method, net, work, files)
                    except (OSError, ValueError) as err:
                        log(f"{method.key}: input files not written: {err}")
        engines = [e for e in args.engines.split(",") if e]  # '' for none (a peers-only call)
        if engines:
            entry["results"].update(run_engines(net, engines, args.reps, args.budget, args.instances))
        write_json(json_path, record)
        held = layer_bytes(net)
        if held > args.drop_layers_above * 1e9 and net.drop_layers():
            # the peers run as other processes beside this one: 65536 x 1920's 32 GB of layers held
            # here while the champion loads its own copy was more than the 128 GB host had
            gc.collect()
            entry["layers_dropped_gb"] = held / 1e9
            unwritten = "files already written" if files else "files not yet written: layers generated again"
            log(f"{net.name}: {held / 1e9:.1f} GB of layers freed ({unwritten})")
        for method in methods:
            binary = binaries[method.source.name][0]
            if binary is None:
                entry["results"][method.key] = {
                    "kind": "peer",
                    "label": method.label,
                    "exact": method.exact,
                    "status": "not built: " + binaries[method.source.name][1][-200:],
                }
                continue
            if out_of_time(args, need=args.peer_margin):
                entry["results"][method.key] = {
                    "kind": "peer",
                    "label": method.label,
                    "exact": method.exact,
                    "status": "did not fit in the run's time",
                }
                continue
            try:
                f = peer_files(method, net, work, files)
            except (OSError, ValueError) as err:
                entry["results"][method.key] = {
                    "kind": "peer",
                    "label": method.label,
                    "exact": method.exact,
                    "status": f"input files not written: {err}",
                }
                continue
            entry["results"][method.key] = run_peer(method, binary, net, f, args, peer_log)
            write_json(json_path, record)
        entry["write_seconds"] = {k: v.get("write_seconds") for k, v in files.items()}
        table.summarise(entry)
        write_json(json_path, record)
        if not args.keep_files:
            shutil.rmtree(work, ignore_errors=True)
    log_file.close()
    log("\n" + table.markdown(record))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--networks",
        default="real-1024x120,1024x120,4096x120",
        help="comma-separated NxL (synthetic) or real-NxL (official layout in --real-dir)",
    )
    ap.add_argument(
        "--peers",
        default="hidayetoglu,xy,snicit,bf,snig",
        help="comma-separated, of: " + ", ".join(recipes.METHODS) + " (glare-*: GLARE's fork, IDEA-CUHK/GLARE)",
    )
    ap.add_argument("--engines", default="default,dedup", help=", ".join(ENGINES))
    ap.add_argument("--inputs", type=int, default=challenge.N_INPUTS, help="synthetic inputs (all distinct)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="timed runs of each spdnn engine (median)")
    ap.add_argument("--budget", type=float, default=30.0, help="seconds of timed engine runs per network")
    ap.add_argument(
        "--instances",
        type=int,
        default=3,
        help="engines built of each spdnn configuration (median of their medians; 1 before 2026-12-03)",
    )
    ap.add_argument("--peer-reps", type=int, default=3, help="runs of each peer (median of its own timer)")
    ap.add_argument("--rep-wall", type=float, default=45.0, help="no further runs of a peer slower than this (s)")
    ap.add_argument("--peer-timeout", type=float, default=300.0)
    ap.add_argument("--deadline", type=float, default=0.0, help="seconds for the whole run (0: none)")
    ap.add_argument(
        "--network-margin", type=float, default=60.0, help="a network starts only this long before the deadline"
    )
    ap.add_argument("--peer-margin", type=float, default=20.0, help="a peer starts only this long before the deadline")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OMP_NUM_THREADS of the peers")
    ap.add_argument("--root", default=str(ROOT / ".peers"), help="peers' sources (src/) and programs (bin/)")
    ap.add_argument("--real-dir", default=None, help="official layout of the real network (default ROOT/real)")
    ap.add_argument(
        "--truth-dir",
        default=str(ROOT / "benchmarks" / "results" / "truth"),
        help="stored truth of synthetic networks (small JSON files keyed by the data's digest; committed)",
    )
    ap.add_argument("--work", default="/tmp/spdnn-peers", help="where the peers' input files are written")
    ap.add_argument(
        "--keep-files",
        action="store_true",
        help="leave the peers' files in --work; a later run on the same data (digest) reuses them",
    )
    ap.add_argument(
        "--files-first",
        action="store_true",
        help="write the peers' input files before the engines run (with --drop-layers-above, the "
        "largest networks are then generated once)",
    )
    ap.add_argument(
        "--drop-layers-above",
        type=float,
        default=8.0,
        help="GB: a synthetic network's layers larger than this are freed after the engines ran and "
        "generated again, one at a time, for the peers' files",
    )
    ap.add_argument("--commit", default=None, help="the project's commit (a copy without .git)")
    ap.add_argument("--json-name", default="peers.json")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--prepare", action="store_true", help="export, patch and build the peers, then stop")
    ap.add_argument("--mirror-root", default=None, help="git mirrors as <root>/<owner>+<name>/repo (else clone)")
    ap.add_argument("--generator", default=None, help="a frozen copy of spdnn/generate.py to generate with")
    ap.add_argument("--truth-only", action="store_true", help="compute and store the synthetic truth, then stop")
    ap.add_argument(
        "--truth-chunk", type=int, default=0, help="rows per pass of the CPU reference (0: all; less memory)"
    )
    args = ap.parse_args(argv)
    # absolute, since every peer runs in a folder of its own (a relative --root broke them)
    args.root = str(Path(args.root).resolve())
    args.real_dir = str(Path(args.real_dir or Path(args.root) / "real").resolve())
    args.truth_dir = str(Path(args.truth_dir).resolve())
    args.gen = data.load_generator(Path(args.generator) if args.generator else None)
    if args.prepare:
        return prepare(args)
    data.TRUTH_CHUNK_ROWS = max(0, args.truth_chunk)
    if args.truth_only:
        return truth_only(args)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
