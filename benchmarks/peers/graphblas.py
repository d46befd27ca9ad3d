"""SuiteSparse:GraphBLAS on the CPU (python-graphblas), written as LAGraph's dnn method does it.

Per layer: Y = Y W on the (+, x) semiring; the bias as a diagonal matrix B applied on the
(+, +) semiring (Y B adds b to every stored entry of Y W, and only to those: the challenge's
bias on the nonzeros); keep the entries > 0; entries above 32 become 32. Our own code after
LAGraph_dnn's published description; GraphBLAS threads over all cores.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp


def available() -> str | None:
    """None if python-graphblas imports, else why not (the benchmark says so and skips it)."""
    try:
        import graphblas  # noqa: F401
    except ImportError as err:
        return f"python-graphblas is not installed ({err}): pip install python-graphblas"
    return None


def versions() -> dict:
    import graphblas as gb
    import suitesparse_graphblas as ssgb

    return {"python-graphblas": gb.__version__, "suitesparse-graphblas": ssgb.__version__}


def _matrix(m: sp.csr_matrix):
    import graphblas as gb

    m = sp.csr_matrix(m, dtype=np.float32)
    return gb.io.from_scipy_sparse(m)


def infer(layers: list[sp.csr_matrix], inputs: sp.csr_matrix, bias: float) -> tuple[np.ndarray, float]:
    """The categories (sorted 0-based rows nonzero after the last layer) and the seconds of the
    layer loop (the matrices are converted to GraphBLAS before the clock starts)."""
    import graphblas as gb

    n = inputs.shape[1]
    weights = [_matrix(w) for w in layers]
    diag = gb.Matrix.from_coo(np.arange(n), np.arange(n), np.full(n, bias, dtype=np.float32), nrows=n, ncols=n)
    y = _matrix(inputs)
    start = time.perf_counter()
    for w in weights:
        z = y.mxm(w, gb.semiring.plus_times).new()
        z = z.mxm(diag, gb.semiring.plus_plus).new()
        y = gb.select.valuegt(z, 0).new()
        y = y.apply(gb.binary.min, right=np.float32(32)).new()
    seconds = time.perf_counter() - start
    rows, _cols, _vals = y.to_coo()
    return np.unique(rows).astype(np.int64), seconds
