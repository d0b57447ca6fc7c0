"""Quantization ops: ``quantize``, ``dequantize`` and ``qmatmul``.

Design choices, shared by the three ops:

* **Scale and zero point are operands**, as in ONNX ``QuantizeLinear`` /
  ``DequantizeLinear``: ``scale`` is f32, ``zero_point`` has the quantized
  dtype (i8 or u8) and the same shape as ``scale``.  Operands rather than
  attributes because (1) per-channel scales of a 768-wide projection are 768
  numbers, which as an attribute would print inline on every op, while a
  constant operand prints as ``@weight/scale`` and is stored beside the text
  like any weight; (2) a run-time scale (dynamic quantization, a future
  calibrated QDQ graph) is just another value; (3) both targets take them
  as tensors (ONNX) or tensor quantization parameters read from constants
  (TFLite).
* **Granularity is the ``axis`` attribute**: absent (None) means per tensor
  and ``scale``/``zero_point`` are scalars (rank 0); an int means per axis and
  they are 1-D with ``x.shape[axis]`` elements.
* **The quantized dtype is the zero point's dtype** (i8 or u8), as in ONNX;
  the result type of ``quantize`` shows it (``: i8[...]``).

Reference kernels are exact: ``quantize`` computes
``saturate(round_half_to_even(x / scale) + zero_point)`` in f32 like ONNX
``QuantizeLinear`` (LiteRT's per-axis QUANTIZE rounds ties away from zero, its
per-tensor one to even: they only differ when ``x / scale`` is exactly halfway;
tests/test_independent_reference.py); ``dequantize`` computes
``(q - zero_point) * scale`` in f32.

``qmatmul`` is a matmul with an int8 constant kernel whose *activation* is
quantized at run time ("dynamic quantization"); see its definition below.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import UNKNOWN, TensorType, normalize_axis
from ._util import t

# quantized dtype -> (qmin, qmax)
QUANT_RANGES: dict[str, tuple[int, int]] = {"i8": (-128, 127), "u8": (0, 255)}
QUANT_DTYPES = frozenset(QUANT_RANGES)


# ------------------------------------------------------------------ shared checks
def _check_params(op, data: int, scale: int, zero_point: int, axis_dim_of: int | None = None) -> None:
    """scale is f32, zero_point i8/u8 of scale's shape; rank 0 per tensor, 1-D along ``axis``."""
    s, z, x = op.operands[scale].type, op.operands[zero_point].type, op.operands[data].type
    if s.dtype != "f32":
        raise OpError(f"{op.kind} scale must be f32, got {s}")
    if z.dtype not in QUANT_DTYPES:
        raise OpError(f"{op.kind} zero_point must be i8 or u8, got {z}")
    if s.shape != z.shape:
        raise OpError(f"{op.kind} zero_point {z} must have the shape of scale {s}")
    axis = op.attrs["axis"]
    if axis is None:
        if s.rank != 0:
            raise OpError(f"{op.kind} per tensor (no axis) takes a scalar scale, got {s}; "
                          "give axis= for per-axis scales")
        return
    rank = x.rank if axis_dim_of is None else op.operands[axis_dim_of].type.rank
    try:
        ax = normalize_axis(axis, rank)
    except ValueError as e:
        raise OpError(f"{op.kind}: {e}") from None
    dim = (x if axis_dim_of is None else op.operands[axis_dim_of].type).shape[ax]
    if s.rank != 1:
        raise OpError(f"{op.kind} per axis {axis} takes a 1-D scale, got {s}")
    if UNKNOWN not in (dim, s.shape[0]) and s.shape[0] != dim:
        raise OpError(f"{op.kind} along axis {axis} (size {dim}) got {s.shape[0]} scales")


def _along(param: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast against a rank-``rank`` tensor."""
    if axis is None:
        return param
    shape = [1] * rank
    shape[axis % rank] = -1
    return param.reshape(shape)


def quantize_array(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                   axis: int | None = None) -> np.ndarray:
    """saturate(round_half_to_even(x / scale) + zero_point), in f32 (ONNX QuantizeLinear)."""
    lo, hi = np.iinfo(zero_point.dtype).min, np.iinfo(zero_point.dtype).max
    s = _along(np.asarray(scale, np.float32), axis, x.ndim)
    z = _along(np.asarray(zero_point), axis, x.ndim).astype(np.float32)
    q = np.rint(x.astype(np.float32) / s) + z
    return np.clip(q, lo, hi).astype(zero_point.dtype)


def dequantize_array(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                     axis: int | None = None) -> np.ndarray:
    """(q - zero_point) * scale, in f32 (ONNX DequantizeLinear)."""
    s = _along(np.asarray(scale, np.float32), axis, q.ndim)
    z = _along(np.asarray(zero_point), axis, q.ndim).astype(np.int32)
    return ((q.astype(np.int32) - z).astype(np.float32) * s).astype(np.float32)


# ------------------------------------------------------------------ quantize / dequantize
def _quantize_verify(op) -> None:
    if t(op).dtype != "f32":
        raise OpError(f"quantize takes an f32 input, got {t(op)}")
    _check_params(op, 0, 1, 2)


def _dequantize_verify(op) -> None:
    if t(op).dtype not in QUANT_DTYPES:
        raise OpError(f"dequantize takes an i8 or u8 input, got {t(op)}")
    if t(op, 2).dtype != t(op).dtype:
        raise OpError(f"dequantize zero_point {t(op, 2)} must have the input's dtype {t(op).dtype}")
    _check_params(op, 0, 1, 2)


_AXIS = {"axis": Attr("int", None, "per-axis along this axis of the data; absent: per tensor")}

define("quantize", ("x", "scale", "zero_point"),
       lambda op: TensorType(t(op, 2).dtype, t(op).shape),
       lambda attrs, x, s, z: quantize_array(x, s, z, attrs["axis"]),
       attrs=dict(_AXIS), verify=_quantize_verify,
       doc="saturate(round_half_to_even(x / scale) + zero_point) to zero_point's dtype (i8/u8); "
           "scale f32 and zero_point are operands, scalars per tensor or 1-D along axis "
           "(ONNX QuantizeLinear)")
define("dequantize", ("q", "scale", "zero_point"),
       lambda op: TensorType("f32", t(op).shape),
       lambda attrs, q, s, z: dequantize_array(q, s, z, attrs["axis"]),
       attrs=dict(_AXIS), verify=_dequantize_verify,
       doc="(q - zero_point) * scale as f32; scale/zero_point operands are scalars per tensor or "
           "1-D along axis (ONNX DequantizeLinear)")


# ------------------------------------------------------------------ dynamic activations
def dynamic_quant_params(x: np.ndarray, dtype: str, symmetric: bool, per_row: bool
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize ``x`` with parameters computed from ``x`` itself: (q, scale, zero_point).

    Per tensor, or per row (one scale per vector along the last axis).  Scale and
    zero point come back shaped to broadcast against ``x``.

    * asymmetric (ONNX ``DynamicQuantizeLinear`` generalised to i8 and rows): the
      range [min(x, 0), max(x, 0)] maps onto [qmin, qmax];
      ``scale = (max - min) / (qmax - qmin)``,
      ``zero_point = round(clip(qmin - min / scale))``; a range of zero gives scale 1.
    * symmetric (i8 only; TFLite's hybrid kernels without asymmetric inputs):
      ``scale = max|x| / 127``, zero point 0, values in [-127, 127].

    All arithmetic is f32 and rounding is half to even, as onnxruntime does.
    """
    x = x.astype(np.float32, copy=False)
    axes = (x.ndim - 1,) if per_row and x.ndim else None
    keep = per_row and x.ndim > 0
    qmin, qmax = QUANT_RANGES[dtype]
    np_dt = np.int8 if dtype == "i8" else np.uint8
    if x.size == 0:
        shape = x.shape[:-1] + (1,) if keep else ()
        return x.astype(np_dt), np.ones(shape, np.float32), np.zeros(shape, np_dt)
    if symmetric:
        if dtype != "i8":
            raise ValueError("symmetric dynamic quantization is defined for i8 only")
        amax = np.abs(x).max(axis=axes, keepdims=keep).astype(np.float32)
        scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
        q = np.clip(np.rint(x / scale), -127, 127).astype(np_dt)
        return q, scale, np.zeros_like(q, shape=scale.shape)
    lo = np.minimum(x.min(axis=axes, keepdims=keep), np.float32(0)).astype(np.float32)
    hi = np.maximum(x.max(axis=axes, keepdims=keep), np.float32(0)).astype(np.float32)
    scale = np.where(hi > lo, (hi - lo) / np.float32(qmax - qmin), np.float32(1)).astype(np.float32)
    zp = np.rint(np.clip(np.float32(qmin) - lo / scale, qmin, qmax)).astype(np.float32)
    q = np.clip(np.rint(x / scale) + zp, qmin, qmax).astype(np_dt)
    return q, scale, zp.astype(np_dt)


# ------------------------------------------------------------------ qmatmul
def _qmatmul_type(op) -> TensorType:
    a, b = t(op, 0), t(op, 1)
    if a.rank < 2 or b.rank != 2:
        raise OpError(f"qmatmul takes a rank >= 2 activation and a 2-D kernel, got {a} and {b}")
    if UNKNOWN not in (a.shape[-1], b.shape[0]) and a.shape[-1] != b.shape[0]:
        raise OpError(f"qmatmul contracts {a} with {b}: inner dims {a.shape[-1]} and {b.shape[0]} differ")
    return TensorType("f32", (*a.shape[:-1], b.shape[1]))


def _qmatmul_verify(op) -> None:
    a, b, z = t(op, 0), t(op, 1), t(op, 3)
    if a.dtype != "f32":
        raise OpError(f"qmatmul takes an f32 activation, got {a}")
    if b.dtype not in QUANT_DTYPES or z.dtype != b.dtype:
        raise OpError(f"qmatmul kernel must be i8/u8 with a zero point of its dtype, got {b} and {z}")
    axis = op.attrs["axis"]
    if axis is not None and normalize_axis(axis, 2) != 1:
        raise OpError(f"qmatmul scales run along the kernel's output axis (axis=1), got axis={axis}")
    _check_params(op, 1, 2, 3)
    act = op.attrs["act_dtype"]
    if act not in QUANT_DTYPES:
        raise OpError(f"qmatmul act_dtype must be i8 or u8, got {act!r}")
    if op.attrs["act_symmetric"] and act != "i8":
        raise OpError("qmatmul: symmetric activation quantization is defined for act_dtype='i8' only")


def _qmatmul_kernel(attrs, a, b, b_scale, b_zero_point):
    """Integer matmul of the run-time-quantized activation with the int8 kernel, then rescale.

    acc = (a_q - a_zp) @ (b - b_zp) is exact (f64 holds these integer sums,
    |acc| < 2**53), and y = f32(acc) * f32(a_scale * b_scale): the order
    onnxruntime's DynamicQuantizeMatMul and LiteRT's hybrid kernels use.
    """
    aq, a_scale, a_zp = dynamic_quant_params(a, attrs["act_dtype"], attrs["act_symmetric"],
                                             attrs["act_per_row"])
    axis = attrs["axis"]
    w = b.astype(np.float64) - _along(np.asarray(b_zero_point), axis, 2).astype(np.float64)
    acc = np.matmul(aq.astype(np.float64) - a_zp.astype(np.float64), w)
    b_scale = np.asarray(b_scale, np.float32)
    scale = (a_scale * (b_scale if axis is None else b_scale.reshape(-1))).astype(np.float32)
    return (acc.astype(np.float32) * scale).astype(np.float32)


define("qmatmul", ("a", "b", "b_scale", "b_zero_point"), _qmatmul_type, _qmatmul_kernel,
       attrs={"axis": Attr("int", None, "1: one scale per output column of b; absent: per tensor"),
              "act_dtype": Attr("str", "u8", "the activation's run-time quantized dtype"),
              "act_symmetric": Attr("bool", False, "zero point 0 and range max|a| (i8 only)"),
              "act_per_row": Attr("bool", False, "one scale per row of a (vector along its last axis)")},
       verify=_qmatmul_verify,
       doc="a @ dequantize(b, b_scale, b_zero_point, axis) with a quantized at run time: a is "
           "quantized to act_dtype with parameters computed from a itself (per tensor or per row, "
           "asymmetric or symmetric), the product is accumulated in integers and rescaled to f32 "
           "(onnxruntime DynamicQuantizeMatMul; TFLite hybrid FULLY_CONNECTED)")
