"""`spdnn dag ...`: generate, convert, run (with validation) and tabulate DAG networks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _generate(args: argparse.Namespace) -> None:
    from .fileformat import default_paths, write_spec
    from .generate import KINDS, generate
    from .shapes import generate_shape

    spec = (generate if args.kind in KINDS else generate_shape)(args.kind, args.edges, args.seed)
    edges, nodes = default_paths(args.prefix)
    write_spec(spec, edges, nodes)
    print(f"{args.kind} network: {spec.n_nodes} nodes, {spec.n_edges} edges -> {edges}, {nodes}")


def _convert(args: argparse.Namespace) -> None:
    from ..io.cache import sha256_file
    from .cache import write_cache
    from .fileformat import read_spec
    from .levels import levelise

    net = levelise(read_spec(args.edges, args.nodes))
    write_cache(net, args.output, edges_sha256=sha256_file(args.edges), nodes_sha256=sha256_file(args.nodes))
    print(f"{args.output}: {net.n_nodes} nodes, {net.n_edges} edges, {net.n_levels} dependency groups")


def _run(args: argparse.Namespace) -> None:
    from ..io.atomic import write_text
    from ..provenance import provenance
    from .cache import read_cache
    from .generate import random_inputs
    from .registry import get_dag_engine
    from .validate import DagValidationError, check_levels, compare_outputs

    net = read_cache(args.cache)
    x = random_inputs(net.n_inputs, args.batch, args.seed)
    record: dict = {
        "cache": str(args.cache),
        "network": net.summary(),
        "batch": args.batch,
        "seed": args.seed,
        "provenance": provenance(),
    }
    if args.edges and args.nodes:
        from .fileformat import read_spec

        record["levels_checked"] = check_levels(read_spec(args.edges, args.nodes), net)
    ref_engine = get_dag_engine(args.reference)
    ref_engine.prepare(net)
    ref = ref_engine.infer(x)
    engine = get_dag_engine(args.engine)
    engine.prepare(net)
    engine.infer(x)  # warm-up (kernel load, buffers)
    result = engine.infer(x)
    assert result.outputs is not None and ref.outputs is not None  # every engine returns its outputs
    comparison = compare_outputs(result.outputs, ref.outputs)
    record.update(
        engine=result.engine,
        device=result.device,
        seconds=result.seconds,
        end_to_end_seconds=result.end_to_end_seconds,
        details=result.details,
        reference={"engine": ref.engine, "device": ref.device, "seconds": ref.seconds},
        edges_per_second=net.n_edges * args.batch / max(result.seconds, 1e-12),
        comparison=comparison.as_dict(),
    )
    write_text(args.output, json.dumps(record, indent=2) + "\n")
    if not comparison.passed:
        raise DagValidationError(f"{result.engine} disagrees with {ref.engine}: {comparison.as_dict()}")
    print(f"{args.cache}: {result.engine} {result.seconds:.4g} s, {ref.engine} {ref.seconds:.4g} s, validation passed")


def _table(args: argparse.Namespace) -> None:
    from ..io.atomic import write_text

    rows = [json.loads(Path(p).read_text()) for p in args.results]
    lines = [
        "| network | nodes | edges | groups | batch | engine | device | seconds | reference s | speed-up | edges/s"
        " | max rel. error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        net = r["network"]
        lines.append(
            f"| {Path(r['cache']).name.split('.')[0]} | {net['nodes']} | {net['edges']} | {net['levels']} | "
            f"{r['batch']} | "
            f"{r['engine']} | {r['device']} | {r['seconds']:.4g} | {r['reference']['seconds']:.4g} | "
            f"{r['reference']['seconds'] / max(r['seconds'], 1e-12):.1f} | {r['edges_per_second']:.3g} | "
            f"{r['comparison']['max_rel_error']:.2e} |"
        )
    write_text(args.markdown, "\n".join(lines) + "\n")
    if args.plot:
        from ..report import plot_dag_speedups

        plot_dag_speedups(rows, args.plot)
    print(f"{len(rows)} DAG results -> {args.markdown}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `spdnn dag {generate,convert,run,table}`."""
    from .generate import KINDS
    from .registry import ENGINES
    from .shapes import SHAPES

    dag = subparsers.add_parser("dag", help="sparse networks of arbitrary structure (DAGs)")
    sub = dag.add_subparsers(dest="dag_command", required=True)

    p = sub.add_parser("generate", help="write a random DAG network as PREFIX.edges.tsv and PREFIX.nodes.tsv")
    p.add_argument(
        "--kind",
        choices=KINDS + SHAPES,
        default="pruned",
        help="pruned, evolved: level = generation; random-order, deep-narrow, neat: levels emerge",
    )
    p.add_argument("--edges", type=int, required=True, help="about this many edges")
    p.add_argument("--seed", type=int, default=0, help="random seed of the network (default 0)")
    p.add_argument("--prefix", required=True, help="write PREFIX.edges.tsv and PREFIX.nodes.tsv")
    p.set_defaults(func=_generate)

    p = sub.add_parser("convert", help="edge and node TSVs -> checked, levelised Arrow cache")
    p.add_argument("edges", help="the edge TSV (docs/dag.md)")
    p.add_argument("nodes", help="the node TSV (docs/dag.md)")
    p.add_argument("output", help="Arrow cache to write")
    p.set_defaults(func=_convert)

    p = sub.add_parser("run", help="run an engine on random inputs and validate it against a reference")
    p.add_argument("--cache", required=True, help="the network's Arrow cache (dag convert)")
    p.add_argument("--batch", type=int, default=100, help="random input vectors to run (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the inputs (default 0)")
    p.add_argument(
        "--engine",
        choices=ENGINES + ("auto",),
        default="vectorised",
        help="the engine timed (auto: cuda-lane if a GPU engine can start, else vectorised, "
        "said in the log; default vectorised)",
    )
    p.add_argument(
        "--reference",
        choices=ENGINES,
        default="sequential",
        help="the engine whose outputs the run is checked against (default sequential)",
    )
    p.add_argument("--edges", default=None, help="the edge TSV: also check the levels against a per-node walk")
    p.add_argument("--nodes", default=None, help="the node TSV, with --edges")
    p.add_argument("--output", required=True, help="result JSON")
    p.set_defaults(func=_run)

    p = sub.add_parser("table", help="DAG results -> Markdown table")
    p.add_argument("results", nargs="+", help="result JSONs (dag run)")
    p.add_argument("--markdown", required=True, help="Markdown table to write")
    p.add_argument("--plot", default=None, help="also a PNG of the speed-ups over the reference")
    p.set_defaults(func=_table)
