"""Design-space exploration: every combination of directive values, evaluated at once with numpy.

A design = a policy class (variant, check_every, check_bytes, compact_fraction, batch_rows,
fuse, carry_saturated: what decides which rows each layer processes) x a mapping (a kernel's directive file and
the values of the Params it reads: row tile, warps, grid_factor). Policy classes are simulated
together (policy.simulate, one loop over layers); each class's layers are compressed to the
distinct (layers per launch, rows present, rows alive, shape) tuples with their multiplicities;
then the analysis of the directive file and the time model (cost.design_cost -- the same code as
the scalar model) run once per kernel file on (mappings x distinct tuples) arrays, and a sparse
count matrix sums them per design (_layer_tuples).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import Workload
from .cost import LEVELS, capacity_of, design_cost, energy, fusable, network_shapes, overhead_cost
from .directives import Dataflow, kernel_file
from .hardware import Hardware
from .nest import load_nest
from .network import NetworkProfile
from .policy import PolicyResult, auto_batch, segment_length, simulate
from .validated import NOT_VARIED, VALIDATED, knob_range

DEFAULT_SPACE: dict[str, Any] = dict(
    dataflow=("gather", "smem", "fused"),
    variant=("merged", "dedup"),
    warps=(1, 2, 4, 8, 16, 32),
    row_tile=(8, 16, 32),
    fuse=(1, 2, 4, 8, 15, 30, 60, 120),
    grid_factor=(2, 4, 8, 16, 32, 64, 128),
    check_every=(1, 2, 4, 8, 16, 32),
    check_bytes=(1e18, 256e6, 64e6, 16e6),
    compact_fraction=(1 / 32, 1 / 16, 1 / 8, 1 / 4),
    batch_rows=(0, 30016, 15008, 7520),
    carry_saturated=(True,),  # the engine's default; (True, False) predicts both
)
CANDIDATES = dict(
    warps=(1, 2, 4, 8, 16, 32),
    check_every=(1, 2, 4, 8, 16, 32),
    grid_factor=(2, 4, 8, 16, 32, 64, 128),
    fuse=(2, 4, 8, 16, 32, 64),
    batch_rows=(0, 30016, 15008, 7520),
)


def _inside(dataflow: str, knob: str) -> tuple:
    """The candidate values of a knob inside the range validation measured."""
    if knob == "batch_rows":  # auto or the one batch size measured
        return tuple(VALIDATED[dataflow][knob])
    lo, hi = knob_range(dataflow, knob)
    return tuple(v for v in CANDIDATES[knob] if lo <= v <= hi)


def engine_spaces() -> list[dict]:
    """What the cuda engine runs, searching only the knobs validation varied, inside their measured
    ranges (spdnn.model.validated): its kernel per layer, and its fused segments (merged network,
    tiles of 32 rows) whose length is the check interval (check_every = fuse). check_bytes,
    compact_fraction and carry_saturated stay at the engine's defaults (never varied)."""
    fixed = {k: (v,) for k, v in NOT_VARIED.items()}
    gather = dict(
        DEFAULT_SPACE,
        dataflow=("gather",),
        variant=VALIDATED["gather"]["variant"],
        fuse=(1,),
        row_tile=(32,),
        warps=_inside("gather", "warps"),
        check_every=_inside("gather", "check_every"),
        grid_factor=_inside("gather", "grid_factor"),
        batch_rows=_inside("gather", "batch_rows"),
        **fixed,
    )
    fused = [
        dict(
            gather,
            dataflow=("fused",),
            variant=VALIDATED["fused"]["variant"],
            row_tile=VALIDATED["fused"]["row_tile"],
            warps=_inside("fused", "warps"),
            fuse=(f,),
            check_every=(f,),
        )
        for f in _inside("fused", "fuse")
    ]
    return [gather] + fused


POLICY_KEYS = ("variant", "check_every", "check_bytes", "compact_fraction", "batch_rows", "fuse", "carry_saturated")
MAPPING_KEYS = ("dataflow", "row_tile", "warps", "grid_factor")


@dataclass
class Result:
    """All designs of a space: their parameters (arrays), validity, predicted seconds and joules."""

    params: dict
    valid: np.ndarray
    seconds: np.ndarray
    joules: np.ndarray

    def __len__(self) -> int:
        return len(self.seconds)

    def design(self, i: int) -> Dataflow:
        p = {k: v[i] for k, v in self.params.items()}
        return Dataflow(
            dataflow=str(p["dataflow"]),
            variant=str(p["variant"]),
            warps=int(p["warps"]),
            row_tile=int(p["row_tile"]),
            fuse=int(p["fuse"]),
            grid_factor=int(p["grid_factor"]),
            check_every=int(p["check_every"]),
            check_bytes=float(p["check_bytes"]),
            compact_fraction=float(p["compact_fraction"]),
            batch_rows=int(p["batch_rows"]),
            carry_saturated=bool(p["carry_saturated"]),
        )

    def best(self, k: int = 1, key: str = "seconds") -> list[int]:
        score = np.where(self.valid, getattr(self, key), np.inf)
        k = min(k, len(score))
        idx = np.argpartition(score, k - 1)[:k]
        return [int(i) for i in idx[np.argsort(score[idx], kind="stable")]]


TEMPLATE_KNOBS = {
    "gather": ("warps", "grid_factor"),
    "smem": ("row_tile", "warps", "grid_factor"),
    "fused": ("row_tile", "warps", "grid_factor"),
}


def _mappings(space: dict, dataflow: str) -> list[tuple]:
    """(row_tile, warps, grid_factor) of a kernel file: only the knobs its Params read vary, so
    every mapping is a distinct directive file (gather has no row tile: always 32)."""
    used = TEMPLATE_KNOBS[dataflow]
    r = space["row_tile"] if "row_tile" in used else (32,)
    return [(rt, w, g) for rt in r for w in space["warps"] for g in space["grid_factor"]]


def _policies(space: dict) -> list[tuple]:
    out = []
    for combo in itertools.product(*(space[k] for k in POLICY_KEYS)):
        out.append(combo)
    return out


def _layer_tuples(pol: PolicyResult, shapes: tuple, classes: np.ndarray, fuse: np.ndarray):
    """The distinct layers of a group of policy classes and how often each class meets them.

    A layer's cost depends on the design's mapping and on (fuse, rows present, rows alive, layer
    shape) only, and far fewer of those tuples exist than classes x layers: the model runs once
    per (mapping, tuple), and a sparse (classes x tuples) count matrix sums them per design.
    Returns (counts as CSR, tuples as rows of fuse, present, alive, win, wout, ucols, kw).
    """
    import scipy.sparse as sp

    # classes with the same rows at every layer (and the same segments) share their tuples: find
    # them by a random projection, checked exactly, and compress only the distinct ones
    fuse = np.broadcast_to(np.asarray(fuse, float), (len(classes),))
    pres, alive = pol.present[classes], pol.alive_in[classes]
    rng = np.random.default_rng(0)
    h = pres @ rng.random(pres.shape[1]) + alive @ rng.random(pres.shape[1]) + fuse * np.pi
    _, rep, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    if (
        np.array_equal(pres, pres[rep][inv])
        and np.array_equal(alive, alive[rep][inv])
        and np.array_equal(fuse, fuse[rep][inv])
        and len(rep) < len(classes)
    ):
        counts, tup = _layer_tuples(pol, shapes, np.asarray(classes)[rep], fuse[rep])
        return counts[inv], tup
    shp = np.stack(shapes, axis=1)  # (L, 4)
    ushp, sid = np.unique(shp, axis=0, return_inverse=True)
    C, L = len(classes), shp.shape[0]
    # one int64 key per (class, layer) from each column's dense codes: a 1-D unique, much faster
    # than np.unique(axis=0) on rows; fuse (per class) and the shape (per layer) are coded cheaply
    fu, fcode = np.unique(np.asarray(fuse, float), return_inverse=True)
    pu, pcode = np.unique(pol.present[classes].ravel(), return_inverse=True)
    au, acode = np.unique(pol.alive_in[classes].ravel(), return_inverse=True)
    values = [fu, pu, au, np.arange(len(ushp), dtype=float)]
    codes = [np.repeat(fcode.ravel(), L), pcode.ravel(), acode.ravel(), np.tile(sid.ravel(), C)]
    key = np.zeros(C * L, dtype=np.int64)
    for v, code in zip(values, codes):
        key = key * len(v) + code
    ukey, tid = np.unique(key, return_inverse=True)
    utup = np.empty((len(ukey), 4))
    for i in range(3, -1, -1):
        utup[:, i] = values[i][ukey % len(values[i])]
        ukey = ukey // len(values[i])
    counts = sp.csr_matrix((np.ones(C * L), (np.repeat(np.arange(C), L), tid.ravel())), shape=(C, len(utup)))
    return counts, np.concatenate([utup[:, :3], ushp[utup[:, 3].astype(int)]], axis=1)


def evaluate(prof: NetworkProfile, hw: Hardware, space: dict | None = None) -> Result:
    """Every design of `space` (default DEFAULT_SPACE) on `prof` with `hw`: valid, seconds, joules."""
    space = space or DEFAULT_SPACE
    out_params: dict[str, list] = {k: [] for k in POLICY_KEYS + MAPPING_KEYS}
    out_valid, out_sec, out_j = [], [], []
    pols = _policies(space)
    for variant in space["variant"]:
        mine = [p for p in pols if p[0] == variant]
        if not mine:
            continue
        shapes = network_shapes(prof, variant)
        win, wout, ucols, kw = shapes
        arr = np.array([p[1:] for p in mine], dtype=float)  # ce, cb, cf, batch, fuse, carry
        mx = max(win.max(), wout.max())
        batch = np.where(arr[:, 3] > 0, arr[:, 3], auto_batch(prof, mx, hw.memory_bytes))
        fused_nest = load_nest(kernel_file("fused", variant))
        sims: dict = {}

        def policy_for(any_fused: bool | None) -> tuple:
            """(fuse per class, the classes' simulation) when some layer fuses or none does (None:
            either, for the classes without fusion: they simulate alike)."""
            if any_fused is None:
                any_fused = next(iter(sims), True)
            if any_fused not in sims:
                # no layer narrow enough to fuse: the engine checks as a kernel per layer does
                # (and, as the engine does for a fused design, every Fuse F layers: check_every = F)
                fz = np.where(any_fused, arr[:, 4], 1.0)
                ce = np.where(any_fused | (arr[:, 4] <= 1), arr[:, 0], arr[:, 4])
                sims[any_fused] = (
                    fz,
                    simulate(prof, wout[None, :], ce, arr[:, 1], arr[:, 2], batch, fz.astype(int), arr[:, 5] > 0),
                )
            return sims[any_fused]

        def fuses_any(m: tuple) -> bool:  # whether one mapping's rule fuses any layer (Fuse ... cols)
            prm = {k: float(v) for k, v in zip(("R", "WARPS", "GF"), m) if k in fused_nest.params}
            return bool(fusable(fused_nest, prm, win, wout, ucols).any())

        groups = {}
        work: list[tuple[str, list, bool | None]] = []  # (dataflow, its mappings, whether they fuse any layer)
        for dataflow in space["dataflow"]:
            maps = _mappings(space, dataflow)
            if dataflow != "fused":
                work.append((dataflow, maps, None))
                continue
            flags = [fuses_any(m) for m in maps]
            for flag in (True, False):
                work.append((dataflow, [m for m, f in zip(maps, flags) if f == flag], flag))
        for dataflow, maps, any_fused in work:
            fused = dataflow == "fused"
            fz, pol = policy_for(any_fused)
            any_fused = any_fused is not False
            cls = np.flatnonzero(arr[:, 4] > 1) if fused else np.flatnonzero(arr[:, 4] == 1)
            if not maps or not len(cls):
                continue
            nest = load_nest(kernel_file(dataflow, variant))
            fallback = load_nest(nest.fuse.fallback) if nest.fuse.fallback else None
            R = np.array([m[0] for m in maps], float)[:, None]  # (mappings, 1)
            W = np.array([m[1] for m in maps], float)[:, None]
            G = np.array([m[2] for m in maps], float)[:, None]
            params = {"WARPS": W, "GF": G, "R": R}
            params = {k: v for k, v in params.items() if k in nest.params or (fallback and k in fallback.params)}
            _, cap = capacity_of(nest, {}, shapes)
            assert pol.points is not None  # simulate() gives the check points
            if (fused, any_fused) not in groups:  # gather and smem share the classes without fusion
                groups[fused, any_fused] = _layer_tuples(
                    pol, shapes, cls, segment_length(fz[cls], pol.points[cls], pol.layers_run[cls])
                )
            weights, tup = groups[fused, any_fused]
            F, n, a, lw, lwo, lu, lk = (tup[:, i][None, :] for i in range(7))  # (1, tuples)
            fmask = fusable(nest, params, lw, lwo, lu)  # (mappings or 1, tuples)
            wl = Workload(n, a, lw, lwo, lu, lk, np.where(fmask, F, 1.0))
            c = design_cost(hw, nest, fallback, params, wl, fmask, cap)
            shape = (len(maps), len(tup))

            def per_design(x):  # (mappings, tuples) -> (classes, mappings): the classes' weighted sums
                return np.asarray(weights @ np.broadcast_to(x, shape).T)

            nb = pol.batches[cls][:, None]
            sub = pol.classes(cls)
            t_over, d_over = overhead_cost(hw, sub, win[0], prof.neurons)
            t = nb * (per_design(c["t_layer"]) + np.broadcast_to(t_over, (len(cls),))[:, None])
            byl = {lv: nb * per_design(c[lv]) for lv in LEVELS}
            byl["dram"] = byl["dram"] + nb * np.broadcast_to(d_over, (len(cls),))[:, None]
            macs = nb * per_design(c["macs"])
            ok = np.broadcast_to(c["ok"], shape).all(axis=1)
            ok = np.broadcast_to(ok[None, :], t.shape)  # type: ignore[index]  # all(axis=1) of a 2-D array
            out_sec.append(np.where(ok, t, np.inf).ravel())
            out_j.append(energy(byl, macs).ravel())
            out_valid.append(ok.ravel())
            for i, k in enumerate(POLICY_KEYS):
                v = [mine[j][i] for j in cls]
                out_params[k].append(np.repeat(np.array(v, dtype=object if k == "variant" else float), len(maps)))
            out_params["dataflow"].append(np.full(len(cls) * len(maps), dataflow, dtype=object))
            for i, k in enumerate(("row_tile", "warps", "grid_factor")):
                v = [m[i] for m in maps]
                out_params[k].append(np.tile(np.array(v, float), len(cls)))
    params = {k: np.concatenate(v) for k, v in out_params.items()}
    return Result(params, np.concatenate(out_valid), np.concatenate(out_sec), np.concatenate(out_j))
