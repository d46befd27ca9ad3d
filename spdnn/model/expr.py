"""Size expressions of the directives: integers, names and a few functions, evaluated with numpy.

    SpatialMap(WARPS, WARPS) j        Cluster(min(cdiv(Sz(j), WARPS), cdiv(SMS * GF, Sz(r) / 32))) block

Names are the file's Params (WARPS, GF, ...), the workload's extents through Sz(d) and a few
hardware and workload constants (SMS, KW, ...) bound at evaluation. Functions: Sz, ceil, floor,
min, max (elementwise), cdiv(a, b) = ceil(a / b). Operators + - * / // and unary minus.
Expressions are parsed once (Python's ast, a whitelist of node types: nothing else runs) and
evaluated many times on numpy arrays, so one file serves a single design or millions.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_FUNCS: dict[str, Callable] = {
    "ceil": np.ceil,
    "floor": np.floor,
    "min": np.minimum,
    "max": np.maximum,
    "cdiv": lambda a, b: np.ceil(np.divide(a, b)),
}
_BINOPS = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.FloorDiv: np.floor_divide,
}


class ExprError(ValueError):
    """An expression that cannot be parsed or uses something not allowed."""


@dataclass(frozen=True)
class Expr:
    """A parsed size expression: `names` it reads, `dims` it reads through Sz(d)."""

    text: str
    names: frozenset
    dims: frozenset
    fn: Callable[[dict], Any]

    def __call__(self, env: dict):
        return self.fn(env)

    @property
    def constant(self) -> bool:
        return not self.names and not self.dims


def parse_expr(text: str) -> Expr:
    """Parse `text`; raises ExprError naming what is not allowed."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ExprError(f"cannot parse size {text!r}: {err.msg}") from None
    names: set = set()
    dims: set = set()

    def build(node) -> Callable:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            v = float(node.value)
            return lambda env: v
        if isinstance(node, ast.Name):
            names.add(node.id)
            key = node.id
            return lambda env: env[key]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = build(node.operand)
            return (lambda env: -inner(env)) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op, a, b = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda env: op(a(env), b(env))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            name = node.func.id
            if name == "Sz":
                if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                    raise ExprError(f"Sz takes one dimension name, in {text!r}")
                d = node.args[0].id
                dims.add(d)
                return lambda env: env["Sz"][d]
            if name in _FUNCS:
                args = [build(a) for a in node.args]
                if name in ("min", "max"):
                    if len(args) < 2:
                        raise ExprError(f"{name} needs two or more arguments, in {text!r}")

                    def fold(env, f=_FUNCS[name], args=args):
                        out = args[0](env)
                        for a in args[1:]:
                            out = f(out, a(env))
                        return out

                    return fold
                want = 2 if name == "cdiv" else 1
                if len(args) != want:
                    raise ExprError(f"{name} takes {want} argument(s), in {text!r}")
                f = _FUNCS[name]
                return (lambda env: f(args[0](env), args[1](env))) if want == 2 else (lambda env: f(args[0](env)))
            raise ExprError(f"unknown function {name!r} in {text!r} (allowed: Sz, {', '.join(_FUNCS)})")
        raise ExprError(f"not allowed in a size: {ast.unparse(node)!r} (in {text!r})")

    fn = build(tree)
    return Expr(text.strip(), frozenset(names), frozenset(dims), fn)


def as_array(x) -> np.ndarray:
    return np.asarray(x, dtype=float)
