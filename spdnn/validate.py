"""Exact validation of inference results against the challenge's truth ("categories")."""

from __future__ import annotations

import numpy as np


class ValidationError(RuntimeError):
    """The computed categories differ from the truth: the run is wrong and must fail."""


def truth_for_inputs(truth: np.ndarray, n_inputs: int) -> np.ndarray:
    """Restrict 0-based truth rows to the first n_inputs inputs (a row's fate depends on it alone)."""
    return truth[truth < n_inputs]


def check_categories(categories: np.ndarray, truth: np.ndarray, label: str = "result", show: int = 10) -> None:
    """Raise ValidationError unless the two sets of 0-based rows are equal, naming the first differences (1-based)."""
    got = np.unique(np.asarray(categories, dtype=np.int64))
    want = np.unique(np.asarray(truth, dtype=np.int64))
    if got.shape == want.shape and np.array_equal(got, want):
        return
    extra = np.setdiff1d(got, want)[:show] + 1
    missing = np.setdiff1d(want, got)[:show] + 1
    raise ValidationError(
        f"{label}: categories differ from the truth ({got.size} rows computed, {want.size} expected); "
        f"first rows computed but not in truth: {extra.tolist()}; first truth rows not computed: {missing.tolist()}"
    )
