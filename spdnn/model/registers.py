"""Registers a thread of the engine's compiled kernels, as ptxas allocates them (registers.json).

The analysis estimates a kernel's registers from its directives (rule 5: a base plus a lane's
gathered operands and accumulators), which is all a hypothetical dataflow has. For the dataflows
that are the engine's own kernels the compiler's count is known: spdnn_layer takes 38 registers
at 2-8 warps a block and 32 at 16-32 where the estimate says 62, which at 8 warps is 6 blocks an
SM, not 4 (ncu agrees: docs/model.md, the 4096 profile). registers.json holds ptxas's counts for
KW = 32 (the challenge's padded column) at 1..32 warps, from `python -m spdnn.model.registers
--write` (nvcc); tests/test_model_registers.py compiles a few builds again and fails when the
kernels changed and the table did not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from .nest import Nest

TABLE = Path(__file__).with_name("registers.json")
KW = 32  # the column length the table is for (every challenge network's)
ARCH = "sm_90"
# directive file kernel -> the engine's C function (spdnn/engines/kernels/spdnn_layer.cu)
KERNELS = {"gather": "spdnn_layer", "fused": "spdnn_fused", "fused_scatter": "spdnn_fused_scatter"}


def compile_counts(warps: int, kw: int = KW, arch: str = ARCH) -> dict[str, int]:
    """ptxas's registers a thread of every kernel of the challenge build at `warps` warps a block."""
    from ..engines.cuda import KERNEL_FILE
    from ..engines.device import ptxas_usage
    from ..engines.kernel_args import compile_options
    from ..engines.layer_plan import SCATTER_REGS

    usage = ptxas_usage(KERNEL_FILE, compile_options(kw, warps, True, SCATTER_REGS, False), arch)
    return {kernel: regs for kernel, (regs, _) in usage.items()}


def directive_digest(text: str) -> str:
    """SHA-256 of a directive file's text: the table applies to the shipped files only, so an
    edited nest (another dataflow under the same Kernel name) keeps the estimate."""
    return hashlib.sha256(text.encode()).hexdigest()


def build_table(warps: range = range(1, 33)) -> dict:
    """The table registers.json holds: per directive kernel, registers at 1..32 warps."""
    from .nest import DIRECTIVE_DIR

    per_warps = {w: compile_counts(w) for w in warps}
    lines = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.splitlines()
    version = next((line.strip() for line in lines if "release" in line), lines[-1].strip() if lines else "")
    return {
        "nvcc": version,
        "arch": ARCH,
        "kw": KW,
        "warps": list(warps),
        "kernels": {name: [per_warps[w][c] for w in warps] for name, c in KERNELS.items()},
        "directives": {name: directive_digest((DIRECTIVE_DIR / f"{name}.m").read_text()) for name in KERNELS},
    }


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(TABLE.read_text())


@lru_cache(maxsize=64)
def _shipped(kernel: str, text: str) -> bool:
    return _table()["directives"].get(kernel) == directive_digest(text)


def compiled_registers(nest: Nest, warps, kw) -> tuple[np.ndarray, np.ndarray]:
    """(registers, known) for a nest at `warps` (arrays broadcast): ptxas's count where the nest is
    one of the engine's kernels as shipped (its file's digest in the table), the warp count an
    integer in range and KW = 32; known is False elsewhere (the analysis keeps its estimate)."""
    warps, kw = np.asarray(warps, float), np.asarray(kw, float)
    table = _table()
    kernel = nest.kernel
    if kernel not in table["kernels"] or not _shipped(kernel, nest.text):
        return np.zeros(np.broadcast(warps, kw).shape), np.zeros(np.broadcast(warps, kw).shape, bool)
    regs = np.asarray(table["kernels"][kernel], float)
    first, last = table["warps"][0], table["warps"][-1]
    known = (warps == np.round(warps)) & (warps >= first) & (warps <= last) & (kw == table["kw"])
    index = np.clip(np.round(warps), first, last).astype(int) - first
    return np.broadcast_to(regs[index], known.shape), known


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ptxas's register counts of the engine's kernels (needs nvcc)")
    ap.add_argument("--write", action="store_true", help=f"write {TABLE.name} (else print it)")
    args = ap.parse_args(argv)
    text = json.dumps(build_table(), indent=1) + "\n"
    if args.write:
        tmp = TABLE.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(TABLE)
        print(f"wrote {TABLE}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
