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
    ("roofline", "of roofline"),
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
        "roofline": f"{record['edges_per_second'] / bound:.0%}" if (bound := roofline_bound(record)) else "",
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


def to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or [key for key, _ in COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict], columns: list[tuple[str, str]] | None = None) -> str:
    """A Markdown table; by default the result columns without versions and date."""
    shown = columns or [c for c in COLUMNS if c[0] not in ("versions", "date")]
    lines = ["| " + " | ".join(title for _, title in shown) + " |",
             "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(str(row[key]) for key, _ in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_edges_per_second(records: list[dict], path: str | Path) -> None:
    """Bar chart of inference edges/s per network, one bar per engine/device."""
    labels = sorted({f"N={r['network']['neurons']}\nL={r['network']['layers']}" for r in records},
                    key=lambda s: tuple(int(x.split("=")[1]) for x in s.split("\n")))
    series = sorted({f"{r['engine']} ({r['device']})" for r in records})
    plt, fig, ax = _figure(max(5, 1.4 * len(labels) * max(1, len(series)) ** 0.5), 4)
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
    _save(plt, fig, path)


# Peak DRAM bandwidth (bytes/s) from vendor data sheets, for the roofline (DESIGN.md): a
# layer-at-a-time kernel moves 8 N bytes per active row per layer for 32 N edges.
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.039e12, "V100": 0.9e12}


def peak_bandwidth(device: str) -> float | None:
    """Data-sheet bandwidth of a GPU named in `device`, or None (CPUs, unknown GPUs)."""
    for model, bandwidth in PEAK_BANDWIDTH.items():
        if model in device:
            return bandwidth
    return None


def active_fraction(record: dict) -> float:
    """Mean over layers of the fraction of input rows still active (what a compacting kernel streams)."""
    rows = record.get("active_rows") or []
    return sum(rows) / (len(rows) * record["inputs"]) if rows and record["inputs"] else 1.0


def roofline_bound(record: dict) -> float | None:
    """Edges/s a layer-at-a-time kernel cannot exceed on this device: 4 edges/byte x B / active fraction."""
    bandwidth = peak_bandwidth(record["device"])
    return 4 * bandwidth / active_fraction(record) if bandwidth else None


def _figure(width: float = 6, height: float = 4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height))


def _save(plt, fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def plot_roofline(records: list[dict], path: str | Path) -> None:
    """Each result at (mean active fraction, edges/s) under its GPU's bandwidth roofline 4B/f."""
    import numpy as np

    plt, fig, ax = _figure()
    fractions = [active_fraction(r) for r in records]
    xs = np.logspace(np.log10(max(min(fractions) / 3, 1e-4)), 0, 50)
    for model, bandwidth in PEAK_BANDWIDTH.items():
        if any(model in r["device"] for r in records):
            ax.plot(xs, 4 * bandwidth / xs, "--", label=f"{model} roofline ({bandwidth / 1e12:.2f} TB/s)")
    for r, f in zip(records, fractions):
        bound = roofline_bound(r)
        note = f" ({r['edges_per_second'] / bound:.0%})" if bound else ""
        ax.plot(f, r["edges_per_second"], "o")
        ax.annotate(f"N={r['network']['neurons']} L={r['network']['layers']} {r['engine']}{note}",
                    (f, r["edges_per_second"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean fraction of input rows active per layer")
    ax.set_ylabel("edges per second (inference)")
    ax.set_title("Results under the layer-at-a-time bandwidth roofline")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    _save(plt, fig, path)


def plot_active_rows(records: list[dict], path: str | Path) -> None:
    """Fraction of input rows still active after every layer, one line per network."""
    plt, fig, ax = _figure()
    seen = set()
    for r in records:
        key = (r["network"]["neurons"], r["network"]["layers"])
        if key in seen or not r.get("active_rows"):
            continue
        seen.add(key)
        layers = range(1, len(r["active_rows"]) + 1)
        ax.plot(layers, [a / r["inputs"] for a in r["active_rows"]], label=f"N={key[0]} L={key[1]}")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of inputs active")
    ax.set_title("Active rows per layer")
    ax.legend(fontsize="small")
    _save(plt, fig, path)


COMPARISON_COLUMNS = [
    ("neurons", "N"), ("layers", "L"), ("this_run", "this run (edges/s)"), ("this_device", "device"),
    ("this_inputs", "inputs"), ("published", "published (edges/s)"), ("ratio", "ratio"), ("citation", "source"),
    ("hardware", "hardware"), ("exact", "exact"), ("measure", "measure"), ("url", "url"),
]


def _gpu_count(p: dict) -> int | None:
    """A published row's GPU count: 0 for a CPU result, None where the source does not say."""
    text = (p.get("gpus") or "").strip()
    return int(text) if text.isdigit() else None


def published_comparison(records: list[dict], published_csv: str | Path) -> list[dict]:
    """This run's edges/s next to every published figure for the same (N, L)."""
    with open(published_csv, newline="") as handle:
        published = list(csv.DictReader(handle))
    rows = []
    for r in records:
        n, layers = r["network"]["neurons"], r["network"]["layers"]
        for p in published:
            if int(p["neurons"]) == n and int(p["layers"]) == layers:
                theirs, gpus = float(p["edges_per_second"]), _gpu_count(p)
                hardware = p["hardware"] if not gpus else f"{gpus} x {p['hardware']}"  # 0: a CPU result
                rows.append({"neurons": n, "layers": layers, "this_run": f"{r['edges_per_second']:.4g}",
                             "this_device": r["device"], "this_inputs": r["inputs"],
                             "published": f"{theirs:.4g}", "ratio": f"{r['edges_per_second'] / theirs:.3g}",
                             "citation": p["citation"], "hardware": hardware, "gpus": gpus,
                             "exact": p.get("exact", "yes") or "yes", "measure": p["measure"], "url": p["url"]})
    return rows


def best_single_gpu(comparison: list[dict]) -> list[dict]:
    """Per network, the fastest published one-GPU figure of any method and the fastest exact one."""
    best: dict[tuple, dict] = {}
    for row in comparison:
        if row["gpus"] != 1:
            continue
        for kind in ("any method", "exact") if row["exact"] == "yes" else ("any method",):
            key = (row["neurons"], row["layers"], kind)
            if key not in best or float(row["published"]) > float(best[key]["published"]):
                best[key] = {**row, "kind": kind}
    return [best[k] for k in sorted(best)]


def aggregate(result_paths: list[str | Path], csv_path: str | Path, markdown_path: str | Path,
              plot_path: str | Path | None = None, roofline_path: str | Path | None = None,
              active_rows_path: str | Path | None = None, published_csv: str | Path | None = None,
              comparison_path: str | Path | None = None) -> list[dict]:
    """Write the table as CSV and Markdown, the plots, and the comparison with published figures."""
    records = load_records(result_paths)
    rows = [table_row(r) for r in records]
    write_text(csv_path, to_csv(rows))
    markdown = to_markdown(rows)
    if published_csv is not None and comparison_path is not None:
        comparison = published_comparison(records, published_csv)
        write_text(comparison_path, to_csv(comparison, [key for key, _ in COMPARISON_COLUMNS]))
        best = best_single_gpu(comparison)
        if best:
            markdown += ("\nThe best published single-GPU figures for the same networks (ratio = this run / "
                         "published; every published row is on the official data and an older GPU, this run "
                         f"on its own data; all {len(comparison)} rows in {Path(comparison_path).name}):\n\n")
            markdown += to_markdown(best, [("kind", "published best")] +
                                    [c for c in COMPARISON_COLUMNS if c[0] != "url"])
    write_text(markdown_path, markdown)
    if plot_path is not None:
        plot_edges_per_second(records, plot_path)
    if roofline_path is not None:
        plot_roofline(records, roofline_path)
    if active_rows_path is not None:
        plot_active_rows(records, active_rows_path)
    return rows



def plot_model_check(records: list[dict], tuned: list[dict], path: str | Path) -> list[dict]:
    """The cost model's predicted time for the configuration it chose, next to the measured time,
    for every network run on a GPU; returns the pairs (an empty plot says why when there are none)."""
    predicted = {(t["model"]["neurons"], t["model"]["layers"]): t for t in tuned}
    pairs = []
    for r in records:
        t = predicted.get((r["network"]["neurons"], r["network"]["layers"]))
        if t is not None and r["engine"] == "cuda":
            pairs.append({"neurons": r["network"]["neurons"], "layers": r["network"]["layers"],
                          "predicted_s": t["predicted_seconds"], "measured_s": r["inference_seconds"],
                          "gpu": r["device"], "model_gpu": t["model"].get("hardware", "")})
    plt, fig, ax = _figure(5, 4.5)
    if pairs:
        xs = [p["predicted_s"] for p in pairs]
        ys = [p["measured_s"] for p in pairs]
        lo, hi = min(xs + ys) / 2, max(xs + ys) * 2
        ax.plot([lo, hi], [lo, hi], "k:", label="measured = predicted")
        for p in pairs:
            ax.plot(p["predicted_s"], p["measured_s"], "o")
            ax.annotate(f"N={p['neurons']} L={p['layers']} ({p['measured_s'] / p['predicted_s'] - 1:+.0%})",
                        (p["predicted_s"], p["measured_s"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no GPU results: the model predicts GPU times", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("predicted inference seconds (cost model)")
    ax.set_ylabel("measured inference seconds")
    ax.set_title("Cost model: its chosen configuration, predicted vs measured")
    _save(plt, fig, path)
    return pairs


def plot_dag_speedups(results: list[dict], path: str | Path) -> None:
    """Speed-up of each arbitrary-structure network's engine over the sequential CPU reference."""
    plt, fig, ax = _figure(max(5, 0.9 * len(results) + 2), 4)
    labels = [Path(r["cache"]).name.split(".")[0] for r in results]
    speedups = [r["reference"]["seconds"] / max(r["seconds"], 1e-12) for r in results]
    ax.bar(range(len(results)), speedups)
    ax.set_xticks(range(len(results)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"speed-up over {results[0]['reference']['engine'] if results else 'reference'}")
    ax.set_title("Arbitrary sparse networks: " + ", ".join(sorted({f"{r['engine']} on {r['device']}" for r in results})))
    _save(plt, fig, path)


def scaling_table(records: list[dict]) -> list[dict]:
    """Edges/s per (network, GPU count) and the parallel efficiency against the fewest GPUs run."""
    rows = []
    by_net: dict[tuple, list[dict]] = {}
    for r in records:
        by_net.setdefault((r["network"]["neurons"], r["network"]["layers"]), []).append(r)
    for (n, layers), group in sorted(by_net.items()):
        group.sort(key=lambda r: r.get("gpus", 1))
        base = group[0]
        per_gpu = base["edges_per_second"] / max(1, base.get("gpus", 1))
        for r in group:
            g = max(1, r.get("gpus", 1))
            rows.append({"neurons": n, "layers": layers, "gpus": g, "device": r["device"],
                         "edges_per_second": f"{r['edges_per_second']:.4g}",
                         "speedup": f"{r['edges_per_second'] / base['edges_per_second']:.3g}",
                         "efficiency": f"{r['edges_per_second'] / (g * per_gpu):.1%}"})
    return rows


def plot_scaling(rows: list[dict], path: str | Path) -> None:
    """Edges/s and parallel efficiency against the GPU count, one line per network."""
    plt, fig, ax = _figure(9, 4)
    ax.remove()
    ax, ax2 = fig.subplots(1, 2)
    for key in sorted({(r["neurons"], r["layers"]) for r in rows}):
        mine = [r for r in rows if (r["neurons"], r["layers"]) == key]
        gpus = [r["gpus"] for r in mine]
        ax.plot(gpus, [float(r["edges_per_second"]) for r in mine], "o-", label=f"N={key[0]} L={key[1]}")
        ax2.plot(gpus, [float(r["efficiency"].rstrip("%")) for r in mine], "o-", label=f"N={key[0]} L={key[1]}")
    ax.set_xlabel("GPUs")
    ax.set_ylabel("edges per second")
    ax.set_yscale("log")
    ax2.set_xlabel("GPUs")
    ax2.set_ylabel("parallel efficiency (%)")
    ax2.set_ylim(0, 110)
    ax.legend(fontsize="small")
    _save(plt, fig, path)
