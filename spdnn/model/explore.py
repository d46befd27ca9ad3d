"""Design-space exploration: every combination of directive values, evaluated at once with numpy.

A design = a policy class (variant, check_every, check_bytes, compact_fraction, batch_rows,
fuse: what decides which rows each layer processes) x a mapping (dataflow, row tile, warps,
grid_factor). Policy classes are simulated together (policy.simulate, one loop over layers);
each class's layers are compressed to the distinct (rows present, rows alive, shape) tuples
with their multiplicities; then cost.layer_cost -- the same equations as the scalar model --
runs on arrays of shape (classes, mappings, compressed layers), in chunks of classes.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .cost import CODES, FUSED, GATHER, blocks_per_sm, layer_cost, overhead_cost, smem_per_block, valid
from .directives import Dataflow
from .hardware import Hardware
from .network import NetworkProfile
from .policy import PolicyResult, auto_batch, simulate

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
ENGINE_SPACE = dict(DEFAULT_SPACE, dataflow=("gather",), fuse=(1,), row_tile=(32,))  # what the cuda engine runs
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


def _compress(pol: PolicyResult, shapes: tuple, classes: np.ndarray):
    """Per class, the distinct layers (present, alive, shape) and their counts, padded to the longest.

    One lexsort over all (class, layer) rows: rows of one class with equal keys are merged.
    """
    win, wout, ucols, kw = shapes
    L = win.shape[-1]
    shp = np.stack([win, wout, ucols, kw], axis=1)
    ushp, sid = np.unique(shp, axis=0, return_inverse=True)
    sid = sid.ravel()
    C = len(classes)
    cls = np.repeat(np.arange(C), L)
    pres = pol.present[classes].ravel()
    aliv = pol.alive_in[classes].ravel()
    sids = np.tile(sid, C)
    order = np.lexsort((sids, aliv, pres, cls))
    c_o, p_o, a_o, s_o = cls[order], pres[order], aliv[order], sids[order]
    new = np.ones(len(order), bool)
    new[1:] = (c_o[1:] != c_o[:-1]) | (p_o[1:] != p_o[:-1]) | (a_o[1:] != a_o[:-1]) | (s_o[1:] != s_o[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(order)))
    ucls = c_o[starts]
    first = np.searchsorted(ucls, np.arange(C))
    slot = np.arange(len(starts)) - first[ucls]
    u = int(slot.max()) + 1
    tab = np.zeros((C, u, 6))
    tab[:, :, 2:] = shp[0]  # padding: a harmless shape, zero rows, weight 0
    w = np.zeros((C, u))
    tab[ucls, slot, 0] = p_o[starts]
    tab[ucls, slot, 1] = a_o[starts]
    tab[ucls, slot, 2:] = ushp[s_o[starts]]
    w[ucls, slot] = counts
    return tab, w


def evaluate(prof: NetworkProfile, hw: Hardware, space: dict | None = None, chunk: int = 256) -> Result:
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
            code = np.array([CODES[m[0]] for m in maps], float)[None, :, None]
            R = np.array([m[1] for m in maps], float)[None, :, None]
            W = np.array([m[2] for m in maps], float)[None, :, None]
            G = np.array([m[3] for m in maps], float)[None, :, None]
            for lo in range(0, len(cls), chunk):
                cc = cls[lo:lo + chunk]
                tab, wt = _compress(pol, shapes, cc)
                F = arr[cc, 4][:, None, None]
                n, a = tab[:, None, :, 0], tab[:, None, :, 1]
                lw, lwo, lu, lk = (tab[:, None, :, i] for i in (2, 3, 4, 5))
                sb = smem_per_block(code, R, win.max(), wout.max())  # the widest layer's tiles must fit
                bsm = blocks_per_sm(code, W, lk, sb, hw)
                c = layer_cost(hw, code, R, F, W, G, n, a, lw, lwo, lu, lk, sb, np.maximum(bsm, 1.0))
                nb = pol.batches[cc][:, None]
                sub = PolicyResult(*(getattr(pol, f)[cc] for f in ("batch", "batches", "present", "alive_in", "checks",
                                                                     "compactions", "compact_rows", "scan_rows")))
                t_over, d_over = overhead_cost(hw, sub, win[0], code, F, prof.neurons)
                t = nb * ((c["t_layer"] * wt[:, None, :]).sum(-1) + t_over[:, None] if np.ndim(t_over) == 1
                          else (c["t_layer"] * wt[:, None, :]).sum(-1) + t_over[..., 0])
                byl = {lv: nb * (c[lv] * wt[:, None, :]).sum(-1) for lv in ("dram", "l2", "smem", "reg")}
                d_over = np.broadcast_to(d_over, t_over.shape)
                byl["dram"] = byl["dram"] + nb * (d_over[:, None] if np.ndim(d_over) == 1 else d_over[..., 0])
                macs = nb * (c["macs"] * wt[:, None, :]).sum(-1)
                ok = valid(code[..., 0], W[..., 0], R[..., 0], F[..., 0], sb[..., 0], hw, prof.layers) & (bsm.min(-1) >= 1)
                shape2 = t.shape
                out_sec.append(np.where(ok, t, np.inf).ravel())
                out_j.append(energy(byl, macs).ravel())
                out_valid.append(np.broadcast_to(ok, shape2).ravel())
                for i, k in enumerate(POLICY_KEYS):
                    v = [mine[j][i] for j in cc]
                    out_params[k].append(np.repeat(np.array(v, dtype=object if k == "variant" else float), len(maps)))
                for i, k in enumerate(MAPPING_KEYS):
                    v = [m[i] for m in maps]
                    out_params[k].append(np.tile(np.array(v, dtype=object if k == "dataflow" else float), len(cc)))
    params = {k: np.concatenate(v) for k, v in out_params.items()}
    return Result(params, np.concatenate(out_valid), np.concatenate(out_sec), np.concatenate(out_j))


def space_size(space: dict | None = None) -> int:
    space = space or DEFAULT_SPACE
    return sum(len(_mappings(space, p[-1] > 1)) for p in _policies(space))
