"""Graph edits shared by the structured pruning passes (prune_heads, prune_neurons) and the refit.

Removing heads or neurons changes three kinds of things: kernels and biases
(sliced along their feature axes), reshape targets that spell the count out
(``[batch, seq, 4, 16]`` -> ``[batch, seq, 2, 16]``, ``[-1, 64]`` ->
``[-1, 32]``), and then every type downstream (re-inferred).  Which target
entry carries the count comes from ``bertc.analysis.layout``: the
``Units`` recorded for each reshape of a layer's chains by the structure
analysis.  A target may be an attribute, a constant operand, or computed at
run time (a concat of ``tf.shape`` slices and constants, ``batch * seq``
products); the constant that carries the count is rewritten wherever it sits,
and what the graph shares (CSE merges the Q, K and V targets of every layer
into one concat) is copied for the reshape first, so that layers keeping
different head counts get targets of their own.  Pieces computed from the
shape of a tensor that pruning already shrank follow by themselves; after
re-inference every rewritten reshape is checked against the size it must now
have, and a target the pass could not rewrite is reported at its location.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..diagnostics import BertcError
from ..ir.graph import Graph, Op
from ..ir.registry import OpError, get_op_def
from ..ir.types import Dim, TensorType, is_static
from .importance import bias_axes, take_features
from .layout import Units

if TYPE_CHECKING:
    from .structure import Structure


class PruneError(BertcError):
    """The graph cannot be pruned as asked (a head count computed at run time, a bad keep list …)."""


# A planned target edit: (reshape, axis of its result, size before, size after, layer description).
Edit = tuple[Op, int, Dim, Dim, str]


def reinfer(graph: Graph, check=None) -> None:
    """Recompute every result type (and symbolic shape value) from the operands, in order.

    ``check(op)``, when given, runs after each op's types are recomputed.
    """
    for op in graph.ops:
        opdef = get_op_def(op.kind)
        types = opdef.infer_types(op)
        for r, t in zip(op.results, types):
            r.type = t
        if opdef.sym is not None:
            try:
                syms = opdef.sym(op)
            except Exception:
                syms = None
            for i, r in enumerate(op.results):
                r.sym = syms[i] if syms is not None else None
        if check is not None:
            check(op)


def replace_operand_const(graph: Graph, user: Op, index: int, value: np.ndarray, suffix: str = "pruned") -> None:
    """Make operand ``index`` of ``user`` the constant ``value``.

    A constant used only there is edited (a new array: weights may be shared
    with other graphs); a shared one is left alone and a new constant made.
    """
    old = user.operands[index]
    const = old.producer
    if const is not None and const.kind == "const" and len(old.uses) == 1 and \
            not any(v is old for v in graph.outputs.values()):
        const.attrs["value"] = value
        old.type = TensorType.of(value)
        return
    name = (const.attrs["name"] if const is not None and const.kind == "const" else old.name) + "/" + suffix
    new = graph.const(value, name, const.loc if const is not None else user.loc, before=user)
    user.set_operand(index, new)


def slice_projection(graph: Graph, p, side: str, groups: int, size: int, keep: list[int], outer: int = 1) -> None:
    """Keep feature groups ``keep`` of a projection's kernel (``out``: and of its bias; ``in``: kernel rows);
    ``outer``: the groups repeat that many times along the axis (a fused [q|k|v] kernel: 3)."""
    ins, outs = p.kernel_axes()
    axes = outs if side == "out" else ins
    try:
        kernel = take_features(p.kernel.const_value(), axes, groups, size, keep, outer)
        if side == "out" and p.bias is not None:
            b = p.bias.const_value()
            bias = take_features(b, bias_axes(b, outer * groups * size), groups, size, keep, outer)
    except ValueError as e:  # a kernel or bias laid out in a way the structure analysis did not expect
        raise PruneError(f"the dense layer at {p.op.loc} cannot be sliced into {groups} groups of {size}: {e}.") \
            from None
    replace_operand_const(graph, p.op, 1, kernel)
    if side == "out" and p.bias is not None:
        idx = [i for i, v in enumerate(p.bias_add.operands) if v is p.bias][0]
        replace_operand_const(graph, p.bias_add, idx, bias)


def slice_table(graph: Graph, user: Op, index: int, u: Units, keep: list[int], where: str) -> None:
    """Keep groups ``keep`` of the constant operand ``index`` of ``user`` along its groups' axis
    (MPNet's [buckets, heads] bias table, DeBERTa's folded per-head position keys, per-head biases)."""
    arr = user.operands[index].const_value()
    outer = u.outer(arr.shape)
    if outer != 1:
        raise PruneError(f"{where}: the constant %{user.operands[index].name} {list(arr.shape)} read by "
                         f"{user.kind} at {user.loc} does not hold the {u.count} groups alone on axis {u.axis}.")
    replace_operand_const(graph, user, index, take_features(arr, [u.axis], u.count, int(u.inner), keep))


def privatize(graph: Graph, region) -> dict[int, Op]:
    """Copy a sublayer's side-term ops for it alone when other sublayers share them (MPNet computes its
    relative-position bias once for every layer), so that each layer's copy is sliced for its own heads.
    Returns id(original op) -> copy (empty when nothing is shared)."""
    if not region.shared():
        return {}
    copies: dict[int, Op] = {}
    values: dict[int, object] = {}
    order = {id(op): i for i, op in enumerate(graph.ops)}
    for op in sorted(region.backward, key=lambda o: order[id(o)]):
        operands = [values.get(id(v), v) for v in op.operands]
        attrs = {k: (list(a) if isinstance(a, list) else a) for k, a in op.attrs.items()}
        after = graph.ops[graph.ops.index(op) + 1]
        new = graph.add(op.kind, operands, attrs, op.loc, op.result.name, before=after)
        copies[id(op)] = new
        values[id(op.result)] = new.result
    inside = [op for op, _ in region.ops if id(op) not in copies] + [p.op for p, _ in region.sinks]
    for op in inside:
        for i, v in enumerate(op.operands):
            if id(v) in values:
                op.set_operand(i, values[id(v)])
    return copies


# ------------------------------------------------------------------ reshape targets
def plan_reshapes(paths: list[tuple[Op, Units]], kept: int, where: str) -> list[Edit]:
    """Every reshape (and broadcast ``expand``: a mask broadcast to [batch, heads, q, k]) of a chain, with the size its groups' axis must have once ``kept`` groups are left
    (and every run-time tile, whose multiples may divide a pruned size by the group count)."""
    edits = []
    for op, u in paths:
        if op.kind == "tile" and len(op.operands) > 1:
            shape = op.result.shape
            edits.append((op, u.axis, shape[u.axis], u.dim_with(shape, kept), where))
            continue
        if op.kind == "slice" and cuts_heads(op, u):  # a third of a fused QKV projection: rescale its bounds
            shape = op.result.shape
            edits.append((op, u.axis, shape[u.axis], u.dim_with(shape, kept), where))
            continue
        if op.kind not in ("reshape", "expand"):  # an expand's target spells its heads as a reshape's does
            continue
        shape = op.result.shape
        edits.append((op, u.axis, shape[u.axis], u.dim_with(shape, kept), where))
    return edits


def apply_reshapes(graph: Graph, edits: list[Edit], count: int, kept: int) -> None:
    """Scale the target entry of each planned reshape by kept / count.

    Reshapes that shared one target (Q, K and V after CSE) share the rewritten one.
    """
    done: dict[tuple[int, int], object] = {}
    for op, axis, _, _, where in edits:
        if op.kind == "tile":
            _fix_divisor(graph, op, 1, axis, count, kept)
            continue
        if op.kind == "slice":
            _scale_bounds(op, axis, count, kept)
            continue
        if op.attrs.get("shape") is not None:
            target = list(op.attrs["shape"])
            target[axis] = _scaled(target[axis], count, kept, op, where)
            op.attrs["shape"] = target
            continue
        key = (id(op.operands[1]), axis)
        if key in done:
            op.set_operand(1, done[key])
            continue
        _scale_entry(graph, op, 1, axis, count, kept, where)
        done[key] = op.operands[1]


def cuts_heads(op: Op, u: Units) -> bool:
    """Whether slice ``op`` bounds the axis that holds the groups (``region`` allows it at whole blocks)."""
    rank = op.operands[0].type.rank
    return any(int(a) % rank == u.axis for a in (op.attrs.get("axes") or range(len(op.attrs["starts"]))))


def _scale_bounds(op: Op, axis: int, count: int, kept: int) -> None:
    """Bounds of a slice along the groups' axis, at multiples of the count*inner block (checked by the
    region), scaled by kept / count; an end past the axis (slice to the end) stays."""
    a = op.attrs
    dim = op.operands[0].shape[axis]  # types are stale: the size before pruning
    rank = op.operands[0].type.rank
    for k, ax in enumerate(a.get("axes") or range(len(a["starts"]))):
        if int(ax) % rank != axis:
            continue
        a["starts"] = [*a["starts"]]
        a["ends"] = [*a["ends"]]
        a["starts"][k] = int(a["starts"][k]) * kept // count
        if int(a["ends"][k]) <= dim:
            a["ends"][k] = int(a["ends"][k]) * kept // count


def check_reshape(edit: Edit) -> None:
    """After re-inference: a planned reshape now gives its groups' axis the size it must have."""
    op, axis, old, new, where = edit
    got = op.result.shape[axis]
    if got != new:
        src = op.operands[1].producer if len(op.operands) > 1 else None
        how = f"; its target is computed by {src.kind} at {src.loc}" if src is not None else ""
        raise PruneError(f"{where}: the reshape at {op.loc} still gives axis {axis} the size {got} after "
                         f"pruning, where {new} (was {old}) is needed{how}, in a form the pass cannot rewrite.",
                         "Run fold_constants,simplify_shapes before pruning, or report the graph form.")


def reinfer_checked(graph: Graph, edits: list[Edit]) -> None:
    """``reinfer``, checking each planned reshape as soon as it is re-inferred; an op that no longer
    type-checks (a count the pass did not find) is reported at its location."""
    planned = {id(e[0]): e for e in edits}

    def check(op: Op) -> None:
        if id(op) in planned:
            check_reshape(planned[id(op)])

    current: list[Op] = []
    try:
        reinfer(graph, lambda op: (current.append(op), check(op)))
    except OpError as e:
        at = graph.ops[graph.ops.index(current[-1]) + 1] if current and current[-1] is not graph.ops[-1] else None
        where = f" at {at.kind} {at.loc}" if at is not None else ""
        raise PruneError(f"after pruning, the graph no longer type-checks{where}: {e}. That op spells a head "
                         "or neuron count in a form the pass does not rewrite.",
                         "--dump-ir DIR shows the IR the pass received.") from None


def _scaled(entry: int, count: int, kept: int, op: Op, where: str) -> int:
    """A target entry for ``kept`` of ``count`` groups (0 copies and -1 infers: they follow by themselves)."""
    entry = int(entry)
    if entry in (0, -1):
        return entry
    if entry % count:
        raise PruneError(f"{where}: the reshape at {op.loc} has {entry} in its target where a multiple of the "
                         f"{count} groups was expected.")
    return entry // count * kept


def _private(graph: Graph, user: Op, index: int) -> Op | None:
    """The producer of ``user``'s operand ``index``, copied for ``user`` alone when other ops use it too."""
    v = user.operands[index]
    op = v.producer
    if op is None or (len(v.uses) == 1 and not any(o is v for o in graph.outputs.values())):
        return op
    if len(op.results) != 1:
        return op
    attrs = {k: (list(a) if isinstance(a, list) else a) for k, a in op.attrs.items()}
    # right after the original, so that every user of the original may take the copy (apply_reshapes does)
    after = graph.ops[graph.ops.index(op) + 1]
    new = graph.add(op.kind, list(op.operands), attrs, op.loc, v.name, before=after)
    user.set_operand(index, new.result)
    return new


def concat_part(op: Op, pos: int) -> tuple[int, int] | None:
    """(operand index, position inside it) of entry ``pos`` of a 1-D concat; None past a
    part of unknown length."""
    offset = 0
    for i, part in enumerate(op.operands):
        n = part.shape[0] if part.type.rank == 1 else 1
        if not is_static(n):
            return None
        if offset <= pos < offset + n:
            return i, pos - offset
        offset += n
    return None


def _fix_divisor(graph: Graph, user: Op, index: int, pos: int, count: int, kept: int) -> None:
    """A run-time tile multiple ``size // count`` (DeBERTa tiles per-head position keys over
    ``batch*heads // heads`` rows) becomes ``size // kept``: find the division by the count and rewrite it."""
    v = user.operands[index]
    op = _private(graph, user, index)
    if op is None or v.const_value() is not None:
        return
    if op.kind == "concat" and v.type.rank == 1:
        part = concat_part(op, pos)
        if part is not None:
            _fix_divisor(graph, op, part[0], part[1], count, kept)
    elif op.kind in ("cast", "identity", "unsqueeze", "squeeze", "reshape"):
        _fix_divisor(graph, op, 0, 0 if op.operands[0].type.num_elements == 1 else pos, count, kept)
    elif op.kind == "div":
        c = op.operands[1].const_value()
        if c is not None and np.asarray(c).size == 1 and int(np.asarray(c).reshape(-1)[0]) == count:
            replace_operand_const(graph, op, 1, np.asarray(kept, dtype=np.asarray(c).dtype).reshape(np.shape(c)))


def _scale_entry(graph: Graph, user: Op, index: int, pos: int, count: int, kept: int, where: str) -> None:
    """Scale entry ``pos`` of ``user``'s shape operand ``index`` by kept / count, wherever its constant sits.

    What is computed from ``tf.shape`` of other tensors is left alone: when
    those tensors shrank, it follows; when not, ``check_reshapes`` says so.
    """
    v = user.operands[index]
    c = v.const_value()
    if c is not None:
        arr = np.array(c, copy=True)
        flat = arr.reshape(-1)
        flat[pos] = _scaled(flat[pos], count, kept, user, where)
        replace_operand_const(graph, user, index, arr)
        return
    op = _private(graph, user, index)
    if op is None:
        return
    if op.kind == "concat" and v.type.rank == 1:
        part = concat_part(op, pos)
        if part is not None:
            _scale_entry(graph, op, part[0], part[1], count, kept, where)
    elif op.kind in ("cast", "identity"):
        _scale_entry(graph, op, 0, pos, count, kept, where)
    elif op.kind in ("unsqueeze", "squeeze", "reshape") and op.operands[0].type.num_elements == 1:
        _scale_entry(graph, op, 0, 0, count, kept, where)
    elif op.kind == "mul":
        for i, x in enumerate(op.operands[:2]):
            cx = x.const_value()
            if cx is not None and int(np.asarray(cx).reshape(-1)[0 if cx.size == 1 else pos]) % count == 0:
                return _scale_entry(graph, op, i, 0 if cx.size == 1 else pos, count, kept, where)


def finish(graph: Graph, edits: list[Edit] = ()) -> "Structure":
    """Re-infer types (checking the rewritten reshapes), drop what no longer feeds anything, re-analyse."""
    from bertc.analysis.structure import analyze_structure
    from bertc.ir.dce import eliminate_dead_code

    reinfer_checked(graph, list(edits))
    eliminate_dead_code(graph)
    return analyze_structure(graph)
