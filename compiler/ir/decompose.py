"""Fused ops spelled out again in core ops, for a target (or mode) without the fused kernel.

Most fused ops are lowered op by op (``tflite_fused.py`` writes ADD + the
layer-norm sequence for ``skip_layer_norm``).  ``multi_head_attention`` instead
needs reshapes whose batch and sequence dims are only known at run time, which
the targets already lower for the core ``reshape``; so it is rewritten back
into core IR ops (the sequence ``fuse_attention`` replaced) on a copy of the
graph, and that copy is lowered.
"""

from __future__ import annotations

import numpy as np

from .emitter import Emitter
from .graph import Graph, Op
from .types import is_static

DECOMPOSED = frozenset({"multi_head_attention"})


def decompose_attention(graph: Graph, op: Op) -> None:
    """multi_head_attention(q, k, v[, mask]) -> split heads, q k^T * scale (+ mask), softmax, @ v,
    merge heads: the core ops its definition (``bertc.ops.fused``) is written in."""
    e = Emitter(graph, op)
    q, k, v = op.operands[:3]
    n = int(op.attrs["num_heads"])

    def heads(x, perm: list[int], hint: str):
        size = int(x.shape[2]) // n if is_static(x.shape[2]) else -1
        return e("transpose", [e("reshape", [x], {"shape": [0, 0, n, size]}, f"{hint}_heads")], {"perm": perm},
                 f"{hint}_t")

    scores = e("matmul", [heads(q, [0, 2, 1, 3], "q"), heads(k, [0, 2, 3, 1], "k")], {}, "scores")
    if op.attrs["scale"] != 1.0:
        scale = e.const(np.asarray(op.attrs["scale"]), q.dtype, "scale")
        scores = e("mul", [scores, scale], {}, "scaled")
    if len(op.operands) > 3:
        scores = e("add", [scores, op.operands[3]], {}, "masked")
    probs = e("softmax", [scores], {"axis": -1}, "probs")
    context = e("matmul", [probs, heads(v, [0, 2, 1, 3], "v")], {}, "context")
    merged = e("reshape", [e("transpose", [context], {"perm": [0, 2, 1, 3]}, "context_t")], {"shape": [0, 0, -1]},
               "merged")
    op.result.replace_all_uses_with(merged)
    graph.erase(op)


DECOMPOSITIONS = {"multi_head_attention": decompose_attention}


def decomposed(graph: Graph, kinds: frozenset[str] = DECOMPOSED) -> Graph:
    """``graph`` itself when it holds none of ``kinds``, else a copy with each such op decomposed."""
    if not any(op.kind in kinds for op in graph.ops):
        return graph
    from .parser import copy_graph

    copy = copy_graph(graph)
    for op in [op for op in copy.ops if op.kind in kinds]:
        DECOMPOSITIONS[op.kind](copy, op)
    return copy
