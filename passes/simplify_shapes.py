"""Turn run-time shape operands into attributes wherever symbolic shapes allow.

Keras and Hugging Face compute reshape targets from ``tf.shape(x)`` at run
time.  Symbolic evaluation knows those values as dims (``[batch, seq, 4, 16]``);
this pass rewrites them in ONNX's relative form (``{shape=[0, 0, 4, 16]}``: 0
copies the input dim, -1 is inferred), and likewise for expand, tile, slice,
scatter_nd, one_hot depths and pad paddings.  The ``tf.shape`` arithmetic then
becomes dead and disappears, and targets see static attributes instead of
shape subgraphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertc.ir import Graph, Loc, Op
from bertc.ir.types import UNKNOWN, is_static
from bertc.pass_manager import Pass, PassContext, register_pass

INT_MAX = 2**63 - 1


def relative_reshape(in_shape: tuple, target: tuple) -> list[int] | None:
    """Target dims as ints, 0 (copy the input dim at this position) and at most one -1."""
    out: list[int] = []
    for i, d in enumerate(target):
        if is_static(d) and d > 0:
            out.append(int(d))
        elif i < len(in_shape) and d == in_shape[i] and d != UNKNOWN:
            out.append(0)
        elif d == -1 or not is_static(d):
            out.append(-1)
        else:
            return None
    return out if out.count(-1) <= 1 else None


def relative_expand(in_shape: tuple, target: tuple) -> list[int] | None:
    """Expand target with symbolic dims replaced by 1 where x already has that dim."""
    out: list[int] = []
    offset = len(target) - len(in_shape)
    for i, d in enumerate(target):
        if is_static(d):
            out.append(int(d))
        elif i >= offset and in_shape[i - offset] == d and d != UNKNOWN:
            out.append(1)
        else:
            return None
    return out


def _static(sym) -> list[int] | None:
    return [int(d) for d in sym] if sym is not None and all(is_static(d) for d in sym) else None


def unflatten_matmul(graph: Graph, op: Op) -> Op | None:
    """reshape(matmul(reshape(x, [-1, K]), W), x.shape[:-1] + [N]) -> matmul(x, W).

    This is how ``tf.tensordot`` (Keras and Hugging Face Dense on 3-D inputs)
    spells a matmul; matmul broadcasts over leading dims, so the flattening
    reshapes are not needed and their run-time shape arithmetic goes too.
    """
    mm = op.operands[0].producer
    if mm is None or mm.kind != "matmul" or len(op.operands[0].uses) != 1:
        return None
    flat, w = mm.operands
    inner = flat.producer
    if inner is None or inner.kind != "reshape" or w.type.rank != 2 or flat.type.rank != 2:
        return None
    x = inner.operands[0]
    if x.type.rank < 2 or x.shape[-1] != flat.shape[-1] or x.shape[-1] == "?":
        return None
    if tuple(op.result.shape) != (*x.shape[:-1], w.shape[-1]):
        return None
    return graph.add("matmul", [x, w], {}, Loc.fused([mm.loc, inner.loc, op.loc]), mm.result.name, before=op)


def simplify(graph: Graph, op: Op) -> bool:
    x = op.operands[0] if op.operands else None
    if op.kind == "reshape" and (new := unflatten_matmul(graph, op)) is not None:
        pass
    elif op.kind == "reshape" and len(op.operands) == 2 and op.operands[1].sym is not None:
        target = relative_reshape(x.shape, op.operands[1].sym)
        if target is None:
            return False
        new = graph.add("reshape", [x], {"shape": target}, op.loc, op.result.name, before=op)
    elif op.kind == "expand" and len(op.operands) == 2 and op.operands[1].sym is not None:
        target = relative_expand(x.shape, op.operands[1].sym)
        if target is None:
            return False
        new = graph.add("expand", [x], {"shape": target}, op.loc, op.result.name, before=op)
    elif op.kind == "tile" and len(op.operands) == 2 and _static(op.operands[1].sym) is not None:
        new = graph.add("tile", [x], {"repeats": _static(op.operands[1].sym)}, op.loc, op.result.name, before=op)
    elif op.kind == "scatter_nd" and len(op.operands) == 3 and _static(op.operands[2].sym) is not None:
        new = graph.add("scatter_nd", op.operands[:2], {"shape": _static(op.operands[2].sym)}, op.loc,
                        op.result.name, before=op)
    elif op.kind == "one_hot" and len(op.operands) == 2 and _static(op.operands[1].sym) is not None:
        new = graph.add("one_hot", [x], {**op.attrs, "depth": _static(op.operands[1].sym)[0]}, op.loc,
                        op.result.name, before=op)
    elif op.kind == "pad" and len(op.operands) == 2 and op.operands[1].const_value() is not None:
        pads = [int(p) for p in op.operands[1].const_value().reshape(-1)]
        new = graph.add("pad", [x], {**op.attrs, "pads": pads}, op.loc, op.result.name, before=op)
    elif op.kind == "slice" and len(op.operands) == 3:
        starts, ends = _static(op.operands[1].sym), op.operands[2].sym
        if starts is None or ends is None:
            return False
        axes = op.attrs["axes"]
        ends_i = []
        for ax, e in zip(axes, ends):
            if is_static(e):
                ends_i.append(int(e))
            elif e == x.shape[ax] and e != UNKNOWN:
                ends_i.append(INT_MAX)
            else:
                return False
        new = graph.add("slice", [x], {"starts": starts, "ends": ends_i, "axes": axes, "steps": op.attrs["steps"]},
                        op.loc, op.result.name, before=op)
    else:
        return False
    old, got = op.result.type, new.result.type
    if old.dtype != got.dtype or old.rank != got.rank or any(a != b and a != UNKNOWN for a, b in zip(old.shape, got.shape)):
        graph.erase(new)  # symbolic evaluation disagrees with the stored type: leave the op alone
        return False
    graph.replace_op(op, new.results)
    return True


@register_pass
@dataclass(frozen=True)
class SimplifyShapes(Pass):
    """Fold shape computations into reshape/expand/tile/slice attributes."""

    in_regions: ClassVar[bool] = True  # also inside cond's branches

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        changed = False
        for op in graph:
            changed |= simplify(graph, op)
        eliminate_dead_code(graph)
        return changed
