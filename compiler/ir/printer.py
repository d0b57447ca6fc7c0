"""The text form of a graph: one line per op, every value typed, every op located.

    func @serving_default(%input_ids: i32[batch,seq]) -> (logits) {
      %kernel = const @bert/layer_0/query/kernel : f32[64,64]
      %shape = const dense<[0, 0, 4, 16]> : i64[4]
      %matmul = matmul %h, %kernel : f32[batch,seq,64] loc("bert/layer_0/query/MatMul")
      return logits=%logits
    }

Output is deterministic and ``parse(print(g))`` prints the same text again.
An op holding graphs (``cond``'s branches) names them as ``@func`` attributes;
each such region prints as a ``func`` of its own before the graph that uses it,
so the last ``func`` of a text is the graph itself.
Constants with more than ``INLINE_LIMIT`` elements print by weight name; their
data goes beside the text (see ``bertc.ir.serialize``).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from .graph import Graph, Op, Value
from .names import UniqueNames

INLINE_LIMIT = 16
_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_./:\-]*$")
_HINT_CLEAN = re.compile(r"[^A-Za-z0-9_.]")


def format_weight_name(name: str) -> str:
    return "@" + (name if _BARE_NAME.match(name) else json.dumps(name))


def format_scalar(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    f = float(x)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if isinstance(x, np.floating):
        s = str(x)  # numpy gives the shortest text that round-trips in x's own precision
    else:
        s = repr(f)
    return s if any(c in s for c in ".eEn") else s + ".0"


def format_dense(arr: np.ndarray) -> str:
    def rec(a) -> str:
        if a.ndim == 0:
            return format_scalar(a[()])
        return "[" + ", ".join(rec(x) for x in a) + "]"

    return f"dense<{rec(np.asarray(arr))}>"


def format_attr(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, np.ndarray):
        return format_dense(v)
    return format_scalar(v)


class Namer:
    """Unique, stable SSA names from each value's hint, in print order."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.taken = UniqueNames()
        self.regions: dict[int, str] = {}  # id(region graph) -> its func name in this text

    def name(self, v: Value) -> str:
        key = id(v)
        if key not in self.names:
            self.names[key] = self.taken.claim(_HINT_CLEAN.sub("_", v.name) or "v")
        return self.names[key]

    def ref(self, v: Value) -> str:
        if id(v) not in self.names:
            return f"%<undefined:{v.name}>"
        return "%" + self.names[id(v)]

    @staticmethod
    def of(graph) -> "Namer":
        """The names ``print_graph`` gives ``graph``'s values (inputs, then every op result in
        order), so one op formatted alone reads as in the full text and in the lowerings."""
        namer = Namer()
        for v in graph.inputs:
            namer.name(v)
        for op in graph.ops:
            for r in op.results:
                namer.name(r)
        return namer


def format_op(op: Op, namer: Namer) -> str:
    results = ", ".join("%" + namer.name(r) for r in op.results)
    parts = [f"{results} = {op.kind}"]
    if op.kind == "const":
        value = op.attrs["value"]
        parts.append(format_dense(value) if value.size <= INLINE_LIMIT else format_weight_name(op.attrs["name"]))
    else:
        if op.operands:
            parts.append(", ".join(namer.ref(v) for v in op.operands))
        attrs = [f"{k}={_region_ref(v, namer) if isinstance(v, Graph) else format_attr(v)}"
                 for k, v in op.attrs.items() if v is not None]
        if attrs:
            parts.append("{" + ", ".join(attrs) + "}")
    types = ", ".join(str(r.type) for r in op.results)
    parts.append(": " + (types if len(op.results) == 1 else f"({types})"))
    if op.loc.names:
        parts.append(str(op.loc))
    return " ".join(parts)


def _region_ref(region: Graph, namer: Namer) -> str:
    return format_weight_name(namer.regions.get(id(region), region.name))


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name) else json.dumps(name)


def print_graph(graph: Graph) -> str:
    lines: list[str] = []
    for key, value in sorted(graph.analyses.items()):
        try:
            lines.append(f"#{key} = {json.dumps(value, sort_keys=True)}")
        except TypeError:
            continue  # analyses that are not plain data stay in memory only
    funcs = UniqueNames()
    _print_func(graph, lines, funcs, {}, funcs.claim(graph.name))
    return "\n".join(lines) + "\n"


def _print_func(graph: Graph, lines: list[str], funcs: UniqueNames, regions: dict[int, str],
                name: str) -> None:
    """``graph`` as one ``func``, after the funcs of the regions its ops hold."""
    namer = Namer()
    for op in graph.ops:
        for v in op.attrs.values():
            if isinstance(v, Graph) and id(v) not in regions:
                regions[id(v)] = funcs.claim(_HINT_CLEAN.sub("_", v.name) or "region")
                _print_func(v, lines, funcs, regions, regions[id(v)])
    namer.regions = regions
    args = ", ".join(f"%{namer.name(v)}: {v.type}" for v in graph.inputs)
    outs = ", ".join(_key(k) for k in graph.outputs)
    lines.append(f"func {format_weight_name(name)}({args}) -> ({outs}) {{")
    for op in graph.ops:
        lines.append("  " + format_op(op, namer))
    rets = ", ".join(f"{_key(name)}={namer.ref(v)}" for name, v in graph.outputs.items())
    lines.append(f"  return {rets}")
    lines.append("}")
