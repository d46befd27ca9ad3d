"""Shared fixtures: the real challenge sample (first 30 layers of neuron1024, 600 inputs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# The real 30-layer sample of the official data, kept in the repository so CI has it too.
SAMPLE = Path(__file__).parent / "data" / "challenge-sample" / "synthetic" / "sparsechallenge_2019"
SAMPLE_LAYERS = 30
SAMPLE_INPUTS = 600


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory) -> dict:
    """The real sample converted once into the Arrow cache."""
    from spdnn.io.cache import convert_inputs, convert_weights

    out = tmp_path_factory.mktemp("sample-cache")
    weights = out / "neuron1024-l30.weights.arrow"
    inputs = out / "sparse-images-1024.arrow"
    convert_weights(SAMPLE / "dnn/neuron1024.tar.gz", weights, 1024, SAMPLE_LAYERS, source="sample", progress=False)
    convert_inputs(
        SAMPLE / "mnist/sparse-images-1024.tsv.gz", inputs, 1024, SAMPLE_INPUTS, source="sample", progress=False
    )
    return {"weights": weights, "inputs": inputs, "truth": SAMPLE / "dnn/neuron1024-l120-categories.tsv"}


def have_executable(name: str) -> bool:
    return shutil.which(name) is not None
