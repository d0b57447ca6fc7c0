"""Hold u8/i8/i16 values in i32 for targets without narrow-integer kernels (LiteRT), exactly or not at all.

Hugging Face DeBERTa and DeBERTa-v2 (TF) cast their attention mask to uint8 and
back to bool (``tf.cast(mask * mask, tf.uint8)`` ... ``tf.cast(m, tf.bool)``);
LiteRT computes in bool/f32/i32/i64 only.  Every narrow value is an i32 value,
so a narrow *island* (a connected region of ops joined by the narrow values they
share) can be computed in i32 instead, provided each op gives the same numbers:

* **Selections and data movement** (where, maximum/minimum, reduce_max/min,
  reshape, transpose, slice, gather, concat, expand, tile, pad, squeeze, unsqueeze,
  identity) return values they were given: exact in i32 whatever the operands.
* **Readers** (comparisons, casts out to bool/f32/i32/i64, shape, gather by
  narrow indices) see the same values: ``cast(x_u8 -> T) -> cast(x_i32 -> T)``,
  dropped when T is i32.
* **Constants** become i32 constants holding the same values.
* **Wrapping ops** (casts into the narrow type, neg, abs, add, sub, mul, and
  reduce_sum/cumsum over a static extent) wrap modulo 2^bits in the narrow
  type.  A small interval analysis over the whole graph (``value_ranges``:
  bools are {0, 1}, constants their values, casts and arithmetic by interval
  rules, symbolic dims >= 0, graph inputs unbounded, float inputs unknown: one
  may be NaN, which maximum/minimum keep) gives the exact integer interval of
  the op's result.  Inside the narrow type: the plain i32 op (the cast is
  dropped or casts to i32).  Outside it, the wrap is emulated exactly, as long
  as the unwrapped result is itself exact in i32 or i64 (always for binary ops
  on narrow operands: |a * b| <= 2^30; for a sum of n terms when
  n * 2^15 < 2^31)::

      wrap_u8(x)  = mod(x, 256)                              (floor mod: [0, 255])
      wrap_i8(x)  = r > 127 ? r - 256 : r,   r = mod(x, 256)  (no x + 128 that could overflow)
      wrap_i16(x) = r > 32767 ? r - 65536 : r, r = mod(x, 65536)

  An i64 source is wrapped in i64, then cast to i32.  A **float** source is
  truncated toward zero by TF when in range and implementation-defined outside
  it, so a float-to-narrow cast is kept (as a cast to i32) only when the
  source's interval truncates into the narrow type, and refused otherwise.

Refused, naming the op, its TF location and why: any other op on a narrow value
(div, matmul, a sum over a symbolic dim, ...), a narrow graph input or output
(the signature is the caller's), and a float cast that may leave the narrow range.  Islands that
hold quantized tensors (quantize, dequantize, qmatmul) belong to the
quantization passes and are left alone.  An island every target runs natively
(ONNX runs u8) is left alone too, and so is one whose only missing ops have a
kind pass of their own (an ONNX cumsum on u8 is legalize_cumsum's).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bertc.diagnostics import BertcError
from bertc.ir import Graph, Op, Value
from bertc.ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, is_static
from bertc.legalize import legalizers, unsupported_on
from bertc.analysis.islands import connected_ops
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

NARROW = {"u8": (0, 255), "i8": (-128, 127), "i16": (-32768, 32767)}
QUANT_KINDS = frozenset({"quantize", "dequantize", "qmatmul"})
MOVES = frozenset({"identity", "reshape", "squeeze", "unsqueeze", "transpose", "expand", "tile", "slice",
                   "gather", "concat", "pad"})
SELECTS = frozenset({"where", "maximum", "minimum", "reduce_max", "reduce_min"})
WRAPPING = frozenset({"neg", "abs", "add", "sub", "mul", "reduce_sum", "cumsum"})
COMPARES = frozenset({"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"})
Interval = tuple  # (lo, hi): Python ints for integers and bools, floats for floats


# --------------------------------------------------------------------------- value ranges
def dtype_range(dtype: str) -> Interval | None:
    """Every value an integer/bool dtype can hold; None for floats (NaN has no interval)."""
    if dtype == "bool":
        return 0, 1
    if dtype in INT_DTYPES:
        info = np.iinfo(DTYPES[dtype])
        return int(info.min), int(info.max)
    return None


def fits(iv: Interval | None, dtype: str) -> bool:
    full = dtype_range(dtype)
    return iv is not None and full is not None and full[0] <= iv[0] and iv[1] <= full[1]


def _hull(ivs: list) -> Interval | None:
    if not ivs or any(iv is None for iv in ivs):
        return None
    return min(iv[0] for iv in ivs), max(iv[1] for iv in ivs)


def _corners(fn, a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None or b is None:
        return None
    vals = [fn(x, y) for x in a for y in b]
    if any(isinstance(v, float) and math.isnan(v) for v in vals):  # inf * 0
        return None
    return min(vals), max(vals)


def _const_range(arr: np.ndarray) -> Interval | None:
    """The constant's own values; floats only when small and free of NaN."""
    if arr.size == 0 or (arr.dtype.kind == "f" and (arr.size > 65536 or np.isnan(arr).any())):
        return None
    if arr.dtype.kind == "f":
        return float(arr.min()), float(arr.max())
    return int(arr.min()), int(arr.max())


def _cast_range(src: Interval | None, src_dtype: str, to: str) -> Interval | None:
    """The unwrapped interval of cast(src -> to): ints keep their values, floats truncate."""
    if src is None:
        return None
    if to == "bool":
        return 0, 1
    if to in FLOAT_DTYPES:  # rounding to float is monotone: the endpoints' images bound it
        return tuple(float(np.asarray(x).astype(DTYPES[to])) for x in src)
    if src_dtype in FLOAT_DTYPES:
        if not all(math.isfinite(x) for x in src):
            return None
        return math.trunc(src[0]), math.trunc(src[1])
    return src


def transfer(op: Op, rs: list) -> Interval | None:
    """The exact (unwrapped) interval of ``op``'s first result from its operands' intervals."""
    k = op.kind
    if k in MOVES - {"concat", "pad"} or k in ("reduce_max", "reduce_min"):
        return rs[0]
    if k == "concat":
        return _hull(rs)
    if k == "pad":
        value = float(op.attrs["value"])
        if op.result.dtype in FLOAT_DTYPES:
            return _hull([rs[0], (value, value)]) if not math.isnan(value) else None
        return _hull([rs[0], (int(value), int(value))]) if math.isfinite(value) and value.is_integer() else None
    if k == "where":
        return _hull(rs[1:3])
    if k == "cast":
        return _cast_range(rs[0], op.operands[0].dtype, op.attrs["to"])
    if k == "neg" and rs[0] is not None:
        return -rs[0][1], -rs[0][0]
    if k == "abs" and rs[0] is not None:
        lo, hi = rs[0]
        return (0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
    if k in ("maximum", "minimum"):
        return _corners(max if k == "maximum" else min, rs[0], rs[1])
    if k == "relu" and rs[0] is not None:
        return max(0, rs[0][0]), max(0, rs[0][1])
    if op.result.dtype in FLOAT_DTYPES:
        return None  # float arithmetic rounds: not tracked
    if k in ("add", "sub", "mul"):
        return _corners({"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
                         "mul": lambda x, y: x * y}[k], rs[0], rs[1])
    if k in ("reduce_sum", "cumsum") and rs[0] is not None:
        return _sum_range(op, rs[0])
    if k == "mod" and rs[1] is not None and rs[1][0] > 0:
        return 0, rs[1][1] - 1
    if k == "range" and rs[0] is not None and rs[1] is not None and rs[2] is not None and rs[2][0] > 0:
        return rs[0][0], max(rs[0][0], rs[1][1] - 1)
    return None


def _sum_range(op: Op, iv: Interval) -> Interval | None:
    """A sum of at most n terms in [lo, hi] (n the static extent summed over; None if symbolic)
    lies in [min(0, lo, n lo), max(0, hi, n hi)]: the empty, single and full sums bound the rest."""
    x = op.operands[0]
    axes = op.attrs["axes"] if op.kind == "reduce_sum" else [op.attrs["axis"]]
    dims = [x.shape[a % x.type.rank] for a in axes]
    if not all(is_static(d) for d in dims):
        return None
    n = math.prod(int(d) for d in dims)
    lo, hi = iv
    return min(0, lo, n * lo), max(0, hi, n * hi)


def _sym_range(v: Value) -> Interval | None:
    """A shape vector or dim (``v.sym``): static dims are themselves, symbolic ones >= 0."""
    if v.sym is None or v.dtype not in INT_DTYPES:
        return None
    hi = dtype_range(v.dtype)[1]
    return _hull([(int(d), int(d)) if is_static(d) else (0, hi) for d in v.sym])


def value_ranges(graph: Graph) -> dict[int, Interval | None]:
    """id(value) -> an interval holding all its elements (None: unknown float), in one sweep.

    An integer result whose unwrapped interval leaves its dtype has wrapped: its
    interval is then the dtype's, which still bounds it.
    """
    out: dict[int, Interval | None] = {id(v): dtype_range(v.dtype) for v in graph.inputs}
    for op in graph.ops:
        if op.kind == "const":
            out[id(op.result)] = _const_range(op.attrs["value"])
            continue
        rs = [out.get(id(x), dtype_range(x.dtype)) for x in op.operands]
        for i, r in enumerate(op.results):
            iv = _sym_range(r) or (transfer(op, rs) if i == 0 else None)
            if r.dtype == "bool" or (r.dtype in INT_DTYPES and not fits(iv, r.dtype)):
                iv = dtype_range(r.dtype)
            out[id(r)] = iv
    return out


# --------------------------------------------------------------------------- islands
def narrow(v: Value) -> bool:
    return v.dtype in NARROW


@dataclass
class Island:
    """Ops joined by the computed (non-constant) narrow values they share, in graph order."""

    ops: list[Op]

    @property
    def loc(self) -> str:
        return str(self.ops[0].loc)

    @property
    def dtypes(self) -> list[str]:
        return sorted({v.dtype for op in self.ops for v in (*op.operands, *op.results) if narrow(v)})


def find_islands(graph: Graph) -> list[Island]:
    """Every non-const op touching a narrow value, grouped by union-find over narrow results.

    Constants are not members: each reader gets its own i32 copy, so a narrow
    constant shared (by CSE) with a quantized op is never retyped under it.
    """
    def member(op: Op) -> bool:
        return op.kind != "const" and any(narrow(v) for v in (*op.operands, *op.results))

    return [Island(ops) for ops in connected_ops(graph, member, narrow)]


def boundary_reason(graph: Graph, island: Island) -> str | None:
    """Why the island cannot change at all: a narrow value crosses the graph's signature."""
    outputs = {id(v): k for k, v in graph.outputs.items()}
    for op in island.ops:
        for v in op.operands:
            if narrow(v) and v.producer is None:
                return (f"graph input '{v.name}' is {v.dtype}, read by {op.kind} at {op.loc} (the signature "
                        f"is the caller's: feed i32 and cast inside the model instead)")
        for r in op.results:
            if narrow(r) and id(r) in outputs:
                return (f"graph output '{outputs[id(r)]}' is {r.dtype} ({op.kind} at {op.loc}): "
                        "the signature is the caller's")
    return None


# --------------------------------------------------------------------------- deciding
@dataclass(frozen=True)
class Plan:
    """How one island op is computed in i32: ``same`` (the op itself on i32 operands), ``wrap``
    (the op, then wrap into ``dtype``), ``forward`` (its i32 operand is the result), or ``cast``."""

    how: str
    dtype: str = ""


def decide(op: Op, rs: list) -> Plan | str:
    """The exact i32 form of island op ``op`` given its operands' intervals, or why there is none."""
    res = op.results[0]
    if op.kind == "cast":
        return _decide_cast(op, rs)
    if not narrow(res):
        if op.kind in COMPARES | {"shape"} or (op.kind == "gather" and not narrow(op.operands[0])):
            return Plan("same")
        dtype = next(x.dtype for x in op.operands if narrow(x))
        return f"{op.kind} at {op.loc} reads a {dtype} value: no exact i32 form is known for it"
    if op.kind == "pad" and not _fill_fits(op.attrs["value"], res.dtype):
        return f"pad at {op.loc} fills with {op.attrs['value']}, not a {res.dtype} value"
    if op.kind in MOVES | SELECTS:
        return Plan("same")
    if op.kind in WRAPPING:
        exact = transfer(op, rs)
        if fits(exact, res.dtype):
            return Plan("same")
        if fits(exact, "i32"):
            return Plan("wrap", res.dtype)
        extent = " (it sums over a dim not known statically)" if exact is None else ""
        return f"{op.kind} at {op.loc} may leave i32 before wrapping to {res.dtype}{extent}"
    return (f"{op.kind} on {res.dtype} at {op.loc} has no exact i32 form here (only selections, data "
            f"movement, comparisons, casts, neg/abs/add/sub/mul and sums over static extents)")


def _fill_fits(value: float, dtype: str) -> bool:
    """Is pad's (float) fill value one of ``dtype``'s values, so i32 pads with the same number?"""
    value = float(value)
    return math.isfinite(value) and value.is_integer() and fits((int(value), int(value)), dtype)


def _decide_cast(op: Op, rs: list) -> Plan | str:
    """cast into a narrow type: forward/cast when the source fits, wrap ints, refuse floats that may not."""
    src, to = op.operands[0], op.attrs["to"]
    if to not in NARROW:  # a cast out of the island: same values in, same values out
        return Plan("forward") if to == "i32" else Plan("cast", to)
    exact = transfer(op, rs)
    if fits(exact, to):
        return Plan("forward") if narrow(src) or src.dtype == "i32" else Plan("cast", "i32")
    if src.dtype in FLOAT_DTYPES:
        lo, hi = NARROW[to]
        known = "unbounded" if rs[0] is None else f"in [{rs[0][0]:g}, {rs[0][1]:g}]"
        return (f"cast at {op.loc} truncates {src.dtype} values {known} to {to}: outside ({lo - 1}, {hi + 1}) "
                f"TF's float-to-{to} cast is implementation-defined, so no i32 form is provably the same")
    return Plan("wrap", to)


# --------------------------------------------------------------------------- rewriting
def wrap(graph: Graph, x: Value, dtype: str, at: Op) -> Value:
    """x (exact in i32 or i64) wrapped into ``dtype`` as TF's narrow cast does, as i32:
    r = mod(x, 2^bits) (floor mod, in [0, 2^bits)); signed: r > max ? r - 2^bits : r."""
    lo, hi = NARROW[dtype]
    span = hi - lo + 1

    def c(value: int, dt: str) -> Value:
        return graph.const(np.asarray(value, DTYPES[dt]), f"{at.result.name}/wrap_{value}", at.loc, before=at)

    def add(kind: str, operands: list, hint: str) -> Value:
        return graph.add(kind, operands, {}, at.loc, f"{at.result.name}_{hint}", before=at).result

    r = add("mod", [x, c(span, x.dtype)], "mod")
    if r.dtype != "i32":
        r = graph.add("cast", [r], {"to": "i32"}, at.loc, f"{at.result.name}_i32", before=at).result
    if lo < 0:
        high = add("greater", [r, c(hi, "i32")], "high")
        r = graph.add("where", [high, add("sub", [r, c(span, "i32")], "wrapped"), r], {}, at.loc,
                      f"{at.result.name}_wrapped", before=at).result
    return r


class Rewriter:
    """Rebuilds one island in i32 in front of each op it replaces; ``env`` maps old values to new."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.env: dict[int, Value] = {}

    def operand(self, x: Value, at: Op) -> Value:
        """The i32 stand-in of an operand: the rebuilt value, a narrow constant's i32 copy, or itself."""
        if id(x) in self.env:
            return self.env[id(x)]
        if narrow(x) and x.is_const():
            arr = x.const_value().astype(np.int32)
            self.env[id(x)] = self.graph.const(arr, x.producer.attrs["name"], x.producer.loc, before=at,
                                               dtype=np.int32)
            return self.env[id(x)]
        return x

    def rebuild(self, op: Op, plan: Plan) -> None:
        """One op: cast(x -> T) -> cast(x' -> T) (none when x' is T); op -> op on i32; op -> wrap(op)."""
        g = self.graph
        operands = [self.operand(x, op) for x in op.operands]
        if plan.how == "forward":
            new = [operands[0]]
        elif plan.how == "cast":
            new = g.add("cast", operands, {"to": plan.dtype}, op.loc, op.result.name, before=op).results
        else:
            source = operands[0] if op.kind == "cast" else \
                g.add(op.kind, operands, dict(op.attrs), op.loc, op.result.name, before=op).result
            new = [wrap(g, source, plan.dtype, op)] if plan.how == "wrap" else [source]
            if op.kind != "cast":
                new = [new[0], *source.producer.results[1:]]
        for old, v in zip(op.results, new):
            self.env[id(old)] = v

    def finish(self, island: Island) -> None:
        """Point every reader outside the island at the new values; erase the old ops and consts."""
        for op in island.ops:
            for r in op.results:
                if not narrow(r):
                    r.replace_all_uses_with(self.env[id(r)])
        consts = {id(x.producer): x.producer for op in island.ops for x in op.operands if narrow(x) and x.is_const()}
        for op in reversed(island.ops):
            self.graph.erase(op)
        for c in consts.values():
            if not c.result.uses and not any(v is c.result for v in self.graph.outputs.values()):
                self.graph.erase(c)


# --------------------------------------------------------------------------- the pass
@register_pass
@dataclass(frozen=True)
class LegalizeNarrowInts(Pass):
    """Compute u8/i8/i16 values in i32 where that is provably exact (wraps emulated), else refuse."""

    legalizes_dtypes: ClassVar[tuple[str, ...]] = ("u8", "i8", "i16")
    targets: str = "onnx,tflite"  # rewrite an island when one of these cannot run one of its ops

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        islands = [i for i in find_islands(graph) if self._needed(i)]
        if not islands:
            return False
        ranges = value_ranges(graph)
        plans, refused = [], []
        for island in islands:
            result = self._plan(graph, island, ranges)
            if isinstance(result, str):
                refused.append(f"the {'/'.join(island.dtypes)} island at {island.loc} "
                               f"({', '.join(sorted({op.kind for op in island.ops}))}) {result}")
            elif result is not None:
                plans.append((island, result))
        if refused:
            raise BertcError("legalize_narrow_ints: " + "; ".join(refused),
                             "Compile for onnx (it runs narrow integers), or change the model to compute this "
                             "part in int32 or bool.")
        for island, op_plans in plans:
            self._rewrite(graph, island, op_plans, ctx)
        return bool(plans)

    def _needed(self, island: Island) -> bool:
        """Does a target lack one of the island's ops, other than ops a kind pass rewrites in
        their narrow dtype itself (legalize_cumsum widens a narrow cumsum for ONNX)?"""
        by_kind = legalizers()
        lacking = [op for op in island.ops if unsupported_on(op, self.targets)]
        return any(op.kind not in by_kind for op in lacking)

    def _plan(self, graph: Graph, island: Island, ranges: dict) -> list[Plan] | str | None:
        """Each op's i32 form (None: a quantized island, left alone), or why the island cannot change."""
        quant = next((op for op in island.ops if op.kind in QUANT_KINDS), None)
        if quant is not None:
            other = next((op for op in island.ops if op.kind not in QUANT_KINDS
                          and unsupported_on(op, self.targets)), None)
            if other is None:
                return None
            return (f"mixes quantized tensors ({quant.kind} at {quant.loc}) with {other.kind} at {other.loc}, "
                    f"which the targets cannot run: quantized tensors are not retyped")
        why = boundary_reason(graph, island)
        if why:
            return f"cannot change: {why}"
        plans = []
        for op in island.ops:
            plan = decide(op, [ranges.get(id(x), dtype_range(x.dtype)) for x in op.operands])
            if isinstance(plan, str):
                return plan
            plans.append(plan)
        return plans

    def _rewrite(self, graph: Graph, island: Island, plans: list[Plan], ctx: PassContext) -> None:
        rw = Rewriter(graph)
        for op, plan in zip(island.ops, plans):
            rw.rebuild(op, plan)
        rw.finish(island)
        wraps = [str(op.loc) for op, p in zip(island.ops, plans) if p.how == "wrap"]
        method = "held in i32 (exact)" + (f"; wrap emulated at {', '.join(wraps)}" if wraps else "")
        log.info("%s island at %s (%d ops): %s", "/".join(island.dtypes), island.loc, len(island.ops), method)
        ctx.report.setdefault("legalize_narrow_ints", []).append({"at": island.loc, "method": method})
