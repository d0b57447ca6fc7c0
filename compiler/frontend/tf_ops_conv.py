"""TF convolution handlers: Conv2D and DepthwiseConv2dNative as shifted slices; AvgPool and MaxPool.

Transformers use convolutions along the sequence (ConvBERT's span-based
dynamic convolution is a Keras SeparableConv1D: a depthwise then a 1x1
convolution, written by TF as 4-D NHWC ops with a height of 1).  The IR has
no convolution op; a stride-1 convolution is exactly a sum over kernel
offsets of the input shifted by that offset, times that offset's kernel
slice: a matmul per offset (Conv2D) or an elementwise product (depthwise).
Any length works, symbolic ones included, because each shifted window is a
slice whose end is counted from the back.  Strided, dilated or NCHW
convolutions are refused with the reason.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from .tf import ImportContext, handler

INT_MAX = 2**63 - 1


def _check(ctx: ImportContext, op: str) -> None:
    if ctx.attr("data_format", "NHWC") != "NHWC":
        raise OpError(f"{op} with data_format {ctx.attr('data_format')} is not supported (NHWC only)")
    if any(s != 1 for s in ctx.attr("strides", [1, 1, 1, 1]) or [1]):
        raise OpError(f"{op} with strides {ctx.attr('strides')} is not supported (stride 1 only)")
    if any(d != 1 for d in ctx.attr("dilations", [1, 1, 1, 1]) or [1]):
        raise OpError(f"{op} with dilations {ctx.attr('dilations')} is not supported")
    if ctx.attr("padding") not in ("SAME", "VALID"):
        raise OpError(f"{op} with padding {ctx.attr('padding')} is not supported (SAME or VALID)")


def _kernel(ctx: ImportContext, op: str, kernel: Value) -> np.ndarray:
    """The convolution's checked attributes and its kernel's value (computed from constants)."""
    _check(ctx, op)
    w = ctx.folded(kernel)
    if w is None:
        raise OpError(f"{op} with a kernel computed from the inputs is not supported")
    return w


def _windows(ctx: ImportContext, x: Value, kh: int, kw: int) -> list[tuple[int, int, Value]]:
    """(i, j, x shifted by kernel offset (i, j)) for each offset, after SAME or VALID padding."""
    if ctx.attr("padding") == "SAME":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        pads = [0, 0, top, kh - 1 - top, left, kw - 1 - left, 0, 0]
        if any(pads):
            x = ctx.emit("pad", [x], {"pads": pads})
    out = []
    for i in range(kh):
        for j in range(kw):
            ends = [-(kh - 1 - i) or INT_MAX, -(kw - 1 - j) or INT_MAX]
            if (i, j, *ends) == (0, 0, INT_MAX, INT_MAX):
                out.append((i, j, x))
                continue
            out.append((i, j, ctx.emit("slice", [x], {"starts": [i, j], "ends": ends, "axes": [1, 2]})))
    return out


def _sum(ctx: ImportContext, x: Value, terms: list[Value], channels: int) -> Value:
    """The terms added up; with SAME padding the result keeps x's spatial dims (symbols too)."""
    acc = terms[0]
    for t in terms[1:]:
        acc = ctx.emit("add", [acc, t])
    if ctx.attr("padding") == "SAME":
        acc.type = acc.type.with_shape((*x.shape[:3], channels))
    return acc


@handler("Conv2D")
def _conv2d(ctx, node, ins):
    """y = sum over offsets (i, j) of window_ij @ kernel[i, j]   ([..., C] @ [C, M])."""
    x, w = ins[0], _kernel(ctx, "Conv2D", ins[1])
    kh, kw = w.shape[:2]
    terms = [ctx.emit("matmul", [win, ctx.const(np.ascontiguousarray(w[i, j]), f"{ctx.name}/kernel_{i}_{j}")])
             for i, j, win in _windows(ctx, x, kh, kw)]
    return _sum(ctx, x, terms, w.shape[3])


@handler("DepthwiseConv2dNative")
def _depthwise(ctx, node, ins):
    """y[..., c * m + k] = sum over offsets of window_ij[..., c] * kernel[i, j, c, k]."""
    x, w = ins[0], _kernel(ctx, "DepthwiseConv2dNative", ins[1])
    kh, kw, c, mult = w.shape
    terms = []
    for i, j, win in _windows(ctx, x, kh, kw):
        if mult == 1:
            terms.append(ctx.emit("mul", [win, ctx.const(np.ascontiguousarray(w[i, j, :, 0]),
                                                         f"{ctx.name}/kernel_{i}_{j}")]))
            continue
        wide = ctx.emit("mul", [ctx.emit("unsqueeze", [win], {"axes": [4]}),
                                ctx.const(np.ascontiguousarray(w[i, j]), f"{ctx.name}/kernel_{i}_{j}")])
        terms.append(ctx.emit("reshape", [wide], {"shape": [0, 0, 0, c * mult]}))
    return _sum(ctx, x, terms, c * mult)


@handler("AvgPool", "MaxPool")
def _pool(ctx: ImportContext, node, ins: list[Value]) -> Value:
    """tf.nn.avg_pool / max_pool (and their 1-D forms, which TF writes as 4-D with height 1)."""
    if ctx.attr("data_format", "NHWC") != "NHWC":
        raise OpError("only NHWC pooling is supported (TF's CPU kernels run no other)")
    ksize, strides = [int(k) for k in ctx.attr("ksize")], [int(s) for s in ctx.attr("strides")]
    if len(ksize) != 4 or ksize[0] != 1 or ksize[3] != 1 or strides[0] != 1 or strides[3] != 1:
        raise OpError(f"pooling over the batch or channel axis is not supported (ksize {ksize}, strides {strides})")
    padding = ctx.attr("padding")
    if padding not in ("SAME", "VALID"):
        raise OpError(f"padding {padding!r} is not supported (SAME or VALID)")
    kind = "avg_pool" if node.op == "AvgPool" else "max_pool"
    return ctx.emit(kind, [ins[0]], {"ksize": ksize[1:3], "strides": strides[1:3], "padding": padding})
