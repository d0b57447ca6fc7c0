"""Dead-code elimination: drop pure ops whose results nothing uses."""

from __future__ import annotations

from dataclasses import dataclass

from bertc.ir import Graph, get_op_def
from bertc.pass_manager import Pass, PassContext, register_pass


def eliminate_dead_code(graph: Graph) -> int:
    """Remove unused pure ops, last to first so chains go in one sweep.  Returns the count."""
    live_outputs = {id(v) for v in graph.outputs.values()}
    removed = 0
    for op in reversed(graph.ops):
        if not get_op_def(op.kind).pure:
            continue
        if any(r.uses or id(r) in live_outputs for r in op.results):
            continue
        graph.erase(op)
        removed += 1
    return removed


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove ops whose results are never used."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        return eliminate_dead_code(graph) > 0
