"""The ONNX target's int8 lowerings: quantize/dequantize, quant_int8's qmatmul, and quant_full's
static form folded into one integer matmul.

Scale and zero point are operands in the IR as in ONNX, so quantize/dequantize are
one node each.  qmatmul is onnxruntime's contrib DynamicQuantizeMatMul (domain
com.microsoft, opset 1): benchmarks/quantization.py measured it fastest at every
graph optimization level (at ORT_ENABLE_ALL the standard-op spellings
DynamicQuantizeLinear+MatMulInteger+Cast+Mul and QDQ are fused into this same
kernel; without that fusion they are 2x and 10x slower).  How the integer kernels are
stored depends on the CPU kind the artifact is for (``--cpu``, bertc.cpu).
"""

from __future__ import annotations

import logging

import numpy as np

from ..cpu import u8s8_exact
from ..ir.graph import Graph, Op, Value
from .base import bias_operand, folded_bias
from .onnx_emitter import MS_DOMAIN, Emitter, Lowering

logger = logging.getLogger(__name__)

# Scale and zero point are operands in the IR as in ONNX, so quantize/dequantize are
# one node each.  qmatmul is onnxruntime's contrib DynamicQuantizeMatMul (domain
# com.microsoft, opset 1): benchmarks/quantization.py measured it fastest at every
# graph optimization level (at ORT_ENABLE_ALL the standard-op spellings
# DynamicQuantizeLinear+MatMulInteger+Cast+Mul and QDQ are fused into this same
# kernel; without that fusion they are 2x and 10x slower).


def _axis_attrs(op: Op) -> dict:
    return {} if op.attrs["axis"] is None else {"axis": int(op.attrs["axis"])}


def _lower_quantize(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("QuantizeLinear", ins, outs, **_axis_attrs(op))


def _lower_dequantize(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("DequantizeLinear", ins, outs, **_axis_attrs(op))


def _u8(array: np.ndarray) -> np.ndarray:
    """int8 data shifted into uint8: q + 128 (exact; the zero point shifts alike)."""
    return (np.asarray(array).astype(np.int16) + 128).astype(np.uint8)


_INTEGER_MATMULS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger")

# u8 x s8 pair sums stay inside int16 when every |kernel value| <= 64: 255 * 64 * 2 = 32640.
U8S8_EXACT_MAX = 64


def _u8s8_exact(e: Emitter, kernel: Value, zero_point: Value) -> bool:
    return u8s8_exact_kernel(e.cpu, kernel, zero_point)


def u8s8_exact_kernel(cpu: str, kernel: Value, zero_point: Value) -> bool:
    """Whether onnxruntime's fast u8 x s8 kernels compute this int8 kernel exactly on every CPU
    of kind ``cpu`` (``--cpu``, see bertc.cpu): any kernel on VNNI/AMX, which accumulate in
    int32; elsewhere a symmetric kernel small enough (``weight_bits=7``) that AVX2's int16
    pair sums cannot saturate.  Otherwise the kernel is stored u8 (u8 x u8: exact, slower)."""
    if u8s8_exact(cpu):
        return True
    z = np.asarray(zero_point.const_value())
    return not z.any() and int(np.abs(kernel.const_value().astype(np.int16)).max(initial=0)) <= U8S8_EXACT_MAX


def u8u8_kernels(graph: Graph, cpu: str) -> int:
    """How many int8 matmuls of ``graph`` lower to u8 x u8 kernels for CPU kind ``cpu`` (the
    slower form that 8-bit kernels take unless the artifact is built for VNNI/AMX)."""
    n = 0
    for op in graph.ops:
        if op.kind == "qmatmul":
            b, zero_point = op.operands[1], op.operands[3]
        elif _static_int8_matmul(op):
            b, zero_point = op.operands[1].producer.operands[0], op.operands[1].producer.operands[2]
        else:
            continue
        if b.dtype == "i8" and b.is_const() and zero_point.is_const():
            n += not u8s8_exact_kernel(cpu, b, zero_point)
    return n


def _lower_qmatmul(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """DynamicQuantizeMatMul(a, b, b_scale, b_zero_point): onnxruntime quantizes ``a`` at run
    time to u8, asymmetric, per tensor (DynamicQuantizeLinear's rule), which is exactly the
    reference kernel for act_dtype="u8", per tensor.  Other act_* settings (the TFLite
    scheme) run with this one too: the activation is then rounded on a coarser grid than
    the IR says (one scale per tensor instead of per row), a documented difference."""
    if (op.attrs["act_dtype"], op.attrs["act_symmetric"], op.attrs["act_per_row"]) != ("u8", False, False):
        logger.debug("qmatmul at %s: onnxruntime quantizes the activation u8 per tensor", op.loc)
    a, b, scale, zero_point = op.operands
    if b.dtype == "i8" and b.is_const() and zero_point.is_const() and not _u8s8_exact(e, b, zero_point):
        # u8 activation x s8 kernel saturates on AVX2 CPUs without VNNI (vpmaddubsw adds pairs
        # of products into int16): off by 0.33 of an op's range on BERT-like data, measured.
        # The kernel shifted by 128 with its zero point is the same integer product, u8 x u8,
        # which onnxruntime computes exactly on every x86 CPU (see _static_int8_matmul below).
        # A 7-bit kernel, or any kernel built for VNNI/AMX, stays s8: u8 x s8, exact and faster.
        ins = [ins[0], e.const(_u8(b.const_value()), f"{b.producer.attrs['name']}_u8"), ins[2],
               e.const(_u8(zero_point.const_value()), "zero_point_u8")]
    add = folded_bias(op)
    if add is not None:  # the projection's bias, added by the kernel: one node less per layer
        ins, outs = ins + [e.name_of(bias_operand(add, op))], [e.name_of(add.result)]
    e.node("DynamicQuantizeMatMul", ins, outs, domain=MS_DOMAIN)





# quant_full's static form, matmul(dequantize(xq, sx, zx), dequantize(Wq, sw, zw){axis=1})
# [+ add(., b)], is lowered as one com.microsoft MatMulIntegerToFloat(xq, Wq, sx, sw, zx, zw[, b]):
# an integer product accumulated in int32, rescaled by sx*sw, plus the bias; the two
# dequantizes (when every reader is such a matmul) and the bias add are not emitted.
# Measured (benchmarks/quant_full.py: 2 BERT-base-wide layers, seq 128, 1 thread, onnxruntime
# 1.32 on an AVX2 CPU without VNNI; times as fractions of fp32's, over 4 noisy runs):
# * left as QDQ, onnxruntime fuses only matmuls whose DequantizeLinear has one reader
#   (Q, K and V share one: 4 of 12 encoder matmuls stay float) and never the bias: 0.82-0.99;
# * MatMulIntegerToFloat with s8 x s8 operands is exact but 3x *slower* than fp32;
#   u8 x s8 is the fast path (0.59-0.63, like quant_int8's DynamicQuantizeMatMul at
#   0.55-0.61) but inexact: AVX2's vpmaddubsw sums pairs of u8*s8 products into int16
#   and saturates (one 768x3072 product was off by 1e5 on full-range data; whole model
#   1.2-1.5% of the logits' range vs the IR); u8 x u8 is exact and 0.64-0.73.
# So both integer operands are emitted as u8, shifted by 128 with their zero points:
# saturate(round(x/s) + z + 128) to [0, 255] is saturate(round(x/s) + z) to [-128, 127]
# plus 128 exactly, and (q + 128) - (z + 128) = q - z, so the products are the IR's
# (each op within 7e-7 of its range of the reference interpreter, f32 rescale order).
# A kernel of 7-bit weights (|q| <= 64, ``weight_bits=7``) stays s8: u8 x s8 is then exact
# and the fast path (_u8s8_exact).
def _static_int8_matmul(op: Op) -> bool:
    """matmul of a per-tensor dequantized activation and a dequantized int8 constant kernel."""
    if op.kind != "matmul":
        return False
    x, w = (v.producer for v in op.operands)
    if x is None or w is None or x.kind != "dequantize" or w.kind != "dequantize":
        return False
    wq, wz = w.operands[0], w.operands[2]
    return (x.attrs["axis"] is None and x.operands[0].dtype in ("i8", "u8") and wq.is_const()
            and wz.is_const() and wq.dtype == "i8" and wq.type.rank == 2
            and w.attrs["axis"] in (None, 1, -1) and op.operands[0].type.rank >= 2)


def _folded_dequantize(op: Op) -> bool:
    """A dequantize that every reader takes as integers (MatMulIntegerToFloat): not emitted."""
    v = op.result
    return (op.kind == "dequantize" and bool(v.uses) and all(_static_int8_matmul(u) for u in v.users)
            and all(o is not v for o in op.graph.outputs.values()))


def _u8_activation(op: Op | None) -> bool:
    """An i8 per-tensor quantize read only by folded dequantizes: emitted as u8 (zero point + 128)."""
    if op is None or op.kind != "quantize" or op.attrs["axis"] is not None:
        return False
    z = op.operands[2]
    return (z.is_const() and z.dtype == "i8" and bool(op.result.uses)
            and all(_folded_dequantize(u) for u in op.result.users)
            and all(o is not op.result for o in op.graph.outputs.values()))


def _lower_matmul(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if not _static_int8_matmul(op):
        e.node("MatMul", ins, outs)
        return
    xdq, wdq = op.operands[0].producer, op.operands[1].producer
    xq, sx, zx = (e.name_of(v) for v in xdq.operands)
    wq, sw, zw = (e.name_of(v) for v in wdq.operands)
    a_u8 = xdq.operands[0].dtype == "u8"
    if not a_u8 and _u8_activation(xdq.operands[0].producer):  # else s8 x s8: exact, slower
        zx = e.const(_u8(xdq.operands[2].const_value()), "zero_point_u8")
        a_u8 = True
    if a_u8 and not _u8s8_exact(e, wdq.operands[0], wdq.operands[2]):  # u8 x u8, never a saturating u8 x s8
        w = wdq.operands[0]
        wq = e.const(_u8(w.const_value()), f"{w.producer.attrs['name']}_u8")
        zw = e.const(_u8(wdq.operands[2].const_value()), "zero_point_u8")
    add = folded_bias(op)
    if add is None:
        e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw], outs, domain=MS_DOMAIN)
        return
    e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw, e.name_of(bias_operand(add, op))],
           [e.name_of(add.result)], domain=MS_DOMAIN)


def _lower_dequantize_unless_folded(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if _folded_dequantize(op):
        return  # every reader is a MatMulIntegerToFloat that takes the integers directly
    _lower_dequantize(e, op, ins, outs)


def _lower_quantize_u8_if_folded(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if not _u8_activation(op):
        _lower_quantize(e, op, ins, outs)
        return
    e.node("QuantizeLinear", [ins[0], ins[1], e.const(_u8(op.operands[2].const_value()), "zero_point_u8")], outs)


def _lower_add(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    for v in op.operands:
        p = v.producer
        if p is not None and (_static_int8_matmul(p) or p.kind == "qmatmul") and folded_bias(p) is op:
            return  # emitted as MatMulIntegerToFloat's / DynamicQuantizeMatMul's bias
    e.node("Add", ins, outs)


# IR op kind -> lowering: these replace the core table's entries for the same kinds (matmul and add
# fold quant_full's static form; quantize/dequantize skip what a folded matmul reads directly).
QUANT_LOWERINGS: dict[str, Lowering] = {
    "qmatmul": _lower_qmatmul,
    "matmul": _lower_matmul,
    "add": _lower_add,
    "quantize": _lower_quantize_u8_if_folded,
    "dequantize": _lower_dequantize_unless_folded,
}
