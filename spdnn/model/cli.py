"""`spdnn model predict | explore | tune | hwdse`: the cost model from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _hw(args):
    from .hardware import load_hardware, preset_for_gpu

    return load_hardware(args.preset or preset_for_gpu(getattr(args, "gpu", None)))


def _profile(args):
    from .network import NetworkProfile

    return NetworkProfile.stored(args.neurons, args.layers, args.inputs, getattr(args, "profiles", "current"))


def _fail(args, err: Exception) -> None:
    """A directive or argument the model cannot honour: one line naming the file and line, exit 2."""
    print(f"spdnn model {args.model_command}: error: {' '.join(str(err).split())}", file=sys.stderr)
    raise SystemExit(2)


def _design(args):
    from .directives import Dataflow, parse_directives

    if args.directives:
        path = Path(args.directives)
        return parse_directives(path.read_text(), str(path))
    return Dataflow(
        dataflow=args.dataflow,
        variant=args.variant,
        warps=args.warps,
        row_tile=args.row_tile,
        fuse=args.fuse,
        check_every=args.check_every,
        batch_rows=args.batch_rows,
        grid_factor=args.grid_factor,
        carry_saturated=not args.no_carry,
    )


def _predict(args) -> None:
    from .cost import predict

    try:
        p = predict(_design(args), _profile(args), _hw(args))
    except ValueError as err:
        _fail(args, err)
    d = p.to_dict()
    if not args.per_layer:
        d.pop("layer_seconds")
    print(json.dumps(d, indent=1, default=float))


def _explore(args) -> None:
    import time

    from .explore import DEFAULT_SPACE, engine_spaces, evaluate
    from .validated import measured_label

    t = time.perf_counter()
    prof, hw = _profile(args), _hw(args)
    rows, designs, valid = [], 0, 0
    for space in engine_spaces() if args.engine_only else [DEFAULT_SPACE]:
        res = evaluate(prof, hw, space)
        designs += len(res)
        valid += int(res.valid.sum())
        for i in res.best(args.top, key=args.objective):
            df = res.design(i)
            rows.append(
                {
                    "seconds": float(res.seconds[i]),
                    "joules": float(res.joules[i]),
                    "measured": measured_label(df),
                    **df.to_dict(),
                }
            )
    dt = time.perf_counter() - t
    rows = sorted(rows, key=lambda r: r[args.objective])[: args.top]
    out = {"designs": designs, "valid": valid, "seconds_to_explore": dt, "top": rows}
    print(json.dumps(out, indent=1, default=float))


def _tune(args) -> None:
    from .tune import detect_gpu, tune, write_tuned

    gpu = args.gpu if args.gpu is not None else detect_gpu()
    result = tune(args.neurons, args.layers, gpu, args.inputs)
    if args.output:
        write_tuned(Path(args.output), result)
        d = result["decision"]
        print(f"spdnn model tune: {d['choice']}: {d['reason']}", file=sys.stderr)
    else:
        json.dump(result, sys.stdout, indent=1)
        print()


def hw_designs(spec: list[str] | None):
    """The designs a hardware exploration tries on every GPU: directive files, or the engine's
    (its default kernel per layer, with 32 warps, and fused segments of 8 layers with 16 warps)."""
    from .directives import ENGINE_DEFAULT, Dataflow, parse_directives

    if spec:
        return [parse_directives(Path(p).read_text(), p) for p in spec]
    return [Dataflow(), Dataflow(warps=32), ENGINE_DEFAULT]


def _hwdse(args) -> None:
    import time

    from .hardware import load_hardware
    from .hwdse import AXES, evaluate_hw, grid_axes, pareto, plot_front, proxy
    from .validated import measured_label

    prof = _profile(args)
    base = load_hardware(args.preset)
    try:
        designs = hw_designs(args.design)
        axes = grid_axes(args.scale)
    except ValueError as err:
        _fail(args, err)
    t = time.perf_counter()
    res = evaluate_hw(prof, base, designs, axes)
    cost = proxy(axes, args.proxy)
    front = pareto(cost, res.throughput)
    dt = time.perf_counter() - t
    marks = {}  # the presets' own figures, through the grid's scaling of the base (same host costs)
    for key in dict.fromkeys((args.preset, "h100-sxm", "h200")):
        hw = load_hardware(key, calibrated=False)
        one = {
            "sms": [hw.sms],
            "smem_per_sm_kb": [hw.smem_per_sm / 1024],
            "l2_mb": [hw.l2_bytes / 2**20],
            "hbm_tbs": [hw.hbm_bandwidth / 1e12],
            "clock_ghz": [hw.clock_hz / 1e9],
        }
        r1 = evaluate_hw(prof, base, designs, {k: np.asarray(v, float) for k, v in one.items()})
        label = key if key == args.preset else f"{key} ({args.preset} scaled to its figures)"
        marks[label] = (float(proxy(one, args.proxy).ravel()[0]), float(r1.throughput.ravel()[0]))
    tput = res.throughput.ravel()
    flat_best = res.best.ravel()
    out = {
        "network": {"neurons": prof.neurons, "layers": prof.layers, "inputs": prof.inputs},
        "base_preset": args.preset,
        "proxy": args.proxy,
        "axes": {k: [float(x) for x in axes[k]] for k in AXES},
        "designs": [{"directives": df.directives(), "measured": measured_label(df), **df.to_dict()} for df in designs],
        "gpus": len(res),
        "valid": int(np.isfinite(res.seconds).sum()),
        "seconds_to_explore": dt,
        "gpus_per_second": len(res) / dt,
        "front": [
            {
                **res.point(int(i)),
                "proxy": float(cost.ravel()[i]),
                "edges_per_second": float(tput[i]),
                "design": int(flat_best[i]),
                "measured": measured_label(designs[int(flat_best[i])]),
            }
            for i in front
        ],
        "presets": {k: {"proxy": v[0], "edges_per_second": v[1]} for k, v in marks.items()},
    }
    if args.plot:
        plot_front(
            res,
            cost,
            args.proxy,
            args.plot,
            f"N={prof.neurons} L={prof.layers}: {len(res):,} GPUs from {args.preset}, best of "
            f"{len(designs)} design(s); throughput vs {args.proxy} proxy",
            marks,
        )
    text = json.dumps(out, indent=1, default=float)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)


import numpy as np  # noqa: E402  (used by _hwdse; after the functions to keep `spdnn --help` light)


def register(subparsers) -> None:
    """Add `model` with its subcommands predict, explore, tune, hwdse to spdnn's parser."""
    from .. import challenge

    model = subparsers.add_parser(
        "model", help="analytical cost model of kernel dataflows (predict, explore, tune, hwdse)"
    )
    msub = model.add_subparsers(dest="model_command", required=True)

    def network(p):  # the network a subcommand models
        p.add_argument("--neurons", type=int, required=True, help="neurons per layer (N)")
        p.add_argument("--layers", type=int, required=True, help="layers (L)")
        p.add_argument(
            "--inputs",
            type=int,
            default=challenge.N_INPUTS,
            help=f"input rows the stored survival profile is scaled to (default {challenge.N_INPUTS})",
        )
        p.add_argument(
            "--profiles",
            choices=("current", "measured"),
            default="current",
            help="stored survival profiles: today's generator (current, default) or the one of the "
            "2026-11 validation measurements (measured)",
        )

    def common(p):
        network(p)
        p.add_argument("--preset", default=None, help="hardware preset: h100-sxm, h200, a100, v100")
        p.add_argument("--gpu", default=None, help="GPU name (nvidia-smi) to pick the preset")

    p = msub.add_parser("predict", help="time, reuse and traffic per tensor and level, energy of one design")
    common(p)
    p.add_argument("--directives", default=None, help="a directive file (spdnn/model/dataflows/*.m, docs/model.md)")
    p.add_argument(
        "--dataflow",
        default="gather",
        choices=["gather", "smem", "fused"],
        help="the kernel (spdnn/model/dataflows/*.m) when no --directives (default gather)",
    )
    p.add_argument(
        "--variant",
        default="merged",
        choices=["merged", "dedup"],
        help="merged: duplicate neurons merged into narrower layers; dedup: distinct columns at full width",
    )
    p.add_argument("--warps", type=int, default=16, help="warps per block (engine option warps, default 16)")
    p.add_argument(
        "--row-tile",
        type=int,
        default=32,
        help="rows per tile (smem, fused; gather maps 32 rows to the lanes, default 32)",
    )
    p.add_argument("--fuse", type=int, default=1, help="layers per fused segment (fused dataflow only, default 1)")
    p.add_argument(
        "--grid-factor", type=int, default=16, help="blocks per SM aimed at (engine option grid_factor, default 16)"
    )
    p.add_argument(
        "--check-every", type=int, default=8, help="layers between active-row checks and compactions (default 8)"
    )
    p.add_argument(
        "--batch-rows",
        type=int,
        default=0,
        help="input rows per batch (0: the engine's rule from GPU memory, default 0)",
    )
    p.add_argument(
        "--no-carry",
        action="store_true",
        help="saturated rows computed, not carried (engine option carry_saturated=False)",
    )
    p.add_argument("--per-layer", action="store_true", help="also print the predicted seconds of each layer")
    p.set_defaults(func=_predict)

    p = msub.add_parser("explore", help="evaluate the whole mapping space, print the best designs")
    common(p)
    p.add_argument("--top", type=int, default=10, help="designs to print (default 10)")
    p.add_argument(
        "--objective",
        default="seconds",
        choices=["seconds", "joules"],
        help="what the best designs minimise (default seconds)",
    )
    p.add_argument("--engine-only", action="store_true", help="only designs the cuda engine can run (tune's space)")
    p.set_defaults(func=_explore)

    p = msub.add_parser("tune", help="write the predicted-best cuda engine options for a network and GPU")
    common(p)
    p.add_argument("--output", default=None, help="JSON file (default: stdout)")
    p.set_defaults(func=_tune)

    p = msub.add_parser(
        "hwdse", help="hardware design-space exploration: Pareto front of throughput vs an area or power proxy (a plot)"
    )
    network(p)
    p.add_argument("--preset", default="h100-sxm", help="the GPU the grid scales (hardware.json)")
    p.add_argument(
        "--design",
        action="append",
        default=None,
        metavar="FILE",
        help="directive file(s) tried on every GPU (default: the engine's kernel per layer and fused segments)",
    )
    p.add_argument(
        "--proxy", default="area", choices=["area", "power"], help="the cost axis of the front (default area)"
    )
    p.add_argument("--scale", type=int, default=1, help="refine every axis by this factor (more GPUs)")
    p.add_argument("--plot", default=None, help="PNG of the front")
    p.add_argument("--output", default=None, help="JSON (default: stdout)")
    p.set_defaults(func=_hwdse)
