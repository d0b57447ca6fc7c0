"""TFLite lowerings of the quantized ops: quantize, dequantize, qmatmul, and static int8 dense layers.

A TFLite tensor carries its own quantization parameters, so the IR's scale and
zero point operands (constants) become parameters of the int8 tensor they
describe.  tflite.py merges ``QUANT_LOWERINGS`` and these capability checks into its
tables, with quant_full's int8 FULLY_CONNECTED (``int8_dense_or``) in front of the
float matmul.

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
BATCH_MATMUL (its kernel is no constant).  Exact, and fp32's speed under XNNPACK,
LiteRT's default.  (Measured on one FFN-down-sized layer, 2 threads: DEQUANTIZE +
FULLY_CONNECTED instead is 1.2x slower under XNNPACK; without XNNPACK the builtin
BATCH_MATMUL with a non-constant kernel takes 14x fp32's time, which is why
quant_full's default form runs 5-6x fp32's time on builtin kernels alone in
benchmarks/tflite_int8.py.)  The same op-by-op
lowering serves every matmul the form does not fit (a kernel holding -128, an
input of rank > 4, a bias beyond int32 …); ``match_int8_dense`` says why, and the
lowering logs it at debug level.

A dequantize whose readers are all int8 FULLY_CONNECTEDs is not emitted either:
they read its int8 tensor.  So Q, K and V share one QUANTIZE, and an int8 result
that the next int8 layer reads (through a dequantize with the same parameters)
passes between them without a DEQUANTIZE + QUANTIZE pair.
"""

from __future__ import annotations

import logging

import numpy as np

from ..ir.graph import Op, Value
from ..ir.types import normalize_axis
from ..ops.quant import QUANT_RANGES
from .tflite_checks import LITE_DTYPES, MAX_RANK, Check
from .tflite_core import fc_bias
from .tflite_builder import BuiltinOperator as B
from .tflite_builder import Lower, Lowering, lowering_table, options, quantization, quantized_weight, set_quantization

log = logging.getLogger(__name__)

QUANT_DTYPES = frozenset({"i8", "u8"})
QUANT_LOWERINGS, lowers = lowering_table()


def _quant_params(op: Op):
    axis = op.attrs["axis"]
    rank = op.operands[0].type.rank
    return quantization(op.operands[1].const_value(), op.operands[2].const_value(),
                        None if axis is None else normalize_axis(axis, rank))


# What LiteRT computes for an IR op where it departs from the op's attributes: a qmatmul
# quantizes its activation rows to int8, asymmetric, whatever ``act`` says (see _qmatmul).
# The op-by-op check (bertc.runtime.op_parity) holds the artifact to these.
RUNS_AS: dict[str, dict] = {"qmatmul": {"act_dtype": "i8", "act_symmetric": False, "act_per_row": True}}


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
    bias, out = fc_bias(ctx, op)
    ctx.emit(B.FULLY_CONNECTED, [ctx.tensor(a), w, bias], [out],
             options("FullyConnectedOptionsT", keepNumDims=True, asymmetricQuantizeInputs=True))


@lowers("quantize")
def _quantize(ctx: Lowering, op: Op) -> None:
    """QUANTIZE into a tensor carrying the parameters.  Per tensor it runs on XNNPACK (ties to
    even, as the IR); per axis on the builtin kernel, which rounds ties away from zero, and
    which converts round(x / scale) to int32 before it saturates: where |x / scale| >= 2**31
    (inf, 1e37 at scale 1) that conversion overflows and a large positive x came out as the
    lowest code (-128 / 0, not 127 / 255; tests/test_independent_reference.py).  So the
    per-axis input is first clamped to the representable range [(qmin - zp) s, (qmax - zp) s]
    along the axis: values inside are unchanged, values beyond get the code saturation gives.
    (The builtin per-tensor kernel, which runs only when XNNPACK is off, overflows alike; per
    tensor is quant_full's activation quantize, left without the two extra operators.)"""
    x = ctx.tensor(op.operands[0])
    axis = op.attrs["axis"]
    if axis is not None:
        v = op.operands[0]
        lo, hi = QUANT_RANGES[op.operands[2].dtype]
        scale = np.asarray(op.operands[1].const_value(), np.float32)
        zp = np.asarray(op.operands[2].const_value(), np.float32)
        shape = [1] * v.type.rank
        shape[normalize_axis(axis, v.type.rank)] = -1
        bounds = [((q - zp) * scale).astype(np.float32).reshape(shape) for q in (lo, hi)]
        x = ctx.clamp(x, *bounds, v.shape, "saturated")
    out = ctx.result(op.result)
    set_quantization(ctx, out, _quant_params(op))
    ctx.emit(B.QUANTIZE, [x], [out])


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


def allow_quantized(base: Check | None) -> Check:
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


def check_qmatmul(op: Op) -> str | None:
    a, b, _, zero_point = op.operands
    if b.dtype != "i8":
        return f"qmatmul with a {b.dtype} kernel: TFLite's hybrid FULLY_CONNECTED takes int8 kernels only"
    reason = _const_params(op, 1, 2, 3)
    if reason is None and np.any(zero_point.const_value() != 0):
        reason = "qmatmul with nonzero kernel zero points: TFLite's hybrid kernels need symmetric int8 weights"
    if reason is None and a.type.rank > MAX_RANK:
        reason = f"qmatmul on a rank-{a.type.rank} tensor: LiteRT kernels take at most {MAX_RANK} dims"
    return reason


def check_quant_pair(op: Op) -> str | None:
    """quantize / dequantize (i8 or u8, per tensor or per axis): constant parameters."""
    reason = _const_params(op, 1, 2)
    if reason is None and max(op.operands[0].type.rank, op.results[0].type.rank) > MAX_RANK:
        reason = f"{op.kind} on a rank > {MAX_RANK} tensor: LiteRT kernels take at most {MAX_RANK} dims"
    return reason


# --------------------------------------------------------------------------- static int8 dense layers
INT8_DENSE_MAX_RANK = 4  # FULLY_CONNECTED's int8 kernels (keep_num_dims), as tested here


def _int8_params(q: Op | None, role: str, per_axis: bool = False) -> str | None:
    """Why ``q`` is not a quantize/dequantize with constant int8 parameters, per tensor (or per
    axis 1 of a 2-D kernel); None when it is."""
    if q is None or q.kind not in ("quantize", "dequantize"):
        return f"{role} is not a quantize/dequantize"
    if not (q.operands[1].is_const() and q.operands[2].is_const()):
        return f"{role} has run-time quantization parameters"
    if q.operands[2].dtype != "i8":
        return f"{role} is {q.operands[2].dtype}, not int8"
    axis = q.attrs["axis"]
    if per_axis and axis not in (1, -1):
        return f"{role} is not per output channel (axis={axis})"
    if not per_axis and axis is not None:
        return f"{role} is not per tensor (axis={axis})"
    return None


def match_int8_dense(op: Op) -> tuple[Op | None, Op] | str:
    """For a matmul in quant_full's form with a re-quantized result: (bias add or None, the output
    quantize); else why not (a sentence), so the caller can say why it fell back."""
    if op.kind != "matmul":
        return f"{op.kind}, not matmul"
    xd, wd = (v.producer for v in op.operands)
    why = _int8_params(xd, "the input") or _int8_params(wd, "the kernel", per_axis=True)
    if why:
        return why
    if xd.kind != "dequantize" or xd.operands[0].dtype != "i8":
        return "the input is not a dequantized int8 tensor"
    wq = wd.operands[0]
    if wd.kind != "dequantize" or not wq.is_const() or wq.type.rank != 2:
        return "the kernel is not a dequantized 2-D int8 constant"
    if np.any(wd.operands[2].const_value()):
        return "the kernel's zero points are not 0 (TFLite's int8 kernels are symmetric)"
    if np.any(wq.const_value() == -128):
        return "the kernel holds -128 (TFLite's int8 kernels take [-127, 127])"
    if op.operands[0].type.rank > INT8_DENSE_MAX_RANK:
        return f"rank-{op.operands[0].type.rank} input (int8 FULLY_CONNECTED: rank <= {INT8_DENSE_MAX_RANK})"
    outputs = [id(v) for v in op.graph.outputs.values()]
    if id(op.result) in outputs:
        return "its result is a graph output"
    out, add = op.result, None
    if len(out.uses) == 1 and out.users[0].kind == "add":
        cand = out.users[0]
        b = cand.operands[1] if cand.operands[0] is out else cand.operands[0]
        if (b.is_const() and b.dtype == "f32" and b.type.rank == 1 and cand.result.shape == out.shape
                and id(cand.result) not in outputs):
            add, out = cand, cand.result
            if not np.all(np.abs(_bias_int32(op, add)[1]) <= 2**31 - 1):
                return "the bias does not fit int32 at scale sx * sw"
    if len(out.uses) != 1 or out.users[0].kind != "quantize":
        return ("its result is not re-quantized (quant_full's outputs=): an int8 FULLY_CONNECTED has no "
                "float output")
    yq = out.users[0]
    return _int8_params(yq, "the output quantize") or (add, yq)


def int8_dense(op: Op) -> tuple[Op | None, Op] | None:
    """(bias add or None, output quantize) when ``op`` lowers to one int8 FULLY_CONNECTED, else None."""
    found = match_int8_dense(op)
    return None if isinstance(found, str) else found


def _bias_int32(op: Op, add: Op | None) -> tuple[np.ndarray, np.ndarray]:
    """The int32 bias's scale sx * sw (f32, per output channel) and round(b / (sx * sw)) (f64:
    range-checked before the cast)."""
    xd, wd = (v.producer for v in op.operands)
    sx = np.float32(xd.operands[1].const_value())
    scale = (sx * np.asarray(wd.operands[1].const_value(), np.float32)).astype(np.float32)
    b = np.zeros(scale.shape, np.float32)
    if add is not None:
        b = np.asarray((add.operands[1] if add.operands[0] is op.result else add.operands[0]).const_value(),
                       np.float32)
    return scale, np.rint(b / scale).astype(np.float64)


def _dense_source(v: Value) -> Op | None:
    """The matmul whose result (directly, or through its bias add) is ``v``, if any."""
    p = v.producer
    if p is not None and p.kind == "add":
        p = next((u.producer for u in p.operands if u.producer is not None and u.producer.kind == "matmul"), None)
    return p if p is not None and p.kind == "matmul" else None


def _folded(op: Op) -> bool:
    """An op that an int8 FULLY_CONNECTED (``_int8_dense``) stands for: not emitted.  A dequantize
    whose readers are all int8 FULLY_CONNECTEDs is one: they read the int8 tensor itself (one
    QUANTIZE for Q, K and V; no DEQUANTIZE + QUANTIZE between two int8 layers)."""
    if op.kind == "dequantize":
        users = op.result.users
        return (bool(users) and all(int8_dense(u) is not None for u in users)
                and not any(v is op.result for v in op.graph.outputs.values()))
    if op.kind in ("add", "quantize"):
        mm = _dense_source(op.operands[0] if op.kind == "quantize" else op.result)
        found = int8_dense(mm) if mm is not None else None
        return found is not None and op in found
    return False


def _int8_dense(ctx: Lowering, op: Op, add: Op | None, yq: Op) -> None:
    """One int8 FULLY_CONNECTED for matmul [+ bias] + output quantize (see the module docstring)."""
    xd, wd = (v.producer for v in op.operands)
    x = ctx.tensor(xd.operands[0])
    set_quantization(ctx, x, quantization(xd.operands[1].const_value(), xd.operands[2].const_value()))
    w = quantized_weight(ctx, wd.operands[0], wd.operands[1], wd.operands[2], 1)
    bias_scale, bias = _bias_int32(op, add)
    bias_idx = ctx._track(ctx.mb.const(f"{ctx.names.name(op.result)}/bias_int32", bias.astype(np.int32), "i32"),
                          "i32")
    set_quantization(ctx, bias_idx, quantization(bias_scale, np.zeros(bias_scale.shape, np.int64), 0))
    out = ctx.result(yq.result)
    set_quantization(ctx, out, quantization(yq.operands[1].const_value(), yq.operands[2].const_value()))
    ctx.emit(B.FULLY_CONNECTED, [x, w, bias_idx], [out], options("FullyConnectedOptionsT", keepNumDims=True))


def int8_dense_or(base: Lower) -> Lower:
    """matmul: an int8 FULLY_CONNECTED where quant_full's form matches, else ``base`` (op by op),
    saying at debug level why a matmul of dequantized operands did not match."""
    def lower(ctx: Lowering, op: Op) -> None:
        found = match_int8_dense(op)
        if not isinstance(found, str):
            _int8_dense(ctx, op, *found)
            return
        if any(v.producer is not None and v.producer.kind == "dequantize" for v in op.operands):
            log.debug("matmul %%%s (%s) stays float (DEQUANTIZE + BATCH_MATMUL): %s",
                      ctx.names.name(op.result), op.loc.primary, found)
        base(ctx, op)
    lower.__doc__ = base.__doc__
    return lower


def skip_folded(base: Lower) -> Lower:
    """``base``, except for the ops that an int8 FULLY_CONNECTED stands for (``_folded``)."""
    def lower(ctx: Lowering, op: Op) -> None:
        if not _folded(op):
            base(ctx, op)
    lower.__doc__ = base.__doc__
    return lower
