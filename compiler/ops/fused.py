"""Fused ops for onnxruntime's contrib kernels: ``skip_layer_norm``, ``bias_gelu`` and
``multi_head_attention``.

Each is exactly a composition of core ops, so its reference kernel is that
composition (f64 inside, like ``layer_norm`` and ``gelu``); the fusion passes
(``fuse_skip_layer_norm``, ``fuse_bias_gelu``, ``fuse_attention``) only rewrite
what has this meaning.  The ONNX target lowers them to ``com.microsoft``
SkipLayerNormalization, BiasGelu/FastGelu and MultiHeadAttention; the TFLite
target decomposes them again into the core sequences, so one IR serves both
targets.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import FLOAT_DTYPES, TensorType, is_static
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


# ------------------------------------------------------------------ multi_head_attention
def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """[B, S, heads*d] -> [B, heads, S, d]."""
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(0, 2, 1, 3)


def _attention_kernel(attrs, q, k, v, mask=None):
    n = attrs["num_heads"]
    qh, kh, vh = (_split_heads(a.astype(np.float64), n) for a in (q, k, v))
    scores = qh @ kh.transpose(0, 1, 3, 2) * attrs["scale"]
    if mask is not None:
        scores = scores + mask.astype(np.float64)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    ctx = (e / e.sum(axis=-1, keepdims=True)) @ vh  # [B, heads, S, dv]
    b, _, s, _ = ctx.shape
    return ctx.transpose(0, 2, 1, 3).reshape(b, s, -1).astype(q.dtype)


def _attention_type(op) -> TensorType:
    q, v = t(op), t(op, 2)
    return TensorType(q.dtype, (*q.shape[:2], v.shape[2]))


def _same(a, b) -> bool:
    """Equal dims, or not both known (a symbol may take any value)."""
    return a == b or not (is_static(a) and is_static(b))


def _attention_verify(op) -> None:
    q, k, v = t(op), t(op, 1), t(op, 2)
    n = op.attrs["num_heads"]
    if q.dtype not in FLOAT_DTYPES or any(x.dtype != q.dtype for x in (k, v)):
        raise OpError(f"multi_head_attention takes float q, k, v of one dtype, got {q}, {k}, {v}")
    if q.rank != 3 or k.rank != 3 or v.rank != 3:
        raise OpError(f"multi_head_attention takes [batch, seq, hidden] q, k, v, got {q}, {k}, {v}")
    if n < 1 or any(isinstance(d, int) and d % n for d in (q.shape[2], k.shape[2], v.shape[2])):
        raise OpError(f"multi_head_attention: hidden sizes {q.shape[2]}, {v.shape[2]} do not split into {n} heads")
    if not (_same(q.shape[2], k.shape[2]) and _same(k.shape[1], v.shape[1])):
        raise OpError(f"multi_head_attention: q {q} and k {k} differ in hidden size, or k and v {v} in length")
    if len(op.operands) > 3:
        m = t(op, 3)
        if m.dtype != q.dtype or m.rank != 4:
            raise OpError(f"multi_head_attention mask {m} must be a 4-D {q.dtype} tensor that broadcasts "
                          "to [batch, heads, seq, kv_seq]")


define("multi_head_attention", ("q", "k", "v", "mask?"), _attention_type, _attention_kernel,
       attrs={"num_heads": Attr("int", 1), "scale": Attr("float", 1.0)}, verify=_attention_verify,
       doc="softmax(q_h k_h^T * scale + mask) v_h per head, heads split from and merged into the last "
           "axis of [batch, seq, hidden] (onnxruntime com.microsoft MultiHeadAttention; mask is additive, "
           "4-D, broadcast to [batch, heads, seq, kv_seq])")
