"""Fuse a softmax written out op by op into one ``softmax`` op.

    exp(x - max(x)) / sum(exp(x - max(x)))      -> softmax(x)
    exp(x) / sum(exp(x))                        -> softmax(x)
    exp(x - reduce_logsumexp(x))                -> softmax(x)   (TF's logsumexp: max, IsFinite guard, log)

along the last axis, in any arrangement: as ``fuse_gelu`` does, the candidate
region around each ``exp`` is run on random inputs and must equal the
definition (``bertc.rewrite``).  Attention written this way is then found by
the structure analysis (which starts from each ``softmax``), so it can be
pruned, and targets run their native softmax kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertc.ir import Graph, Op, get_op_def
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.rewrite import Region, matches, single_exit_regions

from .fuse_gelu import _candidate_inputs

# What a spelled-out softmax is made of (anything else ends the search).
SOFTMAX_KINDS = frozenset({"sub", "add", "div", "mul", "reciprocal", "exp", "log", "reduce_max", "reduce_sum",
                           "where", "not_equal", "equal", "abs", "logical_or", "logical_not", "cast", "identity"})


def _softmax_ref(x: np.ndarray) -> np.ndarray:
    return get_op_def("softmax").kernel({"axis": -1}, x)


def find_softmax(graph: Graph, anchor: Op, rng: np.random.Generator) -> Region | None:
    """A region around ``anchor`` (an exp) that computes softmax over the last axis: from the
    farthest input first, so the max (or logsumexp) subtracted for stability goes in too."""
    for x in reversed(_candidate_inputs(anchor, depth=6)):
        if x.type.rank < 1:
            continue
        for region in single_exit_regions(graph, x, anchor, max_ops=24, kinds=SOFTMAX_KINDS):
            if region.exit.type == x.type and matches(region, _softmax_ref, rng):
                return region
    return None


@register_pass
@dataclass(frozen=True)
class FuseSoftmax(Pass):
    """Replace exp/sum (and exp(x - logsumexp)) softmax subgraphs by one softmax op."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        rng = np.random.default_rng(0)
        changed = False
        for anchor in list(graph):
            if anchor.kind != "exp" or anchor not in graph.ops:
                continue
            region = find_softmax(graph, anchor, rng)
            if region is None:
                continue
            exit_op = region.exit.producer
            fused = graph.add("softmax", [region.input], {"axis": -1}, region.loc, "softmax", before=exit_op)
            region.exit.replace_all_uses_with(fused.result)
            eliminate_dead_code(graph)
            changed = True
        return changed
