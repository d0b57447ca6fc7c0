"""Constant folding through the reference interpreter.

An op whose operands are all constants is run once at compile time and
replaced by its result.  So is an integer op whose value symbolic shape
evaluation already knows (``shape`` of a static tensor and the arithmetic on
it).  Weight transposes and casts fold away; the text form shows the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bertc.ir import Graph, Op, get_op_def
from bertc.ir.types import DTYPES
from bertc.pass_manager import Pass, PassContext, register_pass

# Never materialise a large constant that takes more bytes than what it is made
# from: an expand of a scalar to [512, 512, 768] would bloat the model, and a
# palettized weight (u8 indices gathered from a codebook) must stay palettized.
# Same-size folds (weight transposes, reshapes) always happen.
SMALL = 1 << 16  # elements: anything this small folds regardless


def _sym_constant(op: Op) -> np.ndarray | None:
    r = op.results[0]
    if len(op.results) != 1 or r.sym is None or r.dtype not in ("i32", "i64", "bool"):
        return None
    if r.type.rank > 1 or not all(isinstance(d, int) for d in r.sym):
        return None
    if r.type.rank == 0 and len(r.sym) == 1:
        return np.asarray(r.sym[0], dtype=DTYPES[r.dtype])
    if r.type.rank == 1 and r.type.shape[0] == len(r.sym):
        return np.asarray(r.sym, dtype=DTYPES[r.dtype])
    return None


def fold_op(graph: Graph, op: Op) -> bool:
    if op.kind == "const" or not get_op_def(op.kind).pure:
        return False
    value = _sym_constant(op)
    if value is not None:
        graph.replace_op(op, [graph.const(value, op.loc.primary, op.loc, before=op)])
        return True
    if not op.operands or not all(v.is_const() for v in op.operands):
        return False
    inputs = [v.const_value() for v in op.operands]
    input_bytes = sum(a.nbytes for a in inputs)
    if not all(r.type.is_static for r in op.results):
        return False
    if any(_size(r) > SMALL and _size(r) * DTYPES[r.dtype].itemsize > input_bytes for r in op.results):
        return False
    outs = get_op_def(op.kind).run(op, inputs)
    news = [graph.const(np.array(o, dtype=DTYPES[r.dtype]),  # np.array keeps 0-d arrays 0-d
                        _name(op, i), op.loc, before=op) for i, (o, r) in enumerate(zip(outs, op.results))]
    graph.replace_op(op, news)
    return True


def _size(v) -> int:
    return int(np.prod(v.type.shape, dtype=np.int64))


def _name(op: Op, i: int) -> str:
    """Folded weights keep the weight name they came from, so dumps stay readable."""
    src = [v.producer.attrs["name"] for v in op.operands if v.is_const() and v.const_value().size > 16]
    base = src[0] if src else op.loc.primary
    return base if len(op.results) == 1 else f"{base}:{i}"


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Evaluate ops whose inputs are all known at compile time."""

    in_regions: ClassVar[bool] = True  # also inside cond's branches

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        changed = False
        for op in graph:  # a snapshot: folding replaces only the op at hand
            changed |= fold_op(graph, op)
        eliminate_dead_code(graph)
        return changed
