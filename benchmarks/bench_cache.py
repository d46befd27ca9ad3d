"""Parsing the TSV files vs loading the Arrow cache, for synthetic networks in the official layout.

    python benchmarks/bench_cache.py [--neurons 1024 4096] [--layers 120] [--inputs 60000]

"parse" streams the gzipped tarball / input TSV through pyarrow's CSV reader into CSR arrays
(the conversion step minus writing); "load" memory-maps the cache and builds every layer's
CSR matrix, touching every value so that the data is really read. Both run warm (the files
are in the page cache), best of `--repeats`. Writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from spdnn import challenge
from spdnn.devices import cpu_model
from spdnn.generate import write_official_layout
from spdnn.io import cache
from spdnn.io.tsv import iter_triples
from spdnn.provenance import provenance


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def parse_weights(archive: Path, neurons: int, layers: int) -> None:
    wanted = {challenge.layer_member(neurons, k): k for k in range(1, layers + 1)}
    for name, open_text in cache._stream_members(archive, wanted):
        cache._read_layer(open_text, name, neurons)


def load_weights(path: Path) -> float:
    total = 0.0
    for m in cache.load_weights(path).layers():
        total += float(m.data.sum()) + float(m.indices[-1])
    return total


def parse_inputs(tsv: Path, neurons: int) -> None:
    import gzip

    for block in iter_triples(lambda: gzip.open(tsv, "rb"), str(tsv), 1 << 30, neurons):
        np.asarray(block.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--neurons", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--layers", type=int, default=120)
    parser.add_argument("--inputs", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in args.neurons:
            write_official_layout(root, n, [args.layers], args.inputs, seed=1, progress=False)
            archive, tsv = root / challenge.weights_archive(n), root / challenge.inputs_file(n)
            wcache, icache = root / f"w{n}.arrow", root / f"i{n}.arrow"
            t_convert_w = best(lambda: cache.convert_weights(archive, wcache, n, args.layers, progress=False), 1)
            t_convert_i = best(lambda: cache.convert_inputs(tsv, icache, n, progress=False), 1)
            row = {
                "neurons": n,
                "layers": args.layers,
                "inputs": args.inputs,
                "tarball_bytes": archive.stat().st_size,
                "weights_cache_bytes": wcache.stat().st_size,
                "weights_parse_s": best(lambda: parse_weights(archive, n, args.layers), args.repeats),
                "weights_load_s": best(lambda: load_weights(wcache), args.repeats),
                "weights_convert_s": t_convert_w,
                "inputs_parse_s": best(lambda: parse_inputs(tsv, n), args.repeats),
                "inputs_load_s": best(lambda: cache.load_inputs(icache).sum(), args.repeats),
                "inputs_convert_s": t_convert_i,
            }
            row["weights_speedup"] = row["weights_parse_s"] / row["weights_load_s"]
            row["inputs_speedup"] = row["inputs_parse_s"] / row["inputs_load_s"]
            rows.append(row)
            print(
                f"N={n} L={args.layers}: weights parse {row['weights_parse_s']:.2f} s, load "
                f"{row['weights_load_s']:.3f} s ({row['weights_speedup']:.0f}x); inputs parse "
                f"{row['inputs_parse_s']:.2f} s, load {row['inputs_load_s']:.3f} s ({row['inputs_speedup']:.0f}x)"
            )
    result = {
        "benchmark": "cache",
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "provenance": provenance(),
        "config": vars(args),
        "results": rows,
    }
    out = Path(args.output or Path(__file__).parent / "results" / f"cache-{platform.node()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
