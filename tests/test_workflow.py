"""The Snakemake workflow run for real: lint, config validation, the real sample downloaded over HTTP."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, SAMPLE, SNAKEFILE, serve, snakemake

DEFAULT_CONFIG = ROOT / "config/config.yaml"


def gpu_usable() -> bool:
    from spdnn.config import gpu_status

    return gpu_status()[0]


def sample_config(tmp_path: Path, url: str) -> dict:
    return {
        "data": {"source": "mirror", "url": url},
        "networks": [{"neurons": 1024, "layers": 30, "truth_layers": 120}],
        "inputs": 600,
        "engine": "cpu",
        "repeats": 1,
        "datadir": str(tmp_path / "data"),
        "outdir": str(tmp_path / "results"),
    }


def test_lint_is_clean(tmp_path):
    run = snakemake(tmp_path, None, "--lint")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Lints for" not in run.stdout + run.stderr


def test_default_dry_run(tmp_path):
    run = snakemake(tmp_path, None, "-n")
    assert run.returncode == 0, run.stderr
    assert "generate_1024" in run.stdout and "aggregate" in run.stdout


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"engine": "gpu"}, "engine"),
        ({"inputs": 0}, "inputs"),
        ({"networks": [{"neurons": 1000, "layers": 120}]}, "neurons"),
        ({"networks": [{"neurons": 1024, "layers": 0}]}, "layers"),
        ({"networks": [{"neurons": 1024, "layers": 120, "depth": 3}]}, "depth"),
        ({"colour": "red"}, "colour"),
        ({"data": {"source": "mirror"}}, "url"),
        ({"data": {"source": "official"}, "networks": [{"neurons": 1024, "layers": 30}]}, "layers"),
        ({"data": {"source": "synthetic", "checksums": {"dnn/x.tar.gz": "abc"}}}, "checksums"),
        ({"gpus": 0}, "gpus"),
        # what the schema cannot say, still before any download or conversion
        ({"engine_options": {"wraps": 8}}, "engine_options"),
        ({"engine": "cpu", "engine_options": {"warps": 8}}, "engine_options"),
        ({"inputs": 3, "shards": 4}, "shards"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, change, named):
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(change)
    config["datadir"] = str(tmp_path / "data")
    run = snakemake(tmp_path, config, "-n")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "invalid configuration" in out
    assert f"config key {named}" in out or f"'{named}' was unexpected" in out or f".{named}" in out
    assert not (tmp_path / "data").exists()


@pytest.fixture
def sample_server():
    yield from serve(SAMPLE.parent.parent)


def test_real_sample_over_http_validates(tmp_path, sample_server):
    run = snakemake(tmp_path, sample_config(tmp_path, sample_server.base), "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    table = (tmp_path / "results/mirror/table.md").read_text()
    assert "| mirror | 1024 | 30 | cpu |" in table and "| passed |" in table
    categories = (tmp_path / "results/mirror/neuron1024-l30/cpu.categories.tsv").read_text()
    assert categories == (SAMPLE / "dnn/neuron1024-l120-categories.tsv").read_text()
    manifest = (tmp_path / "data/raw/mirror/manifest.json").read_text()
    assert "neuron1024.tar.gz" in manifest and "sha256" in manifest
    assert "spdnn: table in" in run.stdout + run.stderr
    comparison = (tmp_path / "results/mirror/published_comparison.csv").read_text()
    assert comparison.startswith("neurons,layers,this_run")  # no published figure for 30 layers

    report = snakemake(tmp_path, sample_config(tmp_path, sample_server.base), "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    for caption in (
        "Fraction of the input rows still nonzero",
        "published",
        "timed alone",
        "table.html",
        "edges_per_second.svg",
        "This run: data source",
    ):
        assert caption in html
    # the CPU engine: no GPU plot or caption
    assert "bandwidth roofline" not in html and "Cost model" not in html and "no GPU results" not in html


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_download_fails_cleanly(tmp_path, damage):
    served = tmp_path / "served"
    for rel in ("dnn/neuron1024.tar.gz", "dnn/neuron1024-l120-categories.tsv", "mnist/sparse-images-1024.tsv.gz"):
        dst = served / "synthetic/sparsechallenge_2019" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((SAMPLE / rel).read_bytes())
    archive = served / "synthetic/sparsechallenge_2019/dnn/neuron1024.tar.gz"
    data = archive.read_bytes()
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    else:
        mid = len(data) // 2
        data = data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 256]) + data[mid + 256 :]
    archive.write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    for server in serve(served):
        run = snakemake(work, sample_config(work, server.base), "--cores", "1")
    assert run.returncode != 0
    log = (work / "data/logs/download/dnn/neuron1024.tar.gz.log").read_text()
    assert "neuron1024.tar.gz" in log and "error" in log.lower()
    assert not (work / "data/raw/mirror/dnn/neuron1024.tar.gz").exists()
    assert not (work / "results/mirror/table.md").exists()
    assert not list((work / "data").rglob("*.weights.arrow"))


TIMING_COLUMNS = {"inference_seconds", "end_to_end_seconds", "edges_per_second", "spread", "roofline", "date"}


def test_rerun_reproduces_categories_and_table_up_to_timings(tmp_path):
    import csv

    tables, categories = [], []
    for name in ("first", "second"):
        config = sample_config(tmp_path, str(SAMPLE))
        config["outdir"] = str(tmp_path / name)
        run = snakemake(tmp_path, config, "--cores", "2")
        assert run.returncode == 0, run.stderr[-3000:]
        with open(tmp_path / name / "mirror/table.csv") as f:
            tables.append([{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)])
        categories.append((tmp_path / name / "mirror/neuron1024-l30/cpu.categories.tsv").read_text())
        record = json.loads((tmp_path / name / "mirror/neuron1024-l30/cpu.json").read_text())
        prov = record["provenance"]
        assert prov["spdnn_version"] and prov["packages"]["numpy"] and prov["date"] and "gpu" in prov
        assert record["config"]["inputs"] == 600  # the config that produced it
    assert categories[0] == categories[1]
    assert tables[0] == tables[1]


@pytest.mark.skipif(gpu_usable(), reason="a usable GPU: engine auto runs the CUDA engine here")
def test_auto_engine_without_gpu_plans_no_gpu_steps_and_runs_dag_networks(tmp_path):
    """engine auto on a CPU-only machine: chosen while parsing and said in the terminal; no tune,
    model_check or roofline, even with tune on; a `dag:` section adds the arbitrary-network runs;
    the report shows them and no GPU section."""
    config = sample_config(tmp_path, str(SAMPLE))
    config["engine"] = "auto"
    config["tune"] = True
    config["dag"] = {"sizes": [5000], "kinds": ["evolved"], "batch": 20, "engine": "vectorised"}
    run = snakemake(tmp_path, config, "--cores", "2")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "spdnn: engine auto: the CPU reference engine" in out
    assert "tune: on, but the CPU engine runs" in out
    assert "spdnn: engine auto" in next((tmp_path / ".snakemake/log").glob("*.log")).read_text()
    results = tmp_path / "results"
    assert not (results / "mirror/tuned").exists() and not (results / "mirror/model_check.png").exists()
    assert not (results / "mirror/roofline.png").exists()
    record = json.loads((results / "mirror/neuron1024-l30/auto.json").read_text())
    assert record["engine"] == "cpu"
    log = (results / "mirror/logs/infer-neuron1024-l30-shard0.log").read_text()
    assert "using the CPU reference engine, because the CUDA engine is unavailable" in log
    assert "| evolved-e5000 |" in (results / "dag/table.md").read_text()
    report = snakemake(tmp_path, config, "--report", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    html = (tmp_path / "report.html").read_text()
    assert "Arbitrary networks" in html and "speedups.svg" in html
    assert "Cost model" not in html and "bandwidth roofline" not in html


def test_tune_rule_runs_when_asked_for(tmp_path):
    """The tune step is opt-in, yet its rule stays available by its output file (without a GPU
    the model's default preset)."""
    config = sample_config(tmp_path, str(SAMPLE))
    target = tmp_path / "results/mirror/tuned/neuron1024-l30.default.json"
    run = snakemake(tmp_path, config, "--cores", "1", str(target))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    tuned = json.loads(target.read_text())
    assert tuned["engine_options"]["variant"] in ("merged", "dedup") and tuned["predicted_seconds"] > 0


def fake_gpu(tmp_path: Path) -> dict:
    """An environment in which the parse-time check sees one GPU and pycuda (dry runs only)."""
    fake = tmp_path / "fake-pycuda"
    (fake / "pycuda").mkdir(parents=True)
    (fake / "pycuda/__init__.py").write_text("")
    return {"CUDA_VISIBLE_DEVICES": "0", "PYTHONPATH": str(fake)}


@pytest.mark.parametrize("tune", [False, True])
def test_gpu_steps_planned_only_with_a_gpu_and_tune_only_when_asked(tmp_path, tune):
    config = sample_config(tmp_path, str(SAMPLE))
    config.update(engine="auto", tune=tune)
    run = snakemake(tmp_path, config, "-n", env=fake_gpu(tmp_path))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "spdnn: engine auto: the CUDA engine (1 GPU(s) visible and pycuda installed)" in out
    assert "roofline.png" in out  # the GPU engine: the roofline plot
    assert ("rule tune:" in out and "model_check" in out) is tune
    assert ("--engine-options-file" in out) is tune  # off: the engine's defaults
    if not tune:
        assert "tune: off, the GPU engine runs with its default options" in out


@pytest.mark.skipif(gpu_usable(), reason="a usable GPU")
def test_cuda_engine_without_gpu_stops_with_the_reason_in_the_terminal(tmp_path):
    config = sample_config(tmp_path, str(SAMPLE))
    config["engine"] = "cuda"
    run = snakemake(tmp_path, config, "--cores", "1")
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "engine cuda needs a usable GPU, and there is none:" in out and "Use engine: auto" in out
    assert not (tmp_path / "data").exists()  # before any job


def _job_events(log_text: str) -> list[tuple[str, str, str]]:
    """('start' | 'end', jobid, rule) in the order of Snakemake's log."""
    events, rule = [], None
    for line in log_text.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif rule and (m := re.match(r"\s+jobid: (\d+)$", line)):
            events.append(("start", m.group(1), rule))
            rule = None
        elif m := re.match(r"Job (\d+): timing ", line):  # the infer rules' message
            events.append(("start", m.group(1), "timed"))
        elif m := re.match(r"Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            events.append(("end", m.group(1), m.group(2)))
    return events


def test_timed_jobs_have_the_machine_to_themselves(tmp_path):
    """Two networks on 2 cores: while an inference job runs (timed), no other job runs; the
    table says the timings were taken alone; the step logs hold whole progress lines."""
    config = {
        "data": {"source": "synthetic", "seed": 2},
        "engine": "cpu",
        "repeats": 2,
        "inputs": 300,
        "networks": [{"neurons": 256, "layers": 12}, {"neurons": 512, "layers": 12}],
        "datadir": "data",
        "outdir": "results",
    }
    run = snakemake(tmp_path, config, "--cores", "2")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    events = _job_events(next((tmp_path / ".snakemake/log").glob("*.log")).read_text())
    timed = {job for kind, job, rule in events if rule in ("timed", "infer")}
    assert len(timed) == 2, events
    running: set[str] = set()
    for kind, job, _ in events:
        if kind == "start":
            assert not (running & timed) and not (job in timed and running), (job, running, events)
            running.add(job)
        else:
            running.discard(job)
    table = (tmp_path / "results/synthetic/table.md").read_text()
    assert table.count("| yes |") == 2 and "timed alone" in table
    for log in (tmp_path / "data/logs").glob("*.log"):
        assert "\r" not in log.read_text(), log
    assert "write neuron512 layers: 100% 12/12" in (tmp_path / "data/logs/generate-512.log").read_text()


def test_every_job_declares_its_share_of_the_machine():
    """A rule without `machine` would run beside a timing: every rule with a command declares it."""
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=\s*rule[ :])", text)[1:]:
            if "shell:" in block:
                assert re.search(r"machine=(1|WHOLE_MACHINE),", block), f"{smk.name}: {block[:80]}"
    slurm = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    assert slurm["set-resource-scopes"] == {"machine": "local"}  # cluster jobs do not wait for each other


def test_networks_on_the_command_line(tmp_path):
    """`--config networks=[...]` (as the README shows) reaches the schema as numbers."""
    run = snakemake(
        tmp_path, None, "-n", "--config", 'networks=[{"neurons": 256, "layers": 24}]', "inputs=500", "repeats=1"
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    assert "generate_256" in run.stdout


def test_scaling_target(tmp_path):
    """`scaling: {gpus: [1, 2]}` runs each network once per GPU count, split over one process per
    GPU, and plots edges/s and efficiency (the CPU engine on fake GPU ids here)."""
    import csv

    config = sample_config(tmp_path, str(SAMPLE))
    config["scaling"] = {"gpus": [1, 2]}
    run = snakemake(tmp_path, config, "--cores", "2", env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    with open(tmp_path / "results/mirror/scaling.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["gpus"] for r in rows] == ["1", "2"] and rows[0]["efficiency"] == "100.0%"
    two = json.loads((tmp_path / "results/mirror/scaling/neuron1024-l30/gpus2.json").read_text())
    assert two["gpus"] == 2 and two["validation"] == "passed" and len(two["parts"]) == 2
    assert (tmp_path / "results/mirror/scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "results/mirror/scaling.svg").read_text().startswith("<?xml")


def test_timed_alone_follows_the_resources_and_the_slurm_profile_parses(tmp_path):
    """A timing given less than the whole machine is recorded as not alone; the SLURM profile's
    settings (less its executor, not installed here) are accepted by Snakemake."""
    config = sample_config(tmp_path, str(SAMPLE))
    lowered = snakemake(tmp_path, config, "-n", "--set-resources", "infer:machine=1")
    assert lowered.returncode == 0, lowered.stderr[-3000:]
    assert '"timed_alone": false' in lowered.stdout and "it took 1 of" in lowered.stdout
    profile = tmp_path / "profile"
    profile.mkdir()
    settings = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    settings.pop("executor")
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    run = snakemake(tmp_path, config, "-n", "--profile", str(profile))
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert '"timed_alone": true' in run.stdout  # a local dry run: the scope does not matter here


def test_parsing_imports_no_heavy_library_code(tmp_path):
    """Planning a run imports only light modules of spdnn (no engines, caches, plots, cost model),
    and no heavy library beyond what Snakemake itself loads with the installed plugins (a
    trivial workflow's imports are the baseline: the SLURM executor plugin brings pyarrow)."""

    def heavy_imports(snakefile: Path, workdir: Path) -> set[str]:
        probe = f"""
import sys
from snakemake.cli import main
try:
    main(["-s", {str(snakefile)!r}, "-n", "--quiet", "--directory", {str(workdir)!r}])
except SystemExit as end:
    assert not end.code, end.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("scipy", "pyarrow", "matplotlib", "numba")
               or m.startswith(("spdnn.engines", "spdnn.io.cache", "spdnn.model", "spdnn.report")))
print("HEAVY", heavy)
"""
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
        line = next((x for x in run.stdout.splitlines() if x.startswith("HEAVY ")), None)
        assert line is not None, (run.stdout + run.stderr)[-3000:]
        return set(ast.literal_eval(line[len("HEAVY ") :]))

    trivial = tmp_path / "trivial"
    trivial.mkdir()
    (trivial / "Snakefile").write_text('rule all:\n    shell: "true"\n')
    baseline = heavy_imports(trivial / "Snakefile", trivial)
    extra = heavy_imports(SNAKEFILE, tmp_path) - baseline
    assert not extra, sorted(extra)
