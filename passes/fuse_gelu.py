"""Fuse the spelled-out GELU into one ``gelu`` op.

    0.5 * x * (1 + erf(x / sqrt(2)))                          -> gelu(x)
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))  -> gelu(x, approximate="tanh")

Any algebraic arrangement is accepted: the candidate region around each
``erf``/``tanh`` is run on random inputs and must equal the definition
(``bertc.rewrite``).  Targets then lower ``gelu`` to their native kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertc.ir import Graph, Op, Value, get_op_def
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.rewrite import Region, matches, single_exit_regions

_FORMS = ("none", "tanh")
# What a spelled-out GELU is made of (anything else ends the search).
GELU_KINDS = frozenset({"mul", "add", "sub", "div", "neg", "pow", "erf", "tanh", "cast", "identity"})


def _gelu_ref(approximate: str):
    opdef = get_op_def("gelu")
    return lambda x: opdef.kernel({"approximate": approximate}, x)


def _candidate_inputs(anchor: Op, depth: int = 4) -> list[Value]:
    """Non-constant values feeding the anchor, nearest first."""
    seen: list[Value] = []
    frontier = [anchor]
    for _ in range(depth):
        nxt = []
        for op in frontier:
            for v in op.operands:
                if not v.is_const() and v not in seen:
                    seen.append(v)
                    if v.producer is not None:
                        nxt.append(v.producer)
        frontier = nxt
    return seen


def find_gelu(graph: Graph, anchor: Op, rng: np.random.Generator) -> tuple[Region, str] | None:
    for x in _candidate_inputs(anchor):
        for region in single_exit_regions(graph, x, anchor, max_ops=16, kinds=GELU_KINDS):
            for form in _FORMS:
                if matches(region, _gelu_ref(form), rng):
                    return region, form
    return None


@register_pass
@dataclass(frozen=True)
class FuseGelu(Pass):
    """Replace erf- and tanh-based GELU subgraphs by one gelu op."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        rng = np.random.default_rng(0)
        changed = False
        for anchor in graph:
            if anchor.kind not in ("erf", "tanh") or anchor not in graph.ops:
                continue
            found = find_gelu(graph, anchor, rng)
            if found is None:
                continue
            region, form = found
            exit_op = region.exit.producer
            fused = graph.add("gelu", [region.input], {"approximate": form}, region.loc, "gelu", before=exit_op)
            region.exit.replace_all_uses_with(fused.result)
            eliminate_dead_code(graph)
            changed = True
        return changed
