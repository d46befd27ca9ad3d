"""Read each peer's own report: its timer, its category count, its own pass/fail line.

Every parser returns a dict; a field the output does not hold is absent (a crash halfway
leaves a partial dict, and `complete` says whether the timer line was seen).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _last(pattern: str, text: str) -> str | None:
    found = re.findall(pattern, text, flags=re.MULTILINE)
    return found[-1] if found else None


def parse_hidayetoglu(text: str) -> dict:
    """singlegpu/inference's stdout: INFERENCE TIME (s), INFERENCE THRP (edges/s as it prints them),
    KERNEL/COPY TIME, I/O TIME, `all categories: n` and CHALLENGE PASSED! (its own check: the
    first n lines of the truth file equal its categories; a longer truth file still passes)."""
    out: dict = {}
    for key, pattern in (
        ("inference_seconds", rf"^INFERENCE TIME: {_NUM} s"),
        ("printed_edges_per_second", rf"^INFERENCE THRP: {_NUM} EDGES/s"),
        ("kernel_seconds", rf"^KERNEL TIME: {_NUM} s"),
        ("copy_seconds", rf"^\s*COPY TIME: {_NUM} s"),
        ("io_seconds", rf"^\s*I/O TIME: {_NUM} s"),
    ):
        value = _last(pattern, text)
        if value is not None:
            out[key] = float(value)
    count = _last(r"^all categories: (\d+)", text)
    if count is not None:
        out["categories_count"] = int(count)
    out["self_check"] = "passed" if "CHALLENGE PASSED!" in text else "not passed"
    out["complete"] = "inference_seconds" in out
    return out


_SDGC_TIMER = {  # the line each mode prints its own total with (milliseconds)
    "BF": rf"^BF info: runtime {_NUM} ms",
    "SNIG": rf"^SNIG info: runtime {_NUM} ms",
    "XY": rf"^XY info: runtime {_NUM}\s*ms",
    "SNICIT": rf"^SNICIT info: runtime {_NUM}\s*ms",
    # GLARE's fork of the driver (IDEA-CUHK/GLARE): the same lines, the mode's name first
    "BF_GLARE": rf"^BF_GLARE info: runtime {_NUM} ms",
    "SNIG_GLARE": rf"^SNIG_GLARE info: runtime {_NUM} ms",
    "XY_GLARE": rf"^XY_GLARE info: runtime {_NUM}\s*ms",
    "SNICIT_GLARE": rf"^SNICIT_GLARE info: runtime {_NUM}\s*ms",
}


def parse_sdgc(text: str, mode: str) -> dict:
    """IDEA-CUHK's SDGC driver (SNICIT's tree, and GLARE's fork with its *_GLARE modes): `<MODE>
    info: runtime <t> ms`, SNICIT's (and SNICIT_GLARE's) phase times, and its own verdict. XY and
    SNICIT (and their GLARE copies) compare their count with constants of the official data (1812,
    1801, 1918, 1994 for 60000 inputs), so their verdict means nothing on other data; BF and SNIG
    (and theirs) compare every row with the truth file."""
    if mode not in _SDGC_TIMER:
        raise ValueError(f"unknown SDGC mode {mode!r}")
    out: dict = {}
    runtime = _last(_SDGC_TIMER[mode], text)
    if runtime is not None:
        out["inference_seconds"] = float(runtime) / 1e3
    if mode in ("SNICIT", "SNICIT_GLARE"):
        for key, label in (
            ("pre_conv", "pre-conv"),
            ("cluster", "cluster-based conversion"),
            ("post_conv", "post-conv"),
            ("recover", "recover"),
        ):
            value = _last(rf"^{re.escape(label)} Time \[[^\]]*\] = {_NUM}ms", text)
            if value is not None:
                out[f"{key}_seconds"] = float(value) / 1e3
    diff = _last(r"^Number of different categories: (\d+)", text)
    if diff is not None:
        out["self_check_differences"] = int(diff)
    if "CHALLENGE PASSED" in text:
        out["self_check"] = "passed"
    elif "CHALLENGE FAILED" in text:
        out["self_check"] = "failed"
    else:
        out["self_check"] = "none"
    out["complete"] = "inference_seconds" in out
    return out


def read_categories(path: Path) -> np.ndarray | None:
    """The 1-based categories a patched peer wrote (one per line) as sorted 0-based indices, or
    None when it wrote none (it crashed first, or the patch is missing)."""
    path = Path(path)
    if not path.is_file():
        return None
    text = path.read_text().split()
    return np.sort(np.array([int(v) - 1 for v in text], dtype=np.int64))


def compare_categories(found: np.ndarray | None, truth: np.ndarray) -> dict:
    """Exact check of a peer's categories against the truth (both 0-based)."""
    truth = np.unique(np.asarray(truth, dtype=np.int64))
    if found is None:
        return {"match": False, "reason": "no categories written"}
    found_set = np.unique(found)
    missing = np.setdiff1d(truth, found_set)
    extra = np.setdiff1d(found_set, truth)
    return {
        "match": bool(missing.size == 0 and extra.size == 0 and found_set.size == found.size),
        "found": int(found.size),
        "truth": int(truth.size),
        "missing": int(missing.size),
        "extra": int(extra.size),
        "duplicates": int(found.size - found_set.size),
    }
