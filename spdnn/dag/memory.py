"""Peak memory of one inference, measured: numpy's allocations as tracemalloc sees them.

numpy reports every array buffer to tracemalloc, and the engines allocate their value rows
as numpy arrays (the compiled kernels allocate nothing), so the traced peak of an `infer`
call is the memory the call itself needed: value rows, the output block, temporaries. GPU
memory is not seen here.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from .engine import DagEngine, DagResult


def measure_peak(engine: DagEngine, inputs: np.ndarray) -> tuple[DagResult, int]:
    """(result, peak bytes allocated during engine.infer(inputs)), inputs already allocated."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = engine.infer(inputs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, int(peak)
