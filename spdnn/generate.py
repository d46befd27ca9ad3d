"""Faithful synthetic challenge networks and inputs, written in the official layout.

Layers follow the structure measured on the official N = 1024 network (docs/design.md, and
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
calibrated (docs/synthetic.md) so that 60000 of them carry the official nonzeros and give
the official category count at every official N, and at N = 1024 die layer by layer like
the official inputs (official_profile).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp

from . import challenge
from .engines.cpu import ParallelReference, can_fork, default_workers, fork_pool
from .io.atomic import atomic_path, write_text
from .progress import progress as progress_bar

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
    positions: np.ndarray | None = None
    for k in range(1, layers + 1):
        t = (k - 1) % g_len
        if t == 0:  # a new group: a new permutation of the rows
            positions = group_positions(neurons, (k - 1) // g_len, seed)
        assert positions is not None  # set at t = 0, the first layer
        yield butterfly_layer(positions, 1 << t)


# ----------------------------------------------------------------------------- inputs

# The official data the inputs are calibrated to (docs/design.md): categories and input nonzeros
# of all 60000 inputs per N (the same categories for L = 120, 480, 1920), and the active rows
# after each of the first 30 layers of the official 1024 network for the first 600 official
# inputs (tests/data/challenge-sample; tests/test_generate.py recomputes them).
OFFICIAL_CATEGORIES = {1024: 1812, 4096: 1801, 16384: 1918, 65536: 1994}
OFFICIAL_NNZ = {1024: 6374505, 4096: 25019051, 16384: 98858913, 65536: 392191985}
SAMPLE_ACTIVE = (546, 387, 191, 90, 46, 26, 13, 9, 8, 8) + (7,) * 20
SAMPLE_INPUTS = 600


def official_profile() -> np.ndarray:
    """Fraction of the 60000 official inputs alive after each of the first 30 layers of the
    official 1024 network, as far as the data tells: the sample's fractions a_k (first 600
    inputs: 1.17% reach the plateau, against 3.02% of all 60000) raised to the power
    ln(3.02%) / ln(1.17%) = 0.786, which keeps a_0 = 1 and lands the plateau on 1812 / 60000.
    docs/synthetic.md gives the reasons and checks it against the first 1200 inputs."""
    a = np.array(SAMPLE_ACTIVE, dtype=np.float64) / SAMPLE_INPUTS
    plateau = OFFICIAL_CATEGORIES[1024] / challenge.N_INPUTS
    return a ** (np.log(plateau) / np.log(a[-1]))


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
    0: [_arc(0.5, 0.5, 0.32, 0.46, 90, 450, 14)],
    1: [[(0.58, 0.02), (0.42, 0.98)]],
    2: [_arc(0.5, 0.3, 0.3, 0.26, 160, -30, 7) + [(0.15, 0.97), (0.88, 0.95)]],
    3: [_arc(0.5, 0.26, 0.3, 0.23, 150, -90, 7) + _arc(0.5, 0.72, 0.33, 0.25, 90, -150, 8)],
    4: [[(0.62, 0.98), (0.64, 0.02), (0.1, 0.66), (0.9, 0.64)]],
    5: [[(0.85, 0.03), (0.28, 0.05), (0.22, 0.44)] + _arc(0.5, 0.66, 0.33, 0.3, 130, -150, 9)],
    6: [[(0.75, 0.02)] + _arc(0.5, 0.68, 0.32, 0.3, 170, -190, 12)],
    7: [[(0.1, 0.04), (0.9, 0.04), (0.38, 0.98)]],
    8: [_arc(0.5, 0.26, 0.26, 0.24, -90, 270, 10), _arc(0.5, 0.73, 0.32, 0.26, 90, 450, 11)],
    9: [_arc(0.5, 0.3, 0.3, 0.27, 0, 360, 11), [(0.8, 0.3), (0.65, 0.98)]],
}


def _segments() -> np.ndarray:
    """(10, K, 4) segments (x0, y0, x1, y1) per digit, padded by repeating the last one. The
    control points are jittered independently, so a short digit's last stroke is drawn again
    a few times slightly apart, which thickens it (part of the shape the constants fit)."""
    per_digit = []
    for d in range(10):
        segs = [np.concatenate([s[i], s[i + 1]]) for s in map(np.asarray, _DIGITS[d]) for i in range(len(s) - 1)]
        per_digit.append(np.array(segs))
    k = max(len(s) for s in per_digit)
    return np.stack([np.concatenate([s, np.repeat(s[-1:], k - len(s), axis=0)]) for s in per_digit])


_SEGMENTS = _segments()

# Shape of one image at the 32 x 32 scale, fitted on the official N = 1024 data (docs/synthetic.md):
# height, width and centring as measured on the sample's 600 real digits (rows spanned 21.5,
# columns 16.4, centre of mass within 0.4 px of the centre); the pen so that, on the real
# layers, 60000 inputs carry the official nonzeros (106 per row) and die layer by layer like
# the sample's digits scaled to the official 3.0% plateau.
_HEIGHT = (0.545, 0.695)  # digit height, fraction of the image height
_ASPECT = (0.655, 1.21)  # width / height
_SLANT = 0.25  # horizontal shear
_ROTATE = 0.15  # radians
_CENTRE = 0.4  # pixels: s.d. of the centre of mass around the image centre
_JITTER = 0.03  # control-point noise, fraction of the digit's size
_PEN = (0.86, 0.32)  # stroke half-width in pixels: lognormal median and log-s.d.
_MIN_PEN = 0.55  # pixels: thinner strokes would break into dots

# Per official N: (width factor, pen factor) on the shape above, fitted so that 60000 inputs
# give the official categories and nonzeros per row at that N (docs/synthetic.md). At larger
# N enlarged synthetic digits survive far more than the official ones do on these layers;
# narrower digits with a wider pen (the same ink) is the one change fitted to each N.
_SIZE_FIT: dict[int, tuple[float, float]] = {
    1024: (1.0, 0.987),
    4096: (0.874, 1.053),
    16384: (0.826, 1.079),
    65536: (0.816, 1.076),
}


def size_fit(neurons: int) -> tuple[float, float]:
    """(width factor, pen factor) for N: the fitted value at an official N, interpolated in
    log2(N) between them, and the nearest official one outside 1024..65536."""
    sizes = sorted(_SIZE_FIT)
    m = np.log2(np.clip(neurons, sizes[0], sizes[-1]))
    logs = np.log2(sizes)
    width, pen = (float(np.interp(m, logs, [_SIZE_FIT[n][i] for n in sizes])) for i in range(2))
    return width, pen


_SEGMENT_COUNT = [sum(len(stroke) - 1 for stroke in _DIGITS[d]) for d in range(10)]


def _real_segments() -> np.ndarray:
    """(10, K) 1.0 where a digit's segment is drawn, 0.0 on the padding repeats."""
    return (np.arange(_SEGMENTS.shape[1])[None, :] < np.array(_SEGMENT_COUNT)[:, None]).astype(np.float64)


_REAL_SEGMENTS = _real_segments()


def _place(
    rng: np.random.Generator, digit: np.ndarray, x: np.ndarray, y: np.ndarray, height: int, width: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move each digit's centre of mass (length-weighted segment midpoints, as MNIST centres
    by mass) to the image centre, within _CENTRE pixels."""
    count = len(digit)
    ends = np.stack([x, y], axis=-1).reshape(count, -1, 2, 2)  # (image, segment, end, xy)
    length = np.sqrt(((ends[:, :, 1] - ends[:, :, 0]) ** 2).sum(-1)) * _REAL_SEGMENTS[digit]
    centre = (ends.mean(axis=2) * length[..., None]).sum(1) / np.maximum(length.sum(1), 1e-9)[:, None]
    x = x - centre[:, :1] + width / 2 + rng.normal(0.0, _CENTRE, (count, 1)) * scale
    y = y - centre[:, 1:] + height / 2 + rng.normal(0.0, _CENTRE, (count, 1)) * scale
    return x, y


def _render(
    rng: np.random.Generator, count: int, height: int, width: int, fit: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` digits on a height x width grid; returns (image, pixel) indices of the ones.
    `fit` = (width factor, pen factor), see size_fit."""
    scale = min(height, width) / 32  # parameters above are in pixels of a 32-pixel image
    digit = rng.integers(0, 10, count)
    pts = _SEGMENTS[digit].reshape(count, -1, 2) - 0.5
    pts = pts + rng.normal(0.0, _JITTER, pts.shape)
    h = rng.uniform(*_HEIGHT, count) * height
    w = h * rng.uniform(*_ASPECT, count) * fit[0]
    shear = rng.uniform(-_SLANT, _SLANT, count)[:, None]
    angle = rng.uniform(-_ROTATE, _ROTATE, count)[:, None]
    x = pts[..., 0] * w[:, None]
    y = pts[..., 1] * h[:, None]
    x = x - shear * y
    x, y = np.cos(angle) * x - np.sin(angle) * y, np.sin(angle) * x + np.cos(angle) * y
    x, y = _place(rng, digit, x, y, height, width, scale)
    seg = np.stack([x, y], axis=-1).reshape(count, -1, 4).astype(np.float32)
    pen = _PEN[0] * fit[1] * np.exp(_PEN[1] * rng.standard_normal(count))
    radius = np.maximum(pen * scale, _MIN_PEN).astype(np.float32)
    # pixel centres in neuron order: neuron x * height + y
    px = (np.repeat(np.arange(width), height) + 0.5).astype(np.float32)
    py = (np.tile(np.arange(height), width) + 0.5).astype(np.float32)
    images, pixels = [], []
    step = max(1, (1 << 22) // (seg.shape[1] * height * width))  # bound the temporaries
    for lo in range(0, count, step):
        ax, ay, bx, by = (seg[lo : lo + step, :, i, None] for i in range(4))
        dx, dy = bx - ax, by - ay
        t = np.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
        ex, ey = px - ax - t * dx, py - ay - t * dy
        on = (ex * ex + ey * ey).min(axis=1) < radius[lo : lo + step, None] ** 2
        r, c = np.nonzero(on)
        images.append(r + lo)
        pixels.append(c)
    return np.concatenate(images), np.concatenate(pixels)


def base_shape(neurons: int) -> tuple[int, int, int]:
    """(height, width, f) of the image a digit is drawn on: at most 32 pixels high, enlarged
    f times by pixel repetition to image_shape(neurons)."""
    height, width = image_shape(neurons)
    f = max(1, height // 32)
    return height // f, width // f, f


def _chunk_base(neurons: int, seed: int, chunk: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, pixel) of the ones of the first `count` digits of input chunk `chunk`, drawn at
    base_shape(neurons). The chunk has its own seed and is always drawn whole, then cut, so the
    first n images are the same whatever the number of inputs."""
    hb, wb, _ = base_shape(neurons)
    rng = np.random.default_rng([seed, _INPUT_STREAM, chunk])
    img, pix = _render(rng, _CHUNK, hb, wb, size_fit(neurons))
    keep = img < count
    return img[keep], pix[keep]


def _chunks(n_inputs: int) -> list[tuple[int, int, int]]:
    """(chunk, first row, rows) of each chunk of 1024 inputs."""
    return [(c, lo, min(_CHUNK, n_inputs - lo)) for c, lo in enumerate(range(0, n_inputs, _CHUNK))]


def base_chunks(neurons: int, n_inputs: int, seed: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield (first row, rows, image, pixel) per chunk of 1024 inputs: the ones of the digits
    at base_shape(neurons), before enlargement (image indices count from the chunk's first row)."""
    for chunk, lo, count in _chunks(n_inputs):
        yield (lo, count, *_chunk_base(neurons, seed, chunk, count))


def _chunk_inputs(neurons: int, seed: int, chunk: int, count: int) -> sp.csr_matrix:
    """One chunk of generate_inputs: its digits drawn, then enlarged."""
    hb, wb, f = base_shape(neurons)
    img, pix = _chunk_base(neurons, seed, chunk, count)
    # enlarge through a dense boolean image: its nonzeros come out in CSR order (no sort)
    dense = np.zeros((count, wb, hb), dtype=bool)
    dense.reshape(count, -1)[img, pix] = True
    if f > 1:  # base pixel (x, y) -> the f x f pixels (x*f + dx, y*f + dy)
        dense = np.repeat(np.repeat(dense, f, axis=1), f, axis=2)
    rows, cols = np.nonzero(dense.reshape(count, -1))
    indptr = np.zeros(count + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=count), out=indptr[1:])
    m = sp.csr_matrix((np.ones(cols.size, np.float32), cols.astype(np.int32), indptr), shape=(count, neurons))
    m.has_sorted_indices = True
    return m


def generate_inputs(neurons: int, n_inputs: int, seed: int, workers: int | None = 1) -> sp.csr_matrix:
    """n_inputs x N float32 CSR of binary digit images (values 1.0), deterministic from seed.

    Images are drawn at most 32 pixels high and enlarged by pixel repetition (the official
    large-N inputs are likewise enlarged 28 x 28 MNIST digits); the first n images are the
    same whatever n_inputs is (see _chunk_base). Chunks are drawn on `workers` processes
    (None: all cores), with the same result whatever the number.
    """
    jobs = _chunks(n_inputs)
    workers = min(workers or default_workers(), len(jobs))
    if workers > 1 and can_fork():
        with fork_pool(workers) as pool:
            parts = [f.result() for f in [pool.submit(_chunk_inputs, neurons, seed, c, count) for c, _, count in jobs]]
    else:
        parts = [_chunk_inputs(neurons, seed, c, count) for c, _, count in jobs]
    if not parts:
        challenge.check_neurons(neurons)
        return sp.csr_matrix((0, neurons), dtype=np.float32)
    return sp.vstack(parts, format="csr", dtype=np.float32)


# ----------------------------------------------------------------------------- calibration


def folded_survival(
    neurons: int, n_inputs: int, seed: int, layers: int, positions: Callable[[int], np.ndarray] | None = None
) -> tuple[np.ndarray, float]:
    """(active rows after each layer, nonzeros per input) of generate_inputs(N, n, seed) on a
    RadiX-Net network, computed on N/16 values per row: after the first layer every row is the
    same in all 16 blocks (column j equals column j mod N/16), so one block carries it. Row
    sums are added in another order than the reference's, so a row at the edge of dying
    could differ in float32; the counts are for calibration only, never the truth.
    positions(g): p(i) of group g (default: the generated network of `seed`).
    """
    p, g_len = neurons // 16, group_length(neurons)
    bias = np.float32(challenge.bias(neurons))
    positions = positions or functools.partial(group_positions, neurons, seed=seed)
    hb, wb, f = base_shape(neurons)
    assert hb == wb, "square images only (the official sizes)"
    counts: dict[int, sp.csr_matrix] = {}
    active, nnz = np.zeros(layers, dtype=np.int64), 0
    for _, count, img, pix in base_chunks(neurons, n_inputs, seed):
        nnz += img.size * f * f
        # block sums of the input: position q = c * H + y holds the ones of image row y in
        # columns x = c mod 2f of the 16 blocks, i.e. base row y // f of base parity c // f
        xb, yb = np.divmod(pix, hb)
        folded = np.zeros((count, 2, hb), dtype=np.float32)
        np.add.at(folded, (img, xb % 2, yb), 1.0)
        s = np.repeat(np.repeat(folded, f, axis=1), f, axis=2).reshape(count, p)
        y: Any = None  # the previous layer's output, from k = 0 on
        for k in range(layers):
            group, t = divmod(k, g_len)
            if k > 0 and group == 0:
                s = 16 * y  # p(i) = i mod P: the 16 rows of position q all carry y[q]
            elif k > 0:
                if group not in counts:  # C[q, r] = #{i : p(i) = q, i mod P = r}
                    pos = positions(group)
                    counts[group] = sp.csr_matrix(
                        (np.ones(neurons, np.float32), (pos, np.arange(neurons) % p)), shape=(p, p)
                    )
                s = np.asarray(counts[group] @ y.T).T
            z = (s + np.roll(s, -(1 << t), axis=1)) * np.float32(1 / 16)
            y = challenge.activate_dense(z, bias)  # z >= 0: its nonzeros are where z > 0
            y = y[y.any(axis=1)]
            active[k] += y.shape[0]
            if not y.shape[0]:
                break
    return active, nnz / max(1, n_inputs)


# ----------------------------------------------------------------------------- official layout

_TSV = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
_GZIP_LEVEL = 1  # fast: these files are read once by the converter; level 9 would dominate the run


def _csr_tsv(m: sp.csr_matrix, value: np.generic, first_row: int = 0) -> bytes:
    """1-based `row\\tcol\\tvalue` lines of a CSR matrix in row-major order, formatted by pyarrow.

    The value's dtype sets its text: float32 0.0625 -> "0.0625", int8 1 -> "1".
    """
    rows = np.repeat(np.arange(first_row + 1, first_row + m.shape[0] + 1, dtype=np.int64), np.diff(m.indptr))
    table = pa.table({"row": rows, "col": m.indices.astype(np.int64) + 1, "value": np.full(rows.size, value)})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, write_options=_TSV)
    return sink.getvalue().to_pybytes()


@contextlib.contextmanager
def _atomic_gzip(path: Path) -> Iterator[gzip.GzipFile]:
    """A gzip stream onto `path`, renamed into place on success. mtime 0 and no name in the
    header, so the same seed gives byte-identical files (stable checksums in the cache)."""
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw, mtime=0) as gz,
    ):
        yield gz


def write_official_layout(
    root: Path,
    neurons: int,
    layers: list[int],
    n_inputs: int,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
) -> None:
    """Write a synthetic network under `root` with the official file names.

    dnn/neuron{N}.tar.gz (layers 1..max(layers)), mnist/sparse-images-{N}.tsv.gz and
    dnn/neuron{N}-l{L}-categories.tsv for each L, the truth from the CPU reference split over
    `workers` processes (None: all cores; each generates the layers itself, one at a time),
    while this process writes the files. Memory stays at the inputs plus one layer per
    process and the features of the inputs still alive. Every file appears only when complete.
    """
    root = Path(root)
    counts = sorted({int(n) for n in layers})
    if not counts or counts[0] < 1:
        raise ValueError(f"layer counts must be positive, got {layers}")
    inputs = generate_inputs(neurons, n_inputs, seed)
    network = functools.partial(generate_layers, neurons, counts[-1], seed)
    with ParallelReference(network, challenge.bias(neurons), inputs, counts, workers, keep_values=False) as truth:
        truth.submit()  # the workers run while the files are written
        _write_inputs(root, neurons, inputs, progress)
        _write_layers(root, neurons, network(), counts[-1], progress)
        alive = truth.result().alive
    for count in counts:
        write_text(root / challenge.truth_file(neurons, count), "".join(f"{i + 1}\n" for i in alive[count]))


def _write_inputs(root: Path, neurons: int, inputs: sp.csr_matrix, progress: bool) -> None:
    """mnist/sparse-images-{N}.tsv.gz, in slices of about 16M lines to bound pyarrow's temporaries."""
    n_inputs = inputs.shape[0]
    step = max(1, (1 << 24) * n_inputs // max(1, inputs.nnz))
    with (
        _atomic_gzip(root / challenge.inputs_file(neurons)) as gz,
        progress_bar(total=n_inputs, desc=f"write sparse-images-{neurons}", unit="input", disable=not progress) as bar,
    ):
        for lo in range(0, n_inputs, step):
            part = inputs[lo : lo + step]
            gz.write(_csr_tsv(part, np.int8(1), first_row=lo))
            bar.update(part.shape[0])


def _write_layers(root: Path, neurons: int, network: Iterator[sp.csr_matrix], count: int, progress: bool) -> None:
    """dnn/neuron{N}.tar.gz with one TSV member per layer."""
    with (
        _atomic_gzip(root / challenge.weights_archive(neurons)) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for k, w in enumerate(
            progress_bar(
                network, total=count, desc=f"write neuron{neurons} layers", unit="layer", disable=not progress
            ),
            start=1,
        ):
            text = _csr_tsv(w, np.float32(challenge.WEIGHT))
            info = tarfile.TarInfo(challenge.layer_member(neurons, k))
            info.size, info.mode, info.mtime = len(text), 0o644, 0
            tar.addfile(info, io.BytesIO(text))
