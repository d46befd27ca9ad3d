"""Hardware design-space exploration: SMs, shared memory per SM, L2 size, HBM bandwidth and clock.

Every point of the Cartesian grid of hardware.json's "dse" axes is a distinct GPU derived from a
preset by stated scaling rules (`scaled`); for a chosen network and one or more designs (directive
files with their knobs) it gets the same analysis and time model as the mapping explorer, with
the hardware fields as broadcast numpy axes. Each GPU's throughput (edges per second, its best
design) is set against an area or power *proxy* (`proxy`; hardware.json says what the figures
are and are not), and `pareto` keeps the GPUs no other beats on both.

Speed: the analysis depends on the hardware only through a few axes at a time (bytes on SMs x
shared memory x L2, times on those and bandwidth or clock), so it runs on broadcast shapes; only
the final max/sum per distinct layer tuple touches the whole grid, one tuple at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .analysis import Workload, analyse
from .cost import (
    capacity_of,
    combine,
    dataflow_policy,
    fusable,
    launched,
    network_shapes,
    overhead_cost,
    time_terms,
)
from .directives import Dataflow
from .hardware import Hardware, _data
from .network import NetworkProfile
from .policy import segment_length

AXES = ("sms", "smem_per_sm_kb", "l2_mb", "hbm_tbs", "clock_ghz")


def dse_config() -> dict:
    return _data()["dse"]


def grid_axes(scale: int = 1) -> dict:
    """The axes of hardware.json, or (scale > 1) each refined by `scale` points between neighbours
    (for the rate benchmark: a larger grid of distinct designs)."""
    axes = {k: np.asarray(dse_config()["axes"][k], float) for k in AXES}
    if scale > 1:
        for k, v in axes.items():
            fine = np.concatenate([np.linspace(a, b, scale, endpoint=False) for a, b in zip(v[:-1], v[1:])] + [v[-1:]])
            axes[k] = np.round(fine, 6)
    for k, v in axes.items():
        if len(np.unique(v)) != len(v):
            raise ValueError(f"hardware axis {k} repeats a value")
    return axes


def scaled(base: Hardware, axes: dict) -> Hardware:
    """`base` with the axes as broadcast arrays (axis i on dimension i of 6; the last is the layers'):
    L2 bandwidth scales with SMs x clock (its slices and their clock); L1 is the per-SM SRAM left
    by shared memory (as on the base: unified); latencies in cycles stay (L2, shared memory), DRAM's
    in nanoseconds; host costs and the HBM capacity stay."""

    def ax(i, v):
        shape = [1] * 6
        shape[i] = len(v)
        return np.asarray(v, float).reshape(shape)

    sms = ax(0, axes["sms"])
    smem = ax(1, axes["smem_per_sm_kb"]) * 1024.0
    l2 = ax(2, axes["l2_mb"]) * 2.0**20
    hbm = ax(3, axes["hbm_tbs"]) * 1e12
    clock = ax(4, axes["clock_ghz"]) * 1e9
    r = base.clock_hz / clock
    return replace(
        base,
        sms=sms,
        smem_per_sm=smem,
        smem_per_block=smem - (base.smem_per_sm - base.smem_per_block),
        l1_bytes=smem + (base.l1_bytes - base.smem_per_sm),
        l2_bytes=l2,
        hbm_bandwidth=hbm,
        clock_hz=clock,
        l2_bandwidth=base.l2_bandwidth * (sms / base.sms) / r,
        l2_latency_s=base.l2_latency_s * r,
        smem_latency_s=base.smem_latency_s * r,
        name=f"{base.name} (scaled)",
    )


def proxy(axes: dict, kind: str = "area") -> np.ndarray:
    """The area (mm2) or power (W) proxy of every grid point, shape (S, M, C, B, F)."""
    g = np.meshgrid(*(np.asarray(axes[k], float) for k in AXES), indexing="ij")
    sms, smem_kb, l2_mb, hbm, ghz = g
    if kind == "area":
        a = dse_config()["area_mm2"]
        return (
            sms * (a["sm_logic"] + a["sram_per_mb"] * smem_kb / 1024.0)
            + a["l2_per_mb"] * l2_mb
            + a["hbm_per_tbs"] * hbm
        )
    if kind == "power":
        p = dse_config()["power_w"]
        return (
            sms * p["sm_at_base_clock"] * (ghz / p["base_clock_ghz"]) ** p["clock_exponent"]
            + p["l2_per_mb"] * l2_mb
            + p["hbm_per_tbs"] * hbm
        )
    raise ValueError(f"proxy must be 'area' or 'power', not {kind!r}")


@dataclass
class HwResult:
    axes: dict
    seconds: np.ndarray  # (S, M, C, B, F): the best design's predicted seconds (inf: none fits)
    best: np.ndarray  # index into designs of the best design per GPU
    designs: list
    edges: float  # inputs x 32 x N x L

    @property
    def throughput(self) -> np.ndarray:
        return np.where(np.isfinite(self.seconds), self.edges / self.seconds, 0.0)

    def __len__(self) -> int:
        return int(self.seconds.size)

    def point(self, flat: int) -> dict:
        idx = np.unravel_index(flat, self.seconds.shape)
        return {k: float(self.axes[k][i]) for k, i in zip(AXES, idx)}


def _one_design(df: Dataflow, prof: NetworkProfile, base: Hardware, hw: Hardware) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, valid) of one design on every grid point."""
    from .explore import _layer_tuples

    nest, fallback, params = df.nest(), df.fallback(), df.params()
    shapes = network_shapes(prof, df.variant)
    win, wout, ucols, kw = shapes
    fuse, pol = dataflow_policy(
        df, prof, shapes, bool(fusable(nest, params, win, wout, ucols).any()), base.memory_bytes
    )
    seg = segment_length(np.array([float(fuse)]), pol.points, pol.layers_run)
    counts, tup = _layer_tuples(pol, shapes, np.array([0]), seg)
    counts = np.asarray(counts.todense())[0]
    F, n, a, lw, lwo, lu, lk = (tup[:, i].reshape((1,) * 5 + (-1,)) for i in range(7))
    _, cap = capacity_of(nest, params, shapes)
    fmask = fusable(nest, params, lw, lwo, lu)
    parts = []  # (terms, lockstep, ok) of the nest and of its fallback
    wl, ran = launched(Workload(n, a, lw, lwo, lu, lk, np.where(fmask, F, 1.0)))  # (tuples of ended batches: 0)
    an = analyse(nest, params, wl, hw, cap)
    parts.append((dict(time_terms(hw, an, wl), present=ran), an.lockstep, an.ok()))
    if fallback is not None and not fmask.all():
        wl1 = Workload(wl.n, wl.a, lw, lwo, lu, lk, 1.0)  # type: ignore[arg-type]  # array-likes: Workload makes them arrays
        an1 = analyse(fallback, params, wl1, hw)
        parts.append((dict(time_terms(hw, an1, wl1), present=ran), an1.lockstep, an1.ok()))
    grid = np.broadcast_shapes(*(np.shape(v) for p in parts for v in p[0].values()))[:5]
    total = np.zeros(grid)
    ok = np.ones(grid, bool)
    fm = np.broadcast_to(fmask, (1,) * 5 + (len(counts),)).reshape(-1)

    def cut(v, t, s0):  # layer tuple t of a term, SM slice s0 (arrays keep their broadcast shape)
        if np.ndim(v) != 6:
            return v
        v = np.asarray(v)[..., t if np.shape(v)[-1] > 1 else 0]
        return v[s0] if v.shape[0] > 1 else v

    # the whole grid one distinct layer at a time, a few SM counts at a time (cache-sized arrays)
    step = max(1, int(2**17 // max(1, int(np.prod(grid[1:])))))
    for a in range(0, grid[0], step):
        s0 = slice(a, a + step)
        acc = total[s0]
        for t in range(len(counts)):
            terms, lockstep, valid = parts[0] if fm[t] or len(parts) == 1 else parts[1]
            t_layer, _ = combine({k: cut(v, t, s0) for k, v in terms.items()}, lockstep)
            acc += np.multiply(t_layer, counts[t], out=t_layer)
    for i, (_, _, valid) in enumerate(parts):  # validity: every layer the analysis runs
        v = np.asarray(valid)
        if v.ndim == 6:
            used = np.ones_like(fm) if len(parts) == 1 else (fm if i == 0 else ~fm)
            v = v[..., used].all(axis=-1) if v.shape[-1] > 1 else v[..., 0]  # type: ignore[assignment]
        ok &= v
    sub = pol.classes(0)
    hw5 = replace(
        hw,
        **{  # type: ignore[arg-type]  # ** of the fields, each its own type
            f: (np.asarray(getattr(hw, f))[..., 0] if np.ndim(getattr(hw, f)) == 6 else getattr(hw, f))
            for f in ("hbm_bandwidth", "clock_hz", "sms")
        },
    )
    t_over, _ = overhead_cost(hw5, sub, win[0], prof.neurons)
    seconds = float(pol.batches[0]) * (total + t_over)
    return np.where(ok, seconds, np.inf), ok


def evaluate_hw(prof: NetworkProfile, base: Hardware, designs: list[Dataflow], axes: dict | None = None) -> HwResult:
    """Every GPU of the grid (default hardware.json's axes) with the best of `designs` on `prof`."""
    axes = axes or grid_axes()
    hw = scaled(base, axes)
    secs = np.stack([_one_design(df, prof, base, hw)[0] for df in designs])
    best = np.argmin(secs, axis=0)
    edges = float(prof.inputs) * 32.0 * prof.neurons * prof.layers
    return HwResult(axes, np.take_along_axis(secs, best[None], 0)[0], best, list(designs), edges)


def pareto(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Flat indices of the points no other has at lower-or-equal cost with higher value, by cost."""
    c, v = cost.ravel(), value.ravel()
    order = np.lexsort((-v, c))
    best = np.maximum.accumulate(v[order])
    keep = np.concatenate([[v[order[0]] > 0], best[1:] > best[:-1]])
    return order[keep]


def plot_front(res: HwResult, cost: np.ndarray, kind: str, path, title: str, marks: dict | None = None) -> None:
    """Throughput against the proxy: a sample of the grid, its Pareto front, and `marks` (label -> (cost, tput))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tput = res.throughput.ravel() / 1e12
    c = cost.ravel()
    rng = np.random.default_rng(0)
    sample = rng.choice(len(c), size=min(len(c), 20000), replace=False)
    front = pareto(cost, res.throughput)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(c[sample], tput[sample], s=2, c="0.75", label=f"{len(c):,} GPUs (sample)", rasterized=True)
    ax.plot(c[front], tput[front], "-o", ms=3, c="tab:blue", label=f"Pareto front ({len(front)})")
    for label, (x, y) in (marks or {}).items():
        ax.scatter([x], [y / 1e12], marker="*", s=140, zorder=5, label=label)
    unit = "mm$^2$" if kind == "area" else "W"
    ax.set_xlabel(f"{kind} proxy ({unit}; a proxy, see hardware.json 'dse')")
    ax.set_ylabel("predicted tera-edges/s (cost model)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
