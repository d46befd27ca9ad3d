"""Tune: the predicted-best cuda-engine configuration for a network on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

from .. import challenge
from ..devices import gpu_names
from .cost import predict
from .explore import engine_spaces, evaluate
from .hardware import gpu_slug, load_hardware, preset_for_gpu
from .network import NetworkProfile
from .validated import measured_label


def detect_gpu() -> str | None:
    """The first GPU's name from nvidia-smi (spdnn.devices), or None without one."""
    names = gpu_names()
    return names[0] if names else None


def tune(neurons: int, layers: int, gpu: str | None = None, inputs: int = challenge.N_INPUTS) -> dict:
    """{"engine_options", "predicted_seconds", "measured", "model"} for the best design the cuda engine can
    run, searched over the knobs validation varied only (explore.engine_spaces); "measured" says
    whether its dataflow was ever measured (spdnn.model.validated)."""
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
    df = res.design(i)
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
        "predicted_seconds": float(res.seconds[i]),
        "predicted_joules": float(res.joules[i]),
        "measured": measured_label(df),
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
