"""The report's comparison with published figures: every row in the CSV, the best single-GPU
ones (any method, exact) in the table, rows without a GPU count accepted."""
from __future__ import annotations

import csv
from pathlib import Path

from spdnn.report import best_single_gpu, published_comparison

FIELDS = ["citation", "year", "hardware", "gpus", "neurons", "layers", "edges_per_second", "measure", "url",
          "note", "exact"]


def write_published(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({"year": 2020, "measure": "inference", "url": "u", "note": "", **row})
    return path


def test_best_single_gpu_per_network(tmp_path):
    published = write_published(tmp_path / "p.csv", [
        {"citation": "exact slow", "hardware": "V100", "gpus": "1", "neurons": 1024, "layers": 120,
         "edges_per_second": 1e12, "exact": "yes"},
        {"citation": "exact fast", "hardware": "A100", "gpus": "1", "neurons": 1024, "layers": 120,
         "edges_per_second": 2e12, "exact": "yes"},
        {"citation": "approximate", "hardware": "3090", "gpus": "1", "neurons": 1024, "layers": 120,
         "edges_per_second": 5e12, "exact": "no"},
        {"citation": "many GPUs", "hardware": "V100", "gpus": "768", "neurons": 1024, "layers": 120,
         "edges_per_second": 9e14, "exact": "yes"},
        {"citation": "no count", "hardware": "V100", "gpus": "", "neurons": 1024, "layers": 120,
         "edges_per_second": 8e14, "exact": "yes"},
        {"citation": "other network", "hardware": "A100", "gpus": "1", "neurons": 4096, "layers": 120,
         "edges_per_second": 3e12, "exact": "yes"},
    ])
    record = {"network": {"neurons": 1024, "layers": 120}, "edges_per_second": 1e14, "device": "H200",
              "inputs": 60000}
    rows = published_comparison([record], published)
    assert len(rows) == 5 and {r["gpus"] for r in rows} == {1, 768, None}
    best = best_single_gpu(rows)
    assert [(b["kind"], b["citation"]) for b in best] == [("any method", "approximate"), ("exact", "exact fast")]
    assert best[1]["ratio"] == "50"
