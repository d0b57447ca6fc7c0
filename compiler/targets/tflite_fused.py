"""TFLite lowerings of the fused ops (``skip_layer_norm``, ``bias_gelu``): decomposed again.

The fusion passes (issue 7) build these ops for onnxruntime's contrib kernels.
TFLite has no such kernels, so each becomes the core operator sequence it
stands for (compiler/ops/fused.py defines them as exactly that composition):
one IR serves both targets.  tflite.py merges ``FUSED_LOWERINGS`` into its table.
"""

from __future__ import annotations

from ..ir.graph import Op
from .tflite_core import norm_sequence
from .tflite_builder import BuiltinOperator as B
from .tflite_builder import Lowering, lowering_table, options

FUSED_LOWERINGS, lowers = lowering_table()


@lowers("skip_layer_norm")
def _skip_layer_norm(ctx: Lowering, op: Op) -> None:
    """ADD(x, skip) [ADD bias], then the layer-norm sequence over the last axis."""
    x, skip, gamma, beta = op.operands[:4]
    dt, dims = x.dtype, x.shape
    s = ctx.binary(B.ADD, ctx.tensor(x), ctx.tensor(skip), "sum", dt, dims, options("AddOptionsT"))
    if len(op.operands) > 4:
        s = ctx.binary(B.ADD, s, ctx.tensor(op.operands[4]), "sum_bias", dt, dims, options("AddOptionsT"))
    norm_sequence(ctx, op, s, x, x.type.rank - 1, ctx.tensor(gamma), ctx.tensor(beta))


@lowers("bias_gelu")
def _bias_gelu(ctx: Lowering, op: Op) -> None:
    """ADD(x, bias), then the GELU builtin."""
    x, bias = op.operands
    s = ctx.binary(B.ADD, ctx.tensor(x), ctx.tensor(bias), "sum", x.dtype, x.shape, options("AddOptionsT"))
    ctx.emit(B.GELU, [s], [ctx.result(op.result)],
             options("GeluOptionsT", approximate=op.attrs["approximate"] == "tanh"))
