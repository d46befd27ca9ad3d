"""The workflow through the SLURM profile on a real SLURM (started by .ci/slurm-up; skipped without one)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import ROOT, snakemake

pytestmark = pytest.mark.slurm


def slurm_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return False
    run = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    return run.returncode == 0 and "idle" in run.stdout


@pytest.mark.skipif(not slurm_is_up(), reason="no running SLURM (start one with .ci/slurm-up) or no slurm plugin")
def test_sharded_run_through_slurm_profile(tmp_path):
    config = {
        "data": {"source": "synthetic", "seed": 3},
        "networks": [{"neurons": 256, "layers": 24}],
        "inputs": 1500,
        "engine": "cpu",
        "repeats": 1,
        "shards": 3,
        "datadir": str(tmp_path / "data"),
        "outdir": str(tmp_path / "results"),
    }
    run = snakemake(
        tmp_path,
        config,
        "--profile",
        str(ROOT / "workflow/profiles/slurm"),
        # This one-node test SLURM has no accounting and little memory.
        "--slurm-no-account",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-logdir",
        str(tmp_path / "slurm-logs"),
        "--default-resources",
        "mem_mb=1000",
        "runtime=20",
        "cpus_per_task=1",
        "--set-resources",
        "infer:mem_mb=2000",
        "convert_weights:mem_mb=2000",
        timeout=900,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    record = json.loads((tmp_path / "results/synthetic/neuron256-l24/cpu.json").read_text())
    assert record["validation"] == "passed" and record["shards"] == 3 and record["inputs"] == 1500
    jobs = {p["slurm_job_id"] for p in record["parts"]}
    assert None not in jobs and len(jobs) == 3, record["parts"]  # every shard was its own SLURM job
    assert "passed" in (tmp_path / "results/synthetic/table.md").read_text()
