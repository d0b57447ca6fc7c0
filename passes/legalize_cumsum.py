"""Rewrite cumsum where a target lacks the form at hand: widen small integers, or scan.

Both targets run cumsum natively on f32/i32/i64 (ONNX CumSum, TFLite CUMSUM),
so RoBERTa's position ids (cumsum of the padding mask) need nothing.  What
a listed target cannot run is rewritten:

    "widen"   cumsum(x: i8|u8|i16) -> cast(cumsum(cast(x, i32)), x.dtype)
              Exact: sums wrap modulo 2^32 and the cast back keeps the low
              bits, which is the sum modulo 2^8 or 2^16 -- what TF computes.
              Picked for narrow integers when the i32 cumsum is legal.

    "scan"    cumsum(x) -> the Hillis-Steele scan of legalize_cumprod with add
              and 0:  y = where(i >= k, y + gather(y, max(i - k, 0)), y),
              k = 1, 2, 4, … (reverse and exclusive as there).  Exact for
              integers; float sums are associated as a tree instead of left to
              right (a rounding difference, with a smaller error bound), and
              on onnxruntime a -0.0 sum taken through Where's first branch
              comes out +0.0.  Native cumsum is 7-20x faster (measured), so
              this is only for dtypes a target has no cumsum for.
              Picked when no native cumsum of the dtype exists; ``form=scan``
              forces it (benchmarks compare it with the native op).

``targets``: the targets the rewritten graph must run on (default both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from bertc.ir import Graph, Op, Value
from bertc.pass_manager import Pass, PassContext, register_pass

from .legalize_cumprod import rewrite_scan
from bertc.ir.emitter import Emitter
from bertc.legalize import unsupported_on

NARROW_INTS = frozenset({"i8", "u8", "i16"})


def rewrite_widen(graph: Graph, op: Op) -> Value:
    emit = Emitter(graph, op)
    x = op.operands[0]
    wide = emit("cumsum", [emit("cast", [x], {"to": "i32"}, "wide")], dict(op.attrs), "cumsum_i32")
    return emit("cast", [wide], {"to": x.dtype}, "narrow")


@register_pass
@dataclass(frozen=True)
class LegalizeCumsum(Pass):
    """Rewrite cumsum a target lacks: narrow ints through i32, else a log-depth scan of adds."""

    legalizes: ClassVar[tuple[str, ...]] = ("cumsum",)
    targets: str = "onnx,tflite"  # rewrite a cumsum when one of these cannot run it
    max_length: int = 4096  # the scan's bound on a symbolic axis (steps = ceil(log2))
    form: Literal["auto", "scan"] = "auto"  # "scan": rewrite every cumsum as a scan

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph.ops_of("cumsum"):
            if self.form == "scan":
                new = rewrite_scan(graph, op, self.max_length)
            elif not unsupported_on(op, self.targets):
                continue
            elif op.operands[0].dtype in NARROW_INTS:
                new = rewrite_widen(graph, op)
            else:
                new = rewrite_scan(graph, op, self.max_length)
            graph.replace_op(op, [new])
            changed = True
        return changed
