"""Rewrite sign and abs where a target lacks them for the dtype at hand (TFLite on i64).

    sign(x) -> cast(x > 0, T) - cast(x < 0, T)
    abs(x)  -> where(x < 0, -x, x)

Exact for integers: comparisons, casts of booleans, subtraction of 0/1 and
negation of a negative value are exact (|INT_MIN| wraps to INT_MIN in TF,
ONNX and here alike).  keras-hub's DeBERTa-v3 computes its relative-position
buckets with both on int64.  Floats keep the native ops (every target has
them for f32); with ``targets`` naming only onnx nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


from bertc.ir import Graph, Op, Value
from bertc.ir.emitter import Emitter
from bertc.legalize import unsupported_on
from bertc.pass_manager import Pass, PassContext, register_pass


def rewrite_sign(graph: Graph, op: Op) -> Value:
    emit = Emitter(graph, op)
    x = op.operands[0]
    zero = emit.const(0, x.dtype, "zero")
    above = emit("cast", [emit("greater", [x, zero], hint="positive")], {"to": x.dtype}, "above")
    below = emit("cast", [emit("less", [x, zero], hint="negative")], {"to": x.dtype}, "below")
    return emit("sub", [above, below], hint="sign")


def rewrite_abs(graph: Graph, op: Op) -> Value:
    emit = Emitter(graph, op)
    x = op.operands[0]
    zero = emit.const(0, x.dtype, "zero")
    return emit("where", [emit("less", [x, zero], hint="negative"), emit("neg", [x], hint="minus"), x], hint="abs")


_REWRITES = {"sign": rewrite_sign, "abs": rewrite_abs}


@register_pass
@dataclass(frozen=True)
class LegalizeSignAbs(Pass):
    """Spell integer sign/abs with comparisons where a target has no kernel for the dtype."""

    legalizes: ClassVar[tuple[str, ...]] = ("sign", "abs")
    targets: str = "onnx,tflite"  # rewrite where one of these cannot run the op

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph:
            if op.kind not in _REWRITES or op.operands[0].dtype.startswith("f"):
                continue
            if not unsupported_on(op, self.targets):
                continue
            graph.replace_op(op, [_REWRITES[op.kind](graph, op)])
            changed = True
        return changed
