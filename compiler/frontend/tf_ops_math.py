"""TF op handlers that are small compositions of elementwise ops and reductions.

Clipping and activations (ClipByValue, Relu6, LeakyRelu, Elu, Selu, Softplus,
Softsign), DivNoNan/MulNoNan, FusedBatchNorm (tf-keras' layer norm among its
uses), LogSoftmax, EuclideanNorm, IsNan/IsInf/IsFinite, All/Any, Rank,
Bucketize and BroadcastArgs have no core op of their own: each is spelled
exactly, or to a few ulps where a transcendental is involved, with the core
ops every target runs.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from ..ir.types import np_dtype
from .tf import handler


@handler("ClipByValue")
def _clip(ctx, node, ins):
    """TF clips as max(min(x, hi), lo)."""
    x, lo, hi = ins
    return ctx.emit("maximum", [ctx.emit("minimum", [x, hi]), lo])


@handler("DivNoNan", "MulNoNan")
def _no_nan(ctx, node, ins):
    """x / y (x * y), but 0 wherever y == 0, even where x is inf or NaN (tf.math.divide_no_nan, the
    mean pooling of sentence-embedding models)."""
    x, y = ins
    zero = ctx.const(np.zeros((), np_dtype(x.dtype)), ctx.name + "/zero")
    value = ctx.emit("div" if node.op == "DivNoNan" else "mul", [x, y])
    return ctx.emit("where", [ctx.emit("equal", [y, zero]), zero, value])


@handler("Relu6")
def _relu6(ctx, node, ins):
    six = ctx.const(np.asarray(6, np_dtype(ins[0].dtype)), ctx.name + "/six")
    return ctx.emit("minimum", [ctx.emit("relu", ins), six])


@handler("LeakyRelu")
def _leaky_relu(ctx, node, ins):
    x = ins[0]
    dt = np_dtype(x.dtype)
    alpha = ctx.const(np.asarray(ctx.attr("alpha", 0.2), dt), ctx.name + "/alpha")
    zero = ctx.const(np.zeros((), dt), ctx.name + "/zero")
    return ctx.emit("where", [ctx.emit("greater", [x, zero]), x, ctx.emit("mul", [x, alpha])])


@handler("Rank")
def _rank(ctx, node, ins):
    return ctx.const(np.array(ins[0].type.rank, np.int32))


@handler("All", "Any")
def _all_any(ctx, node, ins):
    """all/any of bools as min/max of 0/1 integers."""
    x, axes = ins
    rank = x.type.rank
    ax = sorted({int(a) % rank for a in np.atleast_1d(ctx.const_of(axes))}) if rank else []
    as_int = ctx.emit("cast", [x], {"to": "i32"})
    red = ctx.emit("reduce_min" if node.op == "All" else "reduce_max", [as_int],
                   {"axes": ax, "keepdims": bool(ctx.attr("keep_dims", False))})
    return ctx.emit("cast", [red], {"to": "bool"})


@handler("LogSoftmax")
def _log_softmax(ctx, node, ins):
    """x - max - log(sum(exp(x - max))) along the last axis."""
    x = ins[0]
    ax = [x.type.rank - 1]
    shifted = ctx.emit("sub", [x, ctx.emit("reduce_max", [x], {"axes": ax, "keepdims": True})])
    total = ctx.emit("reduce_sum", [ctx.emit("exp", [shifted])], {"axes": ax, "keepdims": True})
    return ctx.emit("sub", [shifted, ctx.emit("log", [total])])


@handler("EuclideanNorm")
def _euclidean_norm(ctx, node, ins):
    """sqrt(sum(x * x)) over the axes (tf.norm, reduce_euclidean_norm)."""
    x, axes = ins
    rank = x.type.rank
    ax = sorted({int(a) % rank for a in np.atleast_1d(ctx.const_of(axes))}) if rank else []
    keep = bool(ctx.attr("keep_dims", False))
    total = ctx.emit("reduce_sum", [ctx.emit("mul", [x, x])], {"axes": ax, "keepdims": keep})
    return ctx.emit("sqrt", [total])


@handler("Softplus")
def _softplus(ctx, node, ins):
    """log(1 + exp(x)) with TF's cut-offs: x above -log(eps) + 2 is x, below log(eps) + 2 is exp(x)."""
    x = ins[0]
    dt = np_dtype(x.dtype)
    cut = float(np.log(np.finfo(dt).eps) + 2.0)
    e = ctx.emit("exp", [x])
    mid = ctx.emit("log", [ctx.emit("add", [ctx.const(np.ones((), dt), ctx.name + "/one"), e])])
    high = ctx.emit("greater", [x, ctx.const(np.asarray(-cut, dt), ctx.name + "/high")])
    low = ctx.emit("less", [x, ctx.const(np.asarray(cut, dt), ctx.name + "/low")])
    return ctx.emit("where", [high, x, ctx.emit("where", [low, e, mid])])


@handler("Elu", "Selu")
def _elu(ctx, node, ins):
    """x where x > 0, else exp(x) - 1; Selu scales both sides by TF's constants."""
    x = ins[0]
    dt = np_dtype(x.dtype)
    zero, one = (ctx.const(np.asarray(v, dt), f"{ctx.name}/c{v}") for v in (0, 1))
    neg = ctx.emit("sub", [ctx.emit("exp", [x]), one])
    if node.op == "Selu":
        alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
        neg = ctx.emit("mul", [neg, ctx.const(np.asarray(alpha * scale, dt), ctx.name + "/alpha_scale")])
        pos = ctx.emit("mul", [x, ctx.const(np.asarray(scale, dt), ctx.name + "/scale")])
    else:
        pos = x
    return ctx.emit("where", [ctx.emit("greater", [x, zero]), pos, neg])


@handler("Softsign")
def _softsign(ctx, node, ins):
    """x / (1 + |x|)."""
    x = ins[0]
    one = ctx.const(np.ones((), np_dtype(x.dtype)), ctx.name + "/one")
    return ctx.emit("div", [x, ctx.emit("add", [one, ctx.emit("abs", [x])])])


@handler("Bucketize")
def _bucketize(ctx, node, ins):
    """The index of x's bucket among sorted boundaries = how many boundaries x reaches (>=)."""
    x = ins[0]
    bounds = np.asarray(ctx.attr("boundaries") or [], np.float64)
    if not len(bounds):
        zero = ctx.const(np.zeros((), np.int32), ctx.name + "/zero")
        return ctx.emit("mul", [ctx.emit("cast", [x], {"to": "i32"}), zero])
    edges = ctx.const(bounds.astype(np_dtype(x.dtype)), ctx.name + "/boundaries")
    reached = ctx.emit("cast", [ctx.emit("greater_equal", [ctx.emit("unsqueeze", [x], {"axes": [-1]}), edges])],
                       {"to": "i32"})
    return ctx.emit("reduce_sum", [reached], {"axes": [x.type.rank], "keepdims": False})


@handler("BroadcastArgs")
def _broadcast_args(ctx, node, ins):
    """The broadcast of two shape vectors: where one dim is 1 the other's, else its own."""
    a, b = ins
    la, lb = a.shape[0], b.shape[0]
    if not (isinstance(la, int) and isinstance(lb, int)):
        raise OpError("BroadcastArgs of shape vectors of unknown length is not supported")
    n = max(la, lb)

    def widened(v, length):
        if length == n:
            return v
        ones = ctx.const(np.ones(n - length, np_dtype(v.dtype)), f"{ctx.name}/ones{length}")
        return ctx.emit("concat", [ones, v], {"axis": 0})

    a, b = widened(a, la), widened(b, lb)
    one = ctx.const(np.ones((), np_dtype(a.dtype)), ctx.name + "/one")
    return ctx.emit("where", [ctx.emit("equal", [a, one]), b, a])


@handler("IsNan", "IsInf", "IsFinite")
def _float_class(ctx, node, ins):
    """NaN is the one value unequal to itself; inf is |x| == inf; finite is neither."""
    x = ins[0]
    nan = ctx.emit("not_equal", [x, x])
    if node.op == "IsNan":
        return nan
    big = ctx.const(np.asarray(np.inf, np_dtype(x.dtype)), ctx.name + "/inf")
    inf = ctx.emit("equal", [ctx.emit("abs", [x]), big])
    if node.op == "IsInf":
        return inf
    return ctx.emit("logical_not", [ctx.emit("logical_or", [nan, inf])])


@handler("FusedBatchNormV3", "FusedBatchNorm")
def _fused_batch_norm(ctx, node, ins):
    """Inference batch norm: (x - mean) * scale / sqrt(var + eps) + offset, channels last.

    With is_training=true (tf-keras' fused layer-norm trick) the statistics are
    the batch moments over all axes but the channel axis.
    """
    x, scale, offset, mean, var = ins[:5]
    eps = float(ctx.attr("epsilon", 1e-3))
    fmt = ctx.attr("data_format", "NHWC")
    ch = 1 if fmt.startswith("NC") else x.type.rank - 1
    shape = [1] * x.type.rank
    shape[ch] = -1
    rows = _keras_layer_norm_rows(x, ch)
    if ctx.attr("is_training", True) and rows is not None:
        return _rows_layer_norm(ctx, x, rows, eps, scale, offset)
    if ctx.attr("is_training", True):
        axes = [a for a in range(x.type.rank) if a != ch]
        mean = ctx.emit("reduce_mean", [x], {"axes": axes, "keepdims": True})
        d = ctx.emit("sub", [x, mean])
        var = ctx.emit("reduce_mean", [ctx.emit("mul", [d, d])], {"axes": axes, "keepdims": True})
    else:
        mean = ctx.emit("reshape", [mean], {"shape": shape})
        var = ctx.emit("reshape", [var], {"shape": shape})
        d = ctx.emit("sub", [x, mean])
    inv = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(np.array(eps, np.float32))])])
    scale, offset = (_uniform(v) or ctx.emit("reshape", [v], {"shape": shape}) for v in (scale, offset))
    y = ctx.emit("add", [ctx.emit("mul", [d, ctx.emit("mul", [inv, scale])]), offset])
    return [y, mean, var, mean, var, mean]


def _keras_layer_norm_rows(x: Value, ch: int) -> Value | None:
    """``z`` when ``x`` is tf-keras' fused layer-norm layout of it: reshape(z, [1, rows, features, 1])
    normalized per channel (rows), i.e. z normalized over its last axis; else None."""
    op = x.producer
    if op is None or op.kind != "reshape" or ch != 1 or x.type.rank != 4:
        return None
    z = op.operands[0]
    features = z.shape[-1] if z.type.rank >= 2 else None
    if not isinstance(features, int) or x.shape[0] != 1 or x.shape[2] != features or x.shape[3] != 1:
        return None
    return z


def _rows_layer_norm(ctx, x: Value, z: Value, eps: float, scale: Value, offset: Value) -> list[Value]:
    """The batch norm of the [1, rows, features, 1] layout computed on ``z`` itself, over its last
    axis, then laid out as TF does: the same numbers, spelled as the layer norm it is, so
    ``fuse_layer_norm`` finds it (a per-row scale/offset must be uniform: tf.ones/tf.zeros)."""
    mean = ctx.emit("reduce_mean", [z], {"axes": [-1], "keepdims": True})
    d = ctx.emit("sub", [z, mean])
    var = ctx.emit("reduce_mean", [ctx.emit("mul", [d, d])], {"axes": [-1], "keepdims": True})
    inv = ctx.emit("rsqrt", [ctx.emit("add", [var, ctx.const(np.array(eps, np.float32))])])
    g, b = _uniform(scale), _uniform(offset)
    if g is None or b is None:
        raise OpError("a layer-norm layout of FusedBatchNorm with a per-row scale or offset is not supported")
    y = ctx.emit("add", [ctx.emit("mul", [d, ctx.emit("mul", [inv, g])]), b])
    four = {"shape": [1, -1, int(z.shape[-1]), 1]}
    stats = [ctx.emit("reshape", [t], {"shape": [1, -1, 1, 1]}) for t in (mean, var)]
    return [ctx.emit("reshape", [y], four), *stats, *stats, stats[0]]


def _uniform(v: Value) -> Value | None:
    """The scalar constant a tensor is filled with when it is one broadcast to a run-time shape
    (tf-keras' fused layer norm passes tf.ones/tf.zeros([batch*seq]) as scale and offset), else None.
    Multiplying or adding the scalar is the same, and keeps the norm recognisable as a layer norm."""
    op = v.producer
    if op is None or op.kind != "expand" or not op.operands[0].is_const():
        return None
    c = np.asarray(op.operands[0].const_value())
    return op.operands[0] if c.size == 1 and c.ndim == 0 else None
