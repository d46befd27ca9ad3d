"""Aggregate per-network result files into the edges/s table (CSV, Markdown, HTML) and plots
(each PNG with an SVG twin beside it, for the Snakemake report)."""

from __future__ import annotations

import csv
import html
import io
import json
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path

from .io.atomic import atomic_path, write_text
from .result_record import ResultRecord, read_record

Record = ResultRecord | dict  # a result record, typed or as its JSON object (read through the type)

COLUMNS = [
    ("source", "source"),
    ("neurons", "N"),
    ("layers", "L"),
    ("engine", "engine"),
    ("device", "device"),
    ("inputs", "inputs"),
    ("edges", "edges"),
    ("inference_seconds", "inference s"),
    ("end_to_end_seconds", "end-to-end s"),
    ("edges_per_second", "edges/s (inference)"),
    ("spread", "repeats min..max"),
    ("timed_alone", "timed alone"),
    ("roofline", "of roofline"),
    ("validation", "validation"),
    ("shards", "shards"),
    ("gpus", "GPUs"),
    ("spdnn", "spdnn"),
    ("commit", "commit"),
    ("versions", "versions"),
    ("date", "date"),
]


def typed(record: Record) -> ResultRecord:
    """The record as a ResultRecord (spdnn.result_record), however it was given."""
    return record if isinstance(record, ResultRecord) else ResultRecord.from_json(record)


def table_row(record: Record) -> dict:
    """Flatten one result record into the table's columns."""
    record = typed(record)
    prov = record.provenance
    pkgs = prov.get("packages", {})
    return {
        "source": record.network.source,
        "neurons": record.network.neurons,
        "layers": record.network.layers,
        "engine": record.engine,
        "device": record.device,
        "inputs": record.inputs,
        "edges": record.edges,
        "inference_seconds": f"{record.inference_seconds:.6g}",
        "end_to_end_seconds": f"{record.end_to_end_seconds:.6g}",
        "edges_per_second": f"{record.edges_per_second:.4g}",
        "spread": spread_text(record),
        "timed_alone": timed_alone(record),
        "roofline": f"{record.edges_per_second / bound:.0%}" if (bound := roofline_bound(record)) else "",
        "validation": record.validation,
        "shards": record.span.count,
        "gpus": record.gpus,
        "spdnn": prov.get("spdnn_version", ""),
        "commit": (prov.get("git_commit") or "")[:12],
        "versions": " ".join(f"{k}={v}" for k, v in sorted(pkgs.items())),
        "date": prov.get("date", ""),
    }


def timed_alone(record: Record) -> str:
    """'yes' when the workflow recorded that no other job of it ran beside the timing (the
    `machine` resource), 'no' when it could not promise that (a cluster node, a lowered
    resource), '' when nothing was recorded (a run outside the workflow)."""
    alone = typed(record).config.get("scheduling", {}).get("timed_alone")
    return "" if alone is None else "yes" if alone else "no"


def repeat_seconds(record: Record) -> list[float]:
    """Inference seconds of every timed repeat of the whole result, where they can be known: a
    single run's repeats; for shards merged from sibling files (<engine>.shard<i>.json, run side
    by side) the slowest shard of each repeat; [] otherwise (e.g. results split over GPUs)."""
    record = typed(record)
    alls = record.inference_seconds_all or []
    if record.parts is None and len(alls) == record.repeats and alls:
        return [float(x) for x in alls]
    path, count = record.path, record.shard_count
    if not path or not str(path).endswith(".json"):
        return []
    shards = []
    for index in range(count):
        sibling = Path(str(path)[: -len(".json")] + f".shard{index}.json")
        if not sibling.is_file():
            return []
        part = read_record(sibling)
        if part.parts is not None or len(part.inference_seconds_all or []) != part.repeats:
            return []
        shards.append(part.inference_seconds_all)
    if not shards or len({len(times) for times in shards}) != 1:
        return []
    return [max(times) for times in zip(*shards)]


def repeat_range(record: Record) -> tuple[float, float] | None:
    """(slowest, fastest) edges/s over the repeats, bracketing the reported (median) figure; or None."""
    record = typed(record)
    seconds = [t for t in repeat_seconds(record) if t > 0]
    if len(seconds) < 2:
        return None
    rates = [record.edges / t for t in seconds] + [record.edges_per_second]
    return min(rates), max(rates)


def spread_text(record: Record) -> str:
    """The repeats' inference seconds as 'min..max' with their spread around the median, or ''."""
    seconds = repeat_seconds(record)
    if len(seconds) < 2:
        return ""
    median = statistics.median(seconds)
    return f"{min(seconds):.3g}..{max(seconds):.3g} s ({(max(seconds) - min(seconds)) / median:.0%})"


def load_records(paths: list[str | Path]) -> list[ResultRecord]:
    """The result records, sorted by network and engine; each remembers its file as `path` (to
    find a merged result's shard files)."""
    records = [read_record(p) for p in paths]
    return sorted(records, key=lambda r: (r.network.neurons, r.network.layers, r.engine))


def to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or [key for key, _ in COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def shown_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """The result columns a reader's table shows: without versions and date, and without
    `of roofline` when no row has one (CPU results: there is no bandwidth roofline)."""
    return [
        c
        for c in COLUMNS
        if c[0] not in ("versions", "date") and (c[0] != "roofline" or any(row.get("roofline") for row in rows))
    ]


def to_markdown(rows: list[dict], columns: list[tuple[str, str]] | None = None) -> str:
    """A Markdown table; by default the shown_columns."""
    shown = columns or shown_columns(rows)
    lines = ["| " + " | ".join(title for _, title in shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    lines += ["| " + " | ".join(str(row[key]) for key, _ in shown) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_html_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """An HTML table (escaped), for the Snakemake report to show inline."""
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(key, '')))}</td>" for key, _ in columns) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>\n"


_HTML_STYLE = (
    "body{font-family:sans-serif;font-size:13px;margin:8px}table{border-collapse:collapse;margin:8px 0}"
    "th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f2f2f2}"
)


def html_page(title: str, parts: list[str]) -> str:
    """A small standalone HTML page: a title, then paragraphs (plain text, escaped) and tables (HTML)."""
    body = "\n".join(p if p.startswith("<table>") else f"<p>{html.escape(p)}</p>" for p in parts)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_HTML_STYLE}</style></head>\n<body><h3>{html.escape(title)}</h3>\n{body}\n</body></html>\n"
    )


TIMED_ALONE_NOTE = (
    "timed alone: yes = no other job of this workflow ran beside the timed runs (the workflow's "
    "`machine` resource; programs outside it are not excluded); no = other jobs may have run "
    "beside them (a cluster node, or the resource lowered); blank = not recorded."
)


def plot_edges_per_second(records: Sequence[Record], path: str | Path) -> None:
    """Bar chart of inference edges/s per network, one bar per engine/device, on a linear axis
    from 0 (bar lengths compare), each with the range of its repeats (slowest..fastest) as an
    error bar where the repeats are known."""
    recs = [typed(r) for r in records]
    labels = sorted(
        {f"N={r.network.neurons}\nL={r.network.layers}" for r in recs},
        key=lambda s: tuple(int(x.split("=")[1]) for x in s.split("\n")),
    )
    series = sorted({f"{r.engine} ({r.device})" for r in recs})
    plt, fig, ax = _figure(max(5, 1.4 * len(labels) * max(1, len(series)) ** 0.5), 4)
    width = 0.8 / max(1, len(series))
    for s_index, name in enumerate(series):
        xs, ys, below, above = [], [], [], []
        for r in recs:
            if f"{r.engine} ({r.device})" == name:
                xs.append(labels.index(f"N={r.network.neurons}\nL={r.network.layers}") + s_index * width)
                ys.append(r.edges_per_second)
                spread = repeat_range(r)
                below.append(r.edges_per_second - spread[0] if spread else 0)
                above.append(spread[1] - r.edges_per_second if spread else 0)
        ax.bar(
            xs,
            ys,
            width=width,
            label=name,
            yerr=[below, above] if any(below) or any(above) else None,
            capsize=4,
            error_kw={"elinewidth": 1},
        )
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("edges per second (inference only)")
    ax.set_title(
        "Sparse DNN inference throughput\n(median of the repeats; error bars: slowest..fastest repeat)",
        fontsize="medium",
    )
    ax.legend(fontsize="small")
    _save(plt, fig, path)


# Peak DRAM bandwidth (bytes/s) from vendor data sheets, for the roofline (docs/design.md#roofline): a
# layer-at-a-time kernel moves 8 N bytes per active row per layer for 32 N edges.
def _peak_bandwidths() -> dict[str, float]:
    """GPU name fragment -> data-sheet HBM bandwidth, from the cost model's hardware presets
    (spdnn/model/hardware.json: the one home of these figures), read without importing the model."""
    presets = json.loads((Path(__file__).parent / "model" / "hardware.json").read_text())["presets"]
    return {p["match"][0]: float(p["hbm_bandwidth"]) for p in presets.values() if p.get("match")}


PEAK_BANDWIDTH = _peak_bandwidths()


def peak_bandwidth(device: str) -> float | None:
    """Data-sheet bandwidth of a GPU named in `device`, or None (CPUs, unknown GPUs)."""
    for model, bandwidth in PEAK_BANDWIDTH.items():
        if model in device:
            return bandwidth
    return None


def active_fraction(record: Record) -> float:
    """Mean over layers of the fraction of input rows still active (what a compacting kernel streams)."""
    record = typed(record)
    rows = record.active_rows or []
    return sum(rows) / (len(rows) * record.inputs) if rows and record.inputs else 1.0


def roofline_bound(record: Record) -> float | None:
    """Edges/s a layer-at-a-time kernel cannot exceed on this device: 4 edges/byte x B / active fraction."""
    bandwidth = peak_bandwidth(typed(record).device)
    return 4 * bandwidth / active_fraction(record) if bandwidth else None


def _figure(width: float = 6, height: float = 4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), layout="constrained")  # nothing clipped


def svg_twin(path: str | Path) -> Path | None:
    """The SVG written beside a PNG plot (for the report: vector, sharp at any size), or None."""
    return Path(path).with_suffix(".svg") if Path(path).suffix.lower() == ".png" else None


def _save(plt, fig, path: str | Path) -> None:
    """Write the figure to `path` (its suffix gives the format) and, for a PNG, its SVG twin."""
    targets = [Path(path)] + ([twin] if (twin := svg_twin(path)) else [])
    for target in targets:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=120, metadata=_metadata(target))
    plt.close(fig)


def _metadata(target: Path) -> dict:
    """No creation date in an SVG, so that the same results give the same file."""
    return {"Date": None} if target.suffix.lower() == ".svg" else {}


def plot_roofline(records: Sequence[Record], path: str | Path) -> None:
    """Each result at (mean active fraction, edges/s) under its GPU's bandwidth roofline 4B/f."""
    import numpy as np

    recs = [typed(r) for r in records]
    plt, fig, ax = _figure()
    fractions = [active_fraction(r) for r in recs]
    xs = np.logspace(np.log10(max(min(fractions) / 3, 1e-4)), 0, 50)
    drawn = False
    for model, bandwidth in PEAK_BANDWIDTH.items():
        if any(model in r.device for r in recs):
            ax.plot(xs, 4 * bandwidth / xs, "--", label=f"{model} roofline ({bandwidth / 1e12:.2f} TB/s)")
            drawn = True
    if not drawn:  # the workflow asks for this plot only with the GPU engine; say why it has no line
        ax.text(
            0.5,
            0.95,
            "no roofline: no result ran on a GPU of known bandwidth (" + ", ".join(PEAK_BANDWIDTH) + ")",
            ha="center",
            va="top",
            transform=ax.transAxes,
            fontsize=8,
        )
    for r, f in zip(recs, fractions):
        bound = roofline_bound(r)
        note = f" ({r.edges_per_second / bound:.0%})" if bound else ""
        ax.plot(f, r.edges_per_second, "o")
        ax.annotate(
            f"N={r.network.neurons} L={r.network.layers} {r.engine}{note}",
            (f, r.edges_per_second),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean fraction of input rows active per layer")
    ax.set_ylabel("edges per second (inference)")
    ax.set_title("Results under the layer-at-a-time bandwidth roofline")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    _save(plt, fig, path)


def plot_active_rows(records: Sequence[Record], path: str | Path) -> None:
    """Fraction of input rows still active after every layer, one line per network."""
    plt, fig, ax = _figure()
    seen = set()
    for r in map(typed, records):
        key = (r.network.neurons, r.network.layers)
        if key in seen or not r.active_rows:
            continue
        seen.add(key)
        layers = range(1, len(r.active_rows) + 1)
        ax.plot(layers, [a / r.inputs for a in r.active_rows], label=f"N={key[0]} L={key[1]}")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of inputs active")
    ax.set_title("Active rows per layer")
    ax.legend(fontsize="small")
    _save(plt, fig, path)


COMPARISON_COLUMNS = [
    ("neurons", "N"),
    ("layers", "L"),
    ("this_run", "this run (edges/s)"),
    ("this_device", "device"),
    ("this_inputs", "inputs"),
    ("published", "published (edges/s)"),
    ("ratio", "ratio"),
    ("citation", "source"),
    ("hardware", "hardware"),
    ("exact", "exact"),
    ("measure", "measure"),
    ("url", "url"),
]


def _gpu_count(p: dict) -> int | None:
    """A published row's GPU count: 0 for a CPU result, None where the source does not say."""
    text = (p.get("gpus") or "").strip()
    return int(text) if text.isdigit() else None


def same_networks(records: Sequence[Record], table_csv: str | Path) -> Iterator[tuple[ResultRecord, dict, dict]]:
    """(record, row of the CSV with the same N and L, the start of a comparison row: N, L, this
    run's edges/s and device, the ratio to the row's edges_per_second) for every such pair."""
    with open(table_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for r in map(typed, records):
        n, layers = r.network.neurons, r.network.layers
        for row in rows:
            if int(row["neurons"]) == n and int(row["layers"]) == layers:
                theirs = float(row["edges_per_second"])
                yield (
                    r,
                    row,
                    {
                        "neurons": n,
                        "layers": layers,
                        "this_run": f"{r.edges_per_second:.4g}",
                        "this_device": r.device,
                        "ratio": f"{r.edges_per_second / theirs:.3g}",
                    },
                )


def published_comparison(records: Sequence[Record], published_csv: str | Path) -> list[dict]:
    """This run's edges/s next to every published figure for the same (N, L)."""
    rows = []
    for r, p, start in same_networks(records, published_csv):
        gpus = _gpu_count(p)
        hardware = p["hardware"] if not gpus else f"{gpus} x {p['hardware']}"  # 0: a CPU result
        rows.append(
            {
                **start,
                "this_inputs": r.inputs,
                "published": f"{float(p['edges_per_second']):.4g}",
                "citation": p["citation"],
                "hardware": hardware,
                "gpus": gpus,
                "exact": p.get("exact", "yes") or "yes",
                "measure": p["measure"],
                "url": p["url"],
            }
        )
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


PEERS_COLUMNS = [
    ("neurons", "N"),
    ("layers", "L"),
    ("this_run", "this run (edges/s)"),
    ("this_device", "device"),
    ("label", "program measured by spdnn"),
    ("data", "its data"),
    ("inputs", "its inputs"),
    ("gpu", "its GPU"),
    ("edges_per_second", "its edges/s"),
    ("ratio", "ratio"),
    ("exact", "exact"),
    ("categories_ok", "categories ok"),
    ("date", "date"),
    ("source", "raw result"),
]
PEERS_NOTE = (
    "Measured by this project with benchmarks/bench_peers.py (docs/peers.md): the field's own codes and "
    "spdnn's engines in one run on one GPU, on the project's synthetic networks (seed 1, 60000 distinct "
    "inputs) or the official network's first 600 inputs, every category checked against the truth. "
    "This run's data, inputs and GPU may differ: the ratio is context, not a measurement."
)


def peers_comparison(records: Sequence[Record], peers_csv: str | Path) -> list[dict]:
    """This run's edges/s next to every program measured by the project's peers benchmark on the
    same (N, L): the record holders' codes and spdnn's own engines (spdnn/data/peers.csv)."""
    return [
        {
            **start,
            **{k: p[k] for k in ("label", "data", "inputs", "gpu", "exact", "categories_ok", "date", "source")},
            "edges_per_second": f"{float(p['edges_per_second']):.4g}",
        }
        for _r, p, start in same_networks(records, peers_csv)
    ]


def aggregate(
    result_paths: list[str | Path],
    csv_path: str | Path,
    markdown_path: str | Path,
    plot_path: str | Path | None = None,
    roofline_path: str | Path | None = None,
    active_rows_path: str | Path | None = None,
    published_csv: str | Path | None = None,
    comparison_path: str | Path | None = None,
    peers_csv: str | Path | None = None,
    peers_path: str | Path | None = None,
) -> list[dict]:
    """Write the table as CSV, Markdown and HTML (the Markdown's name with .html, shown in the
    report), the plots (each PNG with its SVG twin), the comparison with published figures
    (CSV, and HTML beside it) and with the programs the project's peers benchmark measured
    (peers_csv -> peers_path, CSV and HTML)."""
    records = load_records(result_paths)
    rows = [table_row(r) for r in records]
    write_text(csv_path, to_csv(rows))
    markdown = to_markdown(rows) + f"\n{TIMED_ALONE_NOTE}\n"
    page = [to_html_table(rows, shown_columns(rows)), TIMED_ALONE_NOTE]
    if published_csv is not None and comparison_path is not None:
        comparison = published_comparison(records, published_csv)
        write_text(comparison_path, to_csv(comparison, [key for key, _ in COMPARISON_COLUMNS]))
        comparison_title = "This run next to every published figure for the same networks"
        write_text(
            Path(comparison_path).with_suffix(".html"),
            html_page(
                comparison_title,
                [
                    to_html_table(comparison, COMPARISON_COLUMNS)
                    if comparison
                    else "No published figure for these networks (published rows have 120, 480 or 1920 layers)."
                ],
            ),
        )
        best = best_single_gpu(comparison)
        if best:
            intro = (
                "The best published single-GPU figures for the same networks (ratio = this run / "
                "published; every published row is on the official data and an older GPU, this run "
                f"on its own data; all {len(comparison)} rows in {Path(comparison_path).name}):"
            )
            best_columns = [("kind", "published best")] + [c for c in COMPARISON_COLUMNS if c[0] != "url"]
            markdown += f"\n{intro}\n\n" + to_markdown(best, best_columns)
            page += [intro, to_html_table(best, best_columns)]
    if peers_csv is not None and peers_path is not None:
        peers = peers_comparison(records, peers_csv)
        write_text(peers_path, to_csv(peers, [key for key, _ in PEERS_COLUMNS]))
        write_text(
            Path(peers_path).with_suffix(".html"),
            html_page(
                "This run next to the field's codes",
                [
                    PEERS_NOTE,
                    to_html_table(peers, PEERS_COLUMNS)
                    if peers
                    else "The peers benchmark has measured none of these networks.",
                ],
            ),
        )
        if peers:
            intro = f"Next to the programs this project measured on the same networks ({PEERS_NOTE})"
            markdown += f"\n{intro}\n\n" + to_markdown(peers, [c for c in PEERS_COLUMNS if c[0] != "source"])
    write_text(markdown_path, markdown)
    write_text(Path(markdown_path).with_suffix(".html"), html_page("Inference throughput", page))
    if plot_path is not None:
        plot_edges_per_second(records, plot_path)
    if roofline_path is not None:
        plot_roofline(records, roofline_path)
    if active_rows_path is not None:
        plot_active_rows(records, active_rows_path)
    return rows


def plot_model_check(records: Sequence[Record], tuned: list[dict], path: str | Path) -> list[dict]:
    """The cost model's predicted time for the configuration it chose, next to the measured time,
    for every network run on a GPU; returns the pairs (an empty plot says why when there are none)."""
    predicted = {(t["model"]["neurons"], t["model"]["layers"]): t for t in tuned}
    pairs = []
    for r in map(typed, records):
        t = predicted.get((r.network.neurons, r.network.layers))
        if t is not None and r.engine == "cuda":
            pairs.append(
                {
                    "neurons": r.network.neurons,
                    "layers": r.network.layers,
                    "predicted_s": t["predicted_seconds"],
                    "measured_s": r.inference_seconds,
                    "gpu": r.device,
                    "model_gpu": t["model"].get("hardware", ""),
                }
            )
    plt, fig, ax = _figure(5, 4.5)
    if pairs:
        xs = [p["predicted_s"] for p in pairs]
        ys = [p["measured_s"] for p in pairs]
        lo, hi = min(xs + ys) / 2, max(xs + ys) * 2
        ax.plot([lo, hi], [lo, hi], "k:", label="measured = predicted")
        for p in pairs:
            ax.plot(p["predicted_s"], p["measured_s"], "o")
            ax.annotate(
                f"N={p['neurons']} L={p['layers']} ({p['measured_s'] / p['predicted_s'] - 1:+.0%})",
                (p["predicted_s"], p["measured_s"]),
                fontsize=7,
                xytext=(4, 2),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(
            0.5, 0.5, "no GPU results: the model predicts GPU times", ha="center", va="center", transform=ax.transAxes
        )
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
    ax.set_title(
        "Arbitrary sparse networks: " + ", ".join(sorted({f"{r['engine']} on {r['device']}" for r in results}))
    )
    _save(plt, fig, path)


def scaling_table(records: Sequence[Record]) -> list[dict]:
    """Edges/s per (network, GPU count) and the parallel efficiency against the fewest GPUs run
    (a CPU result, 0 GPUs, counts as 1)."""
    rows = []
    by_net: dict[tuple, list[ResultRecord]] = {}
    for r in map(typed, records):
        by_net.setdefault((r.network.neurons, r.network.layers), []).append(r)
    for (n, layers), group in sorted(by_net.items()):
        group.sort(key=lambda r: r.gpus)
        base = group[0]
        per_gpu = base.edges_per_second / max(1, base.gpus)
        for r in group:
            g = max(1, r.gpus)
            rows.append(
                {
                    "neurons": n,
                    "layers": layers,
                    "gpus": g,
                    "device": r.device,
                    "edges_per_second": f"{r.edges_per_second:.4g}",
                    "speedup": f"{r.edges_per_second / base.edges_per_second:.3g}",
                    "efficiency": f"{r.edges_per_second / (g * per_gpu):.1%}",
                }
            )
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
