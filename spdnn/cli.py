"""`spdnn`: the workflow's steps as commands, for the Snakemake rules and for use outside Snakemake."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__, challenge
from .config import DEFAULT_SEED


def _generate(args: argparse.Namespace) -> None:
    from .generate import write_official_layout

    write_official_layout(
        Path(args.root), args.neurons, sorted(args.layers), args.inputs, args.seed, progress=not args.quiet
    )


def _convert_weights(args: argparse.Namespace) -> None:
    from .io.cache import convert_weights

    convert_weights(args.archive, args.output, args.neurons, args.layers, source=args.source, progress=not args.quiet)


def _convert_inputs(args: argparse.Namespace) -> None:
    from .io.cache import convert_inputs

    convert_inputs(args.tsv, args.output, args.neurons, args.inputs, source=args.source, progress=not args.quiet)


def _infer(args: argparse.Namespace) -> None:
    from .infer import NetworkFiles, RunOptions, RunOutputs, run_network
    from .shards import Shard
    from .stale import invalidate

    invalidate(args.invalidates)

    options = json.loads(args.engine_options) if args.engine_options else {}
    if args.engine_options_file:
        # e.g. the tune rule's choice for this network and GPU; explicit --engine-options win
        options = {**json.loads(Path(args.engine_options_file).read_text()).get("engine_options", {}), **options}
    record = run_network(
        NetworkFiles(args.weights, args.inputs_cache, args.truth),
        RunOptions(
            layers=args.layers,
            n_inputs=args.inputs,
            engine=args.engine,
            engine_options=options,
            repeats=args.repeats,
            shard=Shard.parse(args.shard),
            gpus=args.gpus,
        ),
        RunOutputs(args.output, args.categories, json.loads(args.config) if args.config else None),
    )
    print(
        f"neuron{record['network']['neurons']}-l{args.layers}: {record['engine']} on {record['device']}: "
        f"{record['edges_per_second']:.4g} edges/s, {record['categories']} categories, validation passed"
    )


def _merge(args: argparse.Namespace) -> None:
    from .infer import merge_shards
    from .stale import invalidate

    invalidate(args.invalidates)

    results = [p for p in args.results if p.endswith(".json")]
    categories = [p[: -len(".json")] + ".categories.tsv" for p in results]
    record = merge_shards(
        results, categories, args.truth, n_inputs=args.inputs, output=args.output, categories_path=args.categories
    )
    print(f"merged {len(results)} shards: {record['edges_per_second']:.4g} edges/s, validation passed")


def _aggregate(args: argparse.Namespace) -> None:
    from .report import aggregate

    rows = aggregate(
        args.results,
        args.csv,
        args.markdown,
        args.plot,
        roofline_path=args.roofline,
        active_rows_path=args.active_rows,
        published_csv=args.published,
        comparison_path=args.comparison,
        peers_csv=args.peers,
        peers_path=args.peers_comparison,
    )
    print(
        f"{len(rows)} results: table in {args.markdown} and {args.csv}" + (f", plot {args.plot}" if args.plot else "")
    )


def _model_check(args: argparse.Namespace) -> None:
    from .report import load_records, plot_model_check

    tuned = [json.loads(Path(p).read_text()) for p in args.tuned]
    pairs = plot_model_check(load_records(args.results), tuned, args.plot)
    for p in pairs:
        print(f"N={p['neurons']} L={p['layers']}: predicted {p['predicted_s']:.3g} s, measured {p['measured_s']:.3g} s")


def _scaling(args: argparse.Namespace) -> None:
    from .io.atomic import write_text
    from .report import load_records, plot_scaling, scaling_table, to_csv

    rows = scaling_table(load_records(args.results))
    write_text(args.csv, to_csv(rows, list(rows[0]) if rows else ["neurons"]))
    plot_scaling(rows, args.plot)
    for r in rows:
        print(
            f"N={r['neurons']} L={r['layers']} on {r['gpus']} GPUs: {r['edges_per_second']} edges/s, "
            f"efficiency {r['efficiency']}"
        )


def _run(args: argparse.Namespace) -> None:
    """All steps for one network, in a work folder, without Snakemake."""
    from .run import RunRequest, run

    request = RunRequest(
        neurons=args.neurons,
        layers=args.layers,
        truth_layers=args.truth_layers or args.layers,
        inputs=args.inputs,
        source=args.source,
        seed=args.seed,
        engine=args.engine,
        repeats=args.repeats,
    )
    record, out = run(request, args.workdir, progress=not args.quiet)
    print(
        f"neuron{args.neurons}-l{args.layers}: {record['engine']} on {record['device']}: "
        f"{record['edges_per_second']:.4g} edges/s (inference {record['inference_seconds']:.3g} s, "
        f"end-to-end {record['end_to_end_seconds']:.3g} s), {record['categories']} categories, "
        f"validation passed; result in {out}"
    )


def _input_count(text: str) -> int:
    """An input count within the challenge's 60000 rows (argparse reports a bad one in one line)."""
    value = int(text)
    if not 1 <= value <= challenge.N_INPUTS:
        raise argparse.ArgumentTypeError(f"{value} is not in 1..{challenge.N_INPUTS}")
    return value


def _invalidates_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--invalidates",
        nargs="*",
        default=[],
        metavar="PATH",
        help="files made from this step's output: removed before it runs, so that a failure "
        "never leaves them looking current",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spdnn", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and a full traceback instead of the one-line error"
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write a synthetic network in the official layout")
    p.add_argument("--root", required=True, help="folder that receives dnn/ and mnist/")
    p.add_argument("--neurons", type=int, required=True, help="neurons per layer (N)")
    p.add_argument("--layers", type=int, nargs="+", required=True, help="layer counts to write truth for")
    p.add_argument(
        "--inputs", type=int, default=challenge.N_INPUTS, help=f"input rows to draw (default {challenge.N_INPUTS})"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}, as in the workflow")
    p.set_defaults(func=_generate)

    p = sub.add_parser("convert-weights", help="weights tarball -> Arrow cache")
    p.add_argument("archive", help="the network's neuron{N}.tar.gz (official layout)")
    p.add_argument("output", help="Arrow cache to write")
    p.add_argument("--neurons", type=int, required=True, help="neurons per layer (N)")
    p.add_argument("--layers", type=int, required=True, help="layers to read from the archive (the first L)")
    p.add_argument("--source", default="", help="where the data came from, recorded in the cache's metadata")
    p.set_defaults(func=_convert_weights)

    p = sub.add_parser("convert-inputs", help="input TSV.gz -> Arrow cache")
    p.add_argument("tsv", help="the inputs' sparse-images-{N}.tsv.gz (official layout)")
    p.add_argument("output", help="Arrow cache to write")
    p.add_argument("--neurons", type=int, required=True, help="neurons per layer (N): the inputs' width")
    p.add_argument(
        "--inputs",
        type=int,
        default=None,
        help=f"number of rows (default: the largest row index; a row past {challenge.N_INPUTS} is an error)",
    )
    p.add_argument("--source", default="", help="where the data came from, recorded in the cache's metadata")
    p.set_defaults(func=_convert_inputs)

    p = sub.add_parser("infer", help="run, validate and record one network from the cache")
    p.add_argument("--weights", required=True, help="weights Arrow cache (convert-weights)")
    p.add_argument("--inputs-cache", required=True, help="inputs Arrow cache (convert-inputs)")
    p.add_argument("--truth", required=True, help="the official categories TSV the result is validated against")
    p.add_argument("--layers", type=int, required=True, help="layers to run (at most those in the cache)")
    p.add_argument("--inputs", type=int, required=True, help="number of input rows to use")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: cuda when a GPU engine can start, else cpu (default auto)",
    )
    p.add_argument("--engine-options", default=None, help="JSON object passed to the engine")
    p.add_argument(
        "--engine-options-file",
        default=None,
        help="JSON file whose 'engine_options' object is passed to the engine (the tune rule's output)",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="timed runs, each validated; the median time is reported (default 1)"
    )
    p.add_argument("--shard", default="0/1", help="i/k: run the i-th of k slices of the inputs")
    p.add_argument("--gpus", type=int, default=1, help="split the shard over this many GPUs, one process each")
    p.add_argument("--output", required=True, help="result JSON")
    p.add_argument("--categories", default=None, help="also write the categories (official format)")
    p.add_argument("--config", default=None, help="JSON of the workflow config, recorded in the result")
    _invalidates_option(p)
    p.set_defaults(func=_infer)

    p = sub.add_parser("merge", help="merge the shard results of one network and validate the union")
    p.add_argument("results", nargs="+", help="shard result JSONs (their .categories.tsv lie beside them)")
    p.add_argument("--truth", required=True, help="the official categories TSV the union is validated against")
    p.add_argument("--inputs", type=int, required=True, help="input rows of the whole network (all shards)")
    p.add_argument("--output", required=True, help="merged result JSON")
    p.add_argument("--categories", required=True, help="merged categories (official format)")
    _invalidates_option(p)
    p.set_defaults(func=_merge)

    p = sub.add_parser("aggregate", help="results -> edges/s table and plot")
    p.add_argument("results", nargs="+", help="result JSONs (infer, merge)")
    p.add_argument("--csv", required=True, help="table of the results as CSV")
    p.add_argument("--markdown", required=True, help="table of the results as Markdown")
    p.add_argument("--plot", default=None, help="bar chart of edges/s by network and engine")
    p.add_argument("--roofline", default=None, help="plot of the results under the bandwidth roofline")
    p.add_argument("--active-rows", default=None, help="plot of active rows per layer")
    p.add_argument("--published", default=None, help="CSV of published figures (spdnn/data/published.csv)")
    p.add_argument("--comparison", default=None, help="CSV of this run next to the published figures")
    p.add_argument(
        "--peers", default=None, help="CSV of the programs the peers benchmark measured (spdnn/data/peers.csv)"
    )
    p.add_argument("--peers-comparison", default=None, help="CSV of this run next to those programs (HTML beside it)")
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("model-check", help="plot the cost model's predictions against measured results")
    p.add_argument("results", nargs="+", help="result JSONs (infer, merge)")
    p.add_argument("--tuned", nargs="+", required=True, help="the tune step's JSON files")
    p.add_argument("--plot", required=True, help="PNG of predicted against measured seconds")
    p.set_defaults(func=_model_check)

    p = sub.add_parser("scaling", help="edges/s and parallel efficiency over GPU counts")
    p.add_argument("results", nargs="+", help="result JSONs of the same networks on different GPU counts")
    p.add_argument("--csv", required=True, help="table of edges/s and efficiency as CSV")
    p.add_argument("--plot", required=True, help="PNG of edges/s over GPU counts")
    p.set_defaults(func=_scaling)

    p = sub.add_parser("run", help="every step for one network, outside Snakemake")
    p.add_argument("--neurons", type=int, default=1024, help="neurons per layer (N, default 1024)")
    p.add_argument("--layers", type=int, default=120, help="layers to run (default 120)")
    p.add_argument("--source", default="synthetic", help="'synthetic', or a base URL / folder of the official layout")
    p.add_argument(
        "--truth-layers",
        type=int,
        default=None,
        help="validate against this depth's truth file (default --layers; the sample: 120)",
    )
    p.add_argument(
        "--inputs",
        type=_input_count,
        default=challenge.N_INPUTS,
        help=f"input rows to run, 1..{challenge.N_INPUTS} (default all)",
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: cuda when a GPU engine can start, else cpu (default auto)",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="timed runs, each validated; the median time is reported (default 1)"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"synthetic data's seed (default {DEFAULT_SEED})")
    p.add_argument("--workdir", default="spdnn-run", help="folder for the data, caches and result (default spdnn-run)")
    p.set_defaults(func=_run)
    from .dag.cli import register as register_dag

    register_dag(sub)  # noqa: E702
    from .model.cli import register as register_model

    register_model(sub)  # noqa: E702
    return parser


def _one_line(err: BaseException) -> str:
    """A user-caused error as one line (an OSError names its file: no space, no permission...)."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from .config import ConfigError
    from .engines.base import EngineUnavailable
    from .fetch import FetchError
    from .io.errors import DataError
    from .validate import ValidationError

    try:
        args.func(args)
    except (DataError, ValidationError, EngineUnavailable, FetchError, ConfigError, OSError) as err:
        if args.verbose:
            raise
        print(f"spdnn {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


def exit_main() -> None:
    """The console script: flush and leave without running native libraries' exit handlers, so
    a thread still held by one of them cannot turn a clean error into an abort (exit 134)."""
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_main()
