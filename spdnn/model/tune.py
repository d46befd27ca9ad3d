"""Tune: the predicted-best cuda-engine configuration for a network on a GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import challenge
from ..devices import gpu_names
from .cost import predict
from .directives import ENGINE_DEFAULT
from .explore import engine_spaces, evaluate
from .hardware import gpu_slug, load_hardware, preset_for_gpu
from .network import NetworkProfile
from .validated import TUNE_MARGIN_LOG, TUNE_MARGIN_SOURCE, measured_label


def detect_gpu() -> str | None:
    """The first GPU's name from nvidia-smi (spdnn.devices), or None without one."""
    names = gpu_names()
    return names[0] if names else None


def tune(
    neurons: int, layers: int, gpu: str | None = None, inputs: int = challenge.N_INPUTS, margin_log: float | None = None
) -> dict:
    """{"engine_options", "predicted_seconds", "measured", "decision", "model"}: the best design the cuda
    engine can run, searched over the knobs validation varied only (explore.engine_spaces), if the
    model predicts it faster than the engine's defaults by more than its validated error margin
    (validated.TUNE_MARGIN_LOG; `margin_log` overrides it); else the engine's defaults. "decision"
    says which and why, with the search's best as "candidate"; "measured" says whether the chosen
    dataflow was ever measured (spdnn.model.validated)."""
    preset = preset_for_gpu(gpu)
    hw = load_hardware(preset)
    prof = NetworkProfile.stored(neurons, layers, inputs)
    best: tuple | None = None
    designs, valid = 0, 0
    spaces = engine_spaces()  # the knobs validation varied, in their measured ranges
    for space in spaces:  # the kernel per layer, then each fused segment length
        res = evaluate(prof, hw, space)
        designs += len(res)
        valid += int(res.valid.sum())
        i = res.best(1)[0]
        if best is None or res.seconds[i] < best[0].seconds[best[1]]:
            best = (res, i)
    assert best is not None  # engine_spaces() is never empty
    res, i = best
    found = res.design(i)
    found_s, found_j = float(res.seconds[i]), float(res.joules[i])
    default = predict(ENGINE_DEFAULT, prof, hw)
    margin = TUNE_MARGIN_LOG if margin_log is None else float(margin_log)
    gain = default.seconds / found_s
    required = math.exp(margin)
    if gain > required:
        df, seconds, joules, choice = found, found_s, found_j, "tuned"
        why = f"predicted {gain:.3f}x faster than the engine defaults, above the required {required:.3f}x"
    else:
        df, seconds, joules, choice = ENGINE_DEFAULT, default.seconds, default.joules, "engine defaults"
        why = (
            f"the search's best is predicted {gain:.3f}x the engine defaults' speed, not above the "
            f"required {required:.3f}x (the model's validated error margin): defaults kept"
        )
    decision = {
        "choice": choice,
        "reason": why,
        "predicted_gain": gain,
        "required_gain": required,
        "margin_log": margin,
        "margin_source": TUNE_MARGIN_SOURCE if margin_log is None else "given",
        "default_predicted_seconds": default.seconds,
        "candidate": {
            "engine_options": found.engine_options(),
            "predicted_seconds": found_s,
            "dataflow": found.dataflow,
            "measured": measured_label(found),
        },
    }
    searched = {
        k: sorted({v for s in spaces for v in s[k]}, key=str)
        for k in (
            "dataflow",
            "variant",
            "warps",
            "grid_factor",
            "check_every",
            "fuse",
            "batch_rows",
            "check_bytes",
            "compact_fraction",
            "carry_saturated",
        )
    }
    return {
        "engine_options": df.engine_options(),
        "predicted_seconds": float(seconds),
        "predicted_joules": float(joules),
        "measured": measured_label(df),
        "decision": decision,
        "model": {
            "gpu": gpu,
            "gpu_slug": gpu_slug(gpu),
            "preset": preset,
            "hardware": hw.name,
            "calibrated": list(hw.calibrated),
            "neurons": neurons,
            "layers": layers,
            "inputs": inputs,
            "profile": prof.source,
            "designs": designs,
            "valid_designs": valid,
            "dataflow": df.dataflow,
            "dataflow_measured": measured_label(df),
            "searched": searched,
            "fused_layers": predict(df, prof, hw).policy["fused_layers"],
            "directives": df.directives(),
        },
    }


def write_tuned(path: Path, result: dict) -> None:
    from ..io.atomic import write_text

    write_text(Path(path), json.dumps(result, indent=1) + "\n")
