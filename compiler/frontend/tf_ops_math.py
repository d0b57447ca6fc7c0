"""TF op handlers that are small compositions of elementwise ops and reductions.

ClipByValue, Relu6, LeakyRelu, LogSoftmax, All/Any and Rank have no core op
of their own: each is spelled exactly (or, for LogSoftmax, to a few ulps)
with the core ops every target runs.
"""

from __future__ import annotations

import numpy as np

from ..ir.types import np_dtype
from .tf import handler


@handler("ClipByValue")
def _clip(ctx, node, ins):
    """TF clips as max(min(x, hi), lo)."""
    x, lo, hi = ins
    return ctx.emit("maximum", [ctx.emit("minimum", [x, hi]), lo])


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
