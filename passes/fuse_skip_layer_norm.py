"""Fuse a residual add into the layer norm it feeds: ``skip_layer_norm``.

    layer_norm(add(a, b), gamma, beta)                  -> skip_layer_norm(a, b, gamma, beta)
    layer_norm(add(add(m, bias), b), gamma, beta)       -> skip_layer_norm(m, b, gamma, beta, bias)

The algebra is the op's definition, so the rewrite is exact up to where the
sums are rounded.  Conditions, each with the reason a candidate is skipped:
the layer norm is over the last axis only; ``a`` and ``b`` have the same shape
of rank >= 2 (onnxruntime's SkipLayerNormalization does not broadcast the
skip); the add (and the bias add) have no other user.  The bias form takes a
1-D constant of the hidden size added to one side, the BERT projection's
BiasAdd, so one kernel does matmul-bias + residual + norm.

An onnxruntime-oriented pass: opt in with ``--passes fuse_skip_layer_norm`` (or
the ``ort_fusions`` pipeline, docs/performance.md).  TFLite lowers the op back
into ADD + the layer-norm sequence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bertc.ir import Graph, Loc, Op, Value
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)


def _single_use(v: Value, graph: Graph) -> bool:
    return len(v.uses) == 1 and all(o is not v for o in graph.outputs.values())


def _bias_of(v: Value, graph: Graph) -> tuple[Value, Value, Op] | None:
    """``v = add(m, bias)`` with a 1-D constant bias of the hidden size, used once: (m, bias, add)."""
    op = v.producer
    if op is None or op.kind != "add" or not _single_use(v, graph):
        return None
    for i in (0, 1):
        m, bias = op.operands[i], op.operands[1 - i]
        if bias.is_const() and bias.type.rank == 1 and bias.shape[0] == v.shape[-1] \
                and m.type == v.type and not m.is_const():
            return m, bias, op
    return None


def why_not(ln: Op, graph: Graph) -> str | None:
    """None when ``ln`` can absorb the add before it, else the reason it cannot."""
    x = ln.operands[0]
    add = x.producer
    if add is None or add.kind != "add":
        return "the layer norm's input is not an add"
    if ln.attrs["axis"] % x.type.rank != x.type.rank - 1:
        return "the layer norm is not over the last axis only"
    if not _single_use(x, graph):
        return "the add has other users"
    a, b = add.operands
    if a.type != b.type or x.type != a.type or x.type.rank < 2:
        return f"the add broadcasts ({a.type} + {b.type})"
    if a.is_const() or b.is_const():
        return "one side of the add is a constant"
    for v in (ln.operands[1], ln.operands[2]):
        if v.type.rank != 1:
            return "gamma/beta are not 1-D"
    return None


def fuse_one(ln: Op, graph: Graph) -> Op:
    add = ln.operands[0].producer
    a, b = add.operands
    replaced = [add, ln]
    operands = [a, b, ln.operands[1], ln.operands[2]]
    for i, side in ((0, a), (1, b)):
        found = _bias_of(side, graph)
        if found is not None:
            m, bias, bias_add = found
            operands = [m, b if i == 0 else a, ln.operands[1], ln.operands[2], bias]
            replaced.insert(0, bias_add)
            break
    fused = graph.add("skip_layer_norm", operands, {"epsilon": ln.attrs["epsilon"]},
                      Loc.fused(op.loc for op in replaced), "skip_layer_norm", before=ln)
    ln.result.replace_all_uses_with(fused.result)
    for op in reversed(replaced):
        graph.erase(op)
    return fused


@register_pass
@dataclass(frozen=True)
class FuseSkipLayerNorm(Pass):
    """Fuse add (+ bias) feeding a layer norm into skip_layer_norm (onnxruntime SkipLayerNormalization)."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        count = 0
        for ln in graph:
            if ln.kind != "layer_norm":
                continue
            reason = why_not(ln, graph)
            if reason is not None:
                log.debug("layer_norm at %s not fused: %s", ln.loc, reason)
                continue
            fuse_one(ln, graph)
            count += 1
        ctx.report.setdefault("fusions", {})["skip_layer_norm"] = count
        return count > 0
