"""The Arrow cache: faithful conversion of the real sample, clear errors on damaged input."""

from __future__ import annotations

import gzip
import io
import os
import re
import tarfile

import numpy as np
import pytest
import scipy.sparse as sp

from spdnn.io import cache
from spdnn.io.errors import DataError

from .conftest import SAMPLE, SAMPLE_INPUTS, SAMPLE_LAYERS, butterfly_tsv, dead_pid, write_tar


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
        data = data[:mid] + bytes(b ^ 0x5A for b in data[mid : mid + 64]) + data[mid + 64 :]
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


# ----------------------------------------------------------------------------- hostile archives


def flipped_digit_copies(data: bytes, reverse: bool = False):
    """Copies of a gzip file with one bit flipped inside its deflate data such that the stream
    still decodes, to the same length, with one digit turned into another: only the CRC-32 in
    the trailer can tell (gzip -t rejects it). Yields (damaged file, its decompressed text)."""
    import zlib

    flags = data[3]
    assert not flags & ~0x08, "only the FNAME flag is expected"
    start = data.index(b"\0", 10) + 1 if flags & 0x08 else 10
    plain = np.frombuffer(gzip.decompress(data), dtype=np.uint8)
    positions = range(start, len(data) - 8)
    for pos in reversed(positions) if reverse else positions:
        for bit in range(8):
            body = bytearray(data[start:-8])
            body[pos - start] ^= 1 << bit
            inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                text = inflate.decompress(bytes(body))
            except zlib.error:
                continue
            if not inflate.eof or len(text) != len(plain):
                continue
            got = np.frombuffer(text, dtype=np.uint8)
            diff = np.flatnonzero(got != plain)
            if diff.size != 1 or not (chr(got[diff[0]]).isdigit() and chr(plain[diff[0]]).isdigit()):
                continue
            damaged = data[:start] + bytes(body) + data[-8:]
            with pytest.raises(gzip.BadGzipFile, match="CRC check failed"):
                gzip.decompress(damaged)
            yield damaged, text


def three_layer_archive(path) -> None:
    write_tar(path, {f"neuron64/n64-l{k}.tsv": "".join(butterfly_tsv(64, k)).encode() for k in (1, 2, 3)})


def layer_columns(path, layers: int) -> list:
    w = cache.load_weights(path)
    return [w.layer_arrays(k)[0].tolist() for k in range(layers)]


@pytest.mark.parametrize(("layers", "reverse"), [(3, False), (1, True)])
def test_weights_gzip_crc_is_checked(tmp_path, layers, reverse):
    # (1, True): the flip lies in layer 3 and only layer 1 is converted: the rest of the archive
    # is still read to its trailer, so the damage is found.
    archive = tmp_path / "neuron64.tar.gz"
    three_layer_archive(archive)
    cache.convert_weights(archive, tmp_path / "ref.arrow", 64, 3, progress=False)
    reference = layer_columns(tmp_path / "ref.arrow", 3)
    for damaged, text in flipped_digit_copies(archive.read_bytes(), reverse):
        # Control: the same damaged text with a right CRC converts, to other weights.
        control = tmp_path / "control.tar.gz"
        control.write_bytes(gzip.compress(text))
        try:
            cache.convert_weights(control, tmp_path / "control.arrow", 64, 3, progress=False)
        except DataError:
            continue  # the digit broke the layer's structure: a flip only the CRC can catch is wanted
        changed = [k for k in range(3) if layer_columns(tmp_path / "control.arrow", 3)[k] != reference[k]]
        if changed != ([2] if reverse else changed) or not changed:
            continue
        archive.write_bytes(damaged)
        with pytest.raises(DataError) as err:
            cache.convert_weights(archive, tmp_path / "w.arrow", 64, layers, progress=False)
        assert str(err.value).startswith(f"{archive}: gzip CRC check failed")
        assert not (tmp_path / "w.arrow").exists()
        return
    pytest.fail("no bit flip found that only the CRC catches")


def test_inputs_gzip_crc_is_checked(tmp_path):
    lines = [f"{r}\t{c}\t1\n" for r in range(1, 41) for c in sorted({(r * 7 + 13 * t) % 64 + 1 for t in range(9)})]
    good = tmp_path / "good.tsv.gz"
    good.write_bytes(gzip.compress("".join(lines).encode()))
    cache.convert_inputs(good, tmp_path / "ref.arrow", 64, progress=False)
    reference = cache.load_inputs(tmp_path / "ref.arrow")
    for damaged, text in flipped_digit_copies(good.read_bytes()):
        control = tmp_path / "control.tsv.gz"
        control.write_bytes(gzip.compress(text))
        try:
            cache.convert_inputs(control, tmp_path / "control.arrow", 64, 40, progress=False)
        except DataError:
            continue
        if abs(cache.load_inputs(tmp_path / "control.arrow") - reference).max() == 0:
            continue
        bad = tmp_path / "sparse-images-64.tsv.gz"
        bad.write_bytes(damaged)
        with pytest.raises(DataError, match=rf"^{bad}: gzip CRC check failed"):
            cache.convert_inputs(bad, tmp_path / "x.arrow", 64, progress=False)
        assert not (tmp_path / "x.arrow").exists()
        return
    pytest.fail("no bit flip found that only the CRC catches")


@pytest.mark.parametrize("copy", ["neuron64/n64-l1.tsv", "./neuron64/n64-l1.tsv", "neuron64/n64-l3.tsv"])
def test_duplicated_member_is_an_error(tmp_path, copy):
    # Also when the copy comes after every layer needed (layer 3 of a 2-layer conversion).
    archive = tmp_path / "neuron64.tar.gz"
    members = [(f"neuron64/n64-l{k}.tsv", "".join(butterfly_tsv(64, k)).encode()) for k in (1, 2, 3)]
    members.append((copy, "".join(butterfly_tsv(64, 5)).encode()))
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=rf"^{archive}!{re.escape(copy)}: member appears twice in the archive$"):
        cache.convert_weights(archive, tmp_path / "w.arrow", 64, 2, progress=False)


def write_gz(path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode()))


def test_input_row_past_the_official_inputs(tmp_path):
    path = tmp_path / "sparse-images-64.tsv.gz"
    write_gz(path, "1\t1\t1\n60000\t2\t1\n60001\t3\t1\n")
    with pytest.raises(DataError, match=rf"^{path}:3: row index 60001 outside 1..60000$"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, progress=False)
    with pytest.raises(DataError, match=rf"^{path}:2: row index 60000 outside 1..100$"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, 100, progress=False)


def test_duplicate_input_entry_names_both_lines(tmp_path):
    path = tmp_path / "sparse-images-64.tsv.gz"
    write_gz(path, "1\t1\t1\n2\t3\t1\n5\t5\t1\n1\t2\t1\n2\t3\t1\n1\t1\t1\n")
    # (2, 3) on line 5 is the first line that repeats an earlier one, though (1, 1) sorts first
    with pytest.raises(DataError, match=rf"^{path}:5: entry \(2, 3\) appears twice \(also on line 2\)$"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, progress=False)


def test_huge_index_and_float32_overflow_in_inputs(tmp_path):
    path = tmp_path / "sparse-images-64.tsv.gz"
    write_gz(path, "1\t1\t1\n99999999999999999999\t1\t1\n")
    with pytest.raises(DataError, match=rf"^{path}:2: row index 99999999999999999999 outside 1..60000$"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, progress=False)
    write_gz(path, "1\t1\t1\n2\t2\t1e39\n")
    with pytest.raises(DataError, match=rf"^{path}:2: value '1e39' overflows float32$"):
        cache.convert_inputs(path, tmp_path / "x.arrow", 64, progress=False)


def test_park_folder_of_a_killed_conversion_is_removed(tmp_path):
    # A conversion killed with SIGKILL leaves its folder of early layers behind; the next
    # conversion of the same file removes it (its name carries a dead pid of this host).
    from spdnn.io.atomic import temporary_name

    pid = dead_pid()
    left = tmp_path / temporary_name("w.arrow.park").replace(f".{os.getpid()}.", f".{pid}.")
    left.mkdir()
    (left / "3.npz").write_bytes(b"x" * 1000)
    archive = tmp_path / "neuron64.tar.gz"
    write_tar(archive, {f"neuron64/n64-l{k}.tsv": "".join(butterfly_tsv(64, k)).encode() for k in (2, 1)})
    cache.convert_weights(archive, tmp_path / "w.arrow", 64, 2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neuron64.tar.gz", "w.arrow", "w.arrow.sha256"]
