"""Faithful synthetic challenge networks and inputs, written in the official layout.

Layers follow the structure measured on the official N = 1024 network (DESIGN.md, and
checked by tests/test_generate.py against the real sample): with P = N / 16 positions per
block and G = log2(P) layers per group,

* neuron j (a column) sits in block j // P at position j % P: columns are never permuted;
* row i of layer k has its 32 nonzeros in all 16 blocks, at positions p(i) and
  p(i) - s (mod P) of every block, i.e. W_k = R_g (ones(16, 16) kron B_s) with B_s the
  radix-2 butterfly I + shift(-s) on P positions and R_g a row permutation;
* s = 2^t for the t-th layer of its group (t = 0 .. G-1: 1, 2, 4, ..., P/2);
* p(i) = i mod P in the first group (R_0 = identity, exactly as in the official files), and
  p(i) = pi_g(i) mod P for a fresh uniform permutation pi_g of the N rows in every later
  group g (each position is then used by 16 rows, so every column also has 32 nonzeros).

So the first G layers are the same for every seed (and equal the official ones for
N = 1024); later groups depend on the seed. Inputs are digit images drawn from strokes,
tuned so that their survival profile on the real layers matches the real MNIST inputs'.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp
from tqdm import tqdm

from . import challenge
from .engines.cpu import layer_step
from .io.atomic import atomic_path, write_text

BLOCKS = 16  # blocks per layer; each row touches all of them (16 blocks x 2 positions = 32)
_LAYER_STREAM, _INPUT_STREAM = 0, 1  # separate random streams, so inputs never shift the layers
_CHUNK = 1024  # inputs are drawn in chunks with their own seed: the first n of a larger set are the same

# ----------------------------------------------------------------------------- layers


def positions_per_block(neurons: int) -> int:
    """P = N / 16, the number of positions inside each block."""
    challenge.check_neurons(neurons)
    return neurons // BLOCKS


def group_length(neurons: int) -> int:
    """log2(P): layers per butterfly group, i.e. layers sharing one row permutation."""
    return positions_per_block(neurons).bit_length() - 1


def layer_stride(neurons: int, layer: int) -> int:
    """Stride s of 1-based layer k: 1, 2, 4, ..., P/2, restarting with every group."""
    return 1 << ((layer - 1) % group_length(neurons))


def group_positions(neurons: int, group: int, seed: int) -> np.ndarray:
    """p(i) for every row i in 0-based group g: i mod P for g = 0, pi_g(i) mod P after."""
    p = positions_per_block(neurons)
    rows = np.arange(neurons, dtype=np.int64)
    if group == 0:
        return rows % p
    rng = np.random.default_rng([seed, _LAYER_STREAM, group])
    return rng.permutation(neurons) % p


def butterfly_layer(positions: np.ndarray, stride: int) -> sp.csr_matrix:
    """The N x N layer whose row i holds 0.0625 at positions p(i) and p(i) - s of all 16 blocks.

    Columns come out sorted within each row (the cache and the official files' order).
    """
    n = len(positions)
    p = n // BLOCKS
    a = np.asarray(positions, dtype=np.int64) % p
    b = (a - stride) % p
    pair = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)  # (N, 2), ascending
    offsets = (np.arange(BLOCKS, dtype=np.int64) * p)[None, :, None]
    cols = (offsets + pair[:, None, :]).reshape(-1).astype(np.int32)  # (N * 32,), row-major
    indptr = np.arange(0, n * challenge.NNZ_PER_ROW + 1, challenge.NNZ_PER_ROW, dtype=np.int32)
    data = np.full(cols.size, challenge.WEIGHT, dtype=np.float32)
    m = sp.csr_matrix((data, cols, indptr), shape=(n, n))
    m.has_sorted_indices = True
    return m


def generate_layers(neurons: int, layers: int, seed: int) -> Iterator[sp.csr_matrix]:
    """Yield layers 1..`layers` of the synthetic N-neuron network, one at a time (constant memory)."""
    g_len = group_length(neurons)
    positions = None
    for k in range(1, layers + 1):
        t = (k - 1) % g_len
        if t == 0:  # a new group: a new permutation of the rows
            positions = group_positions(neurons, (k - 1) // g_len, seed)
        yield butterfly_layer(positions, 1 << t)


# ----------------------------------------------------------------------------- inputs


def image_shape(neurons: int) -> tuple[int, int]:
    """(height, width) of an input image: 2^floor(m/2) rows for N = 2^m, so square when N is
    a power of 4 (all official sizes: 32 x 32 for 1024) and twice as wide as high otherwise.
    Pixel (y, x) is neuron x * height + y (column-major, as in the official inputs)."""
    challenge.check_neurons(neurons)
    height = 1 << ((neurons.bit_length() - 1) // 2)
    return height, neurons // height


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int) -> list[tuple[float, float]]:
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy - ry * np.sin(t)))


# Skeletons of the ten digits in a unit box (x right, y down), as polylines. Hand-drawn;
# enough to give images the mass, stroke width and spatial spread of handwritten digits.
_DIGITS: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(.5, .5, .32, .46, 90, 450, 14)],
    1: [[(.58, .02), (.42, .98)]],
    2: [_arc(.5, .3, .3, .26, 160, -30, 7) + [(.15, .97), (.88, .95)]],
    3: [_arc(.5, .26, .3, .23, 150, -90, 7) + _arc(.5, .72, .33, .25, 90, -150, 8)],
    4: [[(.62, .98), (.64, .02), (.1, .66), (.9, .64)]],
    5: [[(.85, .03), (.28, .05), (.22, .44)] + _arc(.5, .66, .33, .3, 130, -150, 9)],
    6: [[(.75, .02)] + _arc(.5, .68, .32, .3, 170, -190, 12)],
    7: [[(.1, .04), (.9, .04), (.38, .98)]],
    8: [_arc(.5, .26, .26, .24, -90, 270, 10), _arc(.5, .73, .32, .26, 90, 450, 11)],
    9: [_arc(.5, .3, .3, .27, 0, 360, 11), [(.8, .3), (.65, .98)]],
}


def _segments() -> np.ndarray:
    """(10, K, 4) segments (x0, y0, x1, y1) per digit, padded by repeating the last one."""
    per_digit = []
    for d in range(10):
        segs = [np.concatenate([s[i], s[i + 1]]) for s in map(np.asarray, _DIGITS[d]) for i in range(len(s) - 1)]
        per_digit.append(np.array(segs))
    k = max(len(s) for s in per_digit)
    return np.stack([np.concatenate([s, np.repeat(s[-1:], k - len(s), axis=0)]) for s in per_digit])


_SEGMENTS = _segments()

# Random shape of one image, at the 32 x 32 scale; tuned so that on the official N = 1024
# layers the fraction of inputs alive after every layer is within ~25% of the real inputs'
# (tests/test_generate.py), and nonzeros per image are close to theirs (real mean 101).
_HEIGHT = (0.58, 0.74)   # digit height, fraction of the image height
_ASPECT = (0.55, 1.0)    # width / height
_SLANT = 0.25            # horizontal shear
_ROTATE = 0.15           # radians
_SHIFT = 1.5             # pixels off centre
_JITTER = 0.03           # control-point noise, fraction of the digit's size
_RADIUS = (0.5, 1.35)    # stroke half-width in pixels: a pixel is on within this distance


def _render(rng: np.random.Generator, count: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` digits on a height x width grid; returns (image, pixel) indices of the ones."""
    scale = min(height, width) / 32  # parameters above are in pixels of a 32-pixel image
    digit = rng.integers(0, 10, count)
    pts = _SEGMENTS[digit].reshape(count, -1, 2) - 0.5
    pts = pts + rng.normal(0.0, _JITTER, pts.shape)
    h = rng.uniform(*_HEIGHT, count) * height
    w = h * rng.uniform(*_ASPECT, count)
    shear = rng.uniform(-_SLANT, _SLANT, count)[:, None]
    angle = rng.uniform(-_ROTATE, _ROTATE, count)[:, None]
    x = pts[..., 0] * w[:, None]
    y = pts[..., 1] * h[:, None]
    x = x - shear * y
    x, y = np.cos(angle) * x - np.sin(angle) * y, np.sin(angle) * x + np.cos(angle) * y
    x += width / 2 + rng.uniform(-_SHIFT, _SHIFT, count)[:, None] * scale
    y += height / 2 + rng.uniform(-_SHIFT, _SHIFT, count)[:, None] * scale
    seg = np.stack([x, y], axis=-1).reshape(count, -1, 4).astype(np.float32)
    radius = np.maximum(rng.uniform(*_RADIUS, count) * scale, 0.55).astype(np.float32)  # >= 0.55: no gaps
    # pixel centres in neuron order: neuron x * height + y
    px = (np.repeat(np.arange(width), height) + 0.5).astype(np.float32)
    py = (np.tile(np.arange(height), width) + 0.5).astype(np.float32)
    images, pixels = [], []
    step = max(1, (1 << 22) // (seg.shape[1] * height * width))  # bound the temporaries
    for lo in range(0, count, step):
        ax, ay, bx, by = (seg[lo:lo + step, :, i, None] for i in range(4))
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
        ex, ey = px - ax - t * dx, py - ay - t * dy
        on = (ex * ex + ey * ey).min(axis=1) < radius[lo:lo + step, None] ** 2
        r, c = np.nonzero(on)
        images.append(r + lo)
        pixels.append(c)
    return np.concatenate(images), np.concatenate(pixels)


def generate_inputs(neurons: int, n_inputs: int, seed: int) -> sp.csr_matrix:
    """n_inputs x N float32 CSR of binary digit images (values 1.0), deterministic from seed.

    Images are drawn at most 32 pixels high and enlarged by pixel repetition (the official
    large-N inputs are likewise enlarged 28 x 28 MNIST digits); the first n images are the
    same whatever n_inputs is, since each chunk of 1024 has its own seed.
    """
    height, width = image_shape(neurons)
    f = max(1, height // 32)  # enlargement factor
    hb, wb = height // f, width // f
    parts = []
    for chunk, lo in enumerate(range(0, n_inputs, _CHUNK)):
        count = min(_CHUNK, n_inputs - lo)
        rng = np.random.default_rng([seed, _INPUT_STREAM, chunk])
        img, pix = _render(rng, _CHUNK, hb, wb)  # always a full chunk, then cut: prefix-stable
        keep = img < count
        img, pix = img[keep], pix[keep]
        if f > 1:  # base pixel (y, x) -> the f x f pixels (y*f + dy, x*f + dx)
            x, y = pix // hb, pix % hb
            dx, dy = np.divmod(np.arange(f * f), f)
            pix = ((x[:, None] * f + dx) * height + y[:, None] * f + dy).reshape(-1)
            img = np.repeat(img, f * f)
        m = sp.csr_matrix((np.ones(img.size, np.float32), (img, pix)), shape=(count, neurons))
        m.sort_indices()
        parts.append(m)
    if not parts:
        return sp.csr_matrix((0, neurons), dtype=np.float32)
    return sp.vstack(parts, format="csr", dtype=np.float32)


# ----------------------------------------------------------------------------- official layout

_TSV = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
_GZIP_LEVEL = 1  # fast: these files are read once by the converter; level 9 would dominate the run


def _csr_tsv(m: sp.csr_matrix, value: np.generic, first_row: int = 0) -> bytes:
    """1-based `row\\tcol\\tvalue` lines of a CSR matrix in row-major order, formatted by pyarrow.

    The value's dtype sets its text: float32 0.0625 -> "0.0625", int8 1 -> "1".
    """
    rows = np.repeat(np.arange(first_row + 1, first_row + m.shape[0] + 1, dtype=np.int64), np.diff(m.indptr))
    table = pa.table({"row": rows, "col": m.indices.astype(np.int64) + 1,
                      "value": np.full(rows.size, value)})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=_TSV)
    return sink.getvalue().to_pybytes()


@contextlib.contextmanager
def _atomic_gzip(path: Path) -> Iterator[gzip.GzipFile]:
    """A gzip stream onto `path`, renamed into place on success. mtime 0 and no name in the
    header, so the same seed gives byte-identical files (stable checksums in the cache)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw, mtime=0) as gz:
        yield gz


def write_official_layout(root: Path, neurons: int, layers: list[int], n_inputs: int, seed: int,
                          progress: bool = True) -> None:
    """Write a synthetic network under `root` with the official file names.

    dnn/neuron{N}.tar.gz (layers 1..max(layers)), mnist/sparse-images-{N}.tsv.gz and
    dnn/neuron{N}-l{L}-categories.tsv for each L, the truth from the CPU reference step.
    Layers are generated, written and applied one at a time, so memory stays at one layer
    plus the features of the inputs still alive. Every file appears only when complete.
    """
    root = Path(root)
    counts = sorted({int(n) for n in layers})
    if not counts or counts[0] < 1:
        raise ValueError(f"layer counts must be positive, got {layers}")
    inputs = generate_inputs(neurons, n_inputs, seed)

    # inputs, in slices of about 16M lines to bound pyarrow's temporaries
    step = max(1, (1 << 24) * n_inputs // max(1, inputs.nnz))
    with _atomic_gzip(root / challenge.inputs_file(neurons)) as gz, \
            tqdm(total=n_inputs, desc=f"write sparse-images-{neurons}", unit="input", disable=not progress) as bar:
        for lo in range(0, n_inputs, step):
            part = inputs[lo:lo + step]
            gz.write(_csr_tsv(part, np.int8(1), first_row=lo))
            bar.update(part.shape[0])

    # weights and truth together: each layer is written, then applied to the inputs still alive
    bias = np.float32(challenge.bias(neurons))
    y = sp.csr_matrix(inputs, dtype=np.float32, copy=True)
    alive = np.arange(n_inputs, dtype=np.int64)
    truth: dict[int, np.ndarray] = {}
    with _atomic_gzip(root / challenge.weights_archive(neurons)) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        bar = tqdm(generate_layers(neurons, counts[-1], seed), total=counts[-1],
                   desc=f"write neuron{neurons} layers", unit="layer", disable=not progress)
        for k, w in enumerate(bar, start=1):
            text = _csr_tsv(w, np.float32(challenge.WEIGHT))
            info = tarfile.TarInfo(challenge.layer_member(neurons, k))
            info.size, info.mode, info.mtime = len(text), 0o644, 0
            tar.addfile(info, io.BytesIO(text))
            # the CPU reference engine's step and active-row compaction (spdnn.engines.cpu)
            y = layer_step(y, w, bias)
            keep = np.flatnonzero(np.diff(y.indptr))
            if keep.size < y.shape[0]:
                y, alive = y[keep], alive[keep]
            if k in counts:
                truth[k] = alive.copy()
        bar.close()
    for count in counts:
        write_text(root / challenge.truth_file(neurons, count), "".join(f"{i + 1}\n" for i in truth[count]))
