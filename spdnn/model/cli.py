"""`spdnn model predict | explore | tune`: the cost model from the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _hw(args):
    from .hardware import load_hardware, preset_for_gpu

    return load_hardware(args.preset or preset_for_gpu(getattr(args, "gpu", None)))


def _profile(args):
    from .network import NetworkProfile

    return NetworkProfile.stored(args.neurons, args.layers, args.inputs)


def _predict(args) -> None:
    from .cost import predict
    from .directives import Dataflow, parse_directives

    df = parse_directives(Path(args.directives).read_text()) if args.directives else Dataflow(
        dataflow=args.dataflow, variant=args.variant, warps=args.warps, row_tile=args.row_tile, fuse=args.fuse,
        check_every=args.check_every, batch_rows=args.batch_rows)
    p = predict(df, _profile(args), _hw(args))
    d = p.to_dict()
    if not args.per_layer:
        d.pop("layer_seconds")
    print(json.dumps(d, indent=1, default=float))


def _explore(args) -> None:
    import time

    from .explore import DEFAULT_SPACE, engine_spaces, evaluate

    t = time.perf_counter()
    prof, hw = _profile(args), _hw(args)
    rows, designs, valid = [], 0, 0
    for space in engine_spaces() if args.engine_only else [DEFAULT_SPACE]:
        res = evaluate(prof, hw, space)
        designs += len(res)
        valid += int(res.valid.sum())
        for i in res.best(args.top, key=args.objective):
            rows.append({"seconds": float(res.seconds[i]), "joules": float(res.joules[i]), **res.design(i).to_dict()})
    dt = time.perf_counter() - t
    rows = sorted(rows, key=lambda r: r[args.objective])[:args.top]
    out = {"designs": designs, "valid": valid, "seconds_to_explore": dt, "top": rows}
    print(json.dumps(out, indent=1, default=float))


def _tune(args) -> None:
    from .tune import detect_gpu, tune, write_tuned

    gpu = args.gpu if args.gpu is not None else detect_gpu()
    result = tune(args.neurons, args.layers, gpu, args.inputs)
    if args.output:
        write_tuned(Path(args.output), result)
    else:
        json.dump(result, sys.stdout, indent=1)
        print()


def register(subparsers) -> None:
    """Add `model` with its subcommands predict, explore, tune to spdnn's parser."""
    from .. import challenge

    model = subparsers.add_parser("model", help="analytical cost model of kernel dataflows (predict, explore, tune)")
    msub = model.add_subparsers(dest="model_command", required=True)

    def common(p):
        p.add_argument("--neurons", type=int, required=True)
        p.add_argument("--layers", type=int, required=True)
        p.add_argument("--inputs", type=int, default=challenge.N_INPUTS)
        p.add_argument("--preset", default=None, help="hardware preset: h100-sxm, h200, a100, v100")
        p.add_argument("--gpu", default=None, help="GPU name (nvidia-smi) to pick the preset")

    p = msub.add_parser("predict", help="time, bytes per level, reuse and energy of one dataflow")
    common(p)
    p.add_argument("--directives", default=None, help="a file of directives (see spdnn/model/directives.py)")
    p.add_argument("--dataflow", default="gather", choices=["gather", "smem", "fused"])
    p.add_argument("--variant", default="merged", choices=["merged", "dedup"])
    p.add_argument("--warps", type=int, default=8)
    p.add_argument("--row-tile", type=int, default=32)
    p.add_argument("--fuse", type=int, default=1)
    p.add_argument("--check-every", type=int, default=8)
    p.add_argument("--batch-rows", type=int, default=0)
    p.add_argument("--per-layer", action="store_true")
    p.set_defaults(func=_predict)

    p = msub.add_parser("explore", help="evaluate the whole design space, print the best designs")
    common(p)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--objective", default="seconds", choices=["seconds", "joules"])
    p.add_argument("--engine-only", action="store_true", help="only designs the cuda engine can run")
    p.set_defaults(func=_explore)

    p = msub.add_parser("tune", help="write the predicted-best cuda engine options for a network and GPU")
    common(p)
    p.add_argument("--output", default=None, help="JSON file (default: stdout)")
    p.set_defaults(func=_tune)
