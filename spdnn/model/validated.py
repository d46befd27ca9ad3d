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
# its measured error on exactly that quantity: the speed-up of tuned over default options where tune
# chose options of its own, measured on the H200 in a held-out run (2026-12-03, second run: frozen
# model f8956c0c..., seed 5, 3 engines of each option set; docs/model.md "Second fresh H200 run"):
# median |log(predicted / measured speed-up)| = 0.228 over 4096 x 120/480/1920 (predicted 1.25x,
# measured 0.95-1.00x). A predicted gain must exceed exp(0.228) = 1.26x. (The run before, seed 4,
# gives 0.251 over its five such rows; 0.159 and 0.133 before counted the rows where the defaults
# were kept, whose error is the measurement's spread: validation.tune_margin.)
TUNE_MARGIN_LOG = 0.228
TUNE_MARGIN_SOURCE = (
    "median |log(predicted / measured speed-up)| of tune vs the engine defaults where tune chose, H200 "
    "2026-12-03 (second run), 4096 x 120/480/1920, frozen model f8956c0c (docs/model.md)"
)
