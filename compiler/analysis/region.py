"""Every tensor of an attention sublayer that carries the heads, found by following the head axis.

``layout.follow_chain`` follows the heads along one chain of data movement.
Real attention sublayers are not chains: RoFormer combines Q with a rotated
copy of itself and sin/cos tables, MPNet adds a per-head relative-position
bias (a gather from a [buckets, heads] table) to the scores, DeBERTa adds
c2p/p2c terms computed from per-head projections of the relative embeddings.
``head_region`` propagates the heads' ``Units`` from the Q/K/V projections
over the whole dataflow region they reach, forwards through every consumer
and backwards into every other operand that varies along the heads, until
it meets:

- the output projection (and any other dense layer) reading the heads: a *sink*
  (its kernel rows are sliced);
- a dense layer whose output enters with the heads: a *source* (its kernel
  columns and bias are sliced), Q/K/V themselves and DeBERTa's position
  projections alike;
- a constant that varies along the heads: a *table* (sliced along their axis):
  MPNet's bias table, DeBERTa's folded position keys, per-head biases.

A slice may cut the heads' axis at whole blocks of every head (a third of a fused [q|k|v] projection; the
pass rescales its bounds), and a broadcast (``expand``: a mask or ``ones_like`` spread to [batch, heads, q, k])
is followed like a reshape, its target's head count rewritten.  Operands that do not vary along the heads
(masks, sin/cos tables broadcast over heads, scalars) are left alone, and ``shape`` consumers follow by
themselves.  An op the rules do not know, or a move that mixes heads, is a
``LayoutError`` naming it.  Tensors reached backwards that other sublayers
share (MPNet computes its bias once for all layers) are listed in ``shared``
so that pruning copies them per layer first (``prune_edit.privatize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Op, Value
from .layout import LayoutError, Units, follow, through_reshape

# Elementwise ops (numpy broadcasting): the heads stay on their axis in every operand that varies along them.
ELEMENTWISE = {"add", "sub", "mul", "div", "where", "cast", "identity", "neg", "maximum", "minimum", "pow",
               "sqrt", "rsqrt", "exp", "abs", "tanh", "erf", "relu", "gelu", "sigmoid",
               # masks built along the scores (Keras: logical_and(ones_like(scores), mask) -> where)
               "logical_and", "logical_or", "logical_not", "equal", "not_equal", "less", "less_equal",
               "greater", "greater_equal"}
MOVES = {"reshape", "transpose", "squeeze", "unsqueeze"}
IGNORED_USERS = {"shape"}  # run-time shapes of a pruned tensor follow by themselves
MAX_VALUES = 400


@dataclass
class Region:
    """The heads' Units on every tensor of one attention sublayer, and where pruning must slice."""

    units: dict[int, Units] = field(default_factory=dict)  # id(value) -> where the heads are
    values: dict[int, Value] = field(default_factory=dict)
    ops: list[tuple[Op, Units]] = field(default_factory=list)  # every op whose result carries heads
    sources: list[tuple[object, Units]] = field(default_factory=list)  # (Projection, Units of its output)
    sinks: list[tuple[object, Units]] = field(default_factory=list)  # (Projection, Units of its input)
    tables: list[tuple[Op, int, Units]] = field(default_factory=list)  # (user, operand index, Units) of constants
    backward: list[Op] = field(default_factory=list)  # ops reached against the flow (side terms)

    def of(self, v: Value) -> Units | None:
        return self.units.get(id(v))

    def shared(self) -> list[Op]:
        """Side-term ops whose result other sublayers read too: pruning copies them for this one."""
        inside = {id(op) for op, _ in self.ops} | {id(p.op) for p, _ in self.sinks}
        return [op for op in self.backward if any(id(u) not in inside and u.kind not in IGNORED_USERS
                                                 for u in op.result.users)]


def _elementwise_operand(op: Op, j: int, r: Units) -> Units | None:
    """Where the heads of ``op``'s result sit in operand ``j`` (None: it is broadcast along them)."""
    v = op.operands[j]
    at = r.axis - (op.result.type.rank - v.type.rank)
    if at < 0 or v.shape[at] == 1:
        return None
    return Units(at, r.count, r.inner)


def _matmul_operand(op: Op, j: int, r: Units) -> Units | None:
    """matmul: the heads of the result on a batch axis, in operand ``j`` (broadcast: None)."""
    rank = op.result.type.rank
    if r.axis >= rank - 2:
        raise LayoutError(f"the heads reach the matmul at {op.loc} on axis {r.axis} of {op.result.type}, "
                          "not on a batch axis")
    return _elementwise_operand(op, j, r)


def _matmul_result(op: Op, i: int, u: Units) -> Units:
    x = op.operands[i]
    if u.axis >= x.type.rank - 2:
        raise LayoutError(f"the heads reach the matmul at {op.loc} on axis {u.axis} of {x.type}, "
                          "not on a batch axis")
    return Units(u.axis + op.result.type.rank - x.type.rank, u.count, u.inner)


def _einsum_specs(op: Op) -> tuple[list[str], str]:
    from ..ops.linalg import parse_equation

    return parse_equation(op.attrs["equation"])


def _einsum_result(op: Op, i: int, u: Units) -> Units:
    ins, out = _einsum_specs(op)
    c = ins[i][u.axis]
    if c not in out:
        raise LayoutError(f"the heads are contracted by the einsum at {op.loc}")
    return Units(out.index(c), u.count, u.inner)


def _einsum_operand(op: Op, j: int, r: Units) -> Units | None:
    ins, out = _einsum_specs(op)
    c = out[r.axis]
    if c not in ins[j] or op.operands[j].shape[ins[j].index(c)] == 1:
        return None
    return Units(ins[j].index(c), r.count, r.inner)


def _axis_of(op: Op, rank: int) -> int:
    return int(op.attrs.get("axis", -1)) % rank


def _check_not_along(op: Op, u: Units, axes: list[int], x: Value) -> None:
    if u.axis in axes:
        raise LayoutError(f"{op.kind} at {op.loc} works along axis {u.axis} of {x.type}, which holds the heads")


def _slice_keeps(op: Op, u: Units, x: Value) -> None:
    """A slice may cut any axis but the heads' unless it keeps whole blocks of all the heads (a third of a
    fused [q|k|v] projection: bounds at multiples of count*inner, whose pruning rescales them)."""
    a = op.attrs
    block = u.count * u.inner if isinstance(u.inner, int) else None
    for k, axis in enumerate(a.get("axes") or range(len(a["starts"]))):
        if int(axis) % x.type.rank != u.axis:
            continue
        steps = a.get("steps") or []
        step = int(steps[k]) if k < len(steps) else 1
        dim = x.shape[u.axis]
        start, end = int(a["starts"][k]), int(a["ends"][k])
        if start == 0 and step == 1 and end >= (dim if isinstance(dim, int) else 2**62):
            continue
        if block and isinstance(dim, int) and step == 1 and 0 <= start < dim and start % block == 0 and \
                (end >= dim or (end > start and end % block == 0)):
            continue
        raise LayoutError(f"slice at {op.loc} cuts axis {u.axis} of {x.type}, which holds the heads")


def flat_gather_source(op: Op) -> tuple[Value, int] | None:
    """``gather(reshape(P, [-1, R...]), idx + row offsets)``: the importer's batched gather (tf.gather with
    batch_dims=b, take_along_axis), as (P, b).  Its result keeps P's first b axes."""
    if op.kind != "gather" or int(op.attrs.get("axis", 0)) != 0:
        return None
    flat = op.operands[0].producer
    if flat is None or flat.kind != "reshape":
        return None
    p = flat.operands[0]
    b = p.type.rank - op.operands[0].type.rank
    idx = op.operands[1]
    if b < 1 or idx.type.rank < b or any(d != e for d, e in zip(idx.shape[:b], p.shape[:b]) if "?" not in (d, e)):
        return None
    return p, b


def _at(op: Op, fn):
    """``fn()``, with a LayoutError that does not say where it happened placed at ``op``."""
    try:
        return fn()
    except LayoutError as e:
        if " at loc(" in str(e):
            raise
        raise LayoutError(f"{op.kind} at {op.loc}: {e}") from None


def result_units(op: Op, i: int, u: Units) -> Units:
    """The heads of ``op``'s result, from those of operand ``i`` (``LayoutError`` if they mix)."""
    x = op.operands[i]
    kind = op.kind
    if kind in MOVES or kind in ("tile",):
        if kind == "tile":
            return u
        if kind == "reshape" and i != 0:
            raise LayoutError(f"reshape at {op.loc} takes its target from a tensor that carries the heads")
        return _at(op, lambda: follow(op, x, u))
    if kind in ELEMENTWISE or (kind == "expand" and i == 0):
        return Units(u.axis + op.result.type.rank - x.type.rank, u.count, u.inner)
    if kind == "matmul":
        return _matmul_result(op, i, u)
    if kind == "einsum":
        return _einsum_result(op, i, u)
    if kind in ("softmax", "layer_norm", "log_softmax"):
        _check_not_along(op, u, [_axis_of(op, x.type.rank)], x)
        return u
    if kind == "slice" and i == 0:
        _slice_keeps(op, u, x)
        return u
    if kind == "concat":
        _check_not_along(op, u, [_axis_of(op, x.type.rank)], x)
        return u
    if kind == "gather" and i == 0:
        return _gather_result(op, u)
    if kind in REDUCTIONS:
        axes = _reduced_axes(op, x)
        _check_not_along(op, u, axes, x)
        return u if op.attrs["keepdims"] else Units(u.axis - sum(a < u.axis for a in axes), u.count, u.inner)
    raise LayoutError(f"{kind} at {op.loc} is not an op the head analysis can follow")


# Reductions along other axes than the heads' (the sum that renormalizes masked probabilities).
REDUCTIONS = {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"}


def _reduced_axes(op: Op, x: Value) -> list[int]:
    return sorted({int(a) % x.type.rank for a in op.attrs["axes"]})


def _gather_result(op: Op, u: Units) -> Units:
    x, idx = op.operands[0], op.operands[1]
    axis = _axis_of(op, x.type.rank)
    if u.axis < axis:
        return u
    if u.axis > axis:
        return Units(u.axis + idx.type.rank - 1, u.count, u.inner)
    src = flat_gather_source(op)
    if src is None:
        raise LayoutError(f"gather at {op.loc} picks along the axis that holds the heads")
    raise LayoutError("flat gather: follow from its source")  # handled by the caller through the source


def operand_units(op: Op, j: int, r: Units) -> Units | None:
    """The heads in operand ``j`` of ``op``, from those of its result (None: it does not vary along them)."""
    kind = op.kind
    v = op.operands[j]
    if kind == "reshape":
        return _at(op, lambda: through_reshape(op.result.shape, v.shape, r)) if j == 0 else None
    if kind == "transpose":
        return Units(list(op.attrs["perm"])[r.axis], r.count, r.inner)
    if kind == "unsqueeze":
        axes = [a % op.result.type.rank for a in op.attrs["axes"]]
        if r.axis in axes:
            raise LayoutError(f"unsqueeze at {op.loc} makes the axis of the heads")
        return Units(r.axis - sum(a < r.axis for a in axes), r.count, r.inner)
    if kind == "squeeze":
        axes = [a % v.type.rank for a in op.attrs.get("axes") or [i for i, d in enumerate(v.shape) if d == 1]]
        kept = [i for i in range(v.type.rank) if i not in axes]
        return Units(kept[r.axis], r.count, r.inner)
    if kind == "tile":
        return r if j == 0 else None
    if kind in ELEMENTWISE:
        return _elementwise_operand(op, j, r)
    if kind == "expand":  # broadcast_to/ones_like/fill: its target spells the head count (rewritten like a
        return _elementwise_operand(op, 0, r) if j == 0 else None  # reshape's) or is tf.shape of a head tensor
    if kind == "matmul":
        return _matmul_operand(op, j, r)
    if kind == "einsum":
        return _einsum_operand(op, j, r)
    if kind in ("softmax", "layer_norm", "log_softmax", "concat"):
        if kind == "layer_norm" and j > 0:
            return None
        _check_not_along(op, r, [_axis_of(op, op.result.type.rank)], op.result)
        return r
    if kind == "slice" and j == 0:
        _slice_keeps(op, r, v)
        return r
    if kind == "gather":
        return _gather_operand(op, j, r)
    if kind in REDUCTIONS:
        axes = _reduced_axes(op, v)
        if op.attrs["keepdims"]:
            _check_not_along(op, r, axes, v)
            return r
        kept = [a for a in range(v.type.rank) if a not in axes]
        return Units(kept[r.axis], r.count, r.inner)
    raise LayoutError(f"{kind} at {op.loc} makes a term that varies along the heads, "
                      "in a way the head analysis cannot follow")


def _gather_operand(op: Op, j: int, r: Units) -> Units | None:
    x, idx = op.operands[0], op.operands[1]
    axis = _axis_of(op, x.type.rank)
    if j == 1:
        if axis <= r.axis < axis + idx.type.rank:
            raise LayoutError(f"gather at {op.loc}: the heads come from its indices")
        return None
    if r.axis < axis:
        return r
    if r.axis >= axis + idx.type.rank:
        return Units(r.axis - idx.type.rank + 1, r.count, r.inner)
    raise LayoutError(f"gather at {op.loc}: the heads come from its indices")


class _Walker:
    """The propagation: forward through consumers, backward into operands that vary along the heads."""

    def __init__(self, graph_outputs: list[Value], sinks: set[int]) -> None:
        self.region = Region()
        self.outputs = {id(v) for v in graph_outputs}
        self.sink_ops = sinks
        self.todo: list[tuple[Value, bool]] = []
        self.forwarded: set[int] = set()  # values whose consumers were (or will be) followed
        self.done: dict[int, bool] = {}  # id(op) -> reached with the flow (False: as a side term)

    def assign(self, v: Value, u: Units, forward: bool) -> None:
        r = self.region
        old = r.units.get(id(v))
        if old is not None:
            if old != u:
                where = f"made by {v.producer.kind} at {v.producer.loc}" if v.producer else "a graph input"
                raise LayoutError(f"%{v.name} ({where}) would hold the heads both as {old} and as {u}")
            if forward and id(v) not in self.forwarded:  # a side term that turns out to be on the main flow
                self.forwarded.add(id(v))
                self.todo.append((v, True))
            return
        if len(r.units) > MAX_VALUES:
            raise LayoutError(f"the heads spread to more than {MAX_VALUES} tensors")
        r.units[id(v)] = u
        r.values[id(v)] = v
        if id(v) in self.outputs:
            raise LayoutError(f"the heads reach the graph output %{v.name}")
        if forward:
            self.forwarded.add(id(v))
        self.todo.append((v, forward))

    def run(self, seeds: list[tuple[Value, Units]]) -> Region:
        for v, u in seeds:
            self.assign(v, u, True)
        while self.todo:
            v, forward = self.todo.pop(0)
            if forward:
                for op in list(v.users):
                    self._forward(op, v)
            else:
                self._backward(v)
        return self.region

    def _forward(self, op: Op, v: Value) -> None:
        from .structure import as_projection

        if op.kind in IGNORED_USERS:
            return
        u = self.region.units[id(v)]
        proj = as_projection(op)
        if proj is not None and op.operands[0] is v:
            self.region.sinks.append((proj, u))
            return
        for i, x in enumerate(op.operands):
            if x is v:
                self._through(op, i, u)

    def _through(self, op: Op, i: int, u: Units) -> None:
        if op.kind == "gather" and i == 0 and flat_gather_source(op) is not None and \
                u.axis == _axis_of(op, op.operands[0].type.rank):
            p, b = flat_gather_source(op)
            pu = self.region.units.get(id(p))
            if pu is None or pu.axis >= b:
                raise LayoutError(f"gather at {op.loc}: the heads are not among its batch axes")
            r = pu
        else:
            r = result_units(op, i, u)
        self._result(op, r, True)

    def _result(self, op: Op, r: Units, forward: bool) -> None:
        if id(op) in self.done:
            if forward and not self.done[id(op)]:
                self.done[id(op)] = True
                self.region.backward.remove(op)
            self.assign(op.result, r, forward)  # checks that both ways agree
            return
        self.done[id(op)] = forward
        self.region.ops.append((op, r))
        if not forward:
            self.region.backward.append(op)
        self.assign(op.result, r, forward)
        for j, w in enumerate(op.operands):
            if id(w) in self.region.units:
                continue
            wu = self._operand(op, j, r)
            if wu is None:
                continue
            if w.producer is not None and w.producer.kind == "const":
                self.region.tables.append((op, j, wu))
            else:
                self.assign(w, wu, False)

    def _operand(self, op: Op, j: int, r: Units) -> Units | None:
        if op.kind == "gather" and j == 0 and flat_gather_source(op) is not None:
            p, b = flat_gather_source(op)
            if r.axis < b:
                return through_reshape(p.shape, op.operands[0].shape, r)
        if op.kind == "gather" and j == 1 and flat_gather_source(op) is not None:
            # The flat indices (row offsets + positions) follow when computed from shapes; when they are
            # broadcast along the heads by a target that spells the head count (keras-hub DeBERTa-v3's
            # BroadcastTo [batch, heads, q, k]), that target is rewritten: follow them back.
            return _elementwise_operand(op, 1, r)
        return operand_units(op, j, r)

    def _backward(self, v: Value) -> None:
        from .structure import as_projection

        u = self.region.units[id(v)]
        op = v.producer
        if op is None:
            raise LayoutError(f"a term that varies along the heads comes from the graph input %{v.name}")
        if op.kind == "range":  # run-time row offsets: their length is computed from shapes, so it follows
            return  # (a reshape of them is planned, so re-inference checks it got the pruned size)
        for cand in (op, *(w.producer for w in op.operands if op.kind == "add" and not w.is_const())):
            proj = as_projection(cand) if cand is not None else None
            if proj is not None and proj.out is v:
                self.region.sources.append((proj, u))
                return
        self._result(op, u, False)


def head_region(graph: Graph, seeds: list[tuple[Value, Units]], sink_ops: list[Op] = ()) -> Region:
    """Propagate the heads from ``seeds`` (the Q/K/V outputs) over the sublayer; see the module docstring."""
    return _Walker(list(graph.outputs.values()), {id(o) for o in sink_ops}).run(seeds)
