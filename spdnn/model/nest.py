"""Directive files: MAESTRO-style data-centric directives over the loop nest of a sparse layer.

The workload of one kernel launch (one layer, or a segment of fused layers) has four dimensions

    l  the layers of the launch (1 for a kernel per layer)
    r  the rows of a batch (feature vectors)
    j  the distinct output columns of the layer (ucols)
    k  the nonzeros of a column (KW)

and three tensors: W[l, j, k] (an index and a value, 8 bytes), Yin[l, r, c(j, k)] (4 bytes, c
the input neuron a nonzero gathers: an indirect index) and Yout[l, r, j] (4 bytes, written to
wout / ucols output neurons per distinct column). Yout of layer l is Yin of layer l + 1.

A file is a list of directives, one per line ('#' starts a comment), outer loops first:

    Kernel NAME                     a name (reported)
    Param NAME VALUE                a knob with its default (sizes may use it)
    SpatialMap(SIZE, OFFSET) DIM    split DIM across the units below: unit u gets SIZE indices from
                                    u * OFFSET; folded in time when the units run out
    TemporalMap(SIZE, OFFSET) DIM   every unit takes the same SIZE indices per step, OFFSET further each step
    Cluster(N) block|warp|lane      the directives after it map across the N units of that kind inside
                                    one unit of the level above (top level: the grid, as many as needed)
    Stage TENSOR smem [double]|l1|l2   where a tensor's tile lives on the SM: staged in shared memory
                                    (double: the next tile loads while this one is used), read through
                                    the L1 cache (the default) or from L2 only
    Stage Yout smem scatter         the outputs go into Yin's tile (ONE buffer): a lane holds its
                                    columns' values in registers until a barrier ends the layer's
                                    reads, then writes each to every output neuron of its column
                                    through the layer's output lists, staged in shared memory once
                                    per layer and block; a second barrier publishes them (needs
                                    Stage Yin smem, and j, k split only inside one block)
    Fuse F [upto EXPR [cols EXPR] else KERNEL]  layers per launch (the check-point interval of the
                                    engine's fused segments); layers wider than EXPR (or with more
                                    distinct columns than cols) run with another kernel's file
    Variant merged|dedup            feature width N/16 or N (which layers the kernel sees)
    Compact every C bytes B fraction f [carry 0|1], Batch B   the engine's check-point / compaction /
                                    batch policy (carry: saturated rows carried, carry_saturated, default 1)

SIZE and OFFSET are expressions (spdnn.model.expr): Params, Sz(DIM), SMS (the SM count), min, max,
cdiv. Every dimension has no sliding window, so OFFSET must equal SIZE (a smaller offset computes
iterations twice, a larger one skips some). Directive order is loop order.

parse_nest() checks the structure and raises DirectiveError naming the file and line; the
analysis (spdnn.model.analysis) checks what depends on values (threads, shared memory, lanes).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engines.layer_plan import VARIANTS
from .expr import Expr, ExprError, parse_expr

DIMS = ("l", "r", "j", "k")
UNITS = ("block", "warp", "lane")  # Cluster kinds, outer to inner
TENSORS = ("W", "Yin", "Yout")
STAGE_LEVELS = ("smem", "l1", "l2")
# names a size may use besides the file's Params (bound by the analysis)
BUILTIN_NAMES = frozenset({"SMS", "KW", "WIN", "WOUT", "UCOLS", "ROWS", "FUSE"})
# relevance of each tensor's dimensions (Yin: c is gathered through j and k)
RELEVANT = {"W": frozenset("ljk"), "Yin": frozenset("lrjk"), "Yout": frozenset("lrj")}
REDUCTION_DIMS = frozenset("k")
DIRECTIVE_DIR = Path(__file__).with_name("dataflows")


class DirectiveError(ValueError):
    """A directive the analysis cannot honour, or a contradictory set: names the file and line."""

    def __init__(self, source: str, line: int | None, message: str):
        self.source, self.line, self.message = source, line, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Map:
    """One SpatialMap / TemporalMap directive."""

    spatial: bool
    dim: str
    size: Expr
    offset: Expr
    line: int

    @property
    def kind(self) -> str:
        return "SpatialMap" if self.spatial else "TemporalMap"

    def text(self) -> str:
        return f"{self.kind}({self.size.text}, {self.offset.text}) {self.dim}"


@dataclass(frozen=True)
class Section:
    """The maps of one level: across the units of `kind` inside one unit of the level above
    (kind 'grid': the top level, across the kernel's top units)."""

    kind: str
    count: Expr | None
    line: int
    maps: tuple = ()

    def spatial(self) -> list:
        return [m for m in self.maps if m.spatial]

    def temporal(self) -> list:
        return [m for m in self.maps if not m.spatial]


@dataclass(frozen=True)
class Stage:
    tensor: str
    level: str
    double: bool
    line: int
    scatter: bool = False  # Stage Yout smem scatter: into Yin's buffer, through staged output lists


@dataclass(frozen=True)
class Fuse:
    depth: int
    width: Expr | None
    fallback: str | None
    line: int
    cols: Expr | None = None  # the most distinct columns of a layer the nest runs (None: any)


@dataclass(frozen=True)
class Nest:
    """A parsed directive file: the loop nest by level, the stages, the policy lines."""

    source: str
    kernel: str
    params: dict  # name -> (default value, line)
    sections: tuple  # Section, outer to inner; sections[0] is the grid
    stages: dict  # tensor -> Stage
    fuse: Fuse
    variant: str
    # check_every, check_bytes, compact_fraction, carry_saturated, batch_rows
    policy: dict = field(default_factory=dict)
    lines: dict = field(default_factory=dict)  # directive name -> line (for messages)
    text: str = ""

    def section(self, kind: str) -> Section | None:
        for s in self.sections:
            if s.kind == kind:
                return s
        return None

    def stage(self, tensor: str) -> str:
        """smem, l1 or l2; by default reads go through L1 and stores to L2 (they skip L1)."""
        s = self.stages.get(tensor)
        return s.level if s else ("l2" if tensor == "Yout" else "l1")

    def staged(self, tensor: str) -> bool:
        return self.stage(tensor) == "smem"

    def double(self, tensor: str) -> bool:
        s = self.stages.get(tensor)
        return bool(s and s.double)

    @property
    def scatter(self) -> bool:
        """Stage Yout smem scatter: one tile buffer, outputs scattered through staged output lists."""
        s = self.stages.get("Yout")
        return bool(s and s.scatter)

    def structure(self) -> tuple:
        """The loop nest without Param values or policy: equal structures analyse alike."""
        secs = tuple(
            (s.kind, s.count.text if s.count else None, tuple((m.kind, m.dim, m.size.text) for m in s.maps))
            for s in self.sections
        )
        stages = tuple(sorted((t, s.level, s.double, s.scatter) for t, s in self.stages.items()))
        fuse = (
            self.fuse.width.text if self.fuse.width else None,
            self.fuse.cols.text if self.fuse.cols else None,
            self.fuse.fallback,
        )
        return secs, stages, fuse, tuple(sorted(self.params))

    def maps(self):
        """(section index, map) over the whole nest, outer to inner."""
        for i, s in enumerate(self.sections):
            for m in s.maps:
                yield i, m

    def error(self, line: int | None, message: str) -> DirectiveError:
        return DirectiveError(self.source, line, message)

    def with_params(self, **values) -> Nest:
        """The same nest with other Param defaults (unknown names are an error)."""
        p = dict(self.params)
        for k, v in values.items():
            if k not in p:
                raise self.error(None, f"no Param {k} in this file (it has {', '.join(p) or 'none'})")
            p[k] = (float(v), p[k][1])
        return Nest(
            self.source,
            self.kernel,
            p,
            self.sections,
            self.stages,
            self.fuse,
            self.variant,
            self.policy,
            self.lines,
            self.text,
        )


_MAP_RE = re.compile(r"^(SpatialMap|TemporalMap)\s*\((.*)\)\s*([A-Za-z_]\w*)\s*$")
_CLUSTER_RE = re.compile(r"^Cluster\s*\((.*)\)\s*([A-Za-z_]\w*)\s*$")


def _split_args(text: str) -> list[str]:
    """Split 'a, b' at top-level commas (sizes may call functions)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [a.strip() for a in out]


def _same_expr(a: Expr, b: Expr) -> bool:
    if a.constant and b.constant:
        return float(a({})) == float(b({}))
    return ast.dump(ast.parse(a.text, mode="eval")) == ast.dump(ast.parse(b.text, mode="eval"))


def parse_nest(text: str, source: str = "<directives>") -> Nest:
    """Parse a directive file (see the module docstring); raises DirectiveError naming the line."""

    def err(line, msg):
        return DirectiveError(source, line, msg)

    kernel = ""
    params: dict = {}
    sections: list[dict[str, Any]] = [dict(kind="grid", count=None, line=0, maps=[])]
    stages: dict = {}
    fuse = Fuse(1, None, None, 0)
    variant = "merged"
    policy: dict[str, float | bool] = {}
    lines: dict[str, int] = {}
    used_names: list[tuple[int, Expr]] = []

    def expr(t: str, line: int) -> Expr:
        try:
            e = parse_expr(t)
        except ExprError as e_:
            raise err(line, str(e_)) from None
        for d in e.dims:
            if d not in DIMS:
                raise err(line, f"Sz({d}): unknown dimension (dimensions: {', '.join(DIMS)})")
        used_names.append((line, e))
        return e

    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().rstrip(";").strip()
        if not line:
            continue
        head = line.split()[0]
        m = _MAP_RE.match(line)
        if m:
            kind, args, dim = m.groups()
            parts = _split_args(args)
            if len(parts) != 2 or not all(parts):
                raise err(no, f"{kind} takes (size, offset): {raw.strip()!r}")
            if dim not in DIMS:
                raise err(no, f"unknown dimension {dim!r} (dimensions: {', '.join(DIMS)})")
            size, offset = expr(parts[0], no), expr(parts[1], no)
            if not _same_expr(size, offset):
                raise err(
                    no,
                    f"{kind}({parts[0]}, {parts[1]}) {dim}: offset must equal size "
                    f"({dim} has no sliding window: a smaller offset computes iterations twice, "
                    "a larger one skips some)",
                )
            if size.constant and float(size({})) < 1:
                raise err(no, f"{kind} size must be at least 1, not {parts[0]}")
            spatial = kind == "SpatialMap"
            if spatial and dim == "l":
                raise err(
                    no,
                    "SpatialMap over l: a layer needs the previous layer's outputs, so layers cannot run side by side",
                )
            sec = sections[-1]
            for other in sec["maps"]:
                if other.dim == dim:
                    raise err(
                        no, f"{dim} is already mapped at this level (line {other.line}): contradictory directives"
                    )
            sec["maps"].append(Map(spatial, dim, size, offset, no))
            continue
        m = _CLUSTER_RE.match(line)
        if m:
            count_text, unit = m.groups()
            if unit not in UNITS:
                raise err(no, f"Cluster(...) {unit}: unit must be one of {', '.join(UNITS)}")
            prev = sections[-1]["kind"]
            order = ("grid",) + UNITS
            if order.index(unit) <= order.index(prev):
                raise err(
                    no,
                    f"Cluster(...) {unit} after Cluster(...) {prev}: levels go block, warp, lane "
                    "(outer to inner), each once",
                )
            count = expr(count_text, no)
            if unit == "lane" and count.constant and float(count({})) != 32:
                raise err(no, f"Cluster({count_text}) lane: a warp has 32 lanes")
            if count.constant and float(count({})) < 1:
                raise err(no, f"Cluster({count_text}): at least one unit")
            sections.append(dict(kind=unit, count=count, line=no, maps=[]))
            continue
        t = line.split()
        try:
            if head in ("SpatialMap", "TemporalMap", "Cluster"):
                raise err(
                    no,
                    f"{head} needs the form {head}(size, offset) dim"
                    if head != "Cluster"
                    else "Cluster needs the form Cluster(n) block|warp|lane",
                )
            if head == "Kernel":
                kernel = t[1]
            elif head == "Param":
                name, value = t[1], t[2]
                if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or name in BUILTIN_NAMES:
                    raise err(
                        no, f"Param {name}: names are upper case and not one of {', '.join(sorted(BUILTIN_NAMES))}"
                    )
                if name in params:
                    raise err(no, f"Param {name} already set at line {params[name][1]}")
                try:
                    params[name] = (float(value), no)
                except ValueError:
                    raise err(no, f"Param {name}: value must be a number, not {value!r}") from None
            elif head == "Stage":
                tensor, level = t[1], t[2].lower()
                rest = [x.lower() for x in t[3:]]
                if tensor not in TENSORS:
                    raise err(no, f"Stage {tensor}: tensor must be one of {', '.join(TENSORS)}")
                if level not in STAGE_LEVELS:
                    raise err(
                        no,
                        f"Stage {tensor} {level}: level must be one of {', '.join(STAGE_LEVELS)} "
                        "(registers always hold a lane's tile; L2 and HBM hold everything)",
                    )
                if rest not in ([], ["double"], ["scatter"]):
                    raise err(no, f"Stage: unexpected {' '.join(rest)!r} (only 'double' or 'scatter', after smem)")
                if rest and level != "smem":
                    raise err(no, f"Stage ... {rest[0]}: only a shared-memory tile can be {rest[0]}")
                if rest == ["scatter"] and tensor != "Yout":
                    raise err(no, f"Stage {tensor} smem scatter: only the outputs (Yout) are scattered")
                if tensor == "Yout" and level == "l1":
                    raise err(no, "Stage Yout l1: stores do not allocate in L1 (it is not write-back); use smem or l2")
                if tensor in stages:
                    raise err(no, f"Stage {tensor} already given at line {stages[tensor].line}: contradictory")
                stages[tensor] = Stage(tensor, level, rest == ["double"], no, rest == ["scatter"])
            elif head == "Fuse":
                depth = int(t[1])
                if depth < 1:
                    raise err(no, "Fuse: at least 1 layer per launch")
                width = fallback = cols = None
                if len(t) > 2:
                    # Fuse F upto WIDTH [cols COLS] else KERNEL (expressions without spaces, or the
                    # text between the keywords)
                    words = t[2:]
                    if words[0] != "upto" or "else" not in words or words.index("else") != len(words) - 2:
                        raise err(no, "Fuse F upto WIDTH [cols COLS] else KERNEL")
                    body = words[1:-2]
                    if "cols" in body:
                        i = body.index("cols")
                        if not body[:i] or not body[i + 1 :]:
                            raise err(no, "Fuse F upto WIDTH [cols COLS] else KERNEL")
                        cols = expr(" ".join(body[i + 1 :]), no)
                        body = body[:i]
                    if not body:
                        raise err(no, "Fuse F upto WIDTH [cols COLS] else KERNEL")
                    width, fallback = expr(" ".join(body), no), words[-1]
                fuse = Fuse(depth, width, fallback, no, cols)
            elif head == "Variant":
                if t[1] not in VARIANTS:
                    raise err(no, f"Variant must be one of {', '.join(VARIANTS)}, not {t[1]!r}")
                variant = t[1]
            elif head == "Compact":
                opts = dict(zip(t[1::2], t[2::2]))
                bad = set(opts) - {"every", "bytes", "fraction", "carry"}
                if bad or len(t) % 2 == 0 or opts.get("carry", "1") not in ("0", "1"):
                    raise err(no, "Compact every C bytes B fraction f [carry 0|1]")
                if "every" in opts:
                    policy["check_every"] = int(opts["every"])
                if "bytes" in opts:
                    policy["check_bytes"] = float(opts["bytes"])
                if "fraction" in opts:
                    policy["compact_fraction"] = float(opts["fraction"])
                if "carry" in opts:
                    policy["carry_saturated"] = opts["carry"] == "1"
            elif head == "Batch":
                policy["batch_rows"] = int(t[1])
            else:
                raise err(no, f"unknown directive {head!r}")
        except IndexError:
            raise err(no, f"incomplete directive: {raw.strip()!r}") from None
        except ValueError as e_:
            if isinstance(e_, DirectiveError):
                raise
            raise err(no, f"{raw.strip()!r}: {e_}") from None
        lines[head] = no

    nest_sections = tuple(Section(s["kind"], s["count"], s["line"], tuple(s["maps"])) for s in sections)
    kinds = [s.kind for s in nest_sections]
    for unit in ("warp", "lane"):
        if unit not in kinds:
            raise err(None, f"no Cluster(...) {unit}: every kernel maps its warps and their lanes")
    for s in nest_sections[1:]:
        assert s.count is not None  # every Cluster(...) has a count; only the grid has none
        if not s.spatial() and not (s.count.constant and float(s.count({})) == 1):
            raise err(
                s.line,
                f"Cluster({s.count.text}) {s.kind} has no SpatialMap after it: its units would "
                "all compute the same iterations",
            )
    for no, e in used_names:
        unknown = set(e.names) - set(params) - BUILTIN_NAMES
        if unknown:
            raise err(no, f"unknown name(s) {', '.join(sorted(unknown))} (declare them with Param)")
    _check_dependences(nest_sections, source)
    out = stages.get("Yout")
    if out is not None and out.scatter:
        if stages.get("Yin") is None or stages["Yin"].level != "smem":
            raise err(
                out.line,
                "Stage Yout smem scatter: the outputs go into Yin's tile, so Yin must be staged in shared memory "
                "(Stage Yin smem)",
            )
        upto = next((i for i, s in enumerate(nest_sections) if s.kind in ("warp", "lane")), len(nest_sections))
        split = [x for s in nest_sections[:upto] for x in s.spatial() if x.dim in "jk"]
        if split:
            raise err(
                out.line,
                f"Stage Yout smem scatter while {split[0].text()} (line {split[0].line}) splits {split[0].dim} "
                "across blocks: one block's buffer takes every output of its rows, after all of its columns read it",
            )
    if fuse.depth > 1:
        for t_ in ("Yin", "Yout"):
            if stages.get(t_) is None or stages[t_].level != "smem":
                raise err(
                    fuse.line,
                    f"Fuse {fuse.depth}: layer l + 1 reads layer l's outputs inside the launch, "
                    f"so Yin and Yout must be staged in shared memory (Stage {t_} smem)",
                )
        if not any(m.dim == "l" and not m.spatial for s in nest_sections[1:] for m in s.maps):
            raise err(
                fuse.line,
                f"Fuse {fuse.depth}: no TemporalMap over l inside the kernel steps through the launch's layers",
            )
    return Nest(source, kernel, params, nest_sections, stages, fuse, variant, policy, lines, text)


def _check_dependences(sections, source: str) -> None:
    """Layer l + 1 needs all of layer l's columns of a row: a loop over l inside the kernel must be
    at a level whose unit holds every unit that splits j or k (it steps them in lockstep)."""
    for i, s in enumerate(sections):
        for m in s.maps:
            if m.dim != "l" or i == 0:
                continue
            # blocks cannot wait for each other: a split across them counts at their own level too
            upto = i + 1 if s.kind == "block" else i
            split_above = [x for s2 in sections[:upto] for x in s2.spatial() if x.dim in "jk"]
            if split_above:
                x = split_above[0]
                raise DirectiveError(
                    source,
                    m.line,
                    f"TemporalMap over l at level {s.kind} while {x.text()} (line {x.line}) splits "
                    f"{x.dim} across units that cannot wait for each other: a layer would start "
                    "before the previous one finished",
                )


def load_nest(name_or_path: str | Path) -> Nest:
    """A directive file by path, or by kernel name from spdnn/model/dataflows (gather, smem, fused)."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = DIRECTIVE_DIR / f"{name_or_path}.m"
    return _load_cached(str(p))


_CACHE: dict = {}


def _load_cached(path: str) -> Nest:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise DirectiveError(str(p), None, f"cannot read: {e.strerror}") from None
    key = (path, text)
    if key not in _CACHE:
        _CACHE[key] = parse_nest(text, _display(p))
    return _CACHE[key]


def _display(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)
