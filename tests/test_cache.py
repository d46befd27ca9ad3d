"""The Arrow cache: faithful conversion of the real sample, clear errors on damaged input."""
from __future__ import annotations

import gzip
import io
import tarfile

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.io import cache
from spdnn.io.errors import DataError

from .conftest import SAMPLE, SAMPLE_INPUTS, SAMPLE_LAYERS


def sample_layer_tsv(k: int) -> sp.csr_matrix:
    """Layer k (1-based) of the sample read naively from the tarball, as an independent reference."""
    with tarfile.open(SAMPLE / "dnn/neuron1024.tar.gz") as tar:
        text = tar.extractfile(f"neuron1024/n1024-l{k}.tsv").read().decode()
    data = np.loadtxt(io.StringIO(text), delimiter="\t")
    return sp.csr_matrix((data[:, 2], (data[:, 0] - 1, data[:, 1] - 1)), shape=(1024, 1024))


def test_weights_cache_matches_tsv(sample_cache):
    weights = cache.load_weights(sample_cache["weights"])
    assert weights.n_layers == SAMPLE_LAYERS and weights.neurons == 1024 and weights.bias == pytest.approx(-0.3)
    meta = weights.metadata
    assert meta["source"] == "sample" and len(meta["source_sha256"]) == 64
    for k in (1, 7, 30):
        diff = weights.layer(k - 1) - sample_layer_tsv(k)
        assert abs(diff).max() == 0
    cols, vals = weights.layer_arrays(0)
    assert cols.dtype == np.int32 and vals.dtype == np.float32 and len(cols) == 32 * 1024


def test_inputs_cache_matches_tsv(sample_cache):
    x = cache.load_inputs(sample_cache["inputs"])
    with gzip.open(SAMPLE / "mnist/sparse-images-1024.tsv.gz", "rt") as f:
        data = np.loadtxt(f, delimiter="\t")
    ref = sp.csr_matrix((data[:, 2], (data[:, 0] - 1, data[:, 1] - 1)), shape=(SAMPLE_INPUTS, 1024))
    assert x.shape == ref.shape and abs(x - ref).max() == 0
    assert cache.load_inputs(sample_cache["inputs"], 100).shape == (100, 1024)
    with pytest.raises(DataError, match="holds 600 inputs, 601 requested"):
        cache.load_inputs(sample_cache["inputs"], 601)


def test_fewer_layers_and_too_many(sample_cache):
    assert len(list(cache.load_weights(sample_cache["weights"], 5).layers())) == 5
    with pytest.raises(DataError, match="holds 30 layers, 31 requested"):
        cache.load_weights(sample_cache["weights"], 31)


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def butterfly_tsv(n: int, shift: int = 1) -> list[str]:
    """A valid 32-per-row layer for N=n as TSV lines (1-based)."""
    lines = []
    for i in range(n):
        for j in sorted({(i + shift * t) % n for t in range(32)}):
            lines.append(f"{i + 1}\t{j + 1}\t0.0625\n")
    return lines


def test_layers_out_of_order_are_reordered(tmp_path):
    n = 64
    layers = {k: "".join(butterfly_tsv(n, k)).encode() for k in (1, 2, 3)}
    archive = tmp_path / "neuron64.tar.gz"
    write_tar(archive, {f"neuron64/n64-l{k}.tsv": layers[k] for k in (3, 1, 2)})
    cache.convert_weights(archive, tmp_path / "w.arrow", 64, 3, progress=False)
    w = cache.load_weights(tmp_path / "w.arrow")
    for k in (1, 2, 3):
        cols, _ = w.layer_arrays(k - 1)
        assert cols[:32].tolist() == sorted({(k * t) % n for t in range(32)})


def test_wrong_nonzero_count_names_row_and_line(tmp_path):
    lines = butterfly_tsv(64)
    del lines[32 * 5 + 3]  # row 6 loses one entry
    archive = tmp_path / "neuron64.tar.gz"
    write_tar(archive, {"neuron64/n64-l1.tsv": "".join(lines).encode()})
    with pytest.raises(DataError) as err:
        cache.convert_weights(archive, tmp_path / "w.arrow", 64, 1, progress=False)
    assert "n64-l1.tsv:161: row 6 has 31 nonzeros, expected 32" in str(err.value)
    assert not (tmp_path / "w.arrow").exists()


def test_missing_layer_fails_and_writes_nothing(tmp_path):
    archive = tmp_path / "neuron64.tar.gz"
    write_tar(archive, {"neuron64/n64-l1.tsv": "".join(butterfly_tsv(64)).encode()})
    with pytest.raises(DataError, match="layer 2 of 2 is missing"):
        cache.convert_weights(archive, tmp_path / "w.arrow", 64, 2, progress=False)
    assert list(tmp_path.iterdir()) == [archive]


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_archive_is_a_clear_error(tmp_path, damage):
    data = (SAMPLE / "dnn/neuron1024.tar.gz").read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        mid = len(data) // 2
        data = data[:mid] + bytes(b ^ 0x5A for b in data[mid:mid + 64]) + data[mid + 64:]
    archive = tmp_path / "neuron1024.tar.gz"
    archive.write_bytes(data)
    with pytest.raises(DataError) as err:
        cache.convert_weights(archive, tmp_path / "w.arrow", 1024, SAMPLE_LAYERS, progress=False)
    assert str(archive) in str(err.value)
    assert not (tmp_path / "w.arrow").exists()


def test_truncated_inputs_gzip(tmp_path):
    data = (SAMPLE / "mnist/sparse-images-1024.tsv.gz").read_bytes()
    bad = tmp_path / "sparse-images-1024.tsv.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        cache.convert_inputs(bad, tmp_path / "x.arrow", 1024, progress=False)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "x.arrow").exists()


def test_inputs_width_mismatch_names_line(tmp_path):
    # The 1024-neuron inputs read as if for a 256-neuron network: a column index is out of range.
    with pytest.raises(DataError, match=r"sparse-images-1024.tsv.gz:\d+: column index \d+ outside 1..256"):
        cache.convert_inputs(SAMPLE / "mnist/sparse-images-1024.tsv.gz", tmp_path / "x.arrow", 256, progress=False)


def test_not_a_cache_file(tmp_path, sample_cache):
    with pytest.raises(DataError, match="not a weights cache"):
        cache.load_weights(sample_cache["inputs"])
    with pytest.raises(DataError, match="not an inputs cache"):
        cache.load_inputs(sample_cache["weights"])


def test_from_matrices_rejects_wrong_counts():
    m = sp.identity(64, format="csr", dtype=np.float32)
    with pytest.raises(ValueError, match="32 nonzeros per row"):
        cache.Weights.from_matrices([m])
