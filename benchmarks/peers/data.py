"""The networks every engine and peer runs: synthetic (spdnn.generate) or the real 1024 x 120.

A network is its layers, its inputs and its truth. The truth of a synthetic network is the
CPU reference engine's categories; it can be computed once on any machine and carried as a
small JSON file keyed by a digest of the data, so the GPU machine only checks the digest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from spdnn import challenge

_SPEC = re.compile(r"^(real-)?(\d+)x(\d+)$")


@dataclass
class Network:
    name: str  # "1024x120" or "real-1024x120"
    source: str  # what the data is, in words
    neurons: int
    layer_count: int
    layers: list[sp.csr_matrix]
    inputs: sp.csr_matrix
    truth: np.ndarray | None = None  # 0-based categories
    truth_source: str = ""
    extra: dict = field(default_factory=dict)
    # a callable returning a fresh iterator over the same layers (synthetic networks): lets a
    # run drop `layers` once the engines are done and still write the peers' files
    fresh_layers: Callable[[], Iterable[sp.spmatrix]] | None = None

    def layer_source(self) -> Iterable[sp.spmatrix]:
        """The layers, from memory when kept, else generated again one at a time."""
        if self.layers or self.fresh_layers is None:
            return self.layers
        return self.fresh_layers()

    def drop_layers(self) -> bool:
        """Free the layers held in memory when they can be made again; True if dropped."""
        if self.fresh_layers is None or not self.layers:
            return False
        self.layers = []
        return True

    @property
    def edges(self) -> int:
        return challenge.edges(self.inputs.shape[0], self.neurons, self.layer_count)


def parse_spec(spec: str) -> tuple[bool, int, int]:
    """'1024x120' -> (False, 1024, 120); 'real-1024x120' -> (True, 1024, 120)."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"network {spec!r}: write NxL (synthetic) or real-NxL")
    real, n, layers = bool(m.group(1)), int(m.group(2)), int(m.group(3))
    challenge.check_neurons(n)
    return real, n, layers


def digest(layers: Iterable[sp.spmatrix], inputs: sp.spmatrix) -> str:
    """sha256 of the inputs' and the layers' structure and values: identifies the data exactly.
    `layers` may be a generator: the same digest, one layer in memory at a time."""
    h = hashlib.sha256()
    for m in itertools.chain([inputs], layers):
        m = sp.csr_matrix(m)
        h.update(np.asarray(m.shape, dtype=np.int64).tobytes())
        for a in (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)):
            h.update(a.tobytes())
    return h.hexdigest()


# rows per pass of the reference (0: all at once); set by bench_peers --truth-chunk
TRUTH_CHUNK_ROWS = 0


def reference_truth(
    layers: list[sp.spmatrix] | Callable[[], Iterable[sp.spmatrix]],
    inputs: sp.spmatrix,
    bias: float,
    at: list[int] | None = None,
    layer_count: int | None = None,
) -> dict[int, np.ndarray]:
    """The CPU reference engine's categories after each layer count in `at` (default: the
    last), its input rows split over all cores (saturated rows carried: spdnn.engines.cpu).
    With TRUTH_CHUNK_ROWS, the rows go through in passes of that many (rows are independent):
    at N = 65536 all 60000 rows at once need more memory than a 24 GB machine has.

    `layers`: the list, or a callable returning a fresh iterator over them (then
    `layer_count` says how many): each worker then generates the layers as it walks them, so
    only one layer is in memory at a time (65536 x 1920's 32 GB of layers need not fit)."""
    from spdnn.engines.cpu import reference

    if callable(layers):
        if layer_count is None:
            raise ValueError("reference_truth: a callable of layers needs layer_count")
        fresh, total = layers, layer_count
    else:
        listed = layers
        fresh, total = (lambda: iter(listed)), len(listed)
    at = sorted(set(at or [total]))
    n = inputs.shape[0]
    step = TRUTH_CHUNK_ROWS or n
    found: dict[int, list[np.ndarray]] = {k: [] for k in at}
    for lo in range(0, n, step):
        part = inputs[lo : min(n, lo + step)]
        result = reference(
            lambda: itertools.islice(fresh(), at[-1]), bias, part, counts=at, workers=None, keep_values=False
        )
        for k in at:
            found[k].append(np.asarray(result.alive[k], dtype=np.int64) + lo)
    return {k: np.concatenate(found[k]) for k in at}


def truth_file(folder: Path, neurons: int, layers: int, seed: int, n_inputs: int) -> Path:
    return Path(folder) / f"synthetic-n{neurons}-l{layers}-seed{seed}-inputs{n_inputs}.json"


def load_generator(path: Path | None):
    """spdnn.generate, or a frozen copy of it (a file) loaded inside the spdnn package: the
    generator can change in a working copy between runs, and a frozen copy keeps one run's
    networks the same data (its sha256 goes in the results)."""
    if path is None:
        import spdnn.generate as generator

        return generator
    import importlib.util

    spec = importlib.util.spec_from_file_location("spdnn._frozen_generate", str(path))
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "spdnn"  # its relative imports resolve against the project's package
    spec.loader.exec_module(module)
    return module


def synthetic(
    neurons: int,
    layer_count: int,
    n_inputs: int,
    seed: int,
    truth_dir: Path | None,
    compute_truth: bool = True,
    generator=None,
    keep_layers: bool = True,
) -> Network:
    """The project's synthetic network (all n_inputs inputs distinct), its truth from truth_dir
    when the digest there matches, else computed now with the CPU reference.

    keep_layers=False: the network's layers are not kept (`layers` is empty); the digest and the
    truth are computed generating them one at a time (for the truth alone, at any size)."""
    gen = generator or load_generator(None)

    def fresh():
        return gen.generate_layers(neurons, layer_count, seed)

    layers = list(fresh()) if keep_layers else []
    inputs = sp.csr_matrix(gen.generate_inputs(neurons, n_inputs, seed), dtype=np.float32)
    net = Network(
        f"{neurons}x{layer_count}",
        f"synthetic (spdnn.generate, seed {seed}, {n_inputs} distinct inputs)",
        neurons,
        layer_count,
        layers,
        inputs,
        fresh_layers=fresh,
    )
    net.extra["digest"] = digest(layers if keep_layers else fresh(), inputs)
    path = truth_file(truth_dir, neurons, layer_count, seed, n_inputs) if truth_dir else None
    if path is not None and path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("digest") == net.extra["digest"]:
            net.truth = np.asarray(stored["categories"], dtype=np.int64)
            net.truth_source = (
                f"CPU reference engine, computed earlier ({stored.get('computed', '')}), same data digest"
            )
        else:
            net.extra["truth_file_mismatch"] = str(path)
    if net.truth is None and compute_truth:
        source = layers if keep_layers else fresh
        net.truth = reference_truth(source, inputs, challenge.bias(neurons), layer_count=layer_count)[layer_count]
        net.truth_source = "CPU reference engine (spdnn.engines.cpu), computed in this run"
    return net


def save_truth(net: Network, folder: Path, seed: int, note: str = "") -> Path:
    path = truth_file(folder, net.neurons, net.layer_count, seed, net.inputs.shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"digest": net.extra["digest"], "computed": note, "categories": [int(i) for i in net.truth]}) + "\n"
    )
    return path


def real(folder: Path, neurons: int, layer_count: int) -> Network:
    """The official network from a folder in the official layout (dnn/neuron{N}.tar.gz,
    mnist/sparse-images-{N}.tsv.gz, dnn/neuron{N}-l{L}-categories.tsv), read with the
    project's converters; the truth is the official categories file, checked here against
    the CPU reference."""
    from spdnn.io.cache import convert_inputs, convert_weights, load_inputs, load_weights

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tmp:
        wpath, ipath = Path(tmp) / "w.arrow", Path(tmp) / "x.arrow"
        convert_weights(folder / challenge.weights_archive(neurons), wpath, neurons, layer_count, progress=False)
        convert_inputs(folder / challenge.inputs_file(neurons), ipath, neurons, progress=False)
        weights = load_weights(wpath, layer_count)
        layers = [sp.csr_matrix(weights.layer(k), copy=True) for k in range(layer_count)]
        inputs = sp.csr_matrix(load_inputs(ipath), dtype=np.float32, copy=True)
    truth_path = folder / challenge.truth_file(neurons, layer_count)
    truth = np.array(sorted(int(v) - 1 for v in truth_path.read_text().split()), dtype=np.int64)
    net = Network(
        f"real-{neurons}x{layer_count}",
        f"official network and its first {inputs.shape[0]} official inputs",
        neurons,
        layer_count,
        layers,
        inputs,
        truth,
        f"official categories file {truth_path.name}",
    )
    ref = reference_truth(layers, inputs, challenge.bias(neurons))[layer_count]
    net.extra["reference_matches_official_truth"] = bool(np.array_equal(ref, truth))
    net.extra["digest"] = digest(layers, inputs)
    return net
