"""The report's comparison with published figures: every row in the CSV, the best single-GPU
ones (any method, exact) in the table, rows without a GPU count accepted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from spdnn.report import best_single_gpu, published_comparison

FIELDS = [
    "citation",
    "year",
    "hardware",
    "gpus",
    "neurons",
    "layers",
    "edges_per_second",
    "measure",
    "url",
    "note",
    "exact",
]


def write_published(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"year": 2020, "measure": "inference", "url": "u", "note": "", **row})
    return path


def test_best_single_gpu_per_network(tmp_path):
    published = write_published(
        tmp_path / "p.csv",
        [
            {
                "citation": "exact slow",
                "hardware": "V100",
                "gpus": "1",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 1e12,
                "exact": "yes",
            },
            {
                "citation": "exact fast",
                "hardware": "A100",
                "gpus": "1",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 2e12,
                "exact": "yes",
            },
            {
                "citation": "approximate",
                "hardware": "3090",
                "gpus": "1",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 5e12,
                "exact": "no",
            },
            {
                "citation": "many GPUs",
                "hardware": "V100",
                "gpus": "768",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 9e14,
                "exact": "yes",
            },
            {
                "citation": "no count",
                "hardware": "V100",
                "gpus": "",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 8e14,
                "exact": "yes",
            },
            {
                "citation": "other network",
                "hardware": "A100",
                "gpus": "1",
                "neurons": 4096,
                "layers": 120,
                "edges_per_second": 3e12,
                "exact": "yes",
            },
        ],
    )
    record = {"network": {"neurons": 1024, "layers": 120}, "edges_per_second": 1e14, "device": "H200", "inputs": 60000}
    rows = published_comparison([record], published)
    assert len(rows) == 5 and {r["gpus"] for r in rows} == {1, 768, None}
    best = best_single_gpu(rows)
    assert [(b["kind"], b["citation"]) for b in best] == [("any method", "approximate"), ("exact", "exact fast")]
    assert best[1]["ratio"] == "50"


def result_record(seconds: list[float], device: str = "cpu (2 cores)", **extra) -> dict:
    edges, median = 100 * 32 * 1024 * 120, sorted(seconds)[len(seconds) // 2]
    record = {
        "network": {"neurons": 1024, "layers": 120, "source": "synthetic"},
        "engine": "cpu",
        "device": device,
        "inputs": 100,
        "edges": edges,
        "repeats": len(seconds),
        "inference_seconds": median,
        "inference_seconds_all": seconds,
        "end_to_end_seconds": 1.0,
        "edges_per_second": edges / median,
        "validation": "passed",
        "active_rows": [50, 40],
        "provenance": {},
        "config": {},
    }
    record.update(extra)
    return record


def test_repeats_of_a_run_and_of_merged_shards(tmp_path):
    from spdnn.report import repeat_range, repeat_seconds, spread_text

    single = result_record([0.3, 0.2, 0.25])
    assert repeat_seconds(single) == [0.3, 0.2, 0.25]
    assert spread_text(single) == "0.2..0.3 s (40%)"
    slow, fast = repeat_range(single)
    assert slow == single["edges"] / 0.3 and fast == single["edges"] / 0.2
    # a merged result: its own list holds one entry per shard; the shards' files give the repeats
    for index, times in enumerate(([1.0, 2.0], [1.5, 1.0])):
        (tmp_path / f"cpu.shard{index}.json").write_text(json.dumps(result_record(times)))
    merged = result_record([1.5, 1.5], shards=2, parts=[{}, {}], _path=str(tmp_path / "cpu.json"))
    assert repeat_seconds(merged) == [1.5, 2.0]  # each repeat: its slowest shard
    assert repeat_seconds(result_record([1.0, 1.0], parts=[{}, {}])) == []  # split over GPUs: unknown


def test_table_html_svg_and_timed_alone(tmp_path):
    from spdnn.report import aggregate

    paths = []
    for name, alone in (("a", True), ("b", None)):
        config = {"scheduling": {"timed_alone": alone, "why": "test"}} if alone is not None else {}
        record = result_record([0.5, 0.4, 0.6], config=config)
        record["network"]["neurons"] = 1024 if name == "a" else 4096
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(record))
    published = write_published(
        tmp_path / "p.csv",
        [
            {
                "citation": "c <b>",
                "hardware": "V100",
                "gpus": "1",
                "neurons": 1024,
                "layers": 120,
                "edges_per_second": 1e12,
                "exact": "yes",
            }
        ],
    )
    rows = aggregate(
        paths,
        tmp_path / "t.csv",
        tmp_path / "t.md",
        tmp_path / "p.png",
        published_csv=published,
        comparison_path=tmp_path / "c.csv",
    )
    assert [r["timed_alone"] for r in rows] == ["yes", ""]
    markdown = (tmp_path / "t.md").read_text()
    assert "of roofline" not in markdown and "timed alone" in markdown  # CPU rows: no roofline column
    assert ",roofline," in (tmp_path / "t.csv").read_text().splitlines()[0]  # the CSV keeps every column
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<td>yes</td>" in page and "c &lt;b&gt;" in page
    assert "<table>" in (tmp_path / "c.html").read_text()
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "p.svg").read_text()
    assert svg.startswith("<?xml") and "<dc:date>" not in svg  # no date: same results, same file


def test_edges_per_second_axis_is_linear_from_zero(tmp_path, monkeypatch):
    import matplotlib.figure
    from matplotlib.container import ErrorbarContainer

    from spdnn.report import plot_edges_per_second

    seen = {}
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        caps = [len(c.lines[1]) for c in ax.containers if isinstance(c, ErrorbarContainer)]
        seen.update(
            scale=ax.get_yscale(), bottom=ax.get_ylim()[0], caps=caps, layout=fig.get_layout_engine().__class__.__name__
        )
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot_edges_per_second([result_record([0.5, 0.4, 0.6])], tmp_path / "e.png")
    # one bar with an error bar (a cap at the slowest and one at the fastest repeat)
    assert seen == {"scale": "linear", "bottom": 0.0, "caps": [2], "layout": "ConstrainedLayoutEngine"}


def test_roofline_plot_without_a_gpu_says_why(tmp_path):
    from spdnn.report import plot_roofline

    plot_roofline([result_record([0.5])], tmp_path / "r.svg")
    assert "no roofline" in (tmp_path / "r.svg").read_text()


def test_peers_measured_here_next_to_this_run(tmp_path):
    """The packaged peers table (exported from the peers benchmark's raw JSON) is read, matched
    on (N, L), and shown with the ratio, its data, GPU, categories check and raw result."""
    import csv
    from importlib.resources import files

    from spdnn.report import aggregate, peers_comparison

    packaged = files("spdnn") / "data" / "peers.csv"
    rows = list(csv.DictReader(packaged.open()))
    assert rows and {"hidayetoglu", "spdnn-default"} <= {r["method"] for r in rows}
    assert all(r["source"].startswith("benchmarks/results/peers-") for r in rows)
    record = result_record([0.5])
    record["network"]["neurons"], record["network"]["layers"] = 1024, 120
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record))
    found = peers_comparison([record], packaged)
    expect = [r for r in rows if (r["neurons"], r["layers"]) == ("1024", "120")]
    assert len(found) == len(expect) > 0
    champion = next(f for f in found if f["label"].startswith("Hidayetoglu") and f["data"] == "synthetic")
    assert float(champion["ratio"]) == pytest.approx(  # the report rounds it to 3 significant digits
        record["edges_per_second"] / float(champion["edges_per_second"]), rel=5e-3
    )
    aggregate([path], tmp_path / "t.csv", tmp_path / "t.md", peers_csv=packaged, peers_path=tmp_path / "peers.csv")
    assert "Hidayetoglu" in (tmp_path / "peers.html").read_text()
    assert "measured" in (tmp_path / "t.md").read_text()
    # a network the peers benchmark never ran: an explicit sentence, not an empty table
    record["network"]["layers"] = 24
    path.write_text(json.dumps(record))
    aggregate([path], tmp_path / "t.csv", tmp_path / "t.md", peers_csv=packaged, peers_path=tmp_path / "peers.csv")
    assert "none of these networks" in (tmp_path / "peers.html").read_text()
