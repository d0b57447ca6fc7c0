"""TFLite lowerings of the fused ops (``skip_layer_norm``, ``bias_gelu``): decomposed again.

The fusion passes (issue 7) build these ops for onnxruntime's contrib kernels.
TFLite has no such kernels, so each becomes the core operator sequence it
stands for (compiler/ops/fused.py defines them as exactly that composition):
one IR serves both targets.  Imported at the end of tflite.py, whose tables
(``_LOWERINGS``, ``CAPABILITIES``) it extends.
"""

from __future__ import annotations

from ..ir.graph import Op
from .tflite import CAPABILITIES, F32, _dtypes, _norm_sequence, lowers
from .tflite_builder import BuiltinOperator as B
from .tflite_builder import Lowering, options


@lowers("skip_layer_norm")
def _skip_layer_norm(ctx: Lowering, op: Op) -> None:
    """ADD(x, skip) [ADD bias], then the layer-norm sequence over the last axis."""
    x, skip, gamma, beta = op.operands[:4]
    dt, dims = x.dtype, x.shape
    s = ctx.binary(B.ADD, ctx.tensor(x), ctx.tensor(skip), "sum", dt, dims, options("AddOptionsT"))
    if len(op.operands) > 4:
        s = ctx.binary(B.ADD, s, ctx.tensor(op.operands[4]), "sum_bias", dt, dims, options("AddOptionsT"))
    _norm_sequence(ctx, op, s, x, x.type.rank - 1, ctx.tensor(gamma), ctx.tensor(beta))


@lowers("bias_gelu")
def _bias_gelu(ctx: Lowering, op: Op) -> None:
    """ADD(x, bias), then the GELU builtin."""
    x, bias = op.operands
    s = ctx.binary(B.ADD, ctx.tensor(x), ctx.tensor(bias), "sum", x.dtype, x.shape, options("AddOptionsT"))
    ctx.emit(B.GELU, [s], [ctx.result(op.result)],
             options("GeluOptionsT", approximate=op.attrs["approximate"] == "tanh"))


# multi_head_attention never reaches a lowering here: lower_bytes first rewrites it into the
# core ops it stands for (bertc.ir.decompose), each of which this target runs.
CAPABILITIES.update({"skip_layer_norm": _dtypes(F32), "bias_gelu": _dtypes(F32),
                     "multi_head_attention": _dtypes(F32)})
