"""Layered networks of any width, SNICIT's real pruned MNIST networks, and the MNIST reader.

The real networks are read from the ignored .peers/ folder (docs/dag.md says how they are
exported); those tests skip cleanly without it. Everything else runs on files made here.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.dag import mnist, snicit
from spdnn.dag.layered import LayeredEngine, LayeredNetwork
from spdnn.dag.levels import levelise
from spdnn.dag.network import IDENTITY, RELU, RELU_CLIP, RELU_CLIP1, TANH
from spdnn.dag.registry import get_dag_engine
from spdnn.dag.validate import compare_outputs
from spdnn.io.errors import DataError

DAG_ENGINES = ("compiled", "vectorised")


def dag_outputs(net: LayeredNetwork, x: np.ndarray, engine: str) -> np.ndarray:
    e = get_dag_engine(engine)
    e.prepare(levelise(net.to_spec()))
    return e.infer(x).outputs


def layered_outputs(net: LayeredNetwork, x: np.ndarray) -> np.ndarray:
    e = LayeredEngine()
    e.prepare(net)
    return e.infer(x).outputs


def random_layered(widths, density, seed=0) -> LayeredNetwork:
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for a, b in zip(widths[:-1], widths[1:]):
        ws.append(sp.random(a, b, density=density, random_state=rng, dtype=np.float32, format="csr") * 2 - 0)
        bs.append(rng.normal(0, 0.1, size=b).astype(np.float32))
    acts = [RELU, TANH, RELU_CLIP1, RELU_CLIP][: len(ws) - 1] + [IDENTITY]
    return LayeredNetwork(ws, bs, acts)


def test_layered_any_widths_equals_dag():
    net = random_layered([50, 200, 7, 300, 10], density=0.2, seed=1)
    assert net.widths == [50, 200, 7, 300, 10]
    nnz_rows = np.diff(net.weights[0].indptr)
    assert nnz_rows.min() != nnz_rows.max()  # any nonzeros per row
    x = np.random.default_rng(2).random((33, 50), dtype=np.float32)
    ref = layered_outputs(net, x)
    for engine in DAG_ENGINES:
        assert compare_outputs(dag_outputs(net, x, engine), ref).passed


def test_layered_engine_equals_challenge_engine():
    """The challenge's layers (one width, 32 per row, one bias) through the generalised engine."""
    from spdnn.engines.cpu import CpuEngine
    from spdnn.generate import generate_inputs, generate_layers
    from spdnn.io.cache import Weights

    mats = list(generate_layers(256, 12, seed=3))
    x = sp.csr_matrix(generate_inputs(256, 300, seed=3), dtype=np.float32)
    challenge = CpuEngine()
    challenge.prepare(Weights.from_matrices(mats, bias=-0.2), 12)
    truth = challenge.infer(x)
    net = LayeredNetwork(
        [sp.csr_matrix(m, dtype=np.float32) for m in mats], [np.full(256, -0.2, np.float32)] * 12, [RELU_CLIP] * 12
    )
    out = layered_outputs(net, x)
    np.testing.assert_array_equal(np.flatnonzero(np.any(out != 0, axis=1)), truth.categories)
    dense = np.zeros_like(out)
    dense[truth.categories] = truth.values.toarray()
    assert compare_outputs(out, dense).passed


def test_layered_network_checks_shapes():
    w = sp.csr_matrix(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="biases"):
        LayeredNetwork([w], [np.zeros(3, np.float32)], [RELU])
    with pytest.raises(ValueError, match="takes 3 neurons"):
        LayeredNetwork([w, w], [np.zeros(4, np.float32)] * 2, [RELU] * 2)


# ----------------------------------------------------------------------------- SNICIT format, made here


def write_snicit(root: Path, name: str, net: LayeredNetwork, dense_first: bool) -> None:
    wdir, bdir = root / "tsv_weights" / name, root / "tsv_biases" / name
    wdir.mkdir(parents=True)
    bdir.mkdir(parents=True)
    for k, (w, b) in enumerate(zip(net.weights, net.biases), start=1):
        dense = (k == 1 and dense_first) or k == len(net.weights)
        fname = f"l{k}-{'dense' if dense else 'sparse'}.tsv"
        (bdir / fname).write_text("".join(f"{v!r}\n" for v in b.astype(float).tolist()))
        if dense:
            (wdir / fname).write_text("".join(f"{v!r}\n" for v in w.toarray().astype(float).ravel().tolist()))
        else:
            coo = w.tocoo()
            (wdir / fname).write_text(
                "".join(
                    f"{i}\t{j}\t{v!r}\n"
                    for i, j, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.astype(float).tolist())
                )
            )


def test_snicit_reader_on_made_files(tmp_path):
    rng = np.random.default_rng(5)
    ws = [sp.csr_matrix(rng.normal(size=(20, 8)).astype(np.float32))]
    ws += [sp.random(8, 8, density=0.5, random_state=rng, dtype=np.float32, format="csr") for _ in range(3)]
    ws += [sp.csr_matrix(rng.normal(size=(8, 10)).astype(np.float32))]
    made = LayeredNetwork(
        ws, [rng.normal(size=w.shape[1]).astype(np.float32) for w in ws], [RELU_CLIP1] * 4 + [IDENTITY]
    )
    write_snicit(tmp_path, "n8-l3", made, dense_first=True)
    net = snicit.read_snicit("n8-l3", root=tmp_path)
    assert net.widths == [20, 8, 8, 8, 8, 10] and net.activations == made.activations
    assert net.meta["input_layer"] == "dense"
    for a, b in zip(net.weights, made.weights):
        assert (a != b).nnz == 0
    x = rng.random((5, 20), dtype=np.float32)
    np.testing.assert_array_equal(layered_outputs(net, x), layered_outputs(made, x))
    # the dense input layer's weights missing: refused, or the network starts at layer 2 when asked
    (tmp_path / "tsv_weights" / "n8-l3" / "l1-dense.tsv").unlink()
    with pytest.raises(DataError, match="l1-dense.tsv: weight file missing"):
        snicit.read_snicit("n8-l3", root=tmp_path)
    cut = snicit.read_snicit("n8-l3", root=tmp_path, allow_missing_input_layer=True)
    assert cut.widths == [8, 8, 8, 8, 10] and cut.meta["input_layer"] == "absent"


def test_snicit_reader_names_bad_lines(tmp_path):
    made = random_layered([8, 8, 8, 10], density=0.5, seed=2)
    write_snicit(tmp_path, "bad", made, dense_first=False)
    path = tmp_path / "tsv_weights" / "bad" / "l2-sparse.tsv"
    lines = path.read_text().splitlines()
    lines[2] = "3\t9\t0.5"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"l2-sparse.tsv:3: column 9 outside 0 .. 7"):
        snicit.read_snicit("bad", root=tmp_path)
    lines[2] = lines[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"l2-sparse.tsv:3: duplicate weight"):
        snicit.read_snicit("bad", root=tmp_path)


def test_mnist_idx_reader(tmp_path):
    img = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    header = (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + img.tobytes()))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"\x07\x02")
    x, y = mnist.load_test_set(tmp_path)
    assert x.shape == (2, 784) and y.tolist() == [7, 2]
    assert x[0, 255] == np.float32(1.0) and x[0, 1] == np.float32(1 / 255)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"\x07")
    with pytest.raises(DataError, match="header says 3"):
        mnist.load_test_set(tmp_path)


# ----------------------------------------------------------------------------- the real networks (.peers/)

REAL = snicit.default_root()
needs_real = pytest.mark.skipif(not (REAL / "tsv_biases").is_dir(), reason=f"SNICIT networks not exported to {REAL}")


@needs_real
@pytest.mark.parametrize("letter", ["A", "B", "C", "D"])
def test_real_snicit_network_dag_equals_layered(letter):
    net = snicit.read_snicit(letter, allow_missing_input_layer=True)
    n = int(net.name.split("-")[0][1:])
    hidden = [w for w, a in zip(net.weights, net.activations) if w.shape == (n, n)]
    assert len(hidden) == int(net.name.split("-")[1][1:])
    assert all(abs(w.nnz / n**2 - 0.6) < 0.11 for w in hidden)  # pruned to 50-60% density
    assert net.weights[-1].shape == (n, 10) and net.activations[-1] == IDENTITY
    rng = np.random.default_rng(0)
    x = rng.random((64, net.widths[0]), dtype=np.float32)
    ref = layered_outputs(net, x)
    for engine in DAG_ENGINES:
        comparison = compare_outputs(dag_outputs(net, x, engine), ref)
        assert comparison.passed, (engine, comparison)


@needs_real
@pytest.mark.skipif(
    mnist.find(mnist.default_dir(), "t10k-images-idx3-ubyte") is None, reason="MNIST test set not exported to .peers/"
)
def test_real_snicit_a_reaches_its_published_accuracy():
    """Network A is named acc94.94: the whole MNIST test set must give exactly that (the reader is right)."""
    net = snicit.read_snicit("A")
    x, y = mnist.load_test_set()
    out = layered_outputs(net, x)
    assert round(100 * float(np.mean(out.argmax(axis=1) == y)), 2) == 94.94
    dag = dag_outputs(net, x[:500], "compiled")
    assert np.array_equal(dag.argmax(axis=1), out[:500].argmax(axis=1))
    assert compare_outputs(dag, out[:500]).passed
