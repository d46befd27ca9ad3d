"""The cuda engine's kernels as the host calls them: build options and argument formats (no pycuda).

kernels/spdnn_layer.cu has two builds (-DLAYERED=0: the challenge; 1: general layered networks,
layer_plan.Activation) whose signatures differ only in the activation arguments. Both argument
lists live here, in pycuda's prepared-call format letters (P: a pointer, i: int32, f: float32),
so the engine (cuda.py) and the CPU tests (tests/test_cuda_layered.py checks them against the C
signatures of both builds, and packs the engine's argument tuples with them) share one source.
"""

from __future__ import annotations

import numpy as np

# kernel key (cuda.py's fns[...]) -> the C function of kernels/spdnn_layer.cu
KERNELS = {
    "layer": "spdnn_layer",
    "count": "spdnn_count",
    "scan": "spdnn_scan",
    "compact": "spdnn_compact",
    "densify": "spdnn_densify",
    "iota": "spdnn_iota",
    "fused": "spdnn_fused",
    "fused_scatter": "spdnn_fused_scatter",
    "saturated": "spdnn_saturated",
}

# Where the builds differ: the activation arguments of a layer launch (challenge: the bias;
# layered: the layer's column biases, mode, lo, hi), of a fused segment (challenge: the bias;
# layered: all layers' column biases and their LayerAct array) and the saturation level.
_ACT = {False: "f", True: "Piff"}
_SEGMENT_ACT = {False: "f", True: "PP"}
_LEVEL = {False: "", True: "f"}


def formats(layered: bool) -> dict[str, str]:
    """Every kernel's prepared-call format for the challenge build (False) or the layered one (True)."""
    return {
        "layer": "PPPPPPiiiii" + _ACT[layered] + "PPPP",
        "count": "PiP",
        "scan": "PiPP",
        "compact": "PPiiiPPPP",
        "densify": "PPPiiiP",
        "iota": "Pii",
        "fused": "PPPPPPiiii" + _SEGMENT_ACT[layered] + "PPPPP",
        "fused_scatter": "PPPPPPPPPiiiii" + _SEGMENT_ACT[layered] + "PPPPP",
        "saturated": "PiiPPP" + _LEVEL[layered],
    }


def compile_options(kw: int, warps: int, stage_weights: bool, scatter_regs: int, layered: bool) -> list[str]:
    """nvcc options of one module (one padded column length KW); the challenge build passes no
    -DLAYERED, so its options are the ones it always had."""
    options = [f"-DKW={kw}", f"-DWARPS={warps}", f"-DFUSE_STAGE={int(stage_weights)}", f"-DFUSE_REGS={scatter_regs}"]
    if layered:
        options.append("-DLAYERED=1")
    return options + ["-O3"]


def layer_act_args(layered: bool, bias: np.float32, cbias: int | np.integer, mode: int, lo: float, hi: float) -> tuple:
    """spdnn_layer's activation arguments: (bias,) for the challenge build; (the layer's column
    biases' address, mode, lo, hi) for the layered one."""
    if not layered:
        return (np.float32(bias),)
    return (np.intp(cbias), np.int32(mode), np.float32(lo), np.float32(hi))


def segment_act_args(layered: bool, bias: np.float32, cbias: int, lact: int) -> tuple:
    """A fused segment's activation arguments: (bias,), or (all column biases, LayerAct array) addresses."""
    return (np.intp(cbias), np.intp(lact)) if layered else (np.float32(bias),)


def level_args(layered: bool, level: float) -> tuple:
    """spdnn_saturated's trailing argument: none (the challenge's 32 is compiled in), or the level."""
    return (np.float32(level),) if layered else ()


# what an SM keeps of its shared memory for each resident block (sm_80 .. sm_90), and spdnn_layer's
# static shared memory (s_any: 32 ints)
SMEM_RESERVED_PER_BLOCK = 1024
LAYER_STATIC_SMEM = 128


def layer_smem_pad(blocks_per_sm: int, smem_per_sm: int, smem_optin: int) -> int:
    """Dynamic shared memory (bytes) that caps spdnn_layer at `blocks_per_sm` resident blocks an SM:
    a diagnostic (CudaEngine's layer_blocks_per_sm) that fixes how many tiles an SM works on at once
    apart from the warps a block. The kernel never touches the padding, so its results are unchanged."""
    if blocks_per_sm < 1:
        raise ValueError(f"blocks_per_sm must be >= 1, not {blocks_per_sm!r}")
    # k blocks fit (k x (pad + static + reserved) <= smem_per_sm); k + 1 do not
    pad = smem_per_sm // blocks_per_sm - SMEM_RESERVED_PER_BLOCK - LAYER_STATIC_SMEM
    if pad + LAYER_STATIC_SMEM > smem_optin:
        raise ValueError(
            f"{blocks_per_sm} block(s) an SM would need {pad} bytes of shared memory a block, more than the "
            f"{smem_optin} one may have: choose at least 2"
        )
    return max(pad, 0)
