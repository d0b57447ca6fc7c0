"""The TFLite target's lowerings of the core IR ops, one function per op kind (or family), into
``CORE_LOWERINGS``.  tflite.py merges them with the int8 (tflite_quant.py) and fused
(tflite_fused.py) tables into the target's one table."""

from __future__ import annotations

import numpy as np

from ..ir.graph import Op, Value
from ..ir.types import UNKNOWN, is_static, normalize_axis
from .base import LoweringError, bias_operand, folded_bias
from .tflite_builder import INT32_MAX, INT32_MIN, TENSOR_TYPES, Lower, Lowering, cast_options, lowering_table, options
from .tflite_builder import BuiltinOperator as B

CORE_LOWERINGS, lowers = lowering_table()


def _simple(code: int, opts_cls: str | None = None, **fields) -> Lower:
    """An op that maps to one TFLite operator with the same operands."""
    def lower(ctx: Lowering, op: Op) -> None:
        opts = options(opts_cls, **fields) if opts_cls else None
        ctx.emit(code, [ctx.tensor(v) for v in op.operands], [ctx.result(op.result)], opts)
    return lower


# --------------------------------------------------------------------------- elementwise
_UNARY = {"neg": (B.NEG, "NegOptionsT"), "abs": (B.ABS, "AbsOptionsT"), "sqrt": (B.SQRT, None),
          "rsqrt": (B.RSQRT, None), "exp": (B.EXP, "ExpOptionsT"), "log": (B.LOG, None),
          "tanh": (B.TANH, None), "sigmoid": (B.LOGISTIC, None), "relu": (B.RELU, None),
          "logical_not": (B.LOGICAL_NOT, "LogicalNotOptionsT"), "floor": (B.FLOOR, None),
          "ceil": (B.CEIL, None), "round": (B.ROUND, None), "sign": (B.SIGN, "SignOptionsT"),
          "sin": (B.SIN, None), "cos": (B.COS, None)}
_BINARY = {"add": (B.ADD, "AddOptionsT"), "sub": (B.SUB, "SubOptionsT"), "mul": (B.MUL, "MulOptionsT"),
           "maximum": (B.MAXIMUM, "MaximumMinimumOptionsT"),
           "minimum": (B.MINIMUM, "MaximumMinimumOptionsT"), "pow": (B.POW, "PowOptionsT"),
           "equal": (B.EQUAL, "EqualOptionsT"), "not_equal": (B.NOT_EQUAL, "NotEqualOptionsT"),
           "less": (B.LESS, "LessOptionsT"), "less_equal": (B.LESS_EQUAL, "LessEqualOptionsT"),
           "greater": (B.GREATER, "GreaterOptionsT"),
           "greater_equal": (B.GREATER_EQUAL, "GreaterEqualOptionsT"),
           "logical_and": (B.LOGICAL_AND, "LogicalAndOptionsT"),
           "logical_or": (B.LOGICAL_OR, "LogicalOrOptionsT"),
           "where": (B.SELECT_V2, "SelectV2OptionsT"), "mod": (B.FLOOR_MOD, "FloorModOptionsT")}
for _kind, (_code, _opts) in {**_UNARY, **_BINARY}.items():
    CORE_LOWERINGS[_kind] = _simple(_code, _opts)


@lowers("div")
def _div(ctx: Lowering, op: Op) -> None:
    """Float division is DIV; integer division floors (as TF's FloorDiv): FLOOR_DIV."""
    if op.result.dtype == "f32":
        _simple(B.DIV, "DivOptionsT")(ctx, op)
    else:
        _simple(B.FLOOR_DIV, "FloorDivOptionsT")(ctx, op)


@lowers("reciprocal")
def _reciprocal(ctx: Lowering, op: Op) -> None:
    """1 / x as DIV with a constant 1."""
    x = op.operands[0]
    ctx.emit(B.DIV, [ctx.const(1.0, x.dtype, "one"), ctx.tensor(x)], [ctx.result(op.result)],
             options("DivOptionsT"))


@lowers("gelu")
def _gelu(ctx: Lowering, op: Op) -> None:
    approx = op.attrs["approximate"] == "tanh"
    _simple(B.GELU, "GeluOptionsT", approximate=approx)(ctx, op)


@lowers("cast")
def _cast(ctx: Lowering, op: Op) -> None:
    x = op.operands[0]
    ctx.emit(B.CAST, [ctx.tensor(x)], [ctx.result(op.result)], cast_options(x.dtype, op.attrs["to"]))


@lowers("identity")
def _identity(ctx: Lowering, op: Op) -> None:
    """No operator: the result is the operand's tensor."""
    ctx.bind(op.result, ctx.tensor(op.operands[0]))


# --------------------------------------------------------------------------- linear algebra
def fully_connected(op: Op) -> bool:
    """Does ``op`` lower to one f32-output FULLY_CONNECTED (float or hybrid int8 kernel)?"""
    return op.kind == "qmatmul" or (op.kind == "matmul" and op.operands[1].is_const()
                                    and op.operands[1].type.rank == 2)


def fc_bias(ctx: Lowering, op: Op) -> tuple[int, int]:
    """(bias tensor or -1, output tensor) of the FULLY_CONNECTED for ``op``: the projection's
    bias add, when it can be, is the operator's bias input and its result the output
    (one operator less per dense layer; the add itself is then not emitted)."""
    add = folded_bias(op)
    if add is None:
        return -1, ctx.result(op.result)
    out = ctx.result(add.result)
    ctx.bind(op.result, out)  # nothing reads y itself: the add was its one use
    return ctx.tensor(bias_operand(add, op)), out


def _add(ctx: Lowering, op: Op) -> None:
    """ADD, unless it is the bias a FULLY_CONNECTED already added (``fc_bias``)."""
    for v in op.operands:
        if v.producer is not None and fully_connected(v.producer) and folded_bias(v.producer) is op:
            return
    _simple(B.ADD, "AddOptionsT")(ctx, op)


CORE_LOWERINGS["add"] = _add


@lowers("matmul")
def _matmul(ctx: Lowering, op: Op) -> None:
    """x[..., K] @ W[K, N] with a constant W: FULLY_CONNECTED (W stored as [N, K],
    keep_num_dims); everything else: BATCH_MATMUL, which broadcasts batch dims."""
    a, b = op.operands
    if b.is_const() and b.type.rank == 2:
        bias, out = fc_bias(ctx, op)
        ctx.emit(B.FULLY_CONNECTED, [ctx.tensor(a), ctx.transposed_weight(b), bias], [out],
                 options("FullyConnectedOptionsT", keepNumDims=True))
        return
    swapped = adj_y_source(b)
    if swapped is not None:  # a @ transpose(k)^T: BATCH_MATMUL reads k transposed (adj_y)
        ctx.emit(B.BATCH_MATMUL, [ctx.tensor(a), ctx.tensor(swapped)], [ctx.result(op.result)],
                 options("BatchMatMulOptionsT", adjY=True))
        return
    ctx.emit(B.BATCH_MATMUL, [ctx.tensor(a), ctx.tensor(b)], [ctx.result(op.result)],
             options("BatchMatMulOptionsT"))


def adj_y_source(b: Value) -> Value | None:
    """x when ``b = transpose(x)`` swaps only the last two axes and only a matmul's right side
    reads it: that matmul is BATCH_MATMUL(a, x, adj_y) and the transpose is not emitted
    (attention's q @ k^T; one TRANSPOSE fewer per layer)."""
    t = b.producer
    if t is None or t.kind != "transpose" or b.type.rank < 3:
        return None
    r = b.type.rank
    if list(t.attrs["perm"]) != [*range(r - 2), r - 1, r - 2]:
        return None
    if any(o is b for o in b.graph.outputs.values()) or not b.uses:
        return None
    if not all(u.kind == "matmul" and i == 1 for u, i in b.uses):
        return None
    return t.operands[0]


@lowers("transpose")
def _transpose(ctx: Lowering, op: Op) -> None:
    """TRANSPOSE, unless every reader is a BATCH_MATMUL that takes it as adj_y."""
    if adj_y_source(op.result) is not None:
        return
    ctx.emit(B.TRANSPOSE, [ctx.tensor(op.operands[0]), ctx.i32(op.attrs["perm"], "perm")],
             [ctx.result(op.result)], options("TransposeOptionsT"))


# --------------------------------------------------------------------------- nn
@lowers("softmax")
def _softmax(ctx: Lowering, op: Op) -> None:
    """SOFTMAX works on the last axis; another axis is swapped there and back."""
    x = op.operands[0]
    rank = x.type.rank
    ax = normalize_axis(op.attrs["axis"], rank)
    opts = options("SoftmaxOptionsT", beta=1.0)
    if ax == rank - 1:
        ctx.emit(B.SOFTMAX, [ctx.tensor(x)], [ctx.result(op.result)], opts)
        return
    perm = list(range(rank))
    perm[ax], perm[-1] = perm[-1], perm[ax]
    swapped = [x.shape[p] for p in perm]
    p = ctx.i32(perm, "perm")
    t = ctx.binary(B.TRANSPOSE, ctx.tensor(x), p, "swapped", x.dtype, swapped, options("TransposeOptionsT"))
    s = ctx.unary(B.SOFTMAX, t, "softmax", x.dtype, swapped, opts)
    ctx.emit(B.TRANSPOSE, [s, p], [ctx.result(op.result)], options("TransposeOptionsT"))


@lowers("layer_norm")
def _layer_norm(ctx: Lowering, op: Op) -> None:
    """(x - mean) * rsqrt(var + eps) * scale + bias, in the reference kernel's order:
    MEAN, SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, SUB, MUL, MUL, ADD."""
    x, scale, bias = op.operands
    norm_sequence(ctx, op, ctx.tensor(x), x, normalize_axis(op.attrs["axis"], x.type.rank),
                   ctx.tensor(scale), ctx.tensor(bias))


def norm_sequence(ctx: Lowering, op: Op, xt: int, x: Value, ax: int, scale: int, bias: int) -> None:
    """The layer-norm operator sequence over axes [ax, rank) of tensor ``xt`` (typed as ``x``),
    written into ``op``'s result."""
    rank, dt, dims = x.type.rank, x.dtype, x.shape
    axes = ctx.i32(list(range(ax, rank)), "axes")
    kept = [d if i < ax else 1 for i, d in enumerate(dims)]
    keep = options("ReducerOptionsT", keepDims=True)
    mean = ctx.binary(B.MEAN, xt, axes, "mean", dt, kept, keep)
    sq = ctx.binary(B.SQUARED_DIFFERENCE, xt, mean, "squared_difference", dt, dims,
                    options("SquaredDifferenceOptionsT"))
    var = ctx.binary(B.MEAN, sq, axes, "variance", dt, kept, keep)
    var_eps = ctx.binary(B.ADD, var, ctx.const(op.attrs["epsilon"], dt, "epsilon"), "variance_eps", dt,
                         kept, options("AddOptionsT"))
    inv = ctx.unary(B.RSQRT, var_eps, "rsqrt", dt, kept)
    centered = ctx.binary(B.SUB, xt, mean, "centered", dt, dims, options("SubOptionsT"))
    normed = ctx.binary(B.MUL, centered, inv, "normalized", dt, dims, options("MulOptionsT"))
    scaled = ctx.binary(B.MUL, normed, scale, "scaled", dt, dims, options("MulOptionsT"))
    ctx.emit(B.ADD, [scaled, bias], [ctx.result(op.result)], options("AddOptionsT"))


REDUCERS = {"reduce_mean": B.MEAN, "reduce_sum": B.SUM, "reduce_max": B.REDUCE_MAX,
             "reduce_min": B.REDUCE_MIN, "reduce_prod": B.REDUCE_PROD}


@lowers(*REDUCERS)
def _reduce(ctx: Lowering, op: Op) -> None:
    """Reduction over constant axes; no axes reduces nothing (the reference kernel's rule)."""
    x = op.operands[0]
    axes = sorted({normalize_axis(a, x.type.rank) for a in op.attrs["axes"]})
    if not axes:
        ctx.bind(op.result, ctx.tensor(x))
        return
    ctx.emit(REDUCERS[op.kind], [ctx.tensor(x), ctx.i32(axes, "axes")], [ctx.result(op.result)],
             options("ReducerOptionsT", keepDims=bool(op.attrs["keepdims"])))


@lowers("cumsum")
def _cumsum(ctx: Lowering, op: Op) -> None:
    x = op.operands[0]
    axis = ctx.i32(normalize_axis(op.attrs["axis"], x.type.rank), "axis")
    ctx.emit(B.CUMSUM, [ctx.tensor(x), axis], [ctx.result(op.result)],
             options("CumsumOptionsT", exclusive=bool(op.attrs["exclusive"]),
                     reverse=bool(op.attrs["reverse"])))


@lowers("one_hot")
def _one_hot(ctx: Lowering, op: Op) -> None:
    out = op.result
    axis = normalize_axis(op.attrs["axis"], out.type.rank)
    depth = (ctx.const(op.attrs["depth"], "i32", "depth") if op.attrs["depth"] is not None
             else ctx.cast(ctx.tensor(op.operands[1]), "i32", "depth", []))
    ins = [ctx.tensor(op.operands[0]), depth,
           ctx.const(op.attrs["on_value"], out.dtype, "on_value"),
           ctx.const(op.attrs["off_value"], out.dtype, "off_value")]
    ctx.emit(B.ONE_HOT, ins, [ctx.result(out)], options("OneHotOptionsT", axis=axis))


@lowers("scatter_nd")
def _scatter_nd(ctx: Lowering, op: Op) -> None:
    """SCATTER_ND adds duplicate indices up, as the reference kernel does."""
    idx, upd = op.operands[:2]
    if len(op.operands) > 2:
        shape = ctx.cast(ctx.tensor(op.operands[2]), "i32", "shape", [op.result.type.rank])
    else:
        shape = ctx.i32(op.attrs["shape"], "shape")
    ctx.emit(B.SCATTER_ND, [ctx.tensor(idx), ctx.tensor(upd), shape], [ctx.result(op.result)],
             options("ScatterNdOptionsT"))


@lowers("avg_pool", "max_pool")
def _pool(ctx: Lowering, op: Op) -> None:
    """AVERAGE_POOL_2D / MAX_POOL_2D: NHWC as the IR's, SAME or VALID as TF's."""
    from .tflite_builder import schema

    (kh, kw), (sh, sw) = op.attrs["ksize"], op.attrs["strides"]
    code = B.AVERAGE_POOL_2D if op.kind == "avg_pool" else B.MAX_POOL_2D
    padding = schema.Padding.SAME if op.attrs["padding"] == "SAME" else schema.Padding.VALID
    ctx.emit(code, [ctx.tensor(op.operands[0])], [ctx.result(op.result)],
             options("Pool2DOptionsT", padding=padding, strideW=sw, strideH=sh, filterWidth=kw, filterHeight=kh))


@lowers("pad")
def _pad(ctx: Lowering, op: Op) -> None:
    """PADV2 with int32 [rank, 2] paddings (TF's layout, as the IR keeps it) and the fill value."""
    x = op.operands[0]
    if op.attrs["pads"] is not None:
        pads = ctx.i32(np.asarray(op.attrs["pads"]).reshape(-1, 2), "paddings")
    else:
        pads = ctx.cast(ctx.tensor(op.operands[1]), "i32", "paddings", [x.type.rank, 2])
    value = ctx.const(op.attrs["value"], x.dtype, "pad_value")
    ctx.emit(B.PADV2, [ctx.tensor(x), pads, value], [ctx.result(op.result)], options("PadV2OptionsT"))


@lowers("nonzero")
def _nonzero(ctx: Lowering, op: Op) -> None:
    """WHERE with one input: the int64 coordinates of the true elements, one row each."""
    ctx.emit(B.WHERE, [ctx.tensor(op.operands[0])], [ctx.result(op.result)], options("WhereOptionsT"))


@lowers("gather_nd")
def _gather_nd(ctx: Lowering, op: Op) -> None:
    _simple(B.GATHER_ND, "GatherNdOptionsT")(ctx, op)


@lowers("argmax", "argmin")
def _arg(ctx: Lowering, op: Op) -> None:
    """ARG_MAX/ARG_MIN drop the axis; keepdims puts it back with EXPAND_DIMS."""
    x, out = op.operands[0], op.result
    axis = normalize_axis(op.attrs["axis"], x.type.rank)
    code, opts = (B.ARG_MAX, "ArgMaxOptionsT") if op.kind == "argmax" else (B.ARG_MIN, "ArgMinOptionsT")
    fields = {"outputType": TENSOR_TYPES[out.dtype]}
    if not op.attrs["keepdims"]:
        ctx.emit(code, [ctx.tensor(x), ctx.i32([axis], "axis")], [ctx.result(out)], options(opts, **fields))
        return
    reduced = ctx.tmp("reduced", out.dtype, [d for i, d in enumerate(x.shape) if i != axis])
    ctx.emit(code, [ctx.tensor(x), ctx.i32([axis], "axis")], [reduced], options(opts, **fields))
    ctx.emit(B.EXPAND_DIMS, [reduced, ctx.i32(axis, "axis_back")], [ctx.result(out)],
             options("ExpandDimsOptionsT"))


# --------------------------------------------------------------------------- shape ops
@lowers("shape")
def _shape(ctx: Lowering, op: Op) -> None:
    ctx.emit(B.SHAPE, [ctx.tensor(op.operands[0])], [ctx.result(op.result)],
             options("ShapeOptionsT", outType=TENSOR_TYPES[op.attrs["dtype"]]))


def _known_target(op: Op) -> list | None:
    """A reshape/expand target as dims (ints or symbols), from the attribute, the
    operand's symbolic value or its constant value; None when only run time knows."""
    if op.attrs.get("shape") is not None:
        return list(op.attrs["shape"])
    v = op.operands[1]
    if v.sym is not None:
        return list(v.sym)
    c = v.const_value()
    return None if c is None else [int(d) for d in np.atleast_1d(c)]


@lowers("reshape")
def _reshape(ctx: Lowering, op: Op) -> None:
    x, out = op.operands[0], op.result
    if out.type.rank == 0:  # to a scalar: every dim of x is 1
        ctx.emit(B.SQUEEZE, [ctx.tensor(x)], [ctx.result(out)],
                 options("SqueezeOptionsT", squeezeDims=list(range(x.type.rank))))
        return
    ctx.emit(B.RESHAPE, [ctx.tensor(x), _reshape_target(ctx, op)], [ctx.result(out)])


def _reshape_target(ctx: Lowering, op: Op) -> int:
    """RESHAPE's int32 shape tensor.

    TFLite allows one -1 and no ONNX-style 0.  Static output dims are written as
    numbers; with at most one symbolic dim it becomes the -1 and the shape is a
    constant.  Otherwise each symbolic dim is read at run time: an ONNX 0 from
    SHAPE(x), a computed dim from the shape operand.
    """
    x, out = op.operands[0], op.result
    dims = out.shape
    dynamic = [i for i, d in enumerate(dims) if not is_static(d)]
    if len(dynamic) <= 1:
        return ctx.i32([d if is_static(d) else -1 for d in dims], "shape")
    key = tuple(str(d) for d in dims)
    if not any(UNKNOWN in k for k in key) and key in ctx.shape_vectors:
        return ctx.shape_vectors[key]
    ctx.shape_vectors[key] = vector = _reshape_target_vector(ctx, op)
    return vector


def _reshape_target_vector(ctx: Lowering, op: Op) -> int:
    """The run-time target of a reshape with two or more symbolic dims (``_reshape_target``)."""
    x, dims = op.operands[0], op.result.shape
    target = _known_target(op)
    if target is None:
        return _reshape_target_unknown(ctx, op)
    parts: list[tuple[int, int]] = []
    picks: list[tuple[str, int]] = []
    literals: list[int] = []
    x_shape = operand = None
    for i, d in enumerate(dims):
        t = target[i]
        if is_static(d) or t == -1:
            lit = int(d) if is_static(d) else -1
            literals += [] if lit in literals else [lit]
            picks.append(("lit", lit))
        elif t == 0:
            if x_shape is None:
                x_shape = len(parts)
                parts.append((ctx.shape_of(x), x.type.rank))
            picks.append(("part", _part_offset(parts, x_shape) + i))
        else:  # a symbolic dim computed by the graph: read it from the shape operand
            if operand is None:
                operand = len(parts)
                vec = ctx.cast(ctx.tensor(op.operands[1]), "i32", "target", [len(target)])
                parts.append((vec, len(target)))
            picks.append(("part", _part_offset(parts, operand) + i))
    return ctx.gather_vector(parts, literals, picks, "shape")


def _part_offset(parts: list[tuple[int, int]], k: int) -> int:
    return sum(n for _, n in parts[:k])


def _reshape_target_unknown(ctx: Lowering, op: Op) -> int:
    """A run-time target with ONNX semantics: where it is 0, take x's dim instead."""
    x = op.operands[0]
    n, r = op.result.type.rank, x.type.rank
    target = ctx.cast(ctx.tensor(op.operands[1]), "i32", "target", [n])
    picks = [("part", i) if i < r else ("lit", 0) for i in range(n)]
    x_dims = ctx.gather_vector([(ctx.shape_of(x), r)], [0] if n > r else [], picks, "input_dims")
    is_zero = ctx.binary(B.EQUAL, target, ctx.i32(0, "zero"), "is_zero", "bool", [n],
                         options("EqualOptionsT"))
    out = ctx.tmp("resolved", "i32", [n])
    ctx.emit(B.SELECT_V2, [is_zero, x_dims, target], [out], options("SelectV2OptionsT"))
    return out


@lowers("squeeze")
def _squeeze(ctx: Lowering, op: Op) -> None:
    """SQUEEZE with explicit dims (an empty list would squeeze every size-1 dim)."""
    x = op.operands[0]
    axes = sorted({normalize_axis(a, x.type.rank) for a in op.attrs["axes"]})
    if not axes:
        ctx.bind(op.result, ctx.tensor(x))
        return
    ctx.emit(B.SQUEEZE, [ctx.tensor(x)], [ctx.result(op.result)],
             options("SqueezeOptionsT", squeezeDims=axes))


@lowers("unsqueeze")
def _unsqueeze(ctx: Lowering, op: Op) -> None:
    """One RESHAPE when at most one dim is symbolic, else one EXPAND_DIMS per new axis."""
    x, out = op.operands[0], op.result
    if sum(not is_static(d) for d in out.shape) <= 1:
        ctx.emit(B.RESHAPE, [ctx.tensor(x), ctx.i32([d if is_static(d) else -1 for d in out.shape], "shape")],
                 [ctx.result(out)])
        return
    axes = sorted(normalize_axis(a, out.type.rank) for a in op.attrs["axes"])
    cur, dims = ctx.tensor(x), list(x.shape)
    for k, a in enumerate(axes):
        dims.insert(a, 1)
        nxt = ctx.result(out) if k == len(axes) - 1 else ctx.tmp(f"expand_{k}", x.dtype, dims)
        ctx.emit(B.EXPAND_DIMS, [cur, ctx.i32(a, "axis")], [nxt], options("ExpandDimsOptionsT"))
        cur = nxt


@lowers("concat")
def _concat(ctx: Lowering, op: Op) -> None:
    axis = normalize_axis(op.attrs["axis"], op.result.type.rank)
    ctx.emit(B.CONCATENATION, [ctx.tensor(v) for v in op.operands], [ctx.result(op.result)],
             options("ConcatenationOptionsT", axis=axis))


@lowers("gather")
def _gather(ctx: Lowering, op: Op) -> None:
    """GATHER; constant negative indices are wrapped here (GATHER rejects them)."""
    data, idx = op.operands
    axis = normalize_axis(op.attrs["axis"], data.type.rank)
    it = ctx.tensor(idx)
    c, n = idx.const_value(), data.shape[axis]
    if c is not None and (c < 0).any():
        if not is_static(n):
            raise LoweringError(op, "negative constant indices into a symbolic dim")
        it = ctx.const(np.where(c < 0, c + n, c), idx.dtype, "indices")
    ctx.emit(B.GATHER, [ctx.tensor(data), it], [ctx.result(op.result)],
             options("GatherOptionsT", axis=axis))


@lowers("tile")
def _tile(ctx: Lowering, op: Op) -> None:
    x = op.operands[0]
    reps = (ctx.i32(op.attrs["repeats"], "repeats") if op.attrs["repeats"] is not None
            else ctx.tensor(op.operands[1]))
    ctx.emit(B.TILE, [ctx.tensor(x), reps], [ctx.result(op.result)], options("TileOptionsT"))


@lowers("range")
def _range(ctx: Lowering, op: Op) -> None:
    _simple(B.RANGE, "RangeOptionsT")(ctx, op)


@lowers("expand")
def _expand(ctx: Lowering, op: Op) -> None:
    """BROADCAST_TO needs the final shape; ONNX Expand's target may hold 1 where x
    is wider, so the final shape is max(target, x's shape) unless the target is
    known to be final already."""
    x, out = op.operands[0], op.result
    if out.type.is_static:
        shape = ctx.i32(list(out.shape), "shape")
    else:
        target = _known_target(op)
        tensor = (ctx.i32(op.attrs["shape"], "target") if op.attrs["shape"] is not None
                  else ctx.cast(ctx.tensor(op.operands[1]), "i32", "target", [_vector_length(op)]))
        final = target is not None and _is_final(x.shape, target)
        shape = tensor if final else _broadcast_shape(ctx, x, tensor)
    ctx.emit(B.BROADCAST_TO, [ctx.tensor(x), shape], [ctx.result(out)], options("BroadcastToOptionsT"))


def _is_final(x_dims, target: list) -> bool:
    """True when broadcasting x to ``target`` gives ``target`` itself."""
    if len(target) < len(x_dims):
        return False
    aligned = target[len(target) - len(x_dims):]
    return all(d == 1 or t == d for d, t in zip(x_dims, aligned))


def _broadcast_shape(ctx: Lowering, x: Value, target: int) -> int:
    """max(target, shape(x)) at run time, the shorter one padded with leading ones."""
    n = ctx.op.result.type.rank
    x_shape = ctx.pad_ones(ctx.shape_of(x), x.type.rank, n, "input_dims")
    target = ctx.pad_ones(target, _vector_length(ctx.op), n, "target_dims")
    return ctx.binary(B.MAXIMUM, target, x_shape, "shape", "i32", [n], options("MaximumMinimumOptionsT"))


def _vector_length(op: Op) -> int:
    """The length of expand's target: the attribute's, or the operand's static length."""
    return len(op.attrs["shape"]) if op.attrs["shape"] is not None else int(op.operands[1].shape[0])


@lowers("slice")
def _slice(ctx: Lowering, op: Op) -> None:
    """STRIDED_SLICE over every dim: untouched dims and open ends use the masks."""
    x = op.operands[0]
    rank = x.type.rank
    axes = [normalize_axis(a, rank) for a in op.attrs["axes"]]
    steps = list(op.attrs["steps"]) or [1] * len(axes)
    strides = [1] * rank
    for a, st in zip(axes, steps):
        strides[a] = st
    untouched = sum(1 << d for d in range(rank) if d not in axes)
    starts, ends = _constant_bounds(op)
    if starts is not None and ends is not None:
        begin, end, begin_mask, end_mask = _static_bounds(rank, axes, starts, ends, steps)
        ins = [ctx.i32(begin, "begin"), ctx.i32(end, "end"), ctx.i32(strides, "strides")]
        begin_mask |= untouched
        end_mask |= untouched
    else:
        ins = [*_dynamic_bounds(ctx, op, rank, axes), ctx.i32(strides, "strides")]
        begin_mask = end_mask = untouched
    ctx.emit(B.STRIDED_SLICE, [ctx.tensor(x), *ins], [ctx.result(op.result)],
             options("StridedSliceOptionsT", beginMask=begin_mask, endMask=end_mask))


def _constant_bounds(op: Op) -> tuple[list[int] | None, list[int] | None]:
    """A slice's starts and ends when they are attributes or constants."""
    if len(op.operands) == 1:
        return list(op.attrs["starts"]), list(op.attrs["ends"])
    consts = [v.const_value() for v in op.operands[1:3]]
    return tuple(None if c is None else [int(x) for x in np.atleast_1d(c)] for c in consts)


def _clamp32(v: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, int(v)))


def _static_bounds(rank: int, axes: list[int], starts, ends, steps) -> tuple[list, list, int, int]:
    """int32 begin/end over all dims; python-style open ends (INT_MAX…) become mask bits."""
    begin, end = [0] * rank, [0] * rank
    begin_mask = end_mask = 0
    for a, s, e, st in zip(axes, starts, ends, steps):
        begin[a], end[a] = _clamp32(s), _clamp32(e)
        if (st > 0 and s <= INT32_MIN) or (st < 0 and s >= INT32_MAX):
            begin_mask |= 1 << a
        if (st > 0 and e >= INT32_MAX) or (st < 0 and e <= INT32_MIN):
            end_mask |= 1 << a
    return begin, end, begin_mask, end_mask


def _dynamic_bounds(ctx: Lowering, op: Op, rank: int, axes: list[int]) -> tuple[int, int]:
    """Run-time starts/ends (one per sliced axis) as int32 vectors over all dims of x."""
    n = len(axes)
    b = _bound_i32(ctx, op.operands[1], n, "starts")
    e = _bound_i32(ctx, op.operands[2], n, "ends")
    if axes == list(range(rank)):
        return b, e
    picks = [("part", axes.index(d)) if d in axes else ("lit", 0) for d in range(rank)]
    return (ctx.gather_vector([(b, n)], [0], picks, "begin"),
            ctx.gather_vector([(e, n)], [0], picks, "end"))


def _bound_i32(ctx: Lowering, v: Value, n: int, suffix: str) -> int:
    """STRIDED_SLICE takes int32 bounds only: an i64 vector is clamped to int32's range
    (INT64_MAX means "to the end"), unless its symbolic value shows it fits."""
    if v.dtype == "i32":
        return ctx.tensor(v)
    fits = v.sym is not None and all(not isinstance(d, int) or INT32_MIN <= d <= INT32_MAX for d in v.sym)
    t = ctx.tensor(v) if fits else ctx.clamp(ctx.tensor(v), INT32_MIN, INT32_MAX, [n], suffix)
    return ctx.cast(t, "i32", suffix, [n])
