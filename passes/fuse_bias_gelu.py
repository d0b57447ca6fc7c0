"""Fuse the bias add before a GELU into one ``bias_gelu``.

    gelu(add(x, bias), approximate)     -> bias_gelu(x, bias, approximate)

``bias`` is a 1-D constant of the last dim's size (the intermediate dense
layer's BiasAdd) and the add has no other user.  Exact by definition.

An onnxruntime-oriented pass (BiasGelu / FastGelu); opt in with
``--passes fuse_bias_gelu`` or the ``ort_fusions`` pipeline.  TFLite lowers the
op back into ADD + GELU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bertc.ir import Graph, Loc, Op
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)


def match(gelu: Op, graph: Graph):
    """(x, bias, add) when ``gelu``'s input is x + a 1-D constant bias used once, else None."""
    v = gelu.operands[0]
    add = v.producer
    if add is None or add.kind != "add" or len(v.uses) != 1 or any(o is v for o in graph.outputs.values()):
        return None
    for i in (0, 1):
        x, bias = add.operands[i], add.operands[1 - i]
        if bias.is_const() and not x.is_const() and bias.type.rank == 1 and x.type == v.type \
                and x.type.rank >= 1 and bias.shape[0] == x.shape[-1]:
            return x, bias, add
    return None


@register_pass
@dataclass(frozen=True)
class FuseBiasGelu(Pass):
    """Fuse add(x, const bias) feeding a gelu into bias_gelu (onnxruntime BiasGelu/FastGelu)."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        count = 0
        for gelu in graph:
            if gelu.kind != "gelu":
                continue
            found = match(gelu, graph)
            if found is None:
                log.debug("gelu at %s not fused: its input is not x + a 1-D constant bias", gelu.loc)
                continue
            x, bias, add = found
            fused = graph.add("bias_gelu", [x, bias], {"approximate": gelu.attrs["approximate"]},
                              Loc.fused([add.loc, gelu.loc]), "bias_gelu", before=gelu)
            gelu.result.replace_all_uses_with(fused.result)
            graph.erase(gelu)
            graph.erase(add)
            count += 1
        ctx.report.setdefault("fusions", {})["bias_gelu"] = count
        return count > 0
