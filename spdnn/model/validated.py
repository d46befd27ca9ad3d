"""What the GPU validation measured, so that tune searches only knobs it varied and every output says
whether a design's dataflow was ever measured.

The spread of benchmarks/validate_model.py (configs(), H100 80GB HBM3, 2026-11-25; docs/model.md):
the kernel per layer (gather) on both variants with warps 2..32, check_every 1..32, grid_factor
4..64 and batch_rows auto or 15008; fused segments of the merged network (tiles of 32 rows) with
warps 4..32 and segments of 4..32 layers. check_bytes, compact_fraction and carry_saturated were
never varied.
"""

from __future__ import annotations

from .directives import Dataflow

# per measured dataflow: the values each varied knob took (tune stays inside their range)
VALIDATED: dict[str, dict[str, tuple]] = {
    "gather": {
        "variant": ("merged", "dedup"),
        "warps": (2, 8, 32),
        "check_every": (1, 8, 32),
        "grid_factor": (4, 16, 64),
        "batch_rows": (0, 15008),
    },
    "fused": {"variant": ("merged",), "row_tile": (32,), "warps": (4, 8, 16, 32), "fuse": (4, 8, 32)},
}
# the engine's defaults, never varied (carry_saturated: the engine carried no rows in the H100 and
# H200 validations of 2026-11-25 and 2026-12-01; the re-validation with carry is to be run)
NOT_VARIED = {"check_bytes": 64e6, "compact_fraction": 1 / 16, "carry_saturated": True}
MEASURED = "measured (validation on the H100, docs/model.md)"
NEVER = "never measured (model only)"


def measured_label(df: Dataflow) -> str:
    """MEASURED when the design's kernel and variant were among the validation's runs, else NEVER."""
    v = VALIDATED.get(df.dataflow)
    if df.custom or v is None or df.variant not in v["variant"]:
        return NEVER
    if "row_tile" in v and df.row_tile not in v["row_tile"]:
        return NEVER
    return MEASURED


def knob_range(dataflow: str, knob: str) -> tuple:
    """(lowest, highest) value validation measured for a knob of a dataflow."""
    vals = VALIDATED[dataflow][knob]
    return min(vals), max(vals)


# Tune keeps the engine's defaults unless the model predicts them slower than its choice by more than
# its measured error on exactly that quantity: the speed-up of tuned over default options, measured on
# the H200 in a held-out run (2026-12-03, frozen model 1b4f4c61..., seed 4, 11 challenge networks,
# docs/model.md "Fresh H200 run"): median |log(predicted / measured speed-up)| = 0.159
# (validation.tune_margin; it was 0.133 on 2026-12-02). A predicted gain must exceed exp(0.159) = 1.17x.
# Part of it is the measurement's own spread: two engines of the same options in one process measured
# a median 9% apart there. Re-derive it from the next measured tune-vs-default run.
TUNE_MARGIN_LOG = 0.159
TUNE_MARGIN_SOURCE = (
    "median |log(predicted / measured speed-up)| of tune vs the engine defaults, H200 2026-12-03, "
    "11 networks, frozen model 1b4f4c61 (docs/model.md)"
)
