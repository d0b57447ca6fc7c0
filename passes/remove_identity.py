"""Identity removal: forward each identity's operand to its users.

Also a reshape that undoes the reshape before it (x -> [1, rows, features, 1] -> x's shape, as
tf-keras' fused layer norm lays its input out and back) is the identity on x."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertc.ir import UNKNOWN, Graph
from bertc.pass_manager import Pass, PassContext, register_pass


@register_pass
@dataclass(frozen=True)
class RemoveIdentity(Pass):
    """Remove identity ops (and casts to the same dtype, reshapes to the same shape)."""

    in_regions: ClassVar[bool] = True  # also inside cond's branches

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph:
            src = op.operands[0] if op.operands else None
            if src is None:
                continue
            trivial = (
                op.kind == "identity"
                or (op.kind == "cast" and op.attrs["to"] == src.dtype)
                or (op.kind in ("reshape", "expand") and src.type == op.result.type
                    and UNKNOWN not in src.shape)
                or (op.kind == "transpose" and list(op.attrs["perm"]) == sorted(op.attrs["perm"]))
            )
            if not trivial and op.kind == "reshape" and src.producer is not None and src.producer.kind == "reshape":
                inner = src.producer.operands[0]
                if inner.type == op.result.type and UNKNOWN not in inner.shape:
                    src, trivial = inner, True  # the round trip x -> reshape -> reshape back
            if trivial:
                graph.replace_op(op, [src])
                changed = True
        return changed
