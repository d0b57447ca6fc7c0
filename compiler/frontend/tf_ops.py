"""The TF op -> IR handler table.

Each handler receives the import context, the TF NodeDef and its already
imported operands, and returns the IR value(s) for the node's outputs.  TF
idioms with no core op (StridedSlice masks, transpose_b, SquaredDifference,
Pack) are spelled with core ops here, so passes and targets never see them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from ..ir.types import FLOAT_DTYPES, UNKNOWN
from .tf import ImportContext, handler

INT_MAX = 2**63 - 1
SIGNED_INT_DTYPES = ("i8", "i16", "i32", "i64")


# ------------------------------------------------------------------ plumbing
@handler("Identity", "StopGradient", "PreventGradient", "Snapshot", "EnsureShape", "CheckNumerics")
def _identity(ctx: ImportContext, node, ins):
    return ins[0]


@handler("PlaceholderWithDefault")
def _placeholder_with_default(ctx, node, ins):
    """A TF1 switch such as ``is_training`` that nobody feeds: its default value."""
    return ins[0]


@handler("IdentityN")
def _identity_n(ctx, node, ins):
    return list(ins)


@handler("Const")
def _const(ctx, node, ins):
    from tensorflow.python.framework import tensor_util

    return ctx.const(tensor_util.MakeNdarray(node.attr["value"].tensor))


@handler("Placeholder")
def _placeholder(ctx, node, ins):
    raise OpError(f"placeholder '{node.name}' is not an input of the chosen signature")


# ------------------------------------------------------------------ elementwise
_BINARY = {"Add": "add", "AddV2": "add", "BiasAdd": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div",
           "Div": "div", "FloorDiv": "div", "FloorMod": "mod", "Maximum": "maximum", "Minimum": "minimum", "Pow": "pow",
           "Equal": "equal", "NotEqual": "not_equal", "Less": "less", "LessEqual": "less_equal",
           "Greater": "greater", "GreaterEqual": "greater_equal", "LogicalAnd": "logical_and",
           "LogicalOr": "logical_or"}
_UNARY = {"Neg": "neg", "Abs": "abs", "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Exp": "exp", "Log": "log",
          "Tanh": "tanh", "Erf": "erf", "Sigmoid": "sigmoid", "Relu": "relu", "Reciprocal": "reciprocal",
          "Inv": "reciprocal", "LogicalNot": "logical_not", "Floor": "floor", "Ceil": "ceil",
          "Round": "round", "Sign": "sign", "Sin": "sin", "Cos": "cos"}


@handler(*_BINARY)
def _binary(ctx, node, ins):
    if node.op == "BiasAdd" and ctx.attr("data_format", "NHWC") != "NHWC":
        raise OpError("BiasAdd with data_format NCHW is not supported")
    if node.op == "FloorDiv" and ins[0].dtype in FLOAT_DTYPES:
        return ctx.emit("floor", [ctx.emit("div", ins[:2])])
    if node.op == "Div" and ins[0].dtype in SIGNED_INT_DTYPES:
        return _truncating_div(ctx, ins[0], ins[1])
    return ctx.emit(_BINARY[node.op], ins[:2])


def _truncating_div(ctx, x: Value, y: Value) -> Value:
    """TF's integer Div truncates toward zero, the IR's div floors: the two differ (by one)
    exactly where the remainder is non-zero and the operands have opposite signs."""
    q = ctx.emit("div", [x, y])
    rem = ctx.emit("sub", [x, ctx.emit("mul", [q, y])])
    zero = ctx.const(np.zeros((), _np(x)), ctx.name + "/zero")
    inexact = ctx.emit("not_equal", [rem, zero])
    opposite = ctx.emit("not_equal", [ctx.emit("less", [x, zero]), ctx.emit("less", [y, zero])])
    fix = ctx.emit("cast", [ctx.emit("logical_and", [inexact, opposite])], {"to": x.dtype})
    return ctx.emit("add", [q, fix])


@handler(*_UNARY)
def _unary(ctx, node, ins):
    return ctx.emit(_UNARY[node.op], ins)


@handler("AddN")
def _add_n(ctx, node, ins):
    acc = ins[0]
    for v in ins[1:]:
        acc = ctx.emit("add", [acc, v])
    return acc


@handler("SquaredDifference")
def _squared_difference(ctx, node, ins):
    d = ctx.emit("sub", ins)
    return ctx.emit("mul", [d, d])


@handler("Square")
def _square(ctx, node, ins):
    return ctx.emit("mul", [ins[0], ins[0]])


@handler("Erfc")
def _erfc(ctx, node, ins):
    """erfc(x) = 1 - erf(x): exact algebra, and every target has erf."""
    one = ctx.const(np.ones((), _np(ins[0])), ctx.name + "/one")
    return ctx.emit("sub", [one, ctx.emit("erf", ins)])


def _np(v: Value):
    from ..ir.types import np_dtype

    return np_dtype(v.dtype)


@handler("Softmax")
def _softmax(ctx, node, ins):
    return ctx.emit("softmax", ins, {"axis": -1})


@handler("Cast")
def _cast(ctx, node, ins):
    return ctx.emit("cast", ins, {"to": ctx.attr("DstT")})


@handler("Select", "SelectV2")
def _select(ctx, node, ins):
    c, x, y = ins
    if node.op == "Select" and c.type.rank == 1 and x.type.rank > 1:
        c = ctx.emit("reshape", [c], {"shape": [-1] + [1] * (x.type.rank - 1)})
    return ctx.emit("where", [c, x, y])


@handler("ZerosLike", "OnesLike")
def _fill_like(ctx, node, ins):
    x = ins[0]
    value = np.zeros((), _np(x)) if node.op == "ZerosLike" else np.ones((), _np(x))
    if x.type.is_static and x.type.rank <= 1:  # a small vector (ones_like(begin) as strides): a constant
        return ctx.const(np.broadcast_to(value, x.shape).copy())
    return ctx.emit("expand", [ctx.const(value), ctx.emit("shape", [x])])


# ------------------------------------------------------------------ linear algebra
def _swap_last(ctx, v: Value) -> Value:
    perm = list(range(v.type.rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return ctx.emit("transpose", [v], {"perm": perm})


@handler("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def _matmul(ctx, node, ins):
    a, b = ins
    ta = ctx.attr("transpose_a") or ctx.attr("adj_x")
    tb = ctx.attr("transpose_b") or ctx.attr("adj_y")
    if ta:
        a = _swap_last(ctx, a)
    if tb:
        b = _swap_last(ctx, b)
    return ctx.emit("matmul", [a, b])


@handler("Einsum")
def _einsum(ctx, node, ins):
    return ctx.emit("einsum", ins, {"equation": explicit_equation(ctx.attr("equation"), [v.type.rank for v in ins])})


def explicit_equation(equation: str, ranks: list[int]) -> str:
    """An einsum equation with '...' spelled as letters (right-aligned, numpy's broadcast rule)."""
    if "..." not in equation:
        return equation
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in equation]
    widths = [rank - (len(t) - 3) if "..." in t else 0 for t, rank in zip(terms, ranks)]
    width = max(widths, default=0)
    if width > len(spare) or min(widths, default=0) < 0:
        raise OpError(f"einsum equation {equation!r} does not fit operands of ranks {ranks}")
    letters = "".join(spare[:width])
    terms = [t.replace("...", letters[width - w:]) for t, w in zip(terms, widths)]
    if not _:
        raise OpError(f"einsum equation {equation!r} has no '->' (implicit output)")
    return ",".join(terms) + "->" + rhs.replace("...", letters)


@handler("Transpose")
def _transpose(ctx, node, ins):
    return ctx.emit("transpose", [ins[0]], {"perm": [int(p) for p in ctx.const_of(ins[1])]})


# ------------------------------------------------------------------ shapes
@handler("Shape")
def _shape(ctx, node, ins):
    return ctx.emit("shape", ins, {"dtype": ctx.attr("out_type", "i32")})


@handler("ShapeN")
def _shape_n(ctx, node, ins):
    return [ctx.emit("shape", [v], {"dtype": ctx.attr("out_type", "i32")}) for v in ins]


@handler("Size")
def _size(ctx, node, ins):
    s = ctx.emit("shape", ins, {"dtype": ctx.attr("out_type", "i32")})
    return ctx.emit("reduce_prod", [s], {"axes": [0], "keepdims": False})


@handler("Reshape")
def _reshape(ctx, node, ins):
    x, shape = ins
    c = shape.const_value()
    if c is not None and 0 not in c.reshape(-1).tolist():  # TF's 0 is a real 0, ONNX's copies
        return ctx.emit("reshape", [x], {"shape": [int(d) for d in c.reshape(-1)]})
    return ctx.emit("reshape", [x, shape])


@handler("Squeeze")
def _squeeze(ctx, node, ins):
    x = ins[0]
    axes = ctx.attr("squeeze_dims")
    if not axes and not x.type.is_static:  # which dims are 1 is only known at run time
        raise OpError(f"Squeeze without axes of {x.type}, whose dims are not all known; pass axis=")
    axes = axes or [i for i, d in enumerate(x.shape) if d == 1]
    return ctx.emit("squeeze", [x], {"axes": [int(a) for a in axes]})


@handler("ExpandDims")
def _expand_dims(ctx, node, ins):
    return ctx.emit("unsqueeze", [ins[0]], {"axes": [int(ctx.const_of(ins[1]).reshape(()))]})


@handler("ConcatV2")
def _concat(ctx, node, ins):
    axis = int(ctx.const_of(ins[-1]).reshape(()))
    if len(ins) == 2:
        return ins[0]
    return ctx.emit("concat", ins[:-1], {"axis": axis})


@handler("Pack")
def _pack(ctx, node, ins):
    axis = ctx.attr("axis", 0)
    parts = [ctx.emit("unsqueeze", [v], {"axes": [axis]}) for v in ins]
    return parts[0] if len(parts) == 1 else ctx.emit("concat", parts, {"axis": axis})


@handler("Unpack")
def _unpack(ctx, node, ins):
    x, axis = ins[0], ctx.attr("axis", 0)
    outs = []
    for i in range(ctx.attr("num")):
        s = ctx.emit("slice", [x], {"starts": [i], "ends": [i + 1], "axes": [axis]})
        outs.append(ctx.emit("squeeze", [s], {"axes": [axis]}))
    return outs


@handler("Fill")
def _fill(ctx, node, ins):
    dims, value = ins
    c = dims.const_value()
    if c is not None:
        return ctx.emit("expand", [value], {"shape": [int(d) for d in c]})
    return ctx.emit("expand", [value, dims])


@handler("BroadcastTo")
def _broadcast_to(ctx, node, ins):
    return _fill(ctx, node, [ins[1], ins[0]])


@handler("Tile")
def _tile(ctx, node, ins):
    c = ins[1].const_value()
    if c is not None:
        return ctx.emit("tile", [ins[0]], {"repeats": [int(r) for r in c]})
    return ctx.emit("tile", ins)


@handler("Range")
def _range(ctx, node, ins):
    dtype = ctx.attr("Tidx", ins[0].dtype)
    vals = [v if v.dtype == dtype else ctx.emit("cast", [v], {"to": dtype}) for v in ins]
    return ctx.emit("range", vals)


@handler("ReadVariableOp")
def _read_variable(ctx, node, ins):
    return ctx.variable(node.input[0])


@handler("ResourceGather")
def _resource_gather(ctx, node, ins):
    if ctx.attr("batch_dims", 0):
        raise OpError("ResourceGather with batch_dims is not supported")
    return ctx.emit("gather", [ctx.variable(node.input[0]), ins[1]], {"axis": 0})


@handler("GatherV2", "Gather")
def _gather(ctx, node, ins):
    axis = int(ctx.const_of(ins[2]).reshape(())) if len(ins) > 2 else 0
    if ctx.attr("batch_dims", 0):
        from .tf_ops_indexing import batched_gather

        return batched_gather(ctx, ins[0], ins[1], axis, ctx.attr("batch_dims"))
    return ctx.emit("gather", ins[:2], {"axis": axis})


@handler("OneHot")
def _one_hot(ctx, node, ins):
    """The depth is an attribute when known, else an operand (``depth=tf.shape(x)[1]``)."""
    idx, depth, on, off = ins
    attrs = {"on_value": float(ctx.const_of(on).reshape(())), "off_value": float(ctx.const_of(off).reshape(())),
             "axis": ctx.attr("axis", -1), "dtype": ctx.attr("T")}
    known = depth.const_value() if depth.const_value() is not None else (
        np.asarray(depth.sym) if depth.sym is not None and all(isinstance(d, int) for d in depth.sym) else None)
    if known is not None:
        return ctx.emit("one_hot", [idx], {**attrs, "depth": int(np.asarray(known).reshape(()))})
    return ctx.emit("one_hot", [idx, depth], attrs)


@dataclass(frozen=True)
class _At:
    """A slice bound read at run time: element ``index`` of ``src`` (a begin/end/size
    vector); ``shrink_end`` makes it the end of a one-element slice starting there."""

    src: Value
    index: int
    shrink_end: bool = False

    @property
    def sym(self):
        """What shape inference knows of it: an int, a symbol, or None."""
        if self.src.sym is None or self.shrink_end:
            return None
        return self.src.sym[self.index]


def _bound(known, src: Value, i: int):
    """A literal int where the value is one, else a run-time read of ``src[i]``."""
    return known if isinstance(known, int) else _At(src, i)


def _emit_slice(ctx, x: Value, items: list[tuple[int, int | _At, int | _At, int]]) -> Value:
    """Emit one slice from (axis, start, end, step) items.

    An end equal to the whole axis (symbolically) becomes INT_MAX; other bounds
    not known as integers are read at run time from the vectors they came from,
    and symbolic evaluation still knows their value where the graph does.
    """
    def whole(ax, e0, st) -> bool:
        dim, e = x.shape[ax], e0.sym if isinstance(e0, _At) else e0
        return st == 1 and ((e == dim and dim != UNKNOWN) or (isinstance(e, int) and isinstance(dim, int) and e >= dim))

    items = [(ax, s0, INT_MAX if whole(ax, e0, st) else e0, st) for ax, s0, e0, st in items]
    items = [it for it in items if not (it[1] == 0 and it[2] == INT_MAX and it[3] == 1)]
    if not items:
        return x
    axes = [it[0] for it in items]
    steps = [it[3] for it in items]
    attrs = {"axes": axes, "steps": steps if any(st != 1 for st in steps) else []}
    starts, ends = [it[1] for it in items], [it[2] for it in items]
    if all(isinstance(v, int) for v in (*starts, *ends)):
        return ctx.emit("slice", [x], {**attrs, "starts": starts, "ends": ends})
    return ctx.emit("slice", [x, _bound_vector(ctx, starts, "starts"), _bound_vector(ctx, ends, "ends")], attrs)


def _bound_vector(ctx, bounds: list, what: str) -> Value:
    """An i64 vector of literal and run-time bounds (runs of literals share one constant)."""
    pieces: list[Value] = []
    literals: list[int] = []

    def flush() -> None:
        if literals:
            pieces.append(ctx.const(np.array(literals, np.int64), f"{ctx.name}/{what}"))
            literals.clear()

    for b in bounds:
        if isinstance(b, int):
            literals.append(b)
            continue
        flush()
        v = ctx.emit("gather", [b.src, ctx.const(np.array([b.index], np.int64), f"{ctx.name}/{what}_index")],
                     {"axis": 0})
        if v.dtype != "i64":
            v = ctx.emit("cast", [v], {"to": "i64"})
        if b.shrink_end:  # x[i]: the end is i + 1, or the whole axis when i is -1
            one = ctx.const(np.array(1, np.int64), f"{ctx.name}/one")
            last = ctx.emit("equal", [v, ctx.const(np.array(-1, np.int64), f"{ctx.name}/minus_one")])
            v = ctx.emit("where", [last, ctx.const(np.array(INT_MAX, np.int64), f"{ctx.name}/open_end"),
                                   ctx.emit("add", [v, one])])
        pieces.append(v)
    flush()
    return pieces[0] if len(pieces) == 1 else ctx.emit("concat", pieces, {"axis": 0})


@handler("Slice")
def _slice(ctx, node, ins):
    """x[begin : begin + size] per axis; size -1 runs to the end."""
    x, begin, size = ins
    b, sz = begin.sym, size.sym
    if b is not None and sz is not None and all(isinstance(v, int) for v in b):
        items = []
        for i, (b0, s0) in enumerate(zip(b, sz)):
            if s0 == -1:
                items.append((i, b0, INT_MAX, 1))
            elif isinstance(s0, int):
                items.append((i, b0, b0 + s0, 1))
            elif b0 == 0:
                items.append((i, 0, _At(size, i), 1))
            else:
                break
        else:
            return _emit_slice(ctx, x, items)
    # bounds known only at run time: ends = begin + size, or INT_MAX where size is -1
    b64 = begin if begin.dtype == "i64" else ctx.emit("cast", [begin], {"to": "i64"})
    s64 = size if size.dtype == "i64" else ctx.emit("cast", [size], {"to": "i64"})
    to_end = ctx.emit("equal", [s64, ctx.const(np.array(-1, np.int64), ctx.name + "/minus_one")])
    ends = ctx.emit("where", [to_end, ctx.const(np.array(INT_MAX, np.int64), ctx.name + "/open_end"),
                              ctx.emit("add", [b64, s64])])
    return ctx.emit("slice", [x, b64, ends], {"axes": list(range(x.type.rank))})


@handler("StridedSlice")
def _strided_slice(ctx, node, ins):
    """TF's masks, expanded to slice + squeeze (shrink) + unsqueeze (new axis)."""
    x, begin, end, strides = ins
    st = [int(v) for v in ctx.const_of(strides)]
    masks = {k: ctx.attr(k, 0) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                          "shrink_axis_mask")}
    b = begin.sym or [None] * len(st)
    e = end.sym or [None] * len(st)
    items, shrink, new_axes = [], [], []
    out_axis = 0
    for kind, i, ax in _expand_ellipsis(len(st), x.type.rank, masks):
        if kind == "new":
            new_axes.append(out_axis)
            out_axis += 1
            continue
        if kind == "full":
            out_axis += 1
            continue
        s0 = (0 if st[i] > 0 else INT_MAX) if masks["begin_mask"] >> i & 1 else _bound(b[i], begin, i)
        e0 = (INT_MAX if st[i] > 0 else -INT_MAX) if masks["end_mask"] >> i & 1 else _bound(e[i], end, i)
        step = st[i]
        if masks["shrink_axis_mask"] >> i & 1:
            e0 = (s0 + 1 if s0 != -1 else INT_MAX) if isinstance(s0, int) else _At(begin, i, shrink_end=True)
            step = 1
            shrink.append(out_axis)
        items.append((ax, s0, e0, step))
        out_axis += 1
    y = _emit_slice(ctx, x, items)
    if shrink:
        y = ctx.emit("squeeze", [y], {"axes": _shift_for_new(shrink, new_axes)})
    if new_axes:
        final = [a - sum(1 for s in shrink if s < a) for a in new_axes]
        y = ctx.emit("unsqueeze", [y], {"axes": final})
    return y


def _shift_for_new(shrink: list[int], new_axes: list[int]) -> list[int]:
    """Shrink positions counted in the output-with-new-axes, as positions before unsqueeze."""
    return [a - sum(1 for n in new_axes if n < a) for a in shrink]


def _expand_ellipsis(n_spec: int, rank: int, masks: dict) -> list[tuple[str, int, int]]:
    """Map each slice-spec entry to ('slice'|'new', spec index, input axis), filling the ellipsis."""
    out: list[tuple[str, int, int]] = []
    n_real = sum(1 for i in range(n_spec) if not (masks["new_axis_mask"] >> i & 1)
                 and not (masks["ellipsis_mask"] >> i & 1))
    ax = 0
    for i in range(n_spec):
        if masks["ellipsis_mask"] >> i & 1:
            for _ in range(rank - n_real):
                out.append(("full", i, ax))
                ax += 1
        elif masks["new_axis_mask"] >> i & 1:
            out.append(("new", i, ax))
        else:
            out.append(("slice", i, ax))
            ax += 1
    while ax < rank:
        out.append(("full", -1, ax))
        ax += 1
    return out


# ------------------------------------------------------------------ reductions and nn
_REDUCE = {"Mean": "reduce_mean", "Sum": "reduce_sum", "Max": "reduce_max", "Min": "reduce_min",
           "Prod": "reduce_prod"}


@handler(*_REDUCE)
def _reduce(ctx, node, ins):
    x, axes = ins
    rank = x.type.rank
    ax = sorted({int(a) % rank for a in np.atleast_1d(ctx.const_of(axes))}) if rank else []
    return ctx.emit(_REDUCE[node.op], [x], {"axes": ax, "keepdims": bool(ctx.attr("keep_dims", False))})


@handler("Cumsum", "Cumprod")
def _scan(ctx, node, ins):
    return ctx.emit(node.op.lower(), [ins[0]], {"axis": int(ctx.const_of(ins[1]).reshape(())),
                                                "exclusive": bool(ctx.attr("exclusive", False)),
                                                "reverse": bool(ctx.attr("reverse", False))})


@handler("ScatterNd")
def _scatter_nd(ctx, node, ins):
    idx, upd, shape = ins
    c = shape.const_value()
    if c is not None:
        return ctx.emit("scatter_nd", [idx, upd], {"shape": [int(d) for d in c]})
    return ctx.emit("scatter_nd", [idx, upd, shape])


@handler("TensorScatterUpdate", "TensorScatterAdd")
def _tensor_scatter(ctx, node, ins):
    return ctx.emit("scatter_nd_update" if node.op == "TensorScatterUpdate" else "scatter_nd_add", ins)


from . import tf_ops_conv, tf_ops_fft, tf_ops_indexing, tf_ops_math  # noqa: E402,F401  (see their docstrings)
