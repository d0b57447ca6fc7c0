"""Complex values and the discrete Fourier transform, spelled with real core ops.

F-Net replaces attention with ``real(fft2d(complex(x, 0)))`` over the
sequence and hidden axes.  The IR has no complex dtype; the importer carries a
complex tensor as a pair of real values (``ComplexPair``) from ``Complex`` to
``Real``/``Imag``, and a DFT along an axis of length N is two real matmuls
with the cosine and sine matrices C[j, k] = cos(2*pi*(j*k mod N)/N) and S
likewise: (Xr + iXi)(C - iS) = (Xr C + Xi S) + i(Xi C - Xr S).  For a
symbolic N the matrices are computed at run time from ``range``; ``j*k mod N``
keeps every angle below 2*pi, so f32 loses nothing to large arguments.  Any
other op meeting a complex value is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from ..ir.types import is_static
from .tf import handler


@dataclass
class ComplexPair:
    """A complex tensor as its real and imaginary parts (``im`` None: zero)."""

    re: Value
    im: Value | None


def complex_aware(fn):
    """Mark a handler as taking ``ComplexPair`` operands (others refuse them)."""
    fn.complex_aware = True
    return fn


def _pair(ctx, v) -> ComplexPair:
    if not isinstance(v, ComplexPair):
        raise OpError(f"{ctx.node.op} expects a complex operand")
    return v


@handler("Complex")
@complex_aware
def _complex(ctx, node, ins):
    re, im = ins
    zero = im.const_value() is not None and not np.asarray(im.const_value()).any()
    return [ComplexPair(re, None if zero else im)]


@handler("Real")
@complex_aware
def _real(ctx, node, ins):
    return _pair(ctx, ins[0]).re


@handler("Imag")
@complex_aware
def _imag(ctx, node, ins):
    p = _pair(ctx, ins[0])
    return p.im if p.im is not None else ctx.emit("sub", [p.re, p.re])


def _dft_matrices(ctx, x: Value, axis: int) -> tuple[Value, Value]:
    """(C, S), each [N, N], for the length N of ``x``'s ``axis``."""
    n = x.shape[axis]
    if is_static(n):
        jk = np.outer(np.arange(n), np.arange(n)) % max(n, 1)
        angle = 2 * np.pi * jk / max(n, 1)
        return (ctx.const(np.cos(angle).astype(np.float32), f"{ctx.name}/cos{axis}"),
                ctx.const(np.sin(angle).astype(np.float32), f"{ctx.name}/sin{axis}"))
    size = ctx.emit("gather", [ctx.emit("shape", [x], {"dtype": "i32"}),
                               ctx.const(np.array(axis % x.type.rank, np.int64), f"{ctx.name}/axis{axis}")])
    j = ctx.emit("range", [ctx.const(np.array(0, np.int32), f"{ctx.name}/zero"), size,
                           ctx.const(np.array(1, np.int32), f"{ctx.name}/one")])
    jk = ctx.emit("mod", [ctx.emit("mul", [ctx.emit("unsqueeze", [j], {"axes": [1]}),
                                           ctx.emit("unsqueeze", [j], {"axes": [0]})]), size])
    step = ctx.emit("div", [ctx.const(np.array(2 * np.pi, np.float32), f"{ctx.name}/two_pi"),
                            ctx.emit("cast", [size], {"to": "f32"})])
    angle = ctx.emit("mul", [ctx.emit("cast", [jk], {"to": "f32"}), step])
    return ctx.emit("cos", [angle]), ctx.emit("sin", [angle])


def _dft(ctx, p: ComplexPair, axis: int) -> ComplexPair:
    """The DFT of ``p`` along ``axis`` (one of the last two)."""
    rank = p.re.type.rank
    c, s = _dft_matrices(ctx, p.re, axis)
    last = axis % rank == rank - 1

    def apply(m: Value, v: Value) -> Value:
        return ctx.emit("matmul", [v, m] if last else [m, v])

    re = apply(c, p.re)
    im = ctx.emit("neg", [apply(s, p.re)])
    if p.im is not None:
        re = ctx.emit("add", [re, apply(s, p.im)])
        im = ctx.emit("add", [im, apply(c, p.im)])
    for v in (re, im):
        v.type = v.type.with_shape(p.re.shape)
    return ComplexPair(re, im)


@handler("FFT", "FFT2D")
@complex_aware
def _fft(ctx, node, ins):
    p = _pair(ctx, ins[0])
    if p.re.dtype != "f32":
        raise OpError(f"{node.op} of {p.re.dtype} parts is not supported (complex64 only)")
    axes = [-1] if node.op == "FFT" else [-2, -1]
    if p.re.type.rank < len(axes):
        raise OpError(f"{node.op} of a rank-{p.re.type.rank} tensor")
    for a in axes:
        p = _dft(ctx, p, a)
    return [p]
