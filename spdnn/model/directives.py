"""A sparse-DNN layer dataflow written as directives over its loop nest.

The loop nest of one layer (Y_out = f(Y_in W), W with KW nonzeros per distinct column):

    for r in rows:                # input rows (a batch's present rows)
      for j in distinct columns:  # output neurons, de-duplicated (ucols of them)
        for k in 0..KW-1:         # the nonzeros of column j
          acc[r, j] += W[k, j] * Y_in[r, idx[k, j]]
        Y_out[r, outs(j)] = clip(relu(acc + b))

Directives (MAESTRO style, one per line; '#' starts a comment):

    Dataflow gather|smem|fused    kernel family: gather Y_in lines from L2 (the cuda engine's
                                  kernel), stage a row tile in shared memory (Hidayetoglu et al.
                                  2020), or keep the tile in shared memory over several layers
    Variant merged|dedup          feature width: N/16 (duplicate neurons merged) or N
    SpatialMap r R lane           R rows of a tile across the lanes (R in 8, 16, 32; gather: 32)
    SpatialMap j W warp           W distinct columns at once, one per warp (threads = 32 W)
    SpatialMap grid G block       blocks per SM aimed at: gx = ceil(SMs G / tiles) column chunks per tile
    TemporalMap j warp            each warp steps through its columns in time
    TemporalMap k KW reg          the nonzeros in time, all KW gathers in flight (registers)
    Stage Yin l2|smem             where the gathered input tile lives
    Stage W reg                   weights streamed into registers (broadcast loads)
    Stage Yout dram|smem          outputs to DRAM, or kept in shared memory for the next layer
    Fuse F                        layers per launch (F > 1 needs Stage Yin smem, Stage Yout smem)
    Compact every C bytes B fraction f     check points every C layers (or while a layer moves
                                  more than B bytes), compaction when a fraction f of rows died
    Batch B                       rows per batch (0: as many as fit)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

DATAFLOWS = ("gather", "smem", "fused")
VARIANTS = ("dedup", "merged")


@dataclass(frozen=True)
class Dataflow:
    dataflow: str = "gather"
    variant: str = "merged"
    warps: int = 8
    row_tile: int = 32
    fuse: int = 1
    grid_factor: int = 16
    check_every: int = 8
    check_bytes: float = 64e6
    compact_fraction: float = 1 / 16
    batch_rows: int = 0

    def __post_init__(self):
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {DATAFLOWS}, not {self.dataflow!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if self.dataflow == "gather" and self.row_tile != 32:
            raise ValueError("the gather dataflow maps 32 rows across the lanes (row_tile 32)")
        if self.dataflow != "fused" and self.fuse != 1:
            raise ValueError("Fuse > 1 needs the fused dataflow")

    def with_(self, **changes) -> "Dataflow":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    def directives(self) -> str:
        """This dataflow as directive text (parse_directives reads it back)."""
        smem_in = self.dataflow in ("smem", "fused")
        lines = [
            f"Dataflow {self.dataflow}",
            f"Variant {self.variant}",
            f"SpatialMap r {self.row_tile} lane",
            f"SpatialMap j {self.warps} warp",
            f"SpatialMap grid {self.grid_factor} block",
            "TemporalMap j warp",
            "TemporalMap k KW reg",
            f"Stage Yin {'smem' if smem_in else 'l2'}",
            "Stage W reg",
            f"Stage Yout {'smem' if self.dataflow == 'fused' else 'dram'}",
            f"Fuse {self.fuse}",
            f"Compact every {self.check_every} bytes {self.check_bytes:g} fraction {self.compact_fraction:g}",
            f"Batch {self.batch_rows}",
        ]
        return "\n".join(lines) + "\n"

    def engine_options(self) -> dict:
        """Options of spdnn.engines.cuda.CudaEngine that run this dataflow.

        gather: a kernel per layer (no fused segments). fused: the merged network's layers after
        the first in fused segments of tiles of 32 rows, one segment per check interval (the
        engine's segments end at its check points, so Fuse F is check_every F). The engine has
        no smem (row tile staged per layer) kernel.
        """
        if self.dataflow == "smem":
            raise ValueError("the cuda engine has no 'smem' kernel (row tile staged per layer): model only")
        if self.dataflow == "fused" and (self.variant != "merged" or self.row_tile != 32):
            raise ValueError("the cuda engine fuses layers of the merged network in tiles of 32 rows only")
        opts = dict(variant=self.variant, warps=self.warps, grid_factor=self.grid_factor,
                    check_every=self.fuse if self.dataflow == "fused" else self.check_every,
                    check_bytes=float(self.check_bytes), compact_fraction=float(self.compact_fraction))
        if self.dataflow == "gather":
            opts["fuse_width"] = 0
        if self.batch_rows:
            opts["batch_rows"] = int(self.batch_rows)
        return opts


ENGINE_DEFAULT = Dataflow()  # the cuda engine's defaults (variant auto -> merged on challenge networks)


def parse_directives(text: str) -> Dataflow:
    """Read directive text (see the module docstring) into a Dataflow."""
    kw: dict = {}
    stages: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        t = line.split()
        head = t[0].lower()
        try:
            if head == "dataflow":
                kw["dataflow"] = t[1]
            elif head == "variant":
                kw["variant"] = t[1]
            elif head == "spatialmap":
                dim, size = t[1], t[2]
                if dim == "r":
                    kw["row_tile"] = int(size)
                elif dim == "j":
                    kw["warps"] = int(size)
                elif dim == "grid":
                    kw["grid_factor"] = int(size)
                else:
                    raise ValueError(f"unknown spatial dimension {dim!r}")
            elif head == "temporalmap":
                if t[1] not in ("j", "k", "r"):
                    raise ValueError(f"unknown temporal dimension {t[1]!r}")
            elif head == "stage":
                stages[t[1].lower()] = t[2].lower()
            elif head == "fuse":
                kw["fuse"] = int(t[1])
            elif head == "compact":
                opts = dict(zip(t[1::2], t[2::2]))
                if "every" in opts:
                    kw["check_every"] = int(opts["every"])
                if "bytes" in opts:
                    kw["check_bytes"] = float(opts["bytes"])
                if "fraction" in opts:
                    kw["compact_fraction"] = float(opts["fraction"])
            elif head == "batch":
                kw["batch_rows"] = int(t[1])
            else:
                raise ValueError(f"unknown directive {t[0]!r}")
        except IndexError:
            raise ValueError(f"incomplete directive: {raw!r}") from None
    if "dataflow" not in kw:  # infer it from the stages
        if stages.get("yout") == "smem" or kw.get("fuse", 1) > 1:
            kw["dataflow"] = "fused"
        elif stages.get("yin") == "smem":
            kw["dataflow"] = "smem"
    df = Dataflow(**kw)
    want_in = "l2" if df.dataflow == "gather" else "smem"
    if stages.get("yin", want_in) != want_in:
        raise ValueError(f"dataflow {df.dataflow} stages Yin in {want_in}, not {stages['yin']}")
    return df
