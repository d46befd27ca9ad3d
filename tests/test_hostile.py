"""Hostile and unlucky users of the workflow: shell characters in every path run nothing, a
failed rerun leaves no stale "passed", odd but legal values work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

# Every character a shell gives meaning to, each trying to create a marker file. (Braces and
# line breaks are refused by the config schema: Snakemake reads braces as wildcards.)
HOSTILE = "a b;touch M1 &touch M2 |touch M3 $(touch M4) `touch M5` 'q\" * ~ #c"
MARKERS = ["M1", "M2", "M3", "M4", "M5"]


def small_config(datadir: Path, outdir: Path, **changes) -> dict:
    config = {
        "data": {"source": "synthetic", "seed": 3},
        "networks": [{"neurons": 1024, "layers": 6}],
        "inputs": 300,
        "engine": "cpu",
        "repeats": 1,
        "datadir": str(datadir),
        "outdir": str(outdir),
    }
    config.update(changes)
    return config


def snakemake_in(checkout: Path, workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(checkout / "workflow/Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "1",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=workdir)


def hostile_checkout(tmp_path: Path) -> Path:
    """A copy of the workflow (and the library it puts on PYTHONPATH) under a hostile path."""
    checkout = tmp_path / f"check out {HOSTILE}"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("workflow", "config", "spdnn"):
        src = ROOT / part
        (
            shutil.copytree(src, checkout / part, ignore=ignore)
            if src.is_dir()
            else (checkout.mkdir(parents=True, exist_ok=True), shutil.copy(src, checkout / part))
        )
    return checkout


@pytest.mark.slow
def test_hostile_paths_run_nothing_and_work(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    checkout = hostile_checkout(tmp_path)
    datadir, outdir = work / f"data {HOSTILE}", work / f"results {HOSTILE}"
    run = snakemake_in(checkout, work, small_config(datadir, outdir))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    made = [p for p in tmp_path.rglob("M[0-9]*") if p.name in MARKERS]
    assert not made, f"shell commands ran: {made}"
    table = outdir / "synthetic/table.md"
    assert "| passed |" in table.read_text()
    # and no stray file from a redirect split at a space
    assert sorted(p.name for p in work.iterdir()) == sorted([".snakemake", "config.yaml", datadir.name, outdir.name])


@pytest.mark.slow
def test_hostile_paths_tune_step_runs_nothing(tmp_path):
    """The tune step (config `tune`; planned only with the GPU engine, asked for here by its output
    file) under hostile paths: its command runs nothing but spdnn model tune, and writes its file."""
    work = tmp_path / "work"
    work.mkdir()
    checkout = hostile_checkout(tmp_path)
    datadir, outdir = work / f"data {HOSTILE}", work / f"results {HOSTILE}"
    config = small_config(datadir, outdir, tune=True)
    target = outdir / "synthetic/tuned/neuron1024-l6.default.json"
    run = snakemake_in(checkout, work, config, str(target))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    made = [p for p in tmp_path.rglob("M[0-9]*") if p.name in MARKERS]
    assert not made, f"shell commands ran: {made}"
    tuned = json.loads(target.read_text())
    assert tuned["engine_options"] and tuned["predicted_seconds"] > 0
    assert "tune: on, but the CPU engine runs" in out  # the plan says why no inference uses it


@pytest.mark.parametrize("bad", ["x{N}y", "line\nbreak", "tab\there"])
@pytest.mark.parametrize("key", ["datadir", "outdir"])
def test_paths_snakemake_cannot_match_are_refused(tmp_path, key, bad):
    config = small_config(tmp_path / "data", tmp_path / "results")
    config[key] = str(tmp_path / bad)
    run = snakemake_in(ROOT, tmp_path, config, "-n")
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "invalid configuration" in out and f"config key {key}" in out and "without braces" in out, out[-2000:]
    assert not (tmp_path / "data").exists()


def test_failed_rerun_leaves_no_stale_passed(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    config = small_config(work / "data", work / "results")
    first = snakemake_in(ROOT, work, config)
    assert first.returncode == 0, first.stderr[-3000:]
    out = work / "results/synthetic"
    assert (out / "table.md").exists() and (out / "neuron1024-l6/cpu.json").exists()
    # The truth changes (as a replaced download would): the rerun fails validation ...
    truth = work / "data/raw/synthetic/dnn/neuron1024-l6-categories.tsv"
    rows = truth.read_text().split()
    truth.write_text("".join(f"{r}\n" for r in rows[1:]))
    second = snakemake_in(ROOT, work, config)
    assert second.returncode != 0
    # ... and nothing made from the old result still says it passed.
    for stale in (
        "table.md",
        "table.csv",
        "published_comparison.csv",
        "neuron1024-l6/cpu.json",
        "neuron1024-l6/cpu.categories.tsv",
    ):
        assert not (out / stale).exists(), stale


def test_numeric_path_names_are_paths(tmp_path):
    # in a config file, quoted: kept exactly, not read as numbers
    config = small_config("1e3", "2024")
    run = snakemake_in(ROOT, tmp_path, config, "-n", "-p")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2024/synthetic/table.md" in run.stdout and " 1e3/raw/synthetic" in run.stdout
    # on the command line, where Snakemake makes 2024 a number
    run = snakemake_in(ROOT, tmp_path, config, "-n", "-p", "--config", "outdir=2024")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2024/synthetic/table.md" in run.stdout
