"""Design-space exploration: every combination of directive values, evaluated at once with numpy.

A design = a policy class (variant, check_every, check_bytes, compact_fraction, batch_rows,
fuse: what decides which rows each layer processes) x a mapping (dataflow, row tile, warps,
grid_factor). Policy classes are simulated together (policy.simulate, one loop over layers);
each class's layers are compressed to the distinct (rows present, rows alive, shape) tuples
with their multiplicities; then cost.layer_cost -- the same equations as the scalar model --
runs once per (mapping, distinct layer tuple) and a sparse count matrix sums it per design
(_layer_tuples).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .cost import CODES, FUSED, GATHER, blocks_per_sm, fused_extent, layer_cost, overhead_cost, smem_per_block, valid
from .directives import Dataflow
from .hardware import Hardware
from .network import NetworkProfile
from .policy import PolicyResult, auto_batch, segment_length, simulate

DEFAULT_SPACE = dict(
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
)
# what the cuda engine runs: its kernel per layer, and its fused segments (merged network,
# tiles of 32 rows) whose length is the check interval (check_every = fuse)
ENGINE_SPACE = dict(DEFAULT_SPACE, dataflow=("gather",), fuse=(1,), row_tile=(32,))
ENGINE_FUSED_DEPTHS = (4, 8, 16, 32)


def engine_spaces() -> list[dict]:
    """The engine's design space as spaces whose product is exactly what it can run."""
    return [ENGINE_SPACE] + [dict(ENGINE_SPACE, dataflow=("fused",), variant=("merged",), fuse=(f,), check_every=(f,))
                             for f in ENGINE_FUSED_DEPTHS]
POLICY_KEYS = ("variant", "check_every", "check_bytes", "compact_fraction", "batch_rows", "fuse")
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
        return Dataflow(dataflow=str(p["dataflow"]), variant=str(p["variant"]), warps=int(p["warps"]),
                        row_tile=int(p["row_tile"]), fuse=int(p["fuse"]), grid_factor=int(p["grid_factor"]),
                        check_every=int(p["check_every"]), check_bytes=float(p["check_bytes"]),
                        compact_fraction=float(p["compact_fraction"]), batch_rows=int(p["batch_rows"]))

    def best(self, k: int = 1, key: str = "seconds") -> list[int]:
        score = np.where(self.valid, getattr(self, key), np.inf)
        k = min(k, len(score))
        idx = np.argpartition(score, k - 1)[:k]
        return [int(i) for i in idx[np.argsort(score[idx], kind="stable")]]


def _mappings(space: dict, fused: bool) -> list[tuple]:
    out = []
    for df in space["dataflow"]:
        if (df == "fused") != fused:
            continue
        tiles = (32,) if df == "gather" else space["row_tile"]
        out += [(df, r, w, g) for r in tiles for w in space["warps"] for g in space["grid_factor"]]
    return out


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

    shp = np.stack(shapes, axis=1)  # (L, 4)
    ushp, sid = np.unique(shp, axis=0, return_inverse=True)
    C, L = len(classes), shp.shape[0]
    columns = [np.repeat(np.asarray(fuse, float), L), pol.present[classes].ravel(),
               pol.alive_in[classes].ravel(), np.tile(sid.ravel(), C).astype(float)]
    # one int64 key per (class, layer) from each column's dense codes: a 1-D unique, much faster
    # than np.unique(axis=0) on rows
    key = np.zeros(C * L, dtype=np.int64)
    values = []
    for col in columns:
        uniq, code = np.unique(col, return_inverse=True)
        key = key * len(uniq) + code.ravel()
        values.append(uniq)
    ukey, tid = np.unique(key, return_inverse=True)
    utup = np.empty((len(ukey), 4))
    for i in range(3, -1, -1):
        utup[:, i] = values[i][ukey % len(values[i])]
        ukey = ukey // len(values[i])
    counts = sp.csr_matrix((np.ones(C * L), (np.repeat(np.arange(C), L), tid.ravel())), shape=(C, len(utup)))
    return counts, np.concatenate([utup[:, :3], ushp[utup[:, 3].astype(int)]], axis=1)


def evaluate(prof: NetworkProfile, hw: Hardware, space: dict | None = None) -> Result:
    """Every design of `space` (default DEFAULT_SPACE) on `prof` with `hw`: valid, seconds, joules."""
    from .cost import energy, network_shapes

    space = space or DEFAULT_SPACE
    out_params = {k: [] for k in POLICY_KEYS + MAPPING_KEYS}
    out_valid, out_sec, out_j = [], [], []
    pols = _policies(space)
    for variant in space["variant"]:
        mine = [p for p in pols if p[0] == variant]
        if not mine:
            continue
        shapes = network_shapes(prof, variant)
        win, wout, ucols, kw = shapes
        arr = np.array([p[1:] for p in mine], dtype=float)  # ce, cb, cf, batch, fuse
        mx = max(win.max(), wout.max())
        batch = np.where(arr[:, 3] > 0, arr[:, 3], auto_batch(prof, mx, hw.memory_bytes))
        pol = simulate(prof, wout[None, :], arr[:, 0], arr[:, 1], arr[:, 2], batch, arr[:, 4].astype(int))
        for fused in (False, True):
            maps = _mappings(space, fused)
            cls = np.flatnonzero((arr[:, 4] > 1) == fused) if fused else np.flatnonzero(arr[:, 4] == 1)
            if not maps or not len(cls):
                continue
            code = np.array([CODES[m[0]] for m in maps], float)[:, None]  # (mappings, 1)
            R = np.array([m[1] for m in maps], float)[:, None]
            W = np.array([m[2] for m in maps], float)[:, None]
            G = np.array([m[3] for m in maps], float)[:, None]
            weights, tup = _layer_tuples(pol, shapes, cls, segment_length(arr[cls, 4], pol.points[cls], prof.layers))
            F, n, a, lw, lwo, lu, lk = (tup[:, i][None, :] for i in range(7))  # (1, tuples)
            fw, wmax = fused_extent(win, wout, ucols, kw)
            sb = smem_per_block(code, R, win.max(), wout.max(), wmax, fw)  # the widest layer's tiles must fit
            bsm = blocks_per_sm(code, W, lk, sb, hw)
            c = layer_cost(hw, code, R, F, W, G, n, a, lw, lwo, lu, lk, sb, np.maximum(bsm, 1.0))
            shape = (len(maps), len(tup))

            def per_design(x):  # (mappings, tuples) -> (classes, mappings): the classes' weighted sums
                return np.asarray(weights @ np.broadcast_to(x, shape).T)

            nb = pol.batches[cls][:, None]
            sub = PolicyResult(*(getattr(pol, f)[cls] for f in ("batch", "batches", "present", "alive_in", "checks",
                                                                  "compactions", "compact_rows", "scan_rows")))
            t_over, d_over = overhead_cost(hw, sub, win[0], code, arr[cls, 4], prof.neurons)
            t = nb * (per_design(c["t_layer"]) + np.broadcast_to(t_over, (len(cls),))[:, None])
            byl = {lv: nb * per_design(c[lv]) for lv in ("dram", "l2", "smem", "reg")}
            byl["dram"] = byl["dram"] + nb * np.broadcast_to(d_over, (len(cls),))[:, None]
            macs = nb * per_design(c["macs"])
            ok = valid(code[:, 0][None, :], W[:, 0][None, :], R[:, 0][None, :], arr[cls, 4][:, None],
                       sb[:, 0][None, :], hw, prof.layers) & (bsm.min(-1) >= 1)[None, :]
            ok = np.broadcast_to(ok, t.shape)
            out_sec.append(np.where(ok, t, np.inf).ravel())
            out_j.append(energy(byl, macs).ravel())
            out_valid.append(ok.ravel())
            for i, k in enumerate(POLICY_KEYS):
                v = [mine[j][i] for j in cls]
                out_params[k].append(np.repeat(np.array(v, dtype=object if k == "variant" else float), len(maps)))
            for i, k in enumerate(MAPPING_KEYS):
                v = [m[i] for m in maps]
                out_params[k].append(np.tile(np.array(v, dtype=object if k == "dataflow" else float), len(cls)))
    params = {k: np.concatenate(v) for k, v in out_params.items()}
    return Result(params, np.concatenate(out_valid), np.concatenate(out_sec), np.concatenate(out_j))


def space_size(space: dict | None = None) -> int:
    space = space or DEFAULT_SPACE
    return sum(len(_mappings(space, p[-1] > 1)) for p in _policies(space))
