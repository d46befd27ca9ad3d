"""Predicted next to measured: the model frozen first, calibration on named networks, statistics on
held-out networks, the tuned engine against its defaults.

Inputs are the JSON files of benchmarks/validate_model.py (device runs). The order that keeps a
validation honest:
1. `freeze()` before measuring: the model's fingerprint (a hash of every file of spdnn/model), its
   calibration, the plan (calibration networks, held-out networks and seeds) and the tuned
   options it will be judged on, written to a file that is committed before the device run.
2. The device run measures (calibration networks, validation networks, or tuned vs default).
3. `analyse()` refuses a raw file whose model fingerprint differs from the freeze's, unless told;
   calibration uses only the microbenchmarks and the networks of role 'calibration'; statistics
   use only the others, per network: Spearman, median signed and absolute error, the model's
   first choice against the best measured; labelled with whether each design's dataflow had been
   measured before (spdnn.model.validated).

The packaged calibration (spdnn/model/calibration.json) is only read here: fitted or transferred
constants go to a file the caller names (`write_calibration`), to be reviewed and copied into the
package by hand (which changes the model's fingerprint, so a freeze comes after it).
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..challenge import bias
from .cost import predict
from .directives import ENGINE_DEFAULT, Dataflow
from .hardware import CALIBRATION, Hardware, load_hardware, preset_for_gpu
from .network import NetworkProfile
from .validated import measured_label

MODEL_DIR = Path(__file__).resolve().parent
TARGETS = {"spearman_min": 0.8, "abs_median_signed_error_max": 0.15, "first_choice_gap_max": 0.10}
CHALLENGE_NETWORKS = [(n, layers) for n in (1024, 4096, 16384, 65536) for layers in (120, 480, 1920)]


def fingerprint() -> str:
    """SHA-256 over every source, directive and data file of spdnn/model (what a prediction depends on)."""
    h = hashlib.sha256()
    for p in sorted(MODEL_DIR.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".m", ".json") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(MODEL_DIR)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def dataflow_of(cfg: dict) -> Dataflow:
    """The model's design for a measured engine configuration (fused: one segment per check interval)."""
    fused = cfg.get("dataflow", "gather") == "fused"
    return Dataflow(
        carry_saturated=bool(cfg.get("carry_saturated", True)),
        variant=cfg["variant"],
        warps=int(cfg.get("warps", 16)),
        grid_factor=int(cfg.get("grid_factor", 16)),
        check_every=int(cfg.get("check_every", 8)),
        batch_rows=int(cfg.get("batch_rows") or 0),
        dataflow="fused" if fused else "gather",
        fuse=int(cfg.get("check_every", 8)) if fused else 1,
    )


@lru_cache(maxsize=64)
def _reference_survival(neurons: int, layers: int, seed: int, pool: int, rows: int) -> tuple:
    """(active, saturated) after each layer of the synthetic network (spdnn.generate, `seed`) for its
    `pool` distinct inputs repeated to `rows` (validate_model.py's inputs): the CPU reference."""
    from ..devices import default_workers
    from ..generate import generate_inputs, generate_layers
    from .network import survival_parallel

    x = generate_inputs(neurons, pool, seed)
    act, sat = survival_parallel(lambda: generate_layers(neurons, layers, seed), bias(neurons), x, default_workers())
    reps = -(-rows // pool)
    if reps * pool != rows:
        raise ValueError(f"{rows} inputs are not whole repeats of {pool} distinct ones: counts unknown")
    return tuple(act * reps), tuple(sat * reps)


def saturated_rows(net: dict, raw: dict) -> list | None:
    """A measured network's saturated rows after each layer, where its engine carried them: as
    recorded, else from the CPU reference on the same generated network (checked: its active rows
    must be the measured ones, the engine being bit-identical to the reference). None where the
    engine carried nothing (an engine before carrying, or carry_saturated off in every run)."""
    if net.get("saturated_rows") is not None:
        return net["saturated_rows"]
    details = [r.get("details", {}) for r in net["runs"] if "seconds" in r]
    if not any(d.get("carry_from", net["layers"]) < net["layers"] for d in details):
        return None
    pool = int(net.get("pool") or raw.get("config", {}).get("pool") or net["inputs"])
    act, sat = _reference_survival(net["neurons"], net["layers"], net["seed"], min(pool, net["inputs"]), net["inputs"])
    for variant, measured in net["active_rows"].items():
        if list(measured) != list(act):
            bad = next(k for k, (a, b) in enumerate(zip(measured, act)) if a != b)
            raise ValueError(
                f"N={net['neurons']} L={net['layers']} seed {net['seed']} ({variant}): the measured active rows "
                f"differ from the CPU reference's at layer {bad} ({measured[bad]} vs {act[bad]}): "
                "saturated counts unknown"
            )
    return list(sat)


def points(raw: dict, hw: Hardware, role: str | tuple) -> list[dict]:
    roles = (role,) if isinstance(role, str) else tuple(role)
    out = []
    for net in raw["networks"]:
        if net["role"] not in roles:
            continue
        sat = saturated_rows(net, raw)
        for run in net["runs"]:
            if "seconds" not in run:
                continue
            if run["config"].get("dataflow") == "fused" and not run["details"].get("fused_layers", 1):
                continue  # nothing fitted on chip (N >= 16384): the engine ran its kernel per layer
            cfg = run["config"]
            prof = NetworkProfile.from_active(
                net["neurons"],
                net["active_rows"][cfg["variant"]],
                net["inputs"],
                "measured active rows" + ("" if sat is None else ", saturated rows of the CPU reference"),
                sat,
            )
            df = dataflow_of(cfg)
            p = predict(df, prof, hw)
            out.append(
                dict(
                    neurons=net["neurons"],
                    layers=net["layers"],
                    seed=net.get("seed"),
                    held_out=net.get("held_out", ""),
                    config=cfg,
                    measured=run["seconds"],
                    predicted=p.seconds,
                    dataflow_measured_before=measured_label(df),
                    checks_measured=run["details"].get("checks"),
                    checks_predicted=p.policy["checks"] * p.policy["batches"],
                    compactions_measured=run["details"].get("compactions"),
                    compactions_predicted=p.policy["compactions"] * p.policy["batches"],
                    carried_measured=run["details"].get("carried_rows"),
                    carried_predicted=p.policy["carried_rows"],
                )
            )
    return out


def micro_constants(raw: dict, base: Hardware) -> dict:
    cal = raw["calibration"]
    return {
        "launch_s": cal["launch_s"],
        "kernel_min_s": cal["kernel_min_s"],
        "sync_s": cal["sync_s"],
        "hbm_efficiency": min(1.0, cal["copy_bandwidth"] / base.hbm_bandwidth),
        "call_s": cal["launch_s"],  # the microbenchmark's launch: a check point's kernels (launch_s is fitted)
        # (runs before 2026-12-04 have no L1 microbenchmark: the preset's value)
        "l1_wavefront_cycles": cal.get("l1_gather_cycles", base.l1_wavefront_cycles),
    }


def calibrate(raw: dict, preset: str | None = None, grid: tuple = (31, 25)) -> tuple[Hardware, dict]:
    """Constants from the microbenchmarks, then l2_bandwidth and launch_s fitted on the calibration
    networks only (mean |log(predicted / measured)| over their runs, on a grid).

    launch_s is fitted because the engine's host cost per launch (a Python loop step and a
    16-argument prepared call) exceeds the empty-kernel microbenchmark's; the microbenchmarked
    value is kept in the report as `launch_s_microbenchmark`. The grid spans 1/2 to 8 times it
    (the H100 fit of the earlier model sat on the old grid's upper edge, 4x).
    """
    cal = raw["calibration"]
    key = preset or preset_for_gpu(cal.get("gpu"))
    base = load_hardware(key, calibrated=False)
    consts = micro_constants(raw, base)
    hw = replace(base, **consts)
    best = None
    for l2 in np.geomspace(1e12, 2e13, grid[0]):
        for launch in np.geomspace(cal["launch_s"] / 2, cal["launch_s"] * 8, grid[1]):
            h = replace(hw, l2_bandwidth=float(l2), launch_s=float(launch))
            pts = points(raw, h, "calibration")
            if not pts:
                break
            # mean, not median: with two constants and a few runs the median's optimum jumps
            err = float(np.mean([abs(np.log(p["predicted"] / p["measured"])) for p in pts]))
            if best is None or err < best[0]:
                best = (err, float(l2), float(launch))
    if best is not None:
        consts["l2_bandwidth"], consts["launch_s"] = best[1], best[2]
    consts = {k: float(v) for k, v in consts.items()}
    hw = replace(base, **consts, calibrated=tuple(sorted(consts)))
    nets = sorted({(n["neurons"], n["layers"], n.get("seed")) for n in raw["networks"] if n["role"] == "calibration"})
    return hw, {
        "preset": key,
        "constants": consts,
        "gpu": cal.get("gpu"),
        "launch_s_microbenchmark": float(cal["launch_s"]),
        "source": "benchmarks/validate_model.py microbenchmarks (kernel_min_s, sync_s, copy bandwidth "
        "-> hbm_efficiency); l2_bandwidth and launch_s fitted on the calibration networks only "
        f"(N, L, seed: {nets})",
        "calibration_fit_mean_abs_log_error": best[0] if best else None,
    }


def transferred(raw: dict, frozen_calibration: dict, preset: str) -> Hardware:
    """The run's GPU preset with what was fitted elsewhere (the frozen calibration of another GPU):
    this run's microbenchmarks, the other GPU's fitted L2 bandwidth, and its fitted launch cost as
    this run's microbenchmarked launch plus what the fit found beyond the other GPU's own
    microbenchmark (the host's loop step besides the call). Additive, not a multiple: on the H200
    (2026-12-03) the call microbenchmark was 2.2x the H100's, the fitted launch only 1.2x (a
    multiple gave 50 us against the 28 us fitted there; the sum gives 30). Nothing here is fitted on
    this GPU's networks."""
    base = load_hardware(preset, calibrated=False)
    consts = micro_constants(raw, base)
    other = frozen_calibration["constants"]
    consts["l2_bandwidth"] = other["l2_bandwidth"]
    excess = max(0.0, other["launch_s"] - frozen_calibration["launch_s_microbenchmark"])
    consts["launch_s"] = consts["launch_s"] + excess
    constants = {k: float(v) for k, v in consts.items()}
    return replace(base, **constants, calibrated=tuple(sorted(consts)))  # type: ignore[arg-type]  # float fields


def read_calibration(path: Path | None = None) -> dict:
    """The calibration entries of `path` if it exists, else the packaged ones (spdnn/model/calibration.json)."""
    for p in ([Path(path)] if path else []) + [CALIBRATION]:
        if p.exists():
            return json.loads(p.read_text())
    return {}


def write_calibration(path: Path, key: str, entry: dict) -> None:
    """`entry` as `key`'s calibration in the file at `path` (created from the packaged calibration
    when it does not exist yet); never the packaged file itself."""
    path = Path(path)
    if path.resolve() == CALIBRATION.resolve():
        raise ValueError(f"{CALIBRATION} is the packaged calibration, read only: write elsewhere and copy it in")
    data = read_calibration(path)
    data[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def transfer_calibration(src: str, dst: str, out: Path | None = None) -> dict:
    """A calibration entry for `dst` made of `src`'s (no measurement on `dst`): the host-side constants
    (launch_s, kernel_min_s, sync_s: the same pycuda host path), hbm_efficiency, and the L2 bandwidth
    (H100 and H200 are both GH100 with the same L2 and clock; only the HBM differs). `src` is read
    from `out` if that file exists, else from the packaged calibration; with `out`, the entry is
    written there (write_calibration)."""
    other = read_calibration(out)[src]
    entry = {
        "preset": dst,
        "constants": dict(other["constants"]),
        "transferred_from": src,
        "launch_s_microbenchmark": other["launch_s_microbenchmark"],
        "source": f"transferred from {src} ({other.get('gpu')}): nothing measured on {dst}; "
        "benchmarks/validate_model.py --analyse on a run there fits its own",
    }
    if out is not None:
        write_calibration(out, dst, entry)
    return entry


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def statistics(pts: list[dict]) -> dict:
    if not pts:
        return {"points": 0}
    meas = np.array([p["measured"] for p in pts])
    pred = np.array([p["predicted"] for p in pts])
    signed = pred / meas - 1
    rel = np.abs(signed)
    out: dict = {
        "points": len(pts),
        "spearman": spearman(pred, meas) if len(pts) > 2 else None,
        "median_relative_error": float(np.median(rel)),
        "median_signed_error": float(np.median(signed)),
        "mean_relative_error": float(np.mean(rel)),
        "within_25pct": float(np.mean(rel <= 0.25)),
        "per_network": {},
    }
    for key in sorted({(p["neurons"], p["layers"], p.get("seed")) for p in pts}):
        sub = [p for p in pts if (p["neurons"], p["layers"], p.get("seed")) == key]
        m = np.array([p["measured"] for p in sub])
        q = np.array([p["predicted"] for p in sub])
        pick = int(np.argmin(q))
        s = q / m - 1
        row = {
            "points": len(sub),
            "held_out": sub[0].get("held_out", ""),
            "spearman": spearman(q, m) if len(sub) > 2 else None,
            "median_relative_error": float(np.median(np.abs(s))),
            "median_signed_error": float(np.median(s)),
            "model_choice": sub[pick]["config"],
            "model_choice_measured": float(m[pick]),
            "best_measured": float(m.min()),
            "best_config": sub[int(np.argmin(m))]["config"],
            "first_choice_gap": float(m[pick] / m.min() - 1),
        }
        row["targets_met"] = {
            "spearman": row["spearman"] is not None and row["spearman"] >= TARGETS["spearman_min"],
            "median_signed_error": abs(row["median_signed_error"]) <= TARGETS["abs_median_signed_error_max"],
            "first_choice": row["first_choice_gap"] <= TARGETS["first_choice_gap_max"],
        }
        out["per_network"]["N={} L={} seed={}".format(*key)] = row
    return out


def plot(pts: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for n, mk in zip(sorted({p["neurons"] for p in pts}), "osD^v"):
        sub = [p for p in pts if p["neurons"] == n]
        for variant, color in (("merged", "tab:blue"), ("dedup", "tab:orange")):
            s = [p for p in sub if p["config"]["variant"] == variant]
            if s:
                ax.scatter(
                    [p["measured"] * 1e3 for p in s],
                    [p["predicted"] * 1e3 for p in s],
                    marker=mk,
                    c=color,
                    alpha=0.75,
                    label=f"N={n} {variant}",
                )
    lo = min(min(p["measured"], p["predicted"]) for p in pts) * 1e3 * 0.8
    hi = max(max(p["measured"], p["predicted"]) for p in pts) * 1e3 * 1.25
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.plot([lo, hi], [lo * 1.25, hi * 1.25], "k:", lw=0.6)
    ax.plot([lo, hi], [lo * 0.75, hi * 0.75], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured ms (CUDA events)")
    ax.set_ylabel("predicted ms (spdnn.model)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def freeze(path: Path, gpu: str, plan: dict, networks: list | None = None) -> dict:
    """Write the frozen model: fingerprint, calibration, plan, and the tuned options (and predicted
    seconds of tuned and default) for every challenge network on `gpu`, before anything is measured."""
    from .tune import tune

    tuned = {}
    for n, layers in networks or CHALLENGE_NETWORKS:
        t = tune(n, layers, gpu)
        hw = load_hardware(t["model"]["preset"])
        default = predict(ENGINE_DEFAULT, NetworkProfile.stored(n, layers), hw)
        tuned[f"{n}x{layers}"] = {
            "engine_options": t["engine_options"],
            "predicted_seconds": t["predicted_seconds"],
            "measured": t["measured"],
            "dataflow": t["model"]["dataflow"],
            "decision": t["decision"],
            "default_predicted_seconds": default.seconds,
        }
    cal = read_calibration()
    rec = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint(),
        "gpu": gpu,
        "preset": preset_for_gpu(gpu),
        "calibration": cal,
        "plan": plan,
        "tuned": tuned,
        "note": "written before measuring; benchmarks/validate_model.py --analyse checks the fingerprint",
    }
    Path(path).write_text(json.dumps(rec, indent=1, default=float) + "\n")
    return rec


def _check_frozen(raw: dict, frozen: dict | None, allow_changed: bool) -> str:
    if frozen is None:
        return "no freeze file given"
    fp = raw.get("model_fingerprint")
    if fp != frozen["fingerprint"] or fingerprint() != frozen["fingerprint"]:
        if not allow_changed:
            raise ValueError(
                "the model changed since it was frozen (fingerprints differ): analyse with the "
                "frozen commit, or pass allow_changed to label the result"
            )
        return "MODEL CHANGED AFTER FREEZING"
    return "frozen (fingerprints match)"


def analyse(
    raw_path: Path,
    out_json: Path,
    png: Path | None,
    calibration_out: Path | None = None,
    frozen_path: Path | None = None,
    allow_changed: bool = False,
    grid: tuple = (31, 25),
) -> dict:
    """Calibrate on the run's calibration networks, validate on the others; with a freeze file, also
    the transfer of the frozen calibration of another GPU to this one (fitted on nothing here).
    With `calibration_out`, the fitted constants are written there (write_calibration)."""
    raw = json.loads(Path(raw_path).read_text())
    frozen = json.loads(Path(frozen_path).read_text()) if frozen_path else None
    status = _check_frozen(raw, frozen, allow_changed) if frozen is not None else "no freeze file given"
    hw, cal = calibrate(raw, grid=grid)
    if calibration_out is not None:
        write_calibration(calibration_out, cal["preset"], cal)
    pts = points(raw, hw, "validation")
    res = {
        "gpu": raw.get("gpu"),
        "model": status,
        "calibration": cal,
        "targets": TARGETS,
        "statistics": statistics(pts),
        "statistics_held_out_n": statistics([p for p in pts if "N" in p["held_out"]]),
        "statistics_held_out_seed_only": statistics([p for p in pts if p["held_out"] == "seed"]),
        "statistics_uncalibrated_preset": statistics(
            points(raw, load_hardware(cal["preset"], calibrated=False), "validation")
        ),
        "statistics_without_batch_points": statistics([p for p in pts if not p["config"].get("batch_rows")]),
        "points": pts,
    }
    if frozen is not None:
        mine = frozen["calibration"].get(cal["preset"])
        if mine:  # the frozen model exactly: its constants for this GPU, nothing measured here used
            hf = replace(load_hardware(cal["preset"], calibrated=False), **mine["constants"])
            res["statistics_frozen"] = statistics(points(raw, hf, "validation"))
            res["frozen_constants"] = mine
        others = {k: v for k, v in frozen["calibration"].items() if k != cal["preset"] and "transferred_from" not in v}
        for key, other in others.items():
            th = transferred(raw, other, cal["preset"])
            tp = points(raw, th, "validation")
            res[f"statistics_transfer_from_{key}"] = statistics(tp)
            res[f"transfer_from_{key}_constants"] = {k: getattr(th, k) for k in th.calibrated}
    Path(out_json).write_text(json.dumps(res, indent=1, default=float))
    if png:
        s = res["statistics"]
        plot(
            pts,
            Path(png),
            f"{raw.get('gpu')}: Spearman {s['spearman']:.3f}, median rel. error "
            f"{s['median_relative_error']:.1%} ({s['points']} runs; {status})",
        )
    return res


def tune_margin(rows: list[dict]) -> float | None:
    """The model's error on what tune decides by: median |log(predicted / measured speed-up)| of the
    tuned options over the defaults, over rows of analyse_tune that have both predictions and where
    tune chose options of its own (the value validated.TUNE_MARGIN_LOG is set from). A row where the
    freeze kept the defaults predicts a speed-up of exactly 1 and measures one configuration twice:
    its error is the measurement's spread (same_configuration_median_abs_log), not the model's, and
    counted here it pulled the median to that spread (0.007 on 2026-12-03, 8 of 11 rows)."""
    errs = [
        abs(np.log(r["predicted_default"] / r["predicted_tuned"] / r["speedup"]))
        for r in rows
        if r.get("speedup")
        and r.get("predicted_default")
        and r.get("predicted_tuned")
        and not r.get("tuned_is_default")
    ]
    return float(np.median(errs)) if errs else None


def analyse_tune(raw_path: Path, out_json: Path, frozen_path: Path | None = None, allow_changed: bool = False) -> dict:
    """Tuned engine options against the engine's defaults, measured in one run: per network the
    speed-up, the tuned dataflow and whether it had been measured before, the frozen predictions."""
    raw = json.loads(Path(raw_path).read_text())
    frozen = json.loads(Path(frozen_path).read_text()) if frozen_path else None
    status = _check_frozen(raw, frozen, allow_changed) if frozen is not None else "no freeze file given"
    rows: list[dict] = []
    for net in raw["networks"]:
        key = f"{net['neurons']}x{net['layers']}"
        # each option set may have been built several times (--instances): the median of the engines'
        # medians, and their spread (max / min)
        runs: dict[str, list[dict]] = {}
        for r in net["runs"]:
            if "seconds" in r:
                runs.setdefault(r["which"], []).append(r)
        if not {"default", "tuned"} <= set(runs):
            rows.append({"network": key, "missing": sorted({"default", "tuned"} - set(runs))})
            continue
        d, t = (
            dict(
                rs[-1],
                seconds=float(np.median([r["seconds"] for r in rs])),
                instances=len(rs),
                instance_spread=max(r["seconds"] for r in rs) / min(r["seconds"] for r in rs),
                categories_all={r.get("categories") for r in rs},
            )
            for rs in (runs["default"], runs["tuned"])
        )
        decision = ((frozen or {}).get("tuned", {}).get(key) or {}).get("decision") or {}
        rows.append(
            {
                "network": key,
                "default_seconds": d["seconds"],
                "tuned_seconds": t["seconds"],
                "speedup": d["seconds"] / t["seconds"],
                "tuned_options": t["options"],
                "tuned_dataflow": t.get("dataflow"),
                "tuned_measured_before": t.get("measured"),
                "predicted_default": net.get("predicted_default"),
                "predicted_tuned": net.get("predicted_tuned"),
                "same_categories": len(d["categories_all"] | t["categories_all"]) == 1,
                "instances": {"default": d["instances"], "tuned": t["instances"]},
                "instance_spread": {"default": d["instance_spread"], "tuned": t["instance_spread"]},
                # tune kept the defaults (its margin): the pair is one configuration measured twice
                "tuned_is_default": decision.get("choice") == "engine defaults",
            }
        )
    done = [r for r in rows if "speedup" in r]
    same = [r["speedup"] for r in done if r["tuned_is_default"]]
    out = {
        "gpu": raw.get("gpu"),
        "model": status,
        "networks": rows,
        "geometric_mean_speedup": float(np.exp(np.mean([np.log(r["speedup"]) for r in done]))) if done else None,
        "tuned_slower": [r["network"] for r in done if r["speedup"] < 1],
        "tune_margin_log": tune_margin(done),
        # two engines of the same options in one process: how far apart one configuration measures
        "same_configuration_median_abs_log": float(np.median(np.abs(np.log(same)))) if same else None,
    }
    Path(out_json).write_text(json.dumps(out, indent=1, default=float))
    return out
