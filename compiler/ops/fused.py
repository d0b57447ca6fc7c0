"""Fused ops for onnxruntime's contrib kernels: ``skip_layer_norm`` and ``bias_gelu``.

Each is exactly a composition of core ops, so its reference kernel is that
composition (f64 inside, like ``layer_norm`` and ``gelu``); the fusion passes
(``fuse_skip_layer_norm``, ``fuse_bias_gelu``) only rewrite what has this
meaning.  The ONNX target lowers them to ``com.microsoft`` SkipLayerNormalization
and BiasGelu/FastGelu; the TFLite target decomposes them again into the core
sequences, so one IR serves both targets.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import FLOAT_DTYPES
from ._util import t
from .elementwise import _gelu
from .nn import _layer_norm_kernel


def _last_dim_vector(op, i: int, what: str) -> None:
    """Operand ``i`` is 1-D with the size of the input's last dim."""
    x, v = t(op), t(op, i)
    if v.rank != 1 or v.shape[0] != x.shape[-1]:
        raise OpError(f"{op.kind} {what} {v} must be 1-D with the hidden size {x.shape[-1]}")


# ------------------------------------------------------------------ skip_layer_norm
def _skip_layer_norm_kernel(attrs, x, skip, gamma, beta, bias=None):
    s = x.astype(np.float64) + skip.astype(np.float64)
    if bias is not None:
        s = s + bias.astype(np.float64)
    return _layer_norm_kernel({"axis": -1, "epsilon": attrs["epsilon"]}, s, gamma, beta).astype(x.dtype)


def _skip_layer_norm_verify(op) -> None:
    x, skip = t(op), t(op, 1)
    if x.dtype not in FLOAT_DTYPES or any(v.dtype != x.dtype for v in op.operands):
        raise OpError(f"skip_layer_norm takes float operands of one dtype, got {x} and {skip}")
    if x.rank < 2 or skip.shape != x.shape:
        raise OpError(f"skip_layer_norm input {x} and skip {skip} must have one shape of rank >= 2")
    for i, what in ((2, "gamma"), (3, "beta"), (4, "bias")):
        if i < len(op.operands):
            _last_dim_vector(op, i, what)


define("skip_layer_norm", ("x", "skip", "gamma", "beta", "bias?"), lambda op: t(op),
       _skip_layer_norm_kernel, attrs={"epsilon": Attr("float", 1e-12)},
       verify=_skip_layer_norm_verify,
       doc="layer_norm(x + skip (+ bias), gamma, beta) over the last axis "
           "(onnxruntime com.microsoft SkipLayerNormalization)")


# ------------------------------------------------------------------ bias_gelu
def _bias_gelu_kernel(attrs, x, bias):
    s = x.astype(np.float64) + bias.astype(np.float64)
    return _gelu({"approximate": attrs["approximate"]}, s).astype(x.dtype)


def _bias_gelu_verify(op) -> None:
    x = t(op)
    if x.dtype not in FLOAT_DTYPES or t(op, 1).dtype != x.dtype:
        raise OpError(f"bias_gelu takes float operands of one dtype, got {x} and {t(op, 1)}")
    _last_dim_vector(op, 1, "bias")
    if op.attrs["approximate"] not in ("none", "tanh"):
        raise OpError(f"bias_gelu approximate must be 'none' or 'tanh', got {op.attrs['approximate']!r}")


define("bias_gelu", ("x", "bias"), lambda op: t(op), _bias_gelu_kernel,
       attrs={"approximate": Attr("str", "none")}, verify=_bias_gelu_verify,
       doc="gelu(x + bias) with a 1-D bias along the last axis: erf form when approximate='none' "
           "(onnxruntime com.microsoft BiasGelu), else the tanh form (FastGelu)")
