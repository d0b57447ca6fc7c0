"""Dead-code elimination: drop pure ops whose results nothing uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertc.ir import Graph
from bertc.ir.dce import eliminate_dead_code
from bertc.pass_manager import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """Remove ops whose results are never used."""

    in_regions: ClassVar[bool] = True  # also inside cond's branches

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        return eliminate_dead_code(graph) > 0
