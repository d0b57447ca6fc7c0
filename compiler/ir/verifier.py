"""Check a graph's invariants: SSA order, use lists, op schemas and types.

The pass manager runs this after every pass, so a broken rewrite is caught at
the pass that broke it, with the op and its location named.
"""

from __future__ import annotations

from .graph import Graph, Op
from .registry import OpError, get_op_def
from .types import UNKNOWN, TensorType


class VerifyError(ValueError):
    def __init__(self, message: str, op: Op | None = None) -> None:
        self.op = op
        where = f" at {op.kind} {op.loc}" if op is not None else ""
        super().__init__(f"{message}{where}")


def _compatible(stored: TensorType, inferred: TensorType) -> bool:
    if stored.dtype != inferred.dtype or stored.rank != inferred.rank:
        return False
    return all(a == b or UNKNOWN in (a, b) for a, b in zip(stored.shape, inferred.shape))


def verify(graph: Graph) -> None:
    """Raise ``VerifyError`` naming the first op that breaks an invariant."""
    defined: set[int] = {id(v) for v in graph.inputs}
    const_names: set[str] = set()
    for op in graph.ops:
        if op.graph is not graph:
            raise VerifyError("op belongs to another graph", op)
        for i, v in enumerate(op.operands):
            if id(v) not in defined:
                raise VerifyError(f"operand {i} (%{v.name}) is used before it is defined", op)
            if (op, i) not in v.uses:
                raise VerifyError(f"operand {i} (%{v.name}) does not list this op as a use", op)
        try:
            opdef = get_op_def(op.kind)
            opdef.check(op)
            inferred = opdef.infer_types(op)
        except OpError as e:
            raise VerifyError(str(e), op) from None
        if len(inferred) != len(op.results):
            raise VerifyError(f"has {len(op.results)} results, its definition gives {len(inferred)}", op)
        for r, t in zip(op.results, inferred):
            if not _compatible(r.type, t):
                raise VerifyError(f"result %{r.name} is typed {r.type} but its operands give {t}", op)
            for user, idx in r.uses:
                if user.operands[idx] is not r:
                    raise VerifyError(f"stale use of %{r.name}", user)
            defined.add(id(r))
        if op.kind == "const":
            name = op.attrs["name"]
            if name in const_names and op.attrs["value"].size > 16:
                raise VerifyError(f"weight name @{name} is used twice", op)
            const_names.add(name)
    for name, v in graph.outputs.items():
        if id(v) not in defined:
            raise VerifyError(f"output '{name}' is not defined in the graph")
    for op in graph.ops:  # the regions (cond's branches) are graphs of their own
        for key, region in op.attrs.items():
            if isinstance(region, Graph):
                try:
                    verify(region)
                except VerifyError as e:
                    raise VerifyError(f"in its {key} branch: {e}", op) from None
