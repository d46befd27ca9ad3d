"""Faults: runs killed mid-download, mid-conversion and mid-inference resume; damaged caches are
rebuilt; concurrent conversions and workflow invocations do not corrupt anything."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spdnn.io import cache

from .conftest import ROOT, SAMPLE, serve

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow/Snakefile")]


def _default_sigint() -> None:
    # A shell that starts pytest in the background (`pytest &`, CI runners) leaves SIGINT
    # ignored, and children inherit that: the workflow must see Ctrl-C as a terminal gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(workdir: Path, config: dict, *args: str) -> subprocess.Popen:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def kill_when(proc: subprocess.Popen, ready, sig: int = signal.SIGINT, timeout: float = 120) -> None:
    """Signal the workflow and all its jobs (its process group, as Ctrl-C in a terminal does)
    as soon as `ready()` holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError("workflow ended before the fault could be injected:\n" + proc.stdout.read())
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("fault point never reached")
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)


def config_for(work: Path, **changes) -> dict:
    config = {
        "data": {"source": "synthetic", "seed": 5},
        "networks": [{"neurons": 4096, "layers": 40}],
        "inputs": 1500,
        "engine": "cpu",
        "repeats": 1,
        "datadir": str(work / "data"),
        "outdir": str(work / "results"),
    }
    config.update(changes)
    return config


def assert_validated(work: Path, source: str = "synthetic", out: str = "") -> None:
    table = work / f"results/{source}/table.md"
    assert table.exists(), out[-3000:]
    assert "| passed |" in table.read_text()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A workdir whose synthetic raw data (N=4096, 40 layers) is generated once for these tests."""
    work = tmp_path_factory.mktemp("faults")
    proc = start(work, config_for(work), "--until", "generate_4096")
    out = finish(proc)
    assert proc.returncode == 0, out
    return work


def fresh_copy(generated: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    raw = work / "data/raw"
    raw.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(generated / "data/raw"), str(raw)], check=True)
    subprocess.run(["cp", "-a", str(generated / ".snakemake"), str(work / ".snakemake")], check=True)
    return work


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_during_conversion_resumes(generated, tmp_path, sig):
    work = fresh_copy(generated, tmp_path)
    cache_dir = work / "data/cache/synthetic"
    proc = start(work, config_for(work), "--until", "convert_weights")
    # the Arrow file's own temporary (not its checksum sidecar's, ".<name>.sha256.*.tmp", written
    # after the Arrow file is in place: a kill then leaves a finished file without a checksum)
    kill_when(
        proc,
        lambda: any(p for p in cache_dir.glob(".neuron4096-l40.weights.arrow.*.tmp") if ".sha256." not in p.name),
        sig,
    )
    assert not (cache_dir / "neuron4096-l40.weights.arrow").exists()  # nothing that looks finished
    if sig == signal.SIGKILL:  # no chance to clean up: Snakemake's lock stays until --unlock
        finish(start(work, config_for(work), "--unlock"))
    out = finish(start(work, config_for(work)))
    assert "Traceback" not in out
    assert_validated(work, out=out)
    assert cache.cache_problem(cache_dir / "neuron4096-l40.weights.arrow") is None


def test_killed_during_inference_resumes(generated, tmp_path):
    work = fresh_copy(generated, tmp_path)
    config = config_for(work, repeats=30)
    proc = start(work, config)
    logs = work / "results/synthetic/logs"
    kill_when(proc, lambda: (logs / "infer-neuron4096-l40-shard0.log").exists())
    result_dir = work / "results/synthetic/neuron4096-l40"
    assert not list(result_dir.glob("*.json")) if result_dir.exists() else True
    out = finish(start(work, config_for(work)))
    assert "Traceback" not in out
    assert_validated(work, out=out)


def test_killed_during_download_resumes(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for server in serve(SAMPLE.parent.parent):
        server.faults.throttle = 0.05  # ~1.3 MB/s: the 2.5 MB tarball takes about 2 s
        config = config_for(
            work,
            data={"source": "mirror", "url": server.base},
            networks=[{"neurons": 1024, "layers": 30, "truth_layers": 120}],
            inputs=600,
        )
        part = work / "data/raw/mirror/dnn/neuron1024.tar.gz.part"
        proc = start(work, config)
        kill_when(proc, lambda: part.exists() and part.stat().st_size > 300_000)
        assert not (work / "data/raw/mirror/dnn/neuron1024.tar.gz").exists()
        server.faults.throttle = 0.0
        out = finish(start(work, config))
        ranges = [r for r in server.faults.requests if r[0].endswith("neuron1024.tar.gz") and r[1]]
    assert "Traceback" not in out, out
    assert ranges and ranges[0][2] == 206  # the second run resumed the partial file
    assert_validated(work, "mirror")


def sample_run(work: Path) -> tuple[dict, str]:
    config = config_for(
        work,
        data={"source": "mirror", "url": str(SAMPLE)},
        networks=[{"neurons": 1024, "layers": 30, "truth_layers": 120}],
        inputs=600,
    )
    proc = start(work, config)
    return config, finish(proc)


def test_damaged_cache_is_detected_and_rebuilt(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    _, out = sample_run(work)
    weights = work / "data/cache/mirror/neuron1024-l30.weights.arrow"
    assert cache.cache_problem(weights) is None, out

    # Truncated: caught before any job runs, rebuilt in the same run, and the results made from
    # it computed again (Snakemake alone would see them present and do nothing).
    result = work / "results/mirror/neuron1024-l30/cpu.json"
    before = result.stat().st_mtime_ns
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    _, out = sample_run(work)
    assert f"cache file {weights} is damaged" in out and "it will be rebuilt" in out
    assert "Nothing to be done" not in out
    assert cache.cache_problem(weights) is None
    assert result.stat().st_mtime_ns > before
    assert_validated(work, "mirror")

    # Same size, one byte changed: modified after its checksum file, so the full checksum runs
    # before any job, and it is rebuilt in the same run.
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    _, out = sample_run(work)
    assert "content sha256" in out and "it will be rebuilt" in out
    assert cache.cache_problem(weights) is None
    assert_validated(work, "mirror")

    # Changed with its old modification time kept (a disk error, say): the full check
    # at inference refuses it loudly; the next run rebuilds it.
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (work / "results/mirror/table.md").unlink()  # ask for the results again
    for result in (work / "results/mirror/neuron1024-l30").iterdir():
        result.unlink()
    _, out = sample_run(work)  # the infer job fails loudly
    log = (work / "results/mirror/logs/infer-neuron1024-l30-shard0.log").read_text()
    assert "damaged cache file" in log and "content sha256" in log and "re-run to rebuild" in log
    assert not (work / "results/mirror/table.md").exists()
    _, out = sample_run(work)
    assert cache.cache_problem(weights) is None, out[-3000:]
    assert_validated(work, "mirror")


def _convert(out: str) -> None:
    cache.convert_weights(SAMPLE / "dnn/neuron1024.tar.gz", out, 1024, 30, progress=False)


def test_parallel_conversions_of_one_network(tmp_path):
    out = tmp_path / "w.arrow"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_convert, args=(str(out),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert cache.cache_problem(out) is None
    assert cache.load_weights(out).n_layers == 30
    assert sorted(f.name for f in tmp_path.iterdir()) == ["w.arrow", "w.arrow.sha256"]


def test_two_invocations_on_one_folder(generated, tmp_path):
    work = fresh_copy(generated, tmp_path)
    first = start(work, config_for(work, repeats=20))
    logs = work / "results/synthetic/logs"
    deadline = time.monotonic() + 120
    while not (logs / "infer-neuron4096-l40-shard0.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(
        [*SNAKEMAKE, "--directory", str(work), "--configfile", str(work / "config.yaml"), "--cores", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode != 0
    assert "cannot be locked" in second.stdout + second.stderr
    out = finish(first)
    assert first.returncode == 0, out
    assert_validated(work)
