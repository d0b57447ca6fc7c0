"""Dead-code elimination: drop pure ops whose results nothing uses (the ``dce`` pass, and every
rewrite that leaves dead ops behind)."""

from __future__ import annotations

from .graph import Graph
from .registry import get_op_def


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
