"""Aggregate per-network result files into the edges/s table (CSV, Markdown) and a plot."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .io.atomic import atomic_path, write_text

COLUMNS = [
    ("source", "source"), ("neurons", "N"), ("layers", "L"), ("engine", "engine"), ("device", "device"),
    ("inputs", "inputs"), ("edges", "edges"), ("inference_seconds", "inference s"),
    ("end_to_end_seconds", "end-to-end s"), ("edges_per_second", "edges/s (inference)"),
    ("validation", "validation"), ("shards", "shards"), ("gpus", "GPUs"), ("spdnn", "spdnn"), ("commit", "commit"),
    ("versions", "versions"), ("date", "date"),
]


def table_row(record: dict) -> dict:
    """Flatten one result record into the table's columns."""
    prov = record.get("provenance", {})
    pkgs = prov.get("packages", {})
    return {
        "source": record["network"].get("source", ""),
        "neurons": record["network"]["neurons"],
        "layers": record["network"]["layers"],
        "engine": record["engine"],
        "device": record["device"],
        "inputs": record["inputs"],
        "edges": record["edges"],
        "inference_seconds": f"{record['inference_seconds']:.6g}",
        "end_to_end_seconds": f"{record['end_to_end_seconds']:.6g}",
        "edges_per_second": f"{record['edges_per_second']:.4g}",
        "validation": record["validation"],
        "shards": record.get("shard", {}).get("count", 1),
        "gpus": record.get("gpus", 0),
        "spdnn": prov.get("spdnn_version", ""),
        "commit": (prov.get("git_commit") or "")[:12],
        "versions": " ".join(f"{k}={v}" for k, v in sorted(pkgs.items())),
        "date": prov.get("date", ""),
    }


def load_records(paths: list[str | Path]) -> list[dict]:
    records = [json.loads(Path(p).read_text()) for p in paths]
    return sorted(records, key=lambda r: (r["network"]["neurons"], r["network"]["layers"], r["engine"]))


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[key for key, _ in COLUMNS])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict]) -> str:
    shown = [c for c in COLUMNS if c[0] not in ("versions", "date")]
    lines = ["| " + " | ".join(title for _, title in shown) + " |",
             "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(str(row[key]) for key, _ in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_edges_per_second(records: list[dict], path: str | Path) -> None:
    """Bar chart of inference edges/s per network, one bar per engine/device."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({f"N={r['network']['neurons']}\nL={r['network']['layers']}" for r in records},
                    key=lambda s: tuple(int(x.split("=")[1]) for x in s.split("\n")))
    series = sorted({f"{r['engine']} ({r['device']})" for r in records})
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(labels) * max(1, len(series)) ** 0.5), 4))
    width = 0.8 / max(1, len(series))
    for s_index, name in enumerate(series):
        xs, ys = [], []
        for r in records:
            if f"{r['engine']} ({r['device']})" == name:
                xs.append(labels.index(f"N={r['network']['neurons']}\nL={r['network']['layers']}") + s_index * width)
                ys.append(r["edges_per_second"])
        ax.bar(xs, ys, width=width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_yscale("log")
    ax.set_ylabel("edges per second (inference only)")
    ax.set_title("Sparse DNN inference throughput")
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def aggregate(result_paths: list[str | Path], csv_path: str | Path, markdown_path: str | Path,
              plot_path: str | Path | None = None) -> list[dict]:
    """Write the table as CSV and Markdown (and the plot); return its rows."""
    records = load_records(result_paths)
    rows = [table_row(r) for r in records]
    write_text(csv_path, to_csv(rows))
    write_text(markdown_path, to_markdown(rows))
    if plot_path is not None:
        plot_edges_per_second(records, plot_path)
    return rows
