"""One network's inference step, shards and their merge, and the aggregated table."""

from __future__ import annotations

import csv
import json

import pytest

from spdnn import challenge
from spdnn.engines.base import EngineUnavailable
from spdnn.infer import NetworkFiles, RunOptions, RunOutputs, Shard, merge_shards, run_network
from spdnn.report import aggregate
from spdnn.result_record import ResultRecord, ShardSpan, read_record
from spdnn.validate import ValidationError

from .conftest import SAMPLE_INPUTS, SAMPLE_LAYERS


def run(sample_cache, tmp_path, name="r", truth=None, shard=Shard(), config=None, **options):
    return run_network(
        NetworkFiles(sample_cache["weights"], sample_cache["inputs"], truth or sample_cache["truth"]),
        RunOptions(layers=SAMPLE_LAYERS, n_inputs=SAMPLE_INPUTS, engine="cpu", shard=shard, **options),
        RunOutputs(tmp_path / f"{name}.json", tmp_path / f"{name}.categories.tsv", config),
    )


def test_result_record(sample_cache, tmp_path):
    record = run(sample_cache, tmp_path, repeats=2, config={"inputs": 600})
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads(json.dumps(record, default=str))
    assert record["validation"] == "passed" and record["categories"] == 7
    assert record["edges"] == challenge.edges(600, 1024, 30) == 600 * 32 * 1024 * 30
    assert record["edges_per_second"] == pytest.approx(record["edges"] / record["inference_seconds"])
    assert len(record["inference_seconds_all"]) == 2 and len(record["active_rows"]) == 30
    assert record["end_to_end_seconds"] >= record["inference_seconds"]
    prov = record["provenance"]
    assert prov["spdnn_version"] and "numpy" in prov["packages"] and prov["date"]
    assert (tmp_path / "r.categories.tsv").read_text().split() == ["287", "295", "386", "427", "428", "529", "571"]
    # the typed record reads the file back and writes the same keys, in the same order
    typed = read_record(tmp_path / "r.json")
    assert typed.network.neurons == 1024 and typed.span.end_row == 600 and typed.repeats == 2
    assert list(typed.to_json()) == list(saved) and json.loads(json.dumps(typed.to_json(), default=str)) == saved


def test_record_reads_old_and_partial_files(tmp_path):
    partial = {
        "network": {"neurons": 1024, "layers": 120},
        "engine": "cpu",
        "edges_per_second": 1.0,
        "future_key": [1, 2],
        "_path": "x.json",
    }
    record = ResultRecord.from_json(partial)
    assert record.span == ShardSpan(0, 1, 0, 0) and record.shard_count == 1 and record.gpus == 0
    assert record.path == "x.json" and record.extra == {"future_key": [1, 2]}
    assert record.to_json()["future_key"] == [1, 2] and "_path" not in record.to_json()
    with pytest.raises(ValueError, match="needs neurons and layers"):
        ResultRecord.from_json({"engine": "cpu"})


def test_mismatch_fails_loudly_and_writes_no_result(sample_cache, tmp_path):
    wrong = tmp_path / "wrong-truth.tsv"
    wrong.write_text("287\n295\n386\n427\n428\n529\n572\n")
    with pytest.raises(ValidationError, match=r"not in truth: \[571\]; first truth rows not computed: \[572\]"):
        run(sample_cache, tmp_path, truth=wrong)
    assert not (tmp_path / "r.json").exists()
    assert not (tmp_path / "r.categories.tsv").exists()
    assert (tmp_path / "r.categories.tsv.mismatch").read_text().split()[-1] == "571"


def test_shards_merge_to_the_whole(sample_cache, tmp_path):
    parts = [run(sample_cache, tmp_path, name=f"s{i}", shard=Shard(i, 3)) for i in range(3)]
    assert sum(p["inputs"] for p in parts) == 600
    merged = merge_shards(
        [tmp_path / f"s{i}.json" for i in range(3)],
        [tmp_path / f"s{i}.categories.tsv" for i in range(3)],
        sample_cache["truth"],
        n_inputs=600,
        output=tmp_path / "m.json",
        categories_path=tmp_path / "m.categories.tsv",
    )
    assert merged["categories"] == 7 and merged["inputs"] == 600
    assert merged["edges"] == challenge.edges(600, 1024, 30)
    assert merged["active_rows"][-1] == 7
    assert (tmp_path / "m.categories.tsv").read_text().split()[0] == "287"
    saved = json.loads((tmp_path / "m.json").read_text())
    assert list(saved)[-2:] == ["parts", "shards"] and saved["shards"] == 3 and saved["shard"]["count"] == 3
    assert read_record(tmp_path / "m.json").to_json() == saved
    with pytest.raises(ValueError, match="do not tile"):
        merge_shards(
            [tmp_path / "s0.json", tmp_path / "s2.json"],
            [tmp_path / "s0.categories.tsv", tmp_path / "s2.categories.tsv"],
            sample_cache["truth"],
            n_inputs=600,
            output=tmp_path / "x.json",
            categories_path=tmp_path / "x.tsv",
        )


def test_shard_parse():
    assert Shard.parse("1/4").rows(10) == (2, 5)
    for bad in ("4/4", "a/b", "1"):
        with pytest.raises(ValueError):
            Shard.parse(bad)


def test_aggregate_table_and_plot(sample_cache, tmp_path):
    run(sample_cache, tmp_path)
    rows = aggregate([tmp_path / "r.json"], tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "p.png")
    assert len(rows) == 1
    with open(tmp_path / "t.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["neurons"] == "1024" and table[0]["validation"] == "passed"
    assert float(table[0]["edges_per_second"]) > 0
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("| source | N | L | engine |") and "| 1024 | 30 | cpu |" in md
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_split_over_gpu_processes(sample_cache, tmp_path, monkeypatch):
    # The per-GPU processes, barrier and merge, exercised with the CPU engine on fake GPU ids.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    record = run(sample_cache, tmp_path, name="g", gpus=3, shard=Shard(1, 2))
    assert record["gpus"] == 3 and record["inputs"] == 300
    assert [p["shard"]["first_row"] for p in record["parts"]] == [300, 400, 500]
    assert record["edges"] == challenge.edges(300, 1024, 30)
    assert (tmp_path / "g.categories.tsv").read_text().split() == ["386", "427", "428", "529", "571"]
    with pytest.raises(EngineUnavailable, match="4 GPUs requested, 3 visible"):
        run(sample_cache, tmp_path, name="h", gpus=4)


def test_truth_index_past_the_inputs(sample_cache, tmp_path):
    from spdnn.io.errors import DataError

    bad = tmp_path / "truth.tsv"
    bad.write_text("287\n601\n")
    with pytest.raises(DataError, match=r"truth.tsv:2: row index 601 outside 1..600"):
        run(sample_cache, tmp_path, truth=bad)


def test_inputs_width_must_match_the_network(sample_cache, tmp_path):
    from spdnn.io.cache import convert_inputs
    from spdnn.io.errors import DataError

    from .conftest import SAMPLE

    wide = tmp_path / "wide.arrow"
    convert_inputs(SAMPLE / "mnist/sparse-images-1024.tsv.gz", wide, 4096, progress=False)
    with pytest.raises(DataError, match="inputs have 4096 columns, the network has 1024 neurons"):
        run_network(
            NetworkFiles(sample_cache["weights"], wide, sample_cache["truth"]),
            RunOptions(layers=30, n_inputs=600, engine="cpu"),
            RunOutputs(tmp_path / "x.json"),
        )


def test_published_comparison_and_roofline(sample_cache, tmp_path):
    from pathlib import Path

    import spdnn
    from spdnn.report import published_comparison, roofline_bound

    record = run(sample_cache, tmp_path)
    record["network"]["layers"] = 120  # pretend it was the 120-layer network, to meet published rows
    published = Path(spdnn.__file__).parent / "data/published.csv"
    rows = published_comparison([record], published)
    assert rows and all(r["neurons"] == 1024 and r["layers"] == 120 for r in rows)
    for r in rows:
        assert float(r["ratio"]) == pytest.approx(record["edges_per_second"] / float(r["published"]), rel=5e-3)
        assert r["url"].startswith("https://")
    assert roofline_bound(record) is None  # a CPU: no bandwidth roofline
    record["device"] = "NVIDIA H100 80GB HBM3"
    fraction = sum(record["active_rows"]) / (30 * 600)
    assert roofline_bound(record) == pytest.approx(4 * 3.35e12 / fraction)
