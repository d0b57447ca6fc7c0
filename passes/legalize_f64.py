"""Rewrite float64 islands for targets without f64 kernels (LiteRT), exactly or not at all.

An *island* is a connected region of ops that read or produce f64: it is
entered by casts to f64 (from integers, bools or f32) and f64 constants, and
left by casts out of f64 (or comparisons, which give bool).  Hugging Face
MPNet's relative-position buckets are one: ``n / 8`` on int32 n is TF's
truediv, i.e. f64, then ``log``, ``/ log(16)``, ``* 8`` and a cast back to int32.

Each island the targets cannot run becomes, by the first method that applies:

1. **retype** (proved exact): every op in the island is one that f32 computes
   exactly when its operands are f32 values (neg, abs, min/max, compares,
   where, floor/ceil/round, casts and data movement), every f64 constant is an
   f32 value, and every entry is f32, bool, or an integer within +-2^24.  Then
   every f64 value in the island is an f32 value and the island is retyped::

       cast(x -> f64) -> cast(x -> f32)  (dropped when x is f32);  op_f64 -> op_f32

2. **table** (exact by construction): the island is elementwise, its
   constants are single elements, and its runtime inputs are bools or
   integers with known bounds (interval analysis: ``range`` over a symbolic
   dim, differences, abs, ...; every symbolic dim is at most ``max_length``).
   Then each exit is a function F of those inputs on a finite domain, and::

       exit = gather(T, sum_i (clip(x_i, lo_i, hi_i) - lo_i) * stride_i)
       T    = F evaluated in f64 by the reference interpreter at every domain point

   No float op remains, so no f32 rounding can flip a floor at a bucket
   boundary.  Inputs outside [lo_i, hi_i] (a sequence longer than
   ``max_length``) read the table's edge; MPNet's buckets saturate well inside
   it, but the domain is the assumption, logged per island.

3. **retype with a tolerance** (not exact): only with ``allow_float=true`` and
   only for float exits.  The f64 and f32 forms run on sample inputs (the
   integer domain, or random values for f32 entries) and the f32 exits must be
   within ``float_tolerance * max(1, max|y|)`` of the f64 ones, integer exits equal.

Anything else is refused with a message naming the op, its TF location and
why: never a silent wrong answer.  ONNX runs f64, so an island ``targets``
can run is left alone.

``max_length=0`` (the default) takes the row count of the graph's largest
constant table whose weight name says "position" (BERT/MPNet position
embeddings), else 512.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from bertc.diagnostics import BertcError
from bertc.ir import Graph, Op, Value
from bertc.ir.interpreter import run_graph
from bertc.ir.types import DTYPES, INT_DTYPES, TensorType, broadcast_shapes, is_static
from bertc.legalize import unsupported_on
from bertc.analysis.islands import connected_ops
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

F32_INT_LIMIT = 2 ** 24  # every integer of magnitude <= 2^24 is an f32 value
DEFAULT_MAX_LENGTH = 512

# Ops whose f32 result equals their f64 result whenever every float operand is an f32 value.
EXACT_KINDS = frozenset({
    "neg", "abs", "maximum", "minimum", "relu", "floor", "ceil", "round", "sign", "where", "cast",
    "identity", "reshape", "squeeze", "unsqueeze", "transpose", "expand", "tile", "concat", "slice",
    "gather", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal"})
# Ops whose every result element depends only on the same (broadcast) element of the operands.
ELEMENTWISE = frozenset({
    "neg", "abs", "sqrt", "rsqrt", "exp", "log", "tanh", "sigmoid", "relu", "reciprocal", "floor",
    "ceil", "round", "sin", "cos", "sign", "identity", "add", "sub", "mul", "div", "mod", "pow",
    "maximum", "minimum", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
    "logical_and", "logical_or", "logical_not", "where", "cast", "erf"})


# --------------------------------------------------------------------------- islands
@dataclass
class Island:
    """A connected region of ops that touch f64, in graph order."""

    ops: list[Op]
    inputs: list[Value] = field(default_factory=list)  # non-f64, non-constant values it reads
    exits: list[Value] = field(default_factory=list)  # non-f64 results read outside it

    @property
    def loc(self) -> str:
        """Where it starts: its first computing op (constants are hoisted ahead of everything)."""
        return str(next((op for op in self.ops if op.kind != "const"), self.ops[0]).loc)

    @property
    def kinds(self) -> list[str]:
        return sorted({op.kind for op in self.ops})


def _touches_f64(op: Op) -> bool:
    return any(v.dtype == "f64" for v in (*op.operands, *op.results))


def find_islands(graph: Graph) -> list[Island]:
    """Group the ops that touch f64 into components joined by the f64 values they share."""
    groups = connected_ops(graph, _touches_f64, lambda v: v.dtype == "f64")
    return [part for ops in groups for part in _without_reentry(graph, _boundary(graph, Island(ops)))]


def _without_reentry(graph: Graph, island: Island) -> list[Island]:
    """Absorb the outside ops that lead from the island back into it (a comparison's bool
    leaves, is and-ed with another outside, and comes back as a where's condition): a table
    or retype of an island that feeds itself would form a cycle."""
    while True:
        produced = {id(r) for op in island.ops for r in op.results}
        memo: dict[int, bool] = {}
        reentrant = [v for v in island.inputs if _computed_from(v, produced, memo)]
        if not reentrant:
            return [island]
        inside = {id(op) for op in island.ops}
        before = len(inside)
        stack = list(reentrant)
        while stack:  # every producer on a path from the island to a re-entering input
            v = stack.pop()
            op = v.producer
            if op is None or id(op) in inside or not memo.get(id(v)):
                continue
            inside.add(id(op))
            stack.extend(x for x in op.operands if memo.get(id(x)))
        if len(inside) == before:
            return [island]  # nothing to absorb: leave it to the methods' own checks
        island = _boundary(graph, Island([op for op in graph.ops if id(op) in inside]))


def _computed_from(v: Value, sources: set[int], memo: dict[int, bool]) -> bool:
    """Whether ``v`` depends on any value in ``sources`` (post-order over producers, memoised)."""
    stack = [(v, False)]
    while stack:
        cur, ready = stack.pop()
        if id(cur) in memo:
            continue
        operands = cur.producer.operands if cur.producer is not None and id(cur) not in sources else []
        if ready or not operands:
            memo[id(cur)] = id(cur) in sources or any(memo[id(x)] for x in operands)
            continue
        stack.append((cur, True))
        stack.extend((x, False) for x in operands if id(x) not in memo)
    return memo[id(v)]


def _boundary(graph: Graph, island: Island) -> Island:
    """Fill in what the island reads from outside and what is read of it."""
    inside = {id(op) for op in island.ops}
    outputs = {id(v) for v in graph.outputs.values()}
    for op in island.ops:
        for v in op.operands:
            made_inside = v.producer is not None and id(v.producer) in inside
            if v.dtype != "f64" and not v.is_const() and not made_inside and v not in island.inputs:
                island.inputs.append(v)
        for r in op.results:
            outside = any(id(u) not in inside for u in r.users) or id(r) in outputs
            if r.dtype != "f64" and outside:
                island.exits.append(r)
    return island


def _dangling_f64(graph: Graph, island: Island) -> str | None:
    """Why the island cannot be rewritten at all: f64 crosses the graph's boundary."""
    outputs = {id(v): k for k, v in graph.outputs.items()}
    for op in island.ops:
        for v in (*op.operands, *op.results):
            if v.dtype == "f64" and v.producer is None:
                return f"graph input '{v.name}' is f64 (the caller feeds f64; cast it outside the model)"
            if v.dtype == "f64" and id(v) in outputs:
                return f"graph output '{outputs[id(v)]}' is f64 ({op.kind} at {op.loc})"
    return None


# --------------------------------------------------------------------------- integer bounds
def _dim_bound(d, max_length: int) -> tuple[int, int]:
    """A dim's value: itself when static; a symbol (or product of k symbols) is <= max_length^k."""
    if is_static(d):
        return int(d), int(d)
    return 0, max_length ** len(str(d).split("*"))


def _hull(bs: list[tuple[int, int] | None]) -> tuple[int, int] | None:
    if not bs or any(b is None for b in bs):
        return None
    return min(b[0] for b in bs), max(b[1] for b in bs)


def int_bounds(v: Value, max_length: int, memo: dict | None = None, depth: int = 0) -> tuple[int, int] | None:
    """[lo, hi] holding every element of integer/bool value ``v``, or None when unbounded.

    Interval arithmetic over the ops relative positions are built from; a
    graph input (token ids) is unbounded, a symbolic dim at most ``max_length``.
    """
    memo = {} if memo is None else memo
    if id(v) not in memo:
        memo[id(v)] = None if depth > 64 else _bounds_of(v, max_length, memo, depth)
    return memo[id(v)]


def _bounds_of(v: Value, max_length: int, memo: dict, depth: int) -> tuple[int, int] | None:
    if v.dtype == "bool":
        return 0, 1
    if v.dtype not in INT_DTYPES:
        return None
    if v.sym is not None:  # a shape vector or one of its dims
        return _hull([_dim_bound(d, max_length) for d in v.sym])
    op = v.producer
    if op is None:
        return None
    if op.kind == "const":
        arr = op.attrs["value"]
        return (int(arr.min()), int(arr.max())) if arr.size else None
    sub = [int_bounds(x, max_length, memo, depth + 1) if x.dtype in INT_DTYPES or x.dtype == "bool" else None
           for x in op.operands]
    b = _transfer(op, sub)
    info = np.iinfo(DTYPES[v.dtype])
    return b if b is not None and info.min <= b[0] and b[1] <= info.max else None  # wrapped: unknown


def _transfer(op: Op, b: list) -> tuple[int, int] | None:
    """The interval of ``op``'s result from its operands' intervals (None: unknown)."""
    k = op.kind
    if k in ("identity", "reshape", "squeeze", "unsqueeze", "transpose", "expand", "tile", "slice"):
        return b[0]
    if k == "gather":
        return b[0]
    if k == "concat":
        return _hull(b)
    if k == "cast" and op.operands[0].dtype in INT_DTYPES | {"bool"}:
        return b[0]
    if any(x is None for x in b[:2]):
        return None
    (a0, a1), (c0, c1) = b[0], b[1] if len(b) > 1 else (None, None)
    if k == "neg":
        return -a1, -a0
    if k == "abs":
        return (0 if a0 <= 0 <= a1 else min(abs(a0), abs(a1))), max(abs(a0), abs(a1))
    if k in ("add", "sub", "mul", "maximum", "minimum"):
        f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
             "maximum": max, "minimum": min}[k]
        corners = [f(x, y) for x in (a0, a1) for y in (c0, c1)]
        return min(corners), max(corners)
    if k == "where":
        return _hull(b[1:])
    if k == "range" and b[2] is not None and b[2][0] > 0:
        return a0, max(a0, c1 - 1)
    return None


# --------------------------------------------------------------------------- evaluation
def island_function(island: Island, shapes: dict[int, tuple]) -> Graph:
    """The island as a standalone graph: its inputs (with the given shapes) -> its exits.

    Constants are copied; with ``shapes`` of 1-D sample vectors and single-element
    constants made scalars, every exit is a vector over the samples.
    """
    g = Graph("island")
    env: dict[int, Value] = {}
    for v in island.inputs:
        env[id(v)] = g.add_input(f"in{len(env)}", TensorType(v.dtype, shapes[id(v)]))
    for op in island.ops:
        operands = [env[id(x)] if id(x) in env else _copy_const(g, x, env) for x in op.operands]
        attrs = dict(op.attrs)
        if op.kind == "const" and attrs["value"].size == 1:
            attrs["value"] = attrs["value"].reshape(())
        new = g.add(op.kind, operands, attrs)
        for old, r in zip(op.results, new.results):
            env[id(old)] = r
    for i, v in enumerate(island.exits):
        g.outputs[f"out{i}"] = env[id(v)]
    return g


def _copy_const(g: Graph, v: Value, env: dict) -> Value:
    arr = v.const_value()
    if arr is None:  # a non-f64 value computed outside the island: an island input, mapped already
        raise KeyError(v.name)
    c = g.const(arr.reshape(()) if arr.size == 1 else arr, v.name, dtype=arr.dtype)
    env[id(v)] = c
    return c


def evaluate(island: Island, feeds: list[np.ndarray], dtype: str = "f64") -> list[np.ndarray]:
    """The island's exits at 1-D sample vectors ``feeds`` (one per input), computing in ``dtype``."""
    shapes = {id(v): (len(f),) for v, f in zip(island.inputs, feeds)}
    g = island_function(island, shapes)
    if dtype == "f32":
        g = _retyped_copy(g)
    with np.errstate(all="ignore"):  # log(0) = -inf, casts of inf: what the model computes too
        out = run_graph(g, {f"in{i}": f for i, f in enumerate(feeds)})
    return [out[f"out{i}"] for i in range(len(island.exits))]


def _retyped_copy(g: Graph) -> Graph:
    """``g`` with its f64 computed in f32 (a fresh graph; see ``retype``)."""
    h = Graph("island_f32")
    env = {id(v): h.add_input(v.name, v.type) for v in g.inputs}
    for op in g.ops:
        for old, new in zip(op.results, _retyped_op(h, op, [env[id(x)] for x in op.operands], None)):
            env[id(old)] = new
    for k, v in g.outputs.items():
        h.outputs[k] = env[id(v)]
    return h


# --------------------------------------------------------------------------- retype
def _retyped_op(g: Graph, op: Op, operands: list[Value], before: Op | None) -> list[Value]:
    """One island op in f32: f64 constants cast, casts to f64 aimed at f32, the rest re-added."""
    if op.kind == "const" and op.result.dtype == "f64":
        arr = op.attrs["value"].astype(np.float32)
        return [g.const(arr, op.attrs["name"], op.loc, before=before, dtype=np.float32)]
    attrs = dict(op.attrs)
    if op.kind == "cast" and attrs["to"] == "f64":
        attrs["to"] = "f32"
    if op.kind == "cast" and operands[0].dtype == attrs["to"]:
        return [operands[0]]
    return g.add(op.kind, operands, attrs, op.loc, op.results[0].name, before=before).results


def retype(graph: Graph, island: Island) -> None:
    """Rebuild the island in f32 in front of its first op and point its exits at the new values."""
    env: dict[int, Value] = {}
    first = island.ops[0]
    for op in island.ops:
        operands = [env.get(id(x), x) for x in op.operands]
        for old, new in zip(op.results, _retyped_op(graph, op, operands, first)):
            env[id(old)] = new
    for v in island.exits:
        v.replace_all_uses_with(env[id(v)])
    graph.toposort()
    _erase_dead(graph, island)


def _erase_dead(graph: Graph, island: Island) -> None:
    for op in reversed(island.ops):
        if not any(r.uses for r in op.results) and not any(r is o for r in op.results
                                                          for o in graph.outputs.values()):
            graph.erase(op)


def exact_in_f32(island: Island, bounds: dict[int, tuple[int, int] | None]) -> str | None:
    """None when every f64 value of the island is provably an f32 value (method 1), else why not."""
    for op in island.ops:  # the op that rounds first: it is what a message should name
        if op.kind not in EXACT_KINDS | {"const"}:
            return f"{op.kind} at {op.loc} rounds differently in f32"
    for op in island.ops:
        if op.kind == "const":
            arr = op.attrs["value"]
            if op.result.dtype == "f64" and not _f32_values(arr):
                return f"constant {op.attrs['name']} at {op.loc} is not an f32 value"
            continue
        if op.kind == "cast" and op.attrs["to"] == "f64":
            src = op.operands[0]
            b = bounds.get(id(src))
            if src.dtype in INT_DTYPES and (b is None or max(abs(b[0]), abs(b[1])) > F32_INT_LIMIT):
                return f"cast at {op.loc} reads integers not known to lie within +-2^24"
    return None


def _f32_values(arr: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        back = arr.astype(np.float32).astype(np.float64)
    return bool(np.all((back == arr) | (np.isnan(arr) & np.isnan(back))))


# --------------------------------------------------------------------------- table
def elementwise(island: Island) -> str | None:
    """None when each exit element is a function of the same (broadcast) input elements only."""
    if not island.inputs:
        return "it reads no runtime value (fold_constants folds it)"
    for op in island.ops:
        if op.kind == "const":
            if op.attrs["value"].size != 1:
                return f"constant {op.attrs['name']} at {op.loc} has {op.attrs['value'].size} elements"
        elif op.kind not in ELEMENTWISE:
            return f"{op.kind} at {op.loc} is not elementwise"
        elif any(x.is_const() and x.const_value().size != 1 for x in op.operands):
            return f"{op.kind} at {op.loc} reads a constant of more than one element"
    shape = broadcast_shapes(*(v.shape for v in island.inputs))
    for e in island.exits:
        if tuple(e.shape) != tuple(shape):
            return f"exit %{e.name} has shape {list(e.shape)}, its inputs broadcast to {list(shape)}"
    return None


def table_domain(island: Island, bounds: dict, max_table: int) -> str | None:
    """None when the island is a tabulable function of bounded inputs (method 2), else why not."""
    reason = elementwise(island)
    if reason:
        return reason
    size = 1
    for v in island.inputs:
        b = bounds.get(id(v))
        if b is None:
            what = "an f32 value" if v.dtype not in INT_DTYPES | {"bool"} else "an unbounded integer"
            return f"it reads %{v.name} ({v.dtype}), {what}: no finite domain to tabulate"
        size *= b[1] - b[0] + 1
    if size > max_table:
        return f"its inputs take {size} combinations, more than max_table={max_table}"
    return None


def domain_points(island: Island, bounds: dict) -> tuple[list[np.ndarray], list[int]]:
    """Every combination of input values (row-major, last input fastest) and each input's stride."""
    axes = [np.arange(bounds[id(v)][0], bounds[id(v)][1] + 1) for v in island.inputs]
    grids = np.meshgrid(*axes, indexing="ij")
    feeds = [gr.reshape(-1).astype(DTYPES[v.dtype]) for gr, v in zip(grids, island.inputs)]
    sizes = [len(a) for a in axes]
    strides = [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    return feeds, strides


def tabulate(graph: Graph, island: Island, bounds: dict) -> None:
    """Replace each exit by a gather from its table at the inputs' flat index (method 2)."""
    feeds, strides = domain_points(island, bounds)
    tables = evaluate(island, feeds)
    first = island.ops[0]
    index = None
    for v, stride in zip(island.inputs, strides):
        reader = next(op for op in island.ops if v in op.operands)  # its location names the new ops
        term = _index_term(graph, v, bounds[id(v)], stride, reader)
        index = term if index is None else graph.add("add", [index, term], {}, reader.loc, "table_index",
                                                     before=reader).result
    for e, table in zip(island.exits, tables):
        t = graph.const(table, f"{e.name}/lookup", e.producer.loc, before=first, dtype=table.dtype)
        new = graph.add("gather", [t, index], {"axis": 0}, e.producer.loc, e.name, before=first)
        e.replace_all_uses_with(new.result)
    graph.toposort()
    _erase_dead(graph, island)


def _index_term(graph: Graph, v: Value, bound: tuple[int, int], stride: int, at: Op) -> Value:
    """(clip(v, lo, hi) - lo) * stride as i32: one input's share of the flat table index."""
    lo, hi = bound

    def add(kind, operands, hint):
        return graph.add(kind, operands, {}, at.loc, f"{v.name}_{hint}", before=at).result

    def const(x, dt):
        return graph.const(np.asarray(x, DTYPES[dt]), f"{v.name}/{dt}_{x}", at.loc, before=at)

    x = v
    if v.dtype == "bool":
        x = graph.add("cast", [v], {"to": "i32"}, at.loc, f"{v.name}_i32", before=at).result
    else:
        x = add("minimum", [add("maximum", [x, const(lo, v.dtype)], "above"), const(hi, v.dtype)], "clipped")
        if v.dtype != "i32":
            x = graph.add("cast", [x], {"to": "i32"}, at.loc, f"{v.name}_i32", before=at).result
    if lo:
        x = add("sub", [x, const(lo, "i32")], "offset")
    if stride != 1:
        x = add("mul", [x, const(stride, "i32")], "strided")
    return x


# --------------------------------------------------------------------------- float tolerance
def float_error(island: Island, bounds: dict, rng: np.random.Generator) -> float:
    """max |f32 - f64| / max(1, max|f64|) over the exits, on sample inputs; inf when integer exits differ."""
    feeds = []
    for v in island.inputs:
        b = bounds.get(id(v))
        if b is not None:
            feeds.append(rng.integers(b[0], b[1] + 1, 4096).astype(DTYPES[v.dtype]))
        else:
            scale = np.repeat([1e-3, 1.0, 1e3], 4096 // 3 + 1)[:4096]
            feeds.append((rng.standard_normal(4096) * scale).astype(DTYPES[v.dtype]))
    worst = 0.0
    for want, got in zip(evaluate(island, feeds, "f64"), evaluate(island, feeds, "f32")):
        if want.dtype.kind != "f":
            if not np.array_equal(want, got):
                return math.inf
            continue
        if not np.array_equal(np.isnan(want), np.isnan(got)):
            return math.inf
        ok = ~np.isnan(want)
        w, g = want[ok].astype(np.float64), got[ok].astype(np.float64)
        if not w.size:
            continue
        with np.errstate(invalid="ignore"):
            err = np.where(w == g, 0.0, np.abs(w - g))
        worst = max(worst, float(np.max(err)) / max(1.0, float(np.max(np.abs(w[np.isfinite(w)]), initial=0))))
    return worst


# --------------------------------------------------------------------------- the pass
@register_pass
@dataclass(frozen=True)
class LegalizeF64(Pass):
    """Rewrite float64 islands into f32 or integer tables, only where the result is unchanged."""

    legalizes_dtypes: ClassVar[tuple[str, ...]] = ("f64",)
    targets: str = "onnx,tflite"  # rewrite an island when one of these cannot run one of its ops
    max_length: int = 0  # bound on every symbolic dim; 0: the position table's rows, else 512
    max_table: int = 65536  # most entries a lookup table may have (per exit)
    allow_float: bool = False  # accept an f32 retype of float exits within float_tolerance
    float_tolerance: float = 1e-6

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if self.max_length < 0 or self.max_table < 1:
            raise BertcError(f"legalize_f64: max_length must be >= 0 (0: automatic) and max_table >= 1, "
                             f"got {self.max_length} and {self.max_table}.")
        max_length = self.max_length or position_table_rows(graph) or DEFAULT_MAX_LENGTH
        refused, changed = [], False
        for island in find_islands(graph):
            if not any(unsupported_on(op, self.targets) for op in island.ops):
                continue
            done, text = self._rewrite(graph, island, max_length)
            if not done:
                refused.append(f"the f64 island at {island.loc} ({', '.join(island.kinds)}) {text}")
                continue
            log.info("f64 island at %s (%d ops): %s", island.loc, len(island.ops), text)
            ctx.report.setdefault("legalize_f64", []).append({"at": island.loc, "method": text})
            changed = True
        if refused:
            raise BertcError("legalize_f64: " + "; ".join(refused),
                             "Compile for onnx (it runs f64), or change the model to compute this part in "
                             "f32 or integers" + ("" if self.allow_float else
                                                  "; allow_float=true accepts f32 rounding of float results"))
        return changed

    def _rewrite(self, graph: Graph, island: Island, max_length: int) -> tuple[bool, str]:
        """Rewrite one island by the first exact method that applies: (True, which one), or
        hand it to ``_float_retype`` with the reasons they do not apply."""
        dangling = _dangling_f64(graph, island)
        if dangling:
            return False, f"cannot change: {dangling}"
        memo: dict = {}
        bounds = {id(v): int_bounds(v, max_length, memo) for v in island.inputs}
        why_not_exact = exact_in_f32(island, bounds)
        if why_not_exact is None:
            retype(graph, island)
            return True, "retyped to f32 (every value is an f32 value: exact)"
        why_not_table = table_domain(island, bounds, self.max_table)
        if why_not_table is None:
            domain = ", ".join(f"%{v.name} in [{bounds[id(v)][0]}, {bounds[id(v)][1]}]" for v in island.inputs)
            tabulate(graph, island, bounds)
            return True, f"tabulated over {domain} (exact there; max_length={max_length})"
        return self._float_retype(graph, island, bounds,
                                  f"not exact in f32 ({why_not_exact}) and no table ({why_not_table})")

    def _float_retype(self, graph: Graph, island: Island, bounds: dict, reasons: str) -> tuple[bool, str]:
        """Method 3: retype an island with float results, only if allowed and within tolerance."""
        float_exits = [e for e in island.exits if e.dtype in ("f32", "f16")]
        if not float_exits:
            return False, f"computes integers/bools that f32 could round differently: {reasons}"
        first = float_exits[0]
        if not self.allow_float:
            return False, (f"has a float result (%{first.name} at {first.producer.loc}) that f32 rounds "
                           f"differently: {reasons}; allow_float=true accepts it within float_tolerance")
        unsampled = elementwise(island)
        if unsampled:
            return False, f"cannot be sampled for allow_float (elementwise islands only): {unsampled}"
        err = float_error(island, bounds, np.random.default_rng(0))
        if err > self.float_tolerance:
            return False, f"differs in f32 by {err:.2e} > float_tolerance={self.float_tolerance:g} ({reasons})"
        retype(graph, island)
        return True, f"retyped to f32 (allow_float; measured error {err:.2e} on samples)"


def position_table_rows(graph: Graph) -> int:
    """Rows of the largest constant table named like a position embedding that a gather reads (0: none)."""
    rows = [op.operands[0].shape[0] for op in graph.ops_of("gather")
            if op.operands[0].is_const() and op.operands[0].type.rank == 2
            and "position" in op.operands[0].producer.attrs["name"].lower()]
    return max(rows, default=0)
