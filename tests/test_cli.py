"""`spdnn run`: every step for one network outside Snakemake, and clean errors."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spdnn.cli import main
from spdnn.config import DEFAULT_SEED

from .conftest import SAMPLE


def run_args(workdir: Path, **options: object) -> list[str]:
    """`spdnn --quiet run` on the CPU in `workdir`, with `--name value` per option (underscores read as dashes)."""
    args = ["--quiet", "run"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    return [*args, "--engine", "cpu", "--workdir", str(workdir)]


def sample_run_args(workdir: Path, source: Path = SAMPLE) -> list[str]:
    """The sample's 30 layers against its 120-layer truth, all 600 inputs."""
    return run_args(workdir, source=source, layers=30, truth_layers=120, inputs=600)


def test_run_on_the_real_sample(tmp_path, capsys):
    code = main(sample_run_args(tmp_path))
    assert code == 0
    out = capsys.readouterr().out
    assert "7 categories, validation passed" in out
    record = json.loads(next(tmp_path.glob("results/*/neuron1024-l30.cpu.json")).read_text())
    assert record["validation"] == "passed" and record["inputs"] == 600


def test_run_synthetic(tmp_path, capsys):
    assert main(run_args(tmp_path, neurons=256, layers=12, inputs=300)) == 0
    assert "validation passed" in capsys.readouterr().out
    assert (tmp_path / f"raw/synthetic-seed{DEFAULT_SEED}-inputs300-l12/dnn/neuron256-l12-categories.tsv").exists()


def test_missing_truth_file_is_one_clear_error(tmp_path, capsys):
    code = main(run_args(tmp_path, source=SAMPLE, layers=30, inputs=600))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spdnn run: error:") and "neuron1024-l30-categories.tsv: not found" in err


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_user_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    base = [
        "--quiet",
        "infer",
        "--weights",
        str(tmp_path / "w"),
        "--inputs-cache",
        str(tmp_path / "i"),
        "--truth",
        str(tmp_path / "t"),
        "--layers",
        "3",
        "--inputs",
        "10",
        "--output",
        str(tmp_path / "o.json"),
    ]
    assert main([*base, "--engine-options", '{"bogus": 1}']) == 2
    assert "engine auto has no option 'bogus'" in _error_line(capsys)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    assert main([*base, "--engine", "cuda", "--gpus", "2"]) == 2
    assert "2 GPUs requested, 0 visible" in _error_line(capsys)
    assert main([*base, "--shard", "5/4"]) == 2
    assert "shard '5/4'" in _error_line(capsys)


def test_empty_shard_is_an_error():
    from spdnn.config import ConfigError
    from spdnn.infer import Shard

    assert Shard(2, 3).rows(3) == (2, 3)
    with pytest.raises(ConfigError, match="is empty: use at most 3 shards"):
        Shard(0, 4).rows(3)


def test_os_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(run_args(blocker / "below", neurons=256, layers=2, inputs=50))
    assert code == 2
    assert "Not a directory" in _error_line(capsys)


def test_no_space_left_is_named(tmp_path, capsys, monkeypatch):
    import errno

    import spdnn.run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.tmp"))

    monkeypatch.setattr(spdnn.run, "raw_files", full)
    assert main(["--quiet", "run", "--workdir", str(tmp_path)]) == 2
    assert f"No space left on device: {tmp_path / 'x.tmp'}" in _error_line(capsys)


def test_module_entry_point_exits_2_without_traceback(tmp_path):
    for _ in range(5):  # the abort seen after an error (exit 134) was intermittent
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "spdnn",
                "--quiet",
                "convert-weights",
                str(tmp_path / "none.tar.gz"),
                str(tmp_path / "w.arrow"),
                "--neurons",
                "1024",
                "--layers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and run.stderr.startswith("spdnn convert-weights: error:")


def test_rerun_with_another_seed_or_source_uses_its_own_data(tmp_path, capsys):
    args = run_args(tmp_path / "work", neurons=1024, layers=6, inputs=200)
    assert main([*args, "--seed", "1"]) == 0
    assert main([*args, "--seed", "2"]) == 0
    records = sorted((tmp_path / "work/results").glob("*/neuron1024-l6.cpu.json"))
    assert [r.parent.name for r in records] == ["synthetic-seed1-inputs200-l6", "synthetic-seed2-inputs200-l6"]
    first, second = (tmp_path / "work/raw").glob("*/mnist/sparse-images-1024.tsv.gz")
    assert first.read_bytes() != second.read_bytes()  # another seed, other inputs

    # the README's second command right after the first, in the same work folder
    assert main(sample_run_args(tmp_path / "work")) == 0
    assert "7 categories, validation passed" in capsys.readouterr().out


def test_changed_source_file_is_converted_again(tmp_path, capsys):
    source = tmp_path / "mirror"
    shutil.copytree(SAMPLE, source)
    args = sample_run_args(tmp_path / "work", source=source)
    assert main(args) == 0
    # one input row dropped at the source: the rerun must see it (the sample's truth no longer holds)
    images = source / "mnist/sparse-images-1024.tsv.gz"
    lines = gzip.decompress(images.read_bytes()).decode().splitlines(keepends=True)
    kept = [line for line in lines if int(line.split("\t")[0]) not in _truth_rows(source)]
    images.write_bytes(gzip.compress("".join(kept).encode()))
    capsys.readouterr()
    assert main(args) == 2
    assert "categories differ from the truth" in capsys.readouterr().err


def _truth_rows(root) -> set[int]:
    return {int(x) for x in (root / "dnn/neuron1024-l120-categories.tsv").read_text().split()}
