"""Constants and file names of the Sparse DNN Graph Challenge, in one place.

Every other module asks this one for a bias, a file name or an edge count, so the
challenge's definition lives here only (see docs/design.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is not imported at run time: the workflow reads file names from here while parsing
    import numpy as np

NEURONS: tuple[int, ...] = (1024, 4096, 16384, 65536)
LAYERS: tuple[int, ...] = (120, 480, 1920)
NNZ_PER_ROW = 32  # per row and per column of every weight matrix
WEIGHT = 0.0625
CLIP = 32.0  # Y is clipped to [0, 32] after the ReLU
N_INPUTS = 60000
BASE_URL = "https://graphchallenge.s3.amazonaws.com/synthetic/sparsechallenge_2019/"

_BIAS = {1024: -0.3, 4096: -0.35, 16384: -0.4, 65536: -0.45}


def bias(neurons: int) -> float:
    """The challenge's bias for N neurons; extrapolated by -0.05 per 4x for synthetic sizes."""
    if neurons in _BIAS:
        return _BIAS[neurons]
    # Synthetic sizes N = 16 * 2^m outside the official four follow the same progression.
    import math

    steps = math.log(neurons / 1024, 4)
    return round(-0.3 - 0.05 * steps, 6)


def check_neurons(neurons: int) -> None:
    """Raise ValueError unless N = 16 * 2^m with N >= 64 (the RadiX-Net shape of the layers)."""
    m = neurons // 16
    if neurons < 64 or neurons % 16 or m & (m - 1):
        raise ValueError(f"N={neurons} is not of the form 16 * 2^m with N >= 64")


def weights_archive(neurons: int) -> str:
    """Path of the weights tarball relative to the base URL."""
    return f"dnn/neuron{neurons}.tar.gz"


def layer_member(neurons: int, layer: int) -> str:
    """Name of layer k's TSV (1-based k) inside the weights tarball."""
    return f"neuron{neurons}/n{neurons}-l{layer}.tsv"


def inputs_file(neurons: int) -> str:
    """Path of the gzipped input TSV relative to the base URL."""
    return f"mnist/sparse-images-{neurons}.tsv.gz"


def truth_file(neurons: int, layers: int) -> str:
    """Path of the truth ("categories") file relative to the base URL."""
    return f"dnn/neuron{neurons}-l{layers}-categories.tsv"


def relu_clip(z: np.ndarray) -> np.ndarray:
    """min(max(z, 0), CLIP), in place; returns z."""
    # array methods, not np.clip: CuPy arrays (benchmarks/bench_gpu.py) take the same calls
    return z.clip(0, CLIP, out=z)


def activate(z: np.ndarray, bias: float) -> np.ndarray:
    """A layer's activation on the nonzeros of its product Y_k W_k, in place: min(max(z + b, 0), 32).

    `z` holds only the product's stored entries (a CSR matrix's data): the bias is added to
    those alone. The bias is rounded to z's precision (float32) first and each step rounds
    once, so every engine that adds, then clips, agrees bit for bit.
    """
    z += z.dtype.type(bias)
    return relu_clip(z)


def activate_dense(z: np.ndarray, bias: float) -> np.ndarray:
    """`activate` on a dense product (a new array): entries that are zero stay zero, unbiased."""
    nonzero = z != 0
    y = activate(z.copy(), bias)
    y *= nonzero  # exact: x * 1 = x, x * 0 = 0 for the clipped, non-negative x
    return y


def edges(n_inputs: int, neurons: int, layers: int) -> int:
    """Edges traversed by one inference: inputs x 32 x N x L (the challenge's TEPS numerator)."""
    return n_inputs * NNZ_PER_ROW * neurons * layers
