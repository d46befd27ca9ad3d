"""The synthetic generator against the real structure and behaviour of the challenge data.

The real sample (tests/data/challenge-sample, a copy of the official layout: the first 30
layers of the 1024-neuron network, the first 600 inputs, their 120-layer truth) is the
reference: the structure rule is checked on it first, then on generated layers; synthetic
inputs must die layer by layer like the real ones do on the real layers.
"""
from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn import challenge, generate
from spdnn.engines.cpu import CpuEngine
from spdnn.io.cache import Weights, convert_inputs, convert_weights, load_inputs, load_weights
from spdnn.io.tsv import read_categories

SAMPLE = Path(__file__).resolve().parent / "data/challenge-sample/synthetic/sparsechallenge_2019"
REAL_LAYERS = 30
REAL_INPUTS = 600
# active rows after each real layer for the 600 real inputs (CPU reference, measured)
REAL_ACTIVE = [546, 387, 191, 90, 46, 26, 13, 9, 8, 8] + [7] * 20


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[Weights, sp.csr_matrix]:
    """The real sample's 30 layers and 600 inputs, through the binary cache."""
    out = tmp_path_factory.mktemp("real")
    convert_weights(SAMPLE / challenge.weights_archive(1024), out / "w.arrow", 1024, REAL_LAYERS, progress=False)
    convert_inputs(SAMPLE / challenge.inputs_file(1024), out / "x.arrow", 1024, REAL_INPUTS, progress=False)
    return load_weights(out / "w.arrow"), load_inputs(out / "x.arrow")


def active(weights: Weights, inputs: sp.csr_matrix, layers: int) -> np.ndarray:
    engine = CpuEngine()
    engine.prepare(weights, layers)
    return np.array(engine.infer(inputs).active_rows)


# ----------------------------------------------------------------------------- structure


def row_pairs(m: sp.csr_matrix, neurons: int) -> np.ndarray:
    """Check one layer's shape, values, 32 per row and column, and two positions shared by all
    16 blocks; return those two positions per row, (N, 2) ascending."""
    p = neurons // 16
    m = sp.csr_matrix(m)
    m.sort_indices()
    assert m.shape == (neurons, neurons) and m.dtype == np.float32
    assert np.all(m.data == np.float32(challenge.WEIGHT))
    assert np.all(np.diff(m.indptr) == 32)
    assert np.all(np.bincount(m.indices, minlength=neurons) == 32)
    cols = m.indices.reshape(neurons, 16, 2)
    assert np.all(cols // p == np.arange(16)[None, :, None])  # every block, two entries each
    pos = cols % p
    assert np.all(pos == pos[:, :1, :])  # the same two positions in all 16 blocks
    return pos[:, 0, :]


def group_rule(layers: list[sp.csr_matrix], neurons: int) -> list[np.ndarray]:
    """Check the RadiX-Net rule on consecutive layers; return p(i) of each group.

    Within a group of log2(P) layers, row i's pair is {p(i), p(i) - s} with s = 1, 2, 4, ...;
    p is shared by the group (found as the one position common to all its pairs), each
    position is used by exactly 16 rows (a row permutation of kron(ones(16,16), B_s)).
    """
    p = neurons // 16
    g = int(np.log2(p))
    assert len(layers) % g == 0
    pairs = [row_pairs(m, neurons) for m in layers]
    groups = []
    for start in range(0, len(layers), g):
        group = pairs[start:start + g]
        common = [np.all([(c[:, None] == q).any(axis=1) for q in group], axis=0) for c in group[0].T]
        assert np.all(common[0] ^ common[1]), "rows must share exactly one position across the group"
        pos = np.where(common[0], group[0][:, 0], group[0][:, 1])
        for t, pair in enumerate(group):
            expect = np.sort(np.stack([pos, (pos - (1 << t)) % p], axis=1), axis=1)
            assert np.array_equal(pair, expect), f"layer {start + t + 1}: stride is not {1 << t}"
        assert np.all(np.bincount(pos, minlength=p) == 16)
        groups.append(pos)
    return groups


def kron_layer(positions: np.ndarray, stride: int) -> sp.csr_matrix:
    """0.0625 * R (ones(16, 16) kron B_s), rows chosen by p: built independently of the generator."""
    p = len(positions) // 16
    q = np.arange(p)
    butterfly = sp.csr_matrix((np.ones(2 * p), (np.r_[q, q], np.r_[q, (q - stride) % p])), shape=(p, p))
    full = sp.kron(np.ones((16, 16)), butterfly, format="csr")
    return (challenge.WEIGHT * full[positions]).astype(np.float32).tocsr()


def test_real_sample_follows_the_rule(real):
    weights, _ = real
    mats = list(weights.layers())
    groups = group_rule(mats, 1024)
    assert len(groups) == 5
    assert np.array_equal(groups[0], np.arange(1024) % 64)  # first group: p(i) = i mod P
    for a in range(5):
        for b in range(a + 1, 5):
            assert np.mean(groups[a] == groups[b]) < 0.1  # a new permutation every group
    # the rule rebuilds every real layer exactly, both independently and with the generator
    for k, m in enumerate(mats):
        pos, s = groups[k // 6], 1 << (k % 6)
        assert (kron_layer(pos, s) != m).nnz == 0
        assert (generate.butterfly_layer(pos, s) != m).nnz == 0


def test_first_group_is_the_official_one(real):
    weights, _ = real
    for seed in (0, 7):
        for k, m in enumerate(generate.generate_layers(1024, 6, seed)):
            assert (m != weights.layer(k)).nnz == 0


@pytest.mark.parametrize("neurons", [64, 256, 1024, 4096])
def test_generated_layers_follow_the_rule(neurons):
    p = neurons // 16
    g = int(np.log2(p))
    mats = list(generate.generate_layers(neurons, 3 * g, seed=3))
    assert all(isinstance(m, sp.csr_matrix) and m.has_sorted_indices for m in mats)
    assert [generate.layer_stride(neurons, k) for k in range(1, 3 * g + 1)] == [1 << t for t in range(g)] * 3
    groups = group_rule(mats, neurons)
    assert np.array_equal(groups[0], np.arange(neurons) % p)
    assert not np.array_equal(groups[1], groups[2])
    for k, m in enumerate(mats):
        assert (kron_layer(groups[k // g], 1 << (k % g)) != m).nnz == 0


def test_bad_sizes_are_refused():
    for n in (32, 1000, 3072):
        with pytest.raises(ValueError):
            next(generate.generate_layers(n, 1, 0))
        with pytest.raises(ValueError):
            generate.generate_inputs(n, 1, 0)


def test_layers_are_deterministic():
    a = list(generate.generate_layers(256, 12, seed=1))
    b = list(generate.generate_layers(256, 12, seed=1))
    c = list(generate.generate_layers(256, 12, seed=2))
    assert all((x != y).nnz == 0 for x, y in zip(a, b))
    assert all((x != y).nnz == 0 for x, y in zip(a[:4], c[:4]))  # the first group is fixed
    assert all((x != y).nnz > 0 for x, y in zip(a[4:], c[4:]))  # later groups follow the seed


# ----------------------------------------------------------------------------- inputs


def test_inputs_shape_values_and_determinism():
    x = generate.generate_inputs(1024, 300, seed=5)
    assert isinstance(x, sp.csr_matrix) and x.shape == (300, 1024) and x.dtype == np.float32
    assert np.all(x.data == 1.0) and x.has_sorted_indices
    assert (x != generate.generate_inputs(1024, 300, seed=5)).nnz == 0
    assert (x != generate.generate_inputs(1024, 300, seed=6)).nnz > 0
    # prefix-stable: the first n inputs do not depend on how many are drawn
    assert (x[:200] != generate.generate_inputs(1024, 200, seed=5)).nnz == 0
    assert (x != generate.generate_inputs(1024, 3000, seed=5)[:300]).nnz == 0
    assert generate.generate_inputs(1024, 0, seed=5).shape == (0, 1024)


def test_inputs_look_like_the_real_digits(real):
    _, real_x = real
    x = generate.generate_inputs(1024, 3000, seed=0)
    nnz, real_nnz = np.diff(x.indptr), np.diff(real_x.indptr)
    assert nnz.min() > 0
    assert abs(nnz.mean() - real_nnz.mean()) < 0.15 * real_nnz.mean()  # real: 101
    assert abs(np.median(nnz) - np.median(real_nnz)) < 0.2 * np.median(real_nnz)
    # same centre and spread (in pixels) in the column-major 32 x 32 frame: neuron = x * 32 + y
    col, rcol = x.indices, real_x.indices
    for a, b in ((col // 32, rcol // 32), (col % 32, rcol % 32)):
        assert abs(a.mean() - b.mean()) < 1.0 and abs(a.std() - b.std()) < 1.0


@pytest.mark.parametrize("neurons,shape", [(64, (8, 8)), (128, (8, 16)), (1024, (32, 32)),
                                           (2048, (32, 64)), (4096, (64, 64)), (65536, (256, 256))])
def test_image_shape(neurons, shape):
    assert generate.image_shape(neurons) == shape


def test_large_images_are_enlarged_digits():
    x = generate.generate_inputs(4096, 50, seed=0).toarray().reshape(50, 64, 64)  # [input, x, y]
    assert np.array_equal(x, np.repeat(np.repeat(x[:, ::2, ::2], 2, axis=1), 2, axis=2))
    wide = generate.generate_inputs(2048, 20, seed=0)
    assert wide.shape == (20, 2048) and wide.nnz > 0


# ----------------------------------------------------------------------------- survival


def test_real_profile_and_truth(real):
    """The sample itself: the CPU reference gives the measured profile and the official truth."""
    weights, x = real
    engine = CpuEngine()
    engine.prepare(weights, REAL_LAYERS)
    result = engine.infer(x)
    assert result.active_rows == REAL_ACTIVE
    truth = SAMPLE / challenge.truth_file(1024, 120)
    assert np.array_equal(result.categories, read_categories(lambda: open(truth, "rb"), str(truth), REAL_INPUTS))


def test_synthetic_inputs_survive_like_real_ones(real):
    """On the REAL layers, synthetic inputs stay within a factor 2 of the real fraction alive
    after every one of the 30 layers (random inputs of the same density die within a few)."""
    weights, _ = real
    n = 6000
    synthetic = active(weights, generate.generate_inputs(1024, n, seed=0), REAL_LAYERS) / n
    reference = np.array(REAL_ACTIVE) / REAL_INPUTS
    ratio = synthetic / reference
    assert np.all((ratio > 0.5) & (ratio < 2.0)), np.round(ratio, 2)


def test_random_inputs_die_fast(real):
    """Why the above matters: uniform random inputs of the real density fall far behind."""
    weights, _ = real
    rng = np.random.default_rng(0)
    n = 2000
    x = sp.random(n, 1024, density=101 / 1024, format="csr", dtype=np.float32, random_state=rng)
    x.data[:] = 1.0
    alive = active(weights, x, REAL_LAYERS) / n
    assert alive[-1] < 0.5 * REAL_ACTIVE[-1] / REAL_INPUTS


def test_synthetic_network_profile_1024():
    n, layers = 6000, 30
    weights = Weights.from_matrices(list(generate.generate_layers(1024, layers, seed=1)))
    alive = active(weights, generate.generate_inputs(1024, n, seed=0), layers) / n
    ratio = alive / (np.array(REAL_ACTIVE) / REAL_INPUTS)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), np.round(ratio, 2)


def test_synthetic_network_profile_4096():
    """No real 4096 sample here: check the profile is non-degenerate (dies gradually, not all)."""
    n, layers = 2000, 32
    weights = Weights.from_matrices(list(generate.generate_layers(4096, layers, seed=1)))
    alive = active(weights, generate.generate_inputs(4096, n, seed=0), layers) / n
    assert np.all(np.diff(alive) <= 0)
    assert 0.7 < alive[0] < 1.0 and 0.1 < alive[3] < 0.5
    assert 0.005 < alive[-1] < 0.1, np.round(alive, 4)


# ----------------------------------------------------------------------------- official layout


def test_write_official_layout_round_trip(tmp_path):
    n, counts, seed = 500, [12, 24], 4
    root = tmp_path / "a"
    generate.write_official_layout(root, 1024, counts, n, seed, progress=False)
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert names == {challenge.weights_archive(1024), challenge.inputs_file(1024),
                     *(challenge.truth_file(1024, c) for c in counts)}

    archive = root / challenge.weights_archive(1024)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [challenge.layer_member(1024, k) for k in range(1, 25)]
        first = tar.extractfile(members[0]).read().decode()
    assert first.startswith("1\t1\t0.0625\n1\t64\t0.0625\n") and first.count("\n") == 32 * 1024
    with gzip.open(root / challenge.inputs_file(1024), "rt") as handle:
        line = handle.readline()
    assert line.startswith("1\t") and line.endswith("\t1\n")

    # through the real conversion path and the reference engine
    convert_weights(archive, tmp_path / "w.arrow", 1024, 24, progress=False)
    convert_inputs(root / challenge.inputs_file(1024), tmp_path / "x.arrow", 1024, n, progress=False)
    weights, x = load_weights(tmp_path / "w.arrow"), load_inputs(tmp_path / "x.arrow")
    assert (x != generate.generate_inputs(1024, n, seed)).nnz == 0
    for k, m in enumerate(generate.generate_layers(1024, 24, seed)):
        assert (weights.layer(k) != m).nnz == 0
    for c in counts:
        engine = CpuEngine()
        engine.prepare(weights, c)
        truth = root / challenge.truth_file(1024, c)
        expected = read_categories(lambda: open(truth, "rb"), str(truth), n)
        assert expected.size > 0
        assert np.array_equal(engine.infer(x).categories, expected)

    # same seed, same bytes (stable checksums); nothing temporary left behind
    again = tmp_path / "b"
    generate.write_official_layout(again, 1024, counts, n, seed, progress=False)
    for name in names:
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_write_official_layout_refuses_bad_layer_counts(tmp_path):
    with pytest.raises(ValueError):
        generate.write_official_layout(tmp_path, 64, [], 10, 0, progress=False)
    with pytest.raises(ValueError):
        generate.write_official_layout(tmp_path, 64, [0, 4], 10, 0, progress=False)
