"""`spdnn run`: every step for one network outside Snakemake, and clean errors."""
from __future__ import annotations

import json

from spdnn.cli import main

from .conftest import SAMPLE


def test_run_on_the_real_sample(tmp_path, capsys):
    code = main(["--quiet", "run", "--source", str(SAMPLE), "--layers", "30", "--truth-layers", "120",
                 "--inputs", "600", "--engine", "cpu", "--workdir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "7 categories, validation passed" in out
    record = json.loads((tmp_path / "results/neuron1024-l30.cpu.json").read_text())
    assert record["validation"] == "passed" and record["inputs"] == 600


def test_run_synthetic(tmp_path, capsys):
    assert main(["--quiet", "run", "--neurons", "256", "--layers", "12", "--inputs", "300", "--engine", "cpu",
                 "--workdir", str(tmp_path)]) == 0
    assert "validation passed" in capsys.readouterr().out
    assert (tmp_path / "raw/synthetic/dnn/neuron256-l12-categories.tsv").exists()


def test_missing_truth_file_is_one_clear_error(tmp_path, capsys):
    code = main(["--quiet", "run", "--source", str(SAMPLE), "--layers", "30", "--inputs", "600",
                 "--engine", "cpu", "--workdir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spdnn run: error:") and "neuron1024-l30-categories.tsv: not found" in err
