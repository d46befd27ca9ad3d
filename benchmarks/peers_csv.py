"""Export the peers measured by bench_peers.py into spdnn/data/peers.csv, which the report shows.

    python benchmarks/peers_csv.py benchmarks/results/peers-h200-2026-12-02-run*.json -o spdnn/data/peers.csv

One row per network and program (spdnn's engines and the field's codes), from the newest file
that measured it; each row names its JSON file, GPU, date and whether its categories matched the
truth. Rows whose program did not run are left out (the JSON and docs/peers.md say why).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

COLUMNS = [
    "neurons",
    "layers",
    "data",
    "inputs",
    "method",
    "label",
    "exact",
    "categories_ok",
    "seconds",
    "edges_per_second",
    "gpu",
    "date",
    "source",
]


def rows_of(path: Path) -> list[dict]:
    record = json.loads(path.read_text())
    gpu = ", ".join(g["name"] for g in record["gpu"]["gpus"])
    rows = []
    for net in record["networks"]:
        real = net["name"].startswith("real-")
        n, layers = (int(v) for v in net["name"].removeprefix("real-").split("x"))
        for key, r in net["results"].items():
            if not r.get("edges_per_second"):
                continue
            rows.append(
                {
                    "neurons": n,
                    "layers": layers,
                    "data": "official" if real else "synthetic",
                    "inputs": net["inputs"],
                    "method": key,
                    "label": r.get("label", key),
                    "exact": "yes" if r.get("exact", True) else "no",
                    "categories_ok": "yes" if r.get("categories_ok") else "no",
                    "seconds": f"{r['seconds']:.6g}",
                    "edges_per_second": f"{r['edges_per_second']:.6g}",
                    "gpu": gpu,
                    "date": record["date"][:10],
                    "source": f"benchmarks/results/{path.name}",
                    "_when": record["date"],  # the run's full timestamp: which is newest (not in the CSV)
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="bench_peers.py JSON files")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the CSV to write (spdnn/data/peers.csv)")
    args = ap.parse_args(argv)
    newest: dict[tuple, dict] = {}
    for path in args.results:
        for row in rows_of(path):
            key = (row["neurons"], row["layers"], row["data"], row["method"])
            # by the run's timestamp: file names sort run10 before run9
            if key not in newest or row["_when"] >= newest[key]["_when"]:
                newest[key] = row
    ordered = sorted(
        newest.values(), key=lambda r: (r["data"], r["neurons"], r["layers"], -float(r["edges_per_second"]))
    )
    tmp = args.output.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ordered)
    tmp.replace(args.output)
    print(f"{len(ordered)} rows -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
