"""MNIST in its IDX files (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), for SNICIT's networks.

Pixels become p / 255 in float32, as SNICIT feeds them. Never committed here: the test set
is exported into the ignored folder .peers/ (docs/dag.md says from where).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..io.errors import DataError

_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension; images: 3


def default_dir() -> Path:
    """$SPDNN_MNIST, else <checkout>/.peers/GoMNIST/data."""
    env = os.environ.get("SPDNN_MNIST")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".peers" / "GoMNIST" / "data"


def find(folder: Path, stem: str) -> Path | None:
    """The file `stem` or `stem.gz` in folder, or None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path | str) -> np.ndarray:
    """An IDX file of unsigned bytes (labels or images) as a uint8 array of its dimensions."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if len(raw) < 8:
        raise DataError(str(path), None, "too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _MAGIC:
        raise DataError(str(path), None, f"magic number {magic} is not an IDX file of unsigned bytes")
    ndim = _MAGIC[magic]
    dims = [int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(ndim)]
    start = 4 + 4 * ndim
    size = int(np.prod(dims))
    if len(raw) - start != size:
        raise DataError(str(path), None, f"{len(raw) - start} bytes of data, the header says {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def load_test_set(folder: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (10000, 784) in [0, 1], labels int64 (10000,)) of the MNIST test set."""
    folder = Path(folder) if folder is not None else default_dir()
    images, labels = find(folder, "t10k-images-idx3-ubyte"), find(folder, "t10k-labels-idx1-ubyte")
    if images is None or labels is None:
        raise FileNotFoundError(f"no MNIST test set in {folder}")
    x = read_idx(images)
    # SNICIT divides in double and stores float: the same rounding here
    return (x.reshape(x.shape[0], -1) / 255.0).astype(np.float32), read_idx(labels).astype(np.int64)
