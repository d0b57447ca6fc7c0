"""TFLite lowerings of the quantized ops: quantize, dequantize, qmatmul, and static int8 dense layers.

A TFLite tensor carries its own quantization parameters, so the IR's scale and
zero point operands (constants) become parameters of the int8 tensor they
describe.  Imported at the end of tflite.py, whose tables (``_LOWERINGS``,
``CAPABILITIES``) it extends.

quant_full's form (passes/quant_full.py)

    %xq = quantize %x, %sx, %zx : i8               per tensor
    %xd = dequantize %xq, %sx, %zx
    %wd = dequantize @Wq, @sw, @zw {axis=1}         per output channel, zw = 0
    %y  = matmul %xd, %wd
    %yb = add %y, @b                                (optional bias)
    %yq = quantize %yb, %sy, %zy : i8              per tensor

is one int8 FULLY_CONNECTED: input the int8 tensor of %xq carrying (sx, zx),
kernel Wq stored [N, K] carrying sw (quantized_dimension 0), an int32 bias
round(b / (sx * sw)) carrying sx * sw, and output the int8 tensor of %yq
carrying (sy, zy): the file holds exactly the IR's scales and zero points
(tests/test_tflite_int8.py reads them back).  The dequantizes, the add and the
output quantize are not emitted.  LiteRT accumulates in int32 and rescales
with a fixed-point multiplier, and rounds the bias: each result is within one
step of sy of the IR's.  A dense layer whose result is not re-quantized
(quant_full's outputs= leaves the residual-branch projections float) has no
int8 FULLY_CONNECTED with a float output, so it runs op by op: DEQUANTIZE of
the input and of the (constant, once at load) kernel, then a float
FULLY_CONNECTED.  Exact, and as slow as fp32 for those layers.
"""

from __future__ import annotations

import logging

import numpy as np

from ..ir.graph import Op, Value
from ..ir.types import normalize_axis
from .tflite import _LOWERINGS, CAPABILITIES, LITE_DTYPES, MAX_RANK, Check, lowers
from .tflite_builder import BuiltinOperator as B
from .tflite_builder import Lowering, options, quantization, quantized_weight, set_quantization

log = logging.getLogger(__name__)

# A TFLite tensor carries its own quantization parameters, so the IR's scale and
# zero point operands (constants) become parameters of the int8 tensor they describe.

QUANT_DTYPES = frozenset({"i8", "u8"})


def _quant_params(op: Op):
    axis = op.attrs["axis"]
    rank = op.operands[0].type.rank
    return quantization(op.operands[1].const_value(), op.operands[2].const_value(),
                        None if axis is None else normalize_axis(axis, rank))


@lowers("qmatmul")
def _qmatmul(ctx: Lowering, op: Op) -> None:
    """Hybrid FULLY_CONNECTED: f32 input and output, an int8 kernel [N, K] that carries
    its scales (per output channel: quantized_dimension 0; zero points 0).  LiteRT
    quantizes each input row to int8 at run time.  asymmetric_quantize_inputs is set:
    XNNPACK (on by default) quantizes rows asymmetrically whatever the flag says and the
    builtin kernel is faster with it (benchmarks/quantization.py), so the file computes
    the same with or without the delegate: the reference's act_dtype="i8",
    act_per_row=True.  With the default u8-per-tensor activations in the IR, LiteRT's
    grid is finer (one scale per row), a documented difference."""
    a, b, scale, zero_point = op.operands
    w = quantized_weight(ctx, b, scale, zero_point, op.attrs["axis"])
    ctx.emit(B.FULLY_CONNECTED, [ctx.tensor(a), w, -1], [ctx.result(op.result)],
             options("FullyConnectedOptionsT", keepNumDims=True, asymmetricQuantizeInputs=True))


@lowers("quantize")
def _quantize(ctx: Lowering, op: Op) -> None:
    """QUANTIZE into a tensor carrying the parameters (LiteRT rounds ties away from zero)."""
    out = ctx.result(op.result)
    set_quantization(ctx, out, _quant_params(op))
    ctx.emit(B.QUANTIZE, [ctx.tensor(op.operands[0])], [out])


@lowers("dequantize")
def _dequantize(ctx: Lowering, op: Op) -> None:
    """DEQUANTIZE of the int8 tensor, which is given the parameters (a gathered embedding
    row, a constant: LiteRT dequantizes constant inputs once and keeps the result)."""
    q = ctx.tensor(op.operands[0])
    set_quantization(ctx, q, _quant_params(op))
    ctx.emit(B.DEQUANTIZE, [q], [ctx.result(op.result)])


def _quantized_storage(v: Value) -> bool:
    """An i8/u8 value read only where its quantization parameters are known: the data of
    dequantize, the kernel of qmatmul, zero points, or the table of a gather whose rows
    are themselves such values (int8 embeddings)."""
    if v.dtype not in QUANT_DTYPES or not v.uses:
        return False
    for user, i in v.uses:
        if (user.kind, i) in (("dequantize", 0), ("qmatmul", 1), ("quantize", 2), ("dequantize", 2),
                              ("qmatmul", 3)):
            continue
        if user.kind == "gather" and i == 0 and _quantized_storage(user.result):
            continue
        return False
    return True


def _allow_quantized(base: Check | None) -> Check:
    """``base``, except that i8/u8 tensors that only quantized ops read are legal."""
    def check(op: Op) -> str | None:
        values = (*op.operands, *op.results)
        quant = [v for v in values if v.dtype in QUANT_DTYPES]
        if not quant or not all(_quantized_storage(v) for v in quant):
            return base(op) if base else None
        for v in values:
            if v.dtype not in LITE_DTYPES | QUANT_DTYPES:
                return f"{op.kind} on {v.dtype}: tflite lowers {'/'.join(sorted(LITE_DTYPES))} tensors only"
            if v.type.rank > MAX_RANK:
                return f"{op.kind} on a rank-{v.type.rank} tensor: LiteRT kernels take at most {MAX_RANK} dims"
        return None
    return check


def _const_params(op: Op, *indices: int) -> str | None:
    if all(op.operands[i].is_const() for i in indices):
        return None
    return (f"{op.kind} with run-time scale or zero point: a TFLite tensor keeps its quantization "
            "parameters in the file, so they must be constants")


def _check_qmatmul(op: Op) -> str | None:
    a, b, _, zero_point = op.operands
    if b.dtype != "i8":
        return f"qmatmul with a {b.dtype} kernel: TFLite's hybrid FULLY_CONNECTED takes int8 kernels only"
    reason = _const_params(op, 1, 2, 3)
    if reason is None and np.any(zero_point.const_value() != 0):
        reason = "qmatmul with nonzero kernel zero points: TFLite's hybrid kernels need symmetric int8 weights"
    if reason is None and a.type.rank > MAX_RANK:
        reason = f"qmatmul on a rank-{a.type.rank} tensor: LiteRT kernels take at most {MAX_RANK} dims"
    return reason


def _check_quant_pair(op: Op) -> str | None:
    """quantize / dequantize (i8 or u8, per tensor or per axis): constant parameters."""
    reason = _const_params(op, 1, 2)
    if reason is None and max(op.operands[0].type.rank, op.results[0].type.rank) > MAX_RANK:
        reason = f"{op.kind} on a rank > {MAX_RANK} tensor: LiteRT kernels take at most {MAX_RANK} dims"
    return reason


CAPABILITIES.update({
    "qmatmul": _check_qmatmul, "quantize": _check_quant_pair, "dequantize": _check_quant_pair,
    # int8 weights and gathered int8 embedding rows (quant_int8{embeddings=true})
    "const": _allow_quantized(CAPABILITIES.get("const")),
    "gather": _allow_quantized(CAPABILITIES.get("gather")),
})


# --------------------------------------------------------------------------- static int8 dense layers
def _const_i8_params(q: Op | None, axis) -> bool:
    """``q`` is a quantize/dequantize with constant parameters, int8, per tensor (axis None) or
    along ``axis``."""
    return (q is not None and q.kind in ("quantize", "dequantize") and q.operands[1].is_const()
            and q.operands[2].is_const() and q.operands[2].dtype == "i8"
            and (q.attrs["axis"] == axis if axis is None else q.attrs["axis"] in axis))


def int8_dense(op: Op) -> tuple[Op | None, Op] | None:
    """For a matmul in quant_full's form with a re-quantized result: (bias add or None, the output
    quantize); else None."""
    if op.kind != "matmul":
        return None
    xd, wd = (v.producer for v in op.operands)
    if not (_const_i8_params(xd, None) and xd.kind == "dequantize" and xd.operands[0].dtype == "i8"):
        return None
    if not (_const_i8_params(wd, (1, -1)) and wd.kind == "dequantize" and wd.operands[0].is_const()
            and wd.operands[0].type.rank == 2 and not np.any(wd.operands[2].const_value())):
        return None
    if op.operands[0].type.rank > 4 or any(v is op.result for v in op.graph.outputs.values()):
        return None
    out, add = op.result, None
    if len(out.uses) == 1 and out.users[0].kind == "add":
        cand = out.users[0]
        b = cand.operands[1] if cand.operands[0] is out else cand.operands[0]
        if (b.is_const() and b.dtype == "f32" and b.type.rank == 1 and cand.result.shape == out.shape
                and not any(v is cand.result for v in op.graph.outputs.values())):
            add, out = cand, cand.result
    if len(out.uses) != 1:
        return None
    yq = out.users[0]
    if not (_const_i8_params(yq, None) and yq.kind == "quantize"):
        return None
    return add, yq


def _dense_source(v: Value) -> Op | None:
    """The matmul whose result (directly, or through its bias add) is ``v``, if any."""
    p = v.producer
    if p is not None and p.kind == "add":
        p = next((u.producer for u in p.operands if u.producer is not None and u.producer.kind == "matmul"), None)
    return p if p is not None and p.kind == "matmul" else None


def _folded(op: Op) -> bool:
    """An op that an int8 FULLY_CONNECTED (``_int8_dense``) stands for: not emitted."""
    if op.kind == "dequantize":
        users = op.result.users
        return (bool(users) and all(int8_dense(u) is not None for u in users)
                and not any(v is op.result for v in op.graph.outputs.values()))
    if op.kind in ("add", "quantize"):
        mm = _dense_source(op.operands[0] if op.kind == "quantize" else op.result)
        found = int8_dense(mm) if mm is not None else None
        return found is not None and op in found
    return False


def _int8_dense(ctx: Lowering, op: Op) -> None:
    """One int8 FULLY_CONNECTED for matmul [+ bias] + output quantize (see the module docstring)."""
    add, yq = int8_dense(op)
    xd, wd = (v.producer for v in op.operands)
    xq = xd.operands[0]
    x = ctx.tensor(xq)
    set_quantization(ctx, x, quantization(xd.operands[1].const_value(), xd.operands[2].const_value()))
    w = quantized_weight(ctx, wd.operands[0], wd.operands[1], wd.operands[2], 1)
    sx = np.float32(xd.operands[1].const_value())
    sw = np.asarray(wd.operands[1].const_value(), np.float32)
    bias_scale = (sx * sw).astype(np.float32)
    b = np.zeros(sw.shape, np.float32)
    if add is not None:
        bv = add.operands[1] if add.operands[0] is op.result else add.operands[0]
        b = np.asarray(bv.const_value(), np.float32)
    bias = np.clip(np.rint(b / bias_scale), -2**31, 2**31 - 1).astype(np.int32)
    bias_idx = ctx._track(ctx.mb.const(f"{ctx.names.name(op.result)}/bias_int32", bias, "i32"), "i32")
    set_quantization(ctx, bias_idx, quantization(bias_scale, np.zeros(sw.shape, np.int64), 0))
    out = ctx.result(yq.result)
    set_quantization(ctx, out, quantization(yq.operands[1].const_value(), yq.operands[2].const_value()))
    ctx.emit(B.FULLY_CONNECTED, [x, w, bias_idx], [out], options("FullyConnectedOptionsT", keepNumDims=True))


def _with_int8_dense(kind: str):
    """Wrap ``_LOWERINGS[kind]``: int8 dense layers are emitted whole, and the ops they fold skipped."""
    base = _LOWERINGS[kind]

    def lower(ctx: Lowering, op: Op) -> None:
        if kind == "matmul" and int8_dense(op) is not None:
            _int8_dense(ctx, op)
        elif not _folded(op):
            base(ctx, op)
    lower.__doc__ = base.__doc__
    return lower


for _kind in ("matmul", "add", "quantize", "dequantize"):
    _LOWERINGS[_kind] = _with_int8_dense(_kind)
