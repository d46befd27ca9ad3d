"""A design: a directive file (the loop nest, spdnn/model/dataflows/*.m) and the values of its knobs.

`Dataflow` is the compact form the explorer and tune enumerate: which kernel file (gather: the
cuda engine's kernel per layer; fused: its fused segments; smem: a row tile staged in shared
memory, model only), the feature-width variant, the Params the files read (warps -> WARPS,
grid_factor -> GF, row_tile -> R) and the engine's policy (Fuse, Compact with carry_saturated,
Batch). A directive
file that is not one of the three (`parse_directives` of any text) is carried as `custom`: it
is analysed the same way, but it is no engine configuration.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from functools import cache, lru_cache

from ..engines.layer_plan import VARIANTS
from .nest import DIRECTIVE_DIR, Nest, load_nest, parse_nest

DATAFLOWS = ("gather", "smem", "fused")
# the file of a dataflow per variant: the engine's full-width (dedup) fused segments are
# spdnn_fused_scatter (one tile buffer, outputs scattered), not spdnn_fused
VARIANT_FILES = {("fused", "dedup"): "fused_scatter"}


def kernel_file(dataflow: str, variant: str) -> str:
    """The directive file (spdnn/model/dataflows/NAME.m) of a dataflow for a variant."""
    return VARIANT_FILES.get((dataflow, variant), dataflow)


KNOB_PARAMS = {"warps": "WARPS", "grid_factor": "GF", "row_tile": "R"}


@dataclass(frozen=True)
class Dataflow:
    dataflow: str = "gather"
    variant: str = "merged"
    warps: int = 16
    row_tile: int = 32
    fuse: int = 1
    grid_factor: int = 16
    check_every: int = 8
    check_bytes: float = 64e6
    compact_fraction: float = 1 / 16
    batch_rows: int = 0
    carry_saturated: bool = True  # the engine option: saturated rows dropped at check points and carried
    custom: str = ""  # directive text of a nest that is none of DATAFLOWS' files
    source: str = ""  # where `custom` came from (for messages)

    def __post_init__(self):
        if not self.custom and self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {DATAFLOWS}, not {self.dataflow!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if not self.custom and self.dataflow == "gather" and self.row_tile != 32:
            raise ValueError("the gather dataflow maps 32 rows across the lanes (row_tile 32)")
        if not self.custom and self.dataflow != "fused" and self.fuse != 1:
            raise ValueError("Fuse > 1 needs the fused dataflow")

    def with_(self, **changes) -> Dataflow:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.custom:
            d.pop("custom"), d.pop("source")
        return d

    def nest(self) -> Nest:
        """The parsed loop nest (the kernel's file, or the custom text)."""
        if self.custom:
            return _parse_cached(self.custom, self.source or "<directives>")
        return load_nest(kernel_file(self.dataflow, self.variant))

    def fallback(self) -> Nest | None:
        """The nest of the layers too wide to fuse (Fuse ... else KERNEL), or None."""
        f = self.nest().fuse
        return load_nest(f.fallback) if f.fallback else None

    def params(self) -> dict:
        """Param values for the nest: the knobs it reads, the file's defaults for the others."""
        nest = self.nest()
        out = {k: v[0] for k, v in nest.params.items()}
        for knob, name in KNOB_PARAMS.items():
            if name in out:
                out[name] = float(getattr(self, knob))
        return out

    def directives(self) -> str:
        """This design as a directive file (parse_directives reads it back)."""
        text = self.custom or (DIRECTIVE_DIR / f"{kernel_file(self.dataflow, self.variant)}.m").read_text()
        return render(text, self)

    def engine_options(self) -> dict:
        """Options of spdnn.engines.cuda.CudaEngine that run this dataflow.

        gather: a kernel per layer (no fused segments). fused: the layers the engine's rule fuses
        (merged: after the first, up to FUSE_WIDTH wide, spdnn_fused; dedup: full-width layers up
        to FUSE_WIDTH_SCATTER with at most warps x SCATTER_REGS distinct columns,
        spdnn_fused_scatter) in fused segments of tiles of 32 rows, one segment per check
        interval (the engine's segments end at its check points, so Fuse F is check_every F).
        The engine has no smem (row tile staged per layer) kernel.
        """
        if self.custom:
            raise ValueError(f"{self.source or 'a custom directive file'} is not one of the engine's kernels")
        if self.dataflow == "smem":
            raise ValueError("the cuda engine has no 'smem' kernel (row tile staged per layer): model only")
        if self.dataflow == "fused" and self.row_tile != 32:
            raise ValueError("the cuda engine fuses layers in tiles of 32 rows only")
        opts = dict(
            variant=self.variant,
            warps=self.warps,
            grid_factor=self.grid_factor,
            check_every=self.fuse if self.dataflow == "fused" else self.check_every,
            check_bytes=float(self.check_bytes),
            compact_fraction=float(self.compact_fraction),
        )
        if self.dataflow == "gather":
            opts["fuse_width"] = 0
        if self.batch_rows:
            opts["batch_rows"] = int(self.batch_rows)
        if not self.carry_saturated:  # (on is the engine's default: left out, as tuned files had it)
            opts["carry_saturated"] = False
        return opts


# CudaEngine() without options on a challenge network, as a design: variant merged (what "auto"
# picks there), 16 warps, grid factor 16; the merged layers up to FUSE_WIDTH (256) wide in fused
# segments, the wider ones (the N-wide first layer; every layer at N >= 16384) a kernel each;
# a check point after 8 layers (or once 64 MB of features moved), the interval doubling up to 64
# while nothing compacts, and a segment ending at each (so Fuse 8 is check_every 8); hwdse and
# validation.freeze use it.
ENGINE_DEFAULT = Dataflow(dataflow="fused", fuse=8, check_every=8)


def render(text: str, df: Dataflow) -> str:
    """`text` with its Param, Variant, Fuse, Compact and Batch lines set to `df`'s values."""
    values = {name: getattr(df, knob) for knob, name in KNOB_PARAMS.items()}
    out = []
    for raw in text.splitlines():
        body, sep, comment = raw.partition("#")
        t = body.split()
        pad = " " * max(1, len(body) - len(body.rstrip())) if sep else ""
        tail = (pad + sep + comment) if sep else ""
        if t and t[0] == "Param" and len(t) >= 3 and t[1] in values:
            body = f"Param {t[1]} {int(values[t[1]])}"
        elif t and t[0] == "Variant":
            body = f"Variant {df.variant}"
        elif t and t[0] == "Fuse":
            body = " ".join(["Fuse", str(df.fuse)] + t[2:])
        elif t and t[0] == "Compact":
            body = f"Compact every {df.check_every} bytes {df.check_bytes:g} fraction {df.compact_fraction:g}"
            body += "" if df.carry_saturated else " carry 0"
        elif t and t[0] == "Batch":
            body = f"Batch {df.batch_rows}"
        out.append((body + tail) if t else raw)
    return "\n".join(out) + "\n"


@lru_cache(maxsize=256)
def _parse_cached(text: str, source: str) -> Nest:
    return parse_nest(text, source)


@cache
def _template_structures() -> dict:
    out = {(name, "merged"): load_nest(name).structure() for name in DATAFLOWS}
    out.update({key: load_nest(name).structure() for key, name in VARIANT_FILES.items()})
    return out


def parse_directives(text: str, source: str = "<directives>") -> Dataflow:
    """Read a directive file into a design: one of the engine's kernels when its loop nest is that
    file's (whatever its Param and policy values), else a custom design analysed as written."""
    nest = _parse_cached(text, source)
    kw = dict(variant=nest.variant, fuse=nest.fuse.depth, **nest.policy)
    p = {k: v[0] for k, v in nest.params.items()}
    for knob, name in KNOB_PARAMS.items():
        if name in p:
            kw[knob] = int(p[name])
    template = next(
        (
            name
            for (name, variant), s in _template_structures().items()
            if s == nest.structure() and kernel_file(name, nest.variant) == kernel_file(name, variant)
        ),
        None,
    )
    if template is not None:
        return Dataflow(dataflow=template, **kw)
    name = re.sub(r"\W+", "-", nest.kernel or "custom")
    return Dataflow(dataflow=name, custom=text, source=source, **kw)
