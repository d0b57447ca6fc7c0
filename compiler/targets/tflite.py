"""The TFLite target: a legal IR graph, lowered op by op to a .tflite flatbuffer.

We write the flatbuffer ourselves (``tflite_builder``), builtin ops only, so
every op and layout is under our control and LiteRT runs the file with its
builtin resolver and XNNPACK.  The lowering is one table (``_LOWERINGS``) from
IR op kind to a small function that emits TFLite operators, assembled at the end of
this file from tflite_core.py, tflite_quant.py and tflite_fused.py; ``CAPABILITIES``
says which kinds, dtypes and forms LiteRT's kernels run.

Dynamic shapes: symbolic dims are written as 1 with -1 in ``shape_signature``;
the user resizes inputs (``resize_tensor_input`` + ``allocate_tensors``) and
every op recomputes its output shape.  Shape vectors that depend on symbolic
dims (reshape targets with several unknown dims, broadcast targets) are
computed at run time from SHAPE, so they follow a resize too.

Names: tensors carry the IR value names (as the text form prints them); the
"serving_default" signature maps IR input names and output names to tensors.
"""

from __future__ import annotations

import logging

from ..diagnostics import BertcError
from ..ir.graph import Graph, Op
from ..ir.decompose import DECOMPOSED, decomposed
from .base import LoweringError, Target
from .tflite_builder import B, Lower, Lowering, options
from .tflite_checks import F32, F32_I32, LITE_DTYPES, NUMERIC, Check, dtypes, tensor_limits
from .tflite_core import REDUCERS, CORE_LOWERINGS
from .tflite_fused import FUSED_LOWERINGS
from .tflite_quant import (QUANT_LOWERINGS, allow_quantized, check_qmatmul, check_quant_pair, int8_dense_or,
                           skip_folded)

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"


# --------------------------------------------------------------------------- driver
def lower_bytes(graph: Graph) -> bytes:
    """The .tflite flatbuffer: what ``bertc compile --target tflite`` writes to model.tflite."""
    graph = decomposed(graph)  # multi_head_attention spelled out in core ops, on a copy
    TARGET.check_legal(graph)  # every offending op named at once
    ctx = Lowering(graph)
    inputs = [(v.name, ctx.result(v)) for v in graph.inputs]
    outputs = _lower_ops(ctx, graph, [i for _, i in inputs])
    log.debug("lowered %s to tflite: %d operators", graph.name, len(ctx.mb.operators))
    try:
        return ctx.mb.finish(inputs, outputs, SIGNATURE_KEY, graph.name)
    except ValueError as e:  # too large for one flatbuffer
        raise BertcError(str(e), "Quantize the weights first (quant_int8) or use the onnx target.") from e


def _lower_ops(ctx: Lowering, graph: Graph, inputs: list[int]) -> list[tuple[str, int]]:
    """Lower ``graph``'s ops (the model's, or a cond branch's) into the subgraph being written;
    its outputs as (name, tensor).  An output that is an input or a constant gets a copy:
    a subgraph's outputs are tensors its operators write."""
    for op in graph.ops:
        if op.kind == "const":
            continue  # written on first use
        ctx.op = op
        try:
            _LOWERINGS[op.kind](ctx, op)
        except LoweringError:
            raise
        except Exception as err:  # a lowering bug or an odd attribute: say which op
            raise LoweringError(op, f"{type(err).__name__}: {err}") from err
    ctx.op = None
    taken = set(inputs)
    outputs = []
    for name, v in graph.outputs.items():
        idx = ctx.tensor(v)
        if idx in taken or ctx.mb.is_const(idx):
            idx = ctx.copy(idx, name, v.dtype, v.shape)
        taken.add(idx)
        outputs.append((name, idx))
    return outputs


def _lower_cond(ctx: Lowering, op: Op) -> None:
    """TFLite IF: each branch becomes a subgraph of the model, taking the op's arguments."""
    indices = []
    for key in ("then", "else"):
        region = op.attrs[key]
        saved = ctx.mb.begin_subgraph()
        sub = Lowering(region, ctx.mb)
        inputs = [sub.result(v) for v in region.inputs]
        outputs = _lower_ops(sub, region, inputs)
        indices.append(ctx.mb.end_subgraph(saved, inputs, [i for _, i in outputs], region.name))
    ctx.op = op
    ctx.emit(B.IF, [ctx.tensor(v) for v in op.operands], [ctx.result(r) for r in op.results],
             options("IfOptionsT", thenSubgraphIndex=indices[0], elseSubgraphIndex=indices[1]))


# --------------------------------------------------------------------------- capabilities
def _check_scatter_nd(op: Op) -> str | None:
    if op.operands[0].dtype != "i32":
        return (f"scatter_nd with {op.operands[0].dtype} indices: TFLite SCATTER_ND takes i32 indices "
                "only (cast them to i32 first)")
    return dtypes(NUMERIC, operand=1)(op)


def _check_shape(op: Op) -> str | None:
    if op.attrs["dtype"] not in ("i32", "i64"):
        return f"shape with dtype {op.attrs['dtype']}: TFLite SHAPE gives i32 or i64"
    return tensor_limits(op)


CAPABILITIES: dict[str, Check | None] = {
    "const": tensor_limits,
    "identity": tensor_limits,
    **{k: dtypes(F32) for k in ("sqrt", "rsqrt", "exp", "log", "tanh", "sigmoid", "relu", "reciprocal",
                                 "gelu", "softmax", "layer_norm", "matmul")},
    "neg": dtypes(NUMERIC),
    "abs": dtypes(F32_I32),
    **{k: dtypes(NUMERIC) for k in ("add", "sub", "mul", "maximum", "minimum", "less", "less_equal",
                                     "greater", "greater_equal")},
    "div": dtypes(F32_I32, why="div on i64: TFLite has no i64 kernel for DIV or FLOOR_DIV"),
    "pow": dtypes(F32_I32),
    **{k: dtypes(LITE_DTYPES) for k in ("equal", "not_equal", "cast", "transpose", "reshape", "squeeze",
                                         "unsqueeze", "concat", "gather", "slice", "tile", "expand")},
    **{k: dtypes(frozenset({"bool"})) for k in ("logical_and", "logical_or", "logical_not")},
    "where": dtypes(LITE_DTYPES, operand=1),
    **{k: dtypes(NUMERIC) for k in (*REDUCERS, "cumsum", "range")},
    "one_hot": tensor_limits,
    "scatter_nd": _check_scatter_nd,
    "shape": _check_shape,
    **{k: dtypes(F32) for k in ("floor", "ceil", "round", "sin", "cos")},
    "sign": dtypes(F32_I32),
    "mod": dtypes(NUMERIC),
    "pad": dtypes(LITE_DTYPES),
    "nonzero": dtypes(frozenset({"bool"})),
    "gather_nd": dtypes(LITE_DTYPES),
    **{k: dtypes(NUMERIC) for k in ("argmax", "argmin")},
    "avg_pool": dtypes(F32), "max_pool": dtypes(F32),
    "cond": None,  # its branches' ops are checked one by one (Target.unsupported)
}
# erf (no builtin; gelu is), einsum, cumprod, scatter_nd_update and scatter_nd_add are
# left out on purpose: legalization passes rewrite them before this target.
CAPABILITIES.update({
    "qmatmul": check_qmatmul, "quantize": check_quant_pair, "dequantize": check_quant_pair,
    # int8 weights and gathered int8 embedding rows (quant_int8{embeddings=true})
    "const": allow_quantized(CAPABILITIES["const"]),
    "gather": allow_quantized(CAPABILITIES["gather"]),
    # multi_head_attention never reaches a lowering: lower_bytes first rewrites it into the core ops
    # it stands for (bertc.ir.decompose), each of which this target runs.
    "skip_layer_norm": dtypes(F32), "bias_gelu": dtypes(F32), "multi_head_attention": dtypes(F32),
})

# The lowering table, read in this one place: the core ops, the fused ops, the quantized ops, and
# quant_full's int8 FULLY_CONNECTED, which takes over matmul and skips the add, quantize and
# dequantize ops it stands for.
_BASE: dict[str, Lower] = {**CORE_LOWERINGS, **FUSED_LOWERINGS, **QUANT_LOWERINGS, "cond": _lower_cond}
_LOWERINGS: dict[str, Lower] = {**_BASE, "matmul": int8_dense_or(_BASE["matmul"]),
                                **{k: skip_folded(_BASE[k]) for k in ("add", "quantize", "dequantize")}}

assert set(CAPABILITIES) - {"const"} - DECOMPOSED <= set(_LOWERINGS), "every capability needs a lowering"

TARGET = Target(name="tflite", file_name="model.tflite", capabilities=CAPABILITIES, lower=lower_bytes)
