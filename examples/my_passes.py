"""A user pass from scratch: the example docs/writing-a-pass.md walks through.

    bertc opt model.bir -p "scale_logits{factor=0.5}" --plugin examples/my_passes.py
    bertc compile model/ --plugin examples/my_passes.py --passes "fold_transposes" -o out/

Two passes:
- ``fold_transposes`` (a real rewrite): transpose(transpose(x, p), q) -> transpose(x, p∘q),
  dropped entirely when the composition is the identity.  Exact.
- ``scale_logits`` (changes numbers on purpose): multiplies every graph output by
  a factor.  Verification in `bertc compile` catches it unless you pass --no-verify.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertc.ir import Graph, Loc
from bertc.pass_manager import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class FoldTransposes(Pass):
    """Merge back-to-back transposes into one (or none)."""

    name = "fold_transposes"  # plugins name their passes; built-ins use their file name

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph:  # iterate over a snapshot: we edit as we go
            if op.kind != "transpose" or op not in graph.ops:
                continue
            inner = op.operands[0].producer
            if inner is None or inner.kind != "transpose":
                continue
            p, q = inner.attrs["perm"], op.attrs["perm"]
            perm = [p[i] for i in q]  # out[i] = x[p[q[i]]]
            x = inner.operands[0]
            loc = Loc.fused([inner.loc, op.loc])
            if perm == sorted(perm):
                new = x
            else:
                new = graph.add("transpose", [x], {"perm": perm}, loc, op.result.name, before=op).result
            op.result.replace_all_uses_with(new)
            graph.erase(op)
            if not inner.result.uses:
                graph.erase(inner)
            changed = True
        return changed


@register_pass
@dataclass(frozen=True)
class ScaleLogits(Pass):
    """Multiply every output by a constant factor (for trying out verification)."""

    name = "scale_logits"
    factor: float = 2.0

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        for key, value in list(graph.outputs.items()):
            c = graph.const(np.float32(self.factor), f"{key}/scale")
            graph.outputs[key] = graph.add("mul", [value, c], {}, Loc.of(f"scale_logits/{key}"), key).result
        return bool(graph.outputs)
