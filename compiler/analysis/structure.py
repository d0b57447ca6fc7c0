"""Find the transformer structure of a graph: per layer, attention and FFN.

Name-independent: the analysis starts from each attention ``softmax`` and
follows the dataflow.  Scores come from ``matmul(q, k)``; each side is traced
back through transposes, reshapes and scaling to a *projection*: a matmul or
einsum with a constant kernel, plus an optional constant bias add.  The
context ``matmul(probs, v)`` leads to V, and forward to the output projection;
after the residual add and layer norm, the next projection/activation/
projection chain is the FFN.  ``bertc inspect`` prints the result and the
pruning passes rewrite the ops it records.

What carries the head count: the Q/K/V kernels' output axes and biases, the O
kernel's input axes (one axis of heads*head_size, or two axes heads, head_size
as in Keras' einsum kernels), and ``head_paths``, every op between the
projections and the attention matmuls with the axis that holds the heads in its
result (``bertc.analysis.layout``; ``head_ops`` lists their reshapes and
transposes).  The head count is the Q projection's width over the head size the
scores contract, so heads may sit on an axis of their own, be merged with
head_size ([batch*seq, 64] in Google's modeling.py) or with batch; each chain
must bring them to the attention matmuls on a batch axis, and the context must
bring them to the output projection the way its kernel reads them, or the layer
is not matched (with the reason).  The FFN width lives in the up kernel's
output axis, its bias, the down kernel's input axis and ``width_paths``.
An FFN whose layer has no attention any more (every head pruned) is still
found, by its dense -> activation -> dense -> residual layer norm shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Op, Value
from .layout import LayoutError, Units, follow_chain

# Ops that move or rescale data without mixing positions: tracing goes through them.
PASS_THROUGH = {"transpose", "reshape", "mul", "div", "identity", "cast", "squeeze", "unsqueeze", "where"}
ACTIVATIONS = {"gelu", "relu", "tanh", "sigmoid"}


@dataclass
class Projection:
    """x @ kernel (+ bias): a dense layer, as matmul or einsum."""

    op: Op
    kernel: Value
    bias: Value | None = None
    bias_add: Op | None = None

    @property
    def out(self) -> Value:
        return self.bias_add.result if self.bias_add is not None else self.op.result

    def _kernel_axes(self) -> tuple[list[int], list[int]]:
        """Kernel axes that are contracted (inputs) and kept (outputs)."""
        return self.kernel_axes()

    def kernel_axes(self) -> tuple[list[int], list[int]]:
        """Kernel axes that are contracted (inputs) and kept (outputs), in kernel order."""
        rank = self.kernel.type.rank
        if self.op.kind != "einsum":
            return [0], list(range(1, rank))
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(self.op.attrs["equation"])
        spec = ins[1]
        return [i for i, c in enumerate(spec) if c not in out], [i for i, c in enumerate(spec) if c in out]

    def _features(self, axes: list[int]) -> int:
        n = 1
        for a in axes:
            n *= int(self.kernel.shape[a])
        return n

    def units(self, side: str, groups: int) -> Units:
        """Where ``groups`` feature groups sit in the data tensor: the result (``out``) or the input (``in``)."""
        ins, outs = self.kernel_axes()
        axes = outs if side == "out" else ins
        first = int(self.kernel.shape[axes[0]])
        if first % groups:
            raise MatchFailed(f"{self.op.kind} at {self.op.loc}: kernel axis of {first} is not {groups} groups")
        if self.op.kind != "einsum":
            data = self.op.result if side == "out" else self.op.operands[0]
            return Units(data.type.rank - 1, groups, first // groups)
        from ..ops.linalg import parse_equation

        specs, out = parse_equation(self.op.attrs["equation"])
        data_spec = out if side == "out" else specs[0]
        return Units(data_spec.index(specs[1][axes[0]]), groups, first // groups)

    @property
    def in_features(self) -> int:
        return self._features(self._kernel_axes()[0])

    @property
    def out_features(self) -> int:
        return self._features(self._kernel_axes()[1])


@dataclass
class Attention:
    softmax: Op
    scores: Op  # matmul(q, k)
    context: Op  # matmul(probs, v)
    q: Projection
    k: Projection
    v: Projection
    o: Projection
    heads: int
    head_size: int
    head_ops: list[Op] = field(default_factory=list)  # reshapes/transposes that carry the head count
    norm: Op | None = None  # the layer norm after the residual add
    # every op between the projections and the attention matmuls, with where the heads are in its result
    head_paths: list[tuple[Op, Units]] = field(default_factory=list)
    context_units: Units | None = None  # the heads in matmul(probs, V)'s result


@dataclass
class FeedForward:
    up: Projection
    activation: Op
    down: Projection
    norm: Op | None = None
    width_ops: list[Op] = field(default_factory=list)  # data movement between activation and down
    width_paths: list[tuple[Op, Units]] = field(default_factory=list)  # those ops, with the neurons' axis

    @property
    def intermediate(self) -> int:
        return self.up.out_features


@dataclass
class Layer:
    index: int
    attention: Attention | None = None
    ffn: FeedForward | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Structure:
    layers: list[Layer]

    def summary(self) -> list[dict]:
        """A JSON-able digest (stored on the graph as the ``structure`` analysis)."""
        out = []
        for layer in self.layers:
            d: dict = {"layer": layer.index}
            if layer.attention:
                a = layer.attention
                d["attention"] = {"heads": a.heads, "head_size": a.head_size,
                                  **{k: getattr(a, k).op.loc.primary for k in "qkvo"}}
            if layer.ffn:
                d["ffn"] = {"intermediate": layer.ffn.intermediate, "activation": _activation_name(layer.ffn.activation)}
            if layer.problems:
                d["problems"] = layer.problems
            out.append(d)
        return out


class MatchFailed(Exception):
    pass


def _activation_name(op: Op) -> str:
    if op.kind == "gelu":
        return "gelu" if op.attrs["approximate"] == "none" else "gelu_tanh"
    return op.kind


def _non_const(op: Op) -> list[Value]:
    return [v for v in op.operands if not v.is_const()]


def _data_input(op: Op) -> Value | None:
    """The tensor a data-movement op moves: a reshape's first operand (its target may be
    computed from tf.shape pieces), else the op's only non-constant operand."""
    if op.kind == "reshape":
        return op.operands[0]
    nc = _non_const(op)
    return nc[0] if len(nc) == 1 else None


def as_projection(op: Op) -> Projection | None:
    """A matmul/einsum with one constant kernel of rank >= 2 (+ its bias add, if any)."""
    if op.kind not in ("matmul", "einsum") or len(op.operands) != 2:
        return None
    a, b = op.operands
    if not b.is_const() or a.is_const() or b.type.rank < 2:
        return None
    if op.kind == "matmul" and b.type.rank != 2:
        return None
    proj = Projection(op, b)
    users = op.result.users
    if len(users) == 1 and users[0].kind == "add":
        add = users[0]
        other = [v for v in add.operands if v is not op.result]
        if len(other) == 1 and other[0].is_const():
            proj.bias, proj.bias_add = other[0], add
    return proj


def _not_followed(op: Op) -> str:
    """Why tracing stops at ``op``: a matmul without a constant kernel, or an op that is not data movement."""
    if op.kind in ("matmul", "einsum") and len(op.operands) == 2 and not op.operands[1].is_const():
        src = op.operands[1].producer
        made = f" (made by {src.kind} at {src.loc})" if src is not None else " (a graph input)"
        return f"{op.kind} at {op.loc} is not a dense layer: its kernel %{op.operands[1].name}{made} is not a constant"
    return f"stopped at {op.kind} {op.loc}, which is neither a dense layer nor data movement"


def trace_back(v: Value, seen: list[Op]) -> Projection:
    """Follow ``v`` backwards through data movement to the projection that made it."""
    for _ in range(12):
        op = v.producer
        if op is None:
            raise MatchFailed(f"reached graph input %{v.name}")
        if op.kind == "add" and len(_non_const(op)) == 1:  # a bias: the projection is before it
            src = _non_const(op)[0]
            proj = as_projection(src.producer) if src.producer else None
            if proj is not None and proj.bias_add is op:
                return proj
            seen.append(op)
            v = src
            continue
        proj = as_projection(op)
        if proj is not None:
            return proj
        src = _data_input(op) if op.kind in PASS_THROUGH else None
        if src is None:
            raise MatchFailed(_not_followed(op))
        seen.append(op)
        v = src
    raise MatchFailed("no projection within 12 ops")


def trace_forward(v: Value, seen: list[Op]) -> Projection:
    """Follow ``v`` forwards through data movement to the projection it feeds."""
    for _ in range(12):
        users = v.users
        if len(users) != 1:
            raise MatchFailed(f"%{v.name} has {len(users)} users")
        op = users[0]
        proj = as_projection(op)
        if proj is not None and op.operands[0] is v:
            return proj
        if op.kind not in PASS_THROUGH or _data_input(op) is not v:
            raise MatchFailed(_not_followed(op))
        seen.append(op)
        v = op.result
    raise MatchFailed("no projection within 12 ops")


def _probs_consumer(softmax: Op) -> Op:
    """The context matmul, possibly behind a mask select or a dropout-free mul."""
    v = softmax.result
    for _ in range(4):
        users = v.users
        mm = [u for u in users if u.kind in ("matmul", "einsum") and u.operands[0] is v]
        if mm:
            return mm[0]
        nxt = [u for u in users if u.kind in ("where", "mul", "cast", "identity")]
        if len(nxt) != 1:
            break
        v = nxt[0].result
    raise MatchFailed(f"no context matmul after softmax {softmax.loc}")


def _scores_matmul(softmax: Op) -> tuple[Op, bool]:
    """The q·k matmul feeding the softmax, and whether its rows/columns were swapped since."""
    v = softmax.operands[0]
    swapped = False
    for _ in range(6):
        op = v.producer
        if op is None:
            break
        if op.kind in ("matmul", "einsum") and not any(x.is_const() for x in op.operands):
            return op, swapped
        if op.kind == "transpose":
            perm = op.attrs["perm"]
            swapped ^= perm[-2:] == [len(perm) - 1, len(perm) - 2]
        nc = _non_const(op)
        if op.kind == "where":
            nc = [op.operands[1]] if not op.operands[1].is_const() else [op.operands[2]]
        if not nc:
            break
        v = nc[0]
    raise MatchFailed(f"no scores matmul before softmax {softmax.loc}")


def _residual_norm(v: Value) -> Op | None:
    """The layer norm after ``v`` + residual."""
    users = v.users
    if len(users) == 1 and users[0].kind == "add":
        nxt = users[0].result.users
        if len(nxt) >= 1 and nxt[0].kind == "layer_norm":
            return nxt[0]
    if len(users) == 1 and users[0].kind == "layer_norm":
        return users[0]
    return None


def _query_operand(scores: Op) -> int:
    """Which scores operand is the query: the one whose positions are the score rows.

    matmul(q, k^T) puts q first; Keras' einsum ``aecd,abcd->acbe`` puts the key
    first (and TF may turn that einsum into matmul(k, q^T) plus a transpose).
    """
    if scores.kind == "einsum":
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(scores.attrs["equation"])
        return 0 if out[-2] in ins[0] else 1
    return 0


def _head_size(scores: Op, qi: int) -> int | str:
    if scores.kind == "einsum":
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(scores.attrs["equation"])
        contracted = [c for c in ins[qi] if c in ins[1 - qi] and c not in out]
        shape = scores.operands[qi].shape
        return shape[ins[qi].index(contracted[0])] if len(contracted) == 1 else "?"
    return scores.operands[0].shape[-1]


def _along(ops_backward: list[Op], start: Value, u: Units, what: str) -> tuple[list[tuple[Op, Units]], Units]:
    """``u`` followed from ``start`` through a chain collected by ``trace_back`` (so reversed) or forward."""
    try:
        return follow_chain(ops_backward, start, u)
    except LayoutError as e:
        raise MatchFailed(f"{what}: {e}") from None


def _batch_axis_check(mm: Op, index: int, u: Units, what: str) -> None:
    """The heads must be a batch axis of the attention matmul (not contracted, not its rows or columns)."""
    x = mm.operands[index]
    if mm.kind == "einsum":
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(mm.attrs["equation"])
        if ins[index][u.axis] not in out:
            raise MatchFailed(f"{what}: the heads are contracted by the einsum at {mm.loc}")
        return
    if u.axis >= x.type.rank - 2:
        raise MatchFailed(f"{what}: the heads reach the matmul at {mm.loc} on axis {u.axis} of {x.type}, "
                          "not on a batch axis")


def _context_units(context: Op, v_units: Units) -> Units:
    """The heads of V carried through matmul(probs, V) (or its einsum)."""
    if context.kind == "einsum":
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(context.attrs["equation"])
        return Units(out.index(ins[1][v_units.axis]), v_units.count, v_units.inner)
    shift = context.result.type.rank - context.operands[1].type.rank
    return Units(v_units.axis + shift, v_units.count, v_units.inner)


def match_attention(softmax: Op) -> Attention:
    scores, swapped = _scores_matmul(softmax)
    context = _probs_consumer(softmax)
    chains: dict[str, list[Op]] = {n: [] for n in "qkvo"}
    qi = _query_operand(scores) ^ int(swapped)
    q = trace_back(scores.operands[qi], chains["q"])
    k = trace_back(scores.operands[1 - qi], chains["k"])
    v = trace_back(context.operands[1], chains["v"])
    o = trace_forward(context.result, chains["o"])
    head_size = _head_size(scores, qi)
    if len(softmax.result.shape) < 3 or not isinstance(head_size, int) or head_size <= 0:
        raise MatchFailed(f"attention probabilities {softmax.result.type} do not show the head size")
    if q.out_features % head_size:
        raise MatchFailed(f"Q projection has {q.out_features} outputs, not a multiple of head_size={head_size}")
    heads = q.out_features // head_size
    for name, p, n in (("K", k, k.out_features), ("V", v, v.out_features), ("O", o, o.in_features)):
        if n != heads * head_size:
            raise MatchFailed(f"{name} projection at {p.op.loc} has {n} features, not heads*head_size="
                              f"{heads}*{head_size}")
    paths: list[tuple[Op, Units]] = []
    ends = {}
    for name, p, mm, index in (("query", q, scores, qi), ("key", k, scores, 1 - qi), ("value", v, context, 1)):
        path, end = _along(chains[name[0]][::-1], p.out, p.units("out", heads), f"{name} heads")
        _batch_axis_check(mm, index, end, f"{name} heads")
        paths += path
        ends[name] = end
    ctx_units = _context_units(context, ends["value"])
    path, end = _along(chains["o"], context.result, ctx_units, "attention context heads")
    if end != o.units("in", heads):
        raise MatchFailed(f"the output projection at {o.op.loc} reads the heads as {o.units('in', heads)}, "
                          f"but the context brings them as {end}")
    paths += path
    head_ops = [op for op, _ in paths if op.kind in ("reshape", "transpose")]
    return Attention(softmax, scores, context, q, k, v, o, heads, head_size, head_ops, _residual_norm(o.out),
                     paths, ctx_units)


def match_ffn(start: Value) -> FeedForward:
    users = [u for u in start.users if as_projection(u) is not None and u.operands[0] is start]
    if not users:
        raise MatchFailed(f"no dense layer reads the attention output %{start.name}")
    up = as_projection(users[0])
    act_users = up.out.users
    if len(act_users) != 1 or act_users[0].kind not in ACTIVATIONS:
        raise MatchFailed(f"the first FFN dense layer at {up.op.loc} is not followed by an activation")
    act = act_users[0]
    width_ops: list[Op] = []
    down = trace_forward(act.result, width_ops)
    return _feed_forward(up, act, down, _residual_norm(down.out), width_ops)


def _feed_forward(up: Projection, act: Op, down: Projection, norm: Op | None, width_ops: list[Op]) -> FeedForward:
    """The FFN, once the neurons are followed from the activation to the down projection's input."""
    n = up.out_features
    if down.in_features != n:
        raise MatchFailed(f"the FFN down projection at {down.op.loc} has {down.in_features} inputs, "
                          f"the up projection at {up.op.loc} {n} outputs")
    paths, end = _along(width_ops, act.result, up.units("out", n), "FFN neurons")
    if end != down.units("in", n):
        raise MatchFailed(f"the FFN down projection at {down.op.loc} reads the neurons as {down.units('in', n)}, "
                          f"but they arrive as {end}")
    return FeedForward(up, act, down, norm, width_ops, paths)


def _orphan_ffn(act: Op, claimed: set[int]) -> FeedForward | None:
    """dense -> act -> dense -> residual layer norm, not already part of a matched layer.

    Finds the FFN of a layer whose attention is gone (all heads pruned) or failed
    to match.  The residual norm requirement keeps the pooler/classifier out.
    """
    if id(act) in claimed or not act.operands or act.operands[0].producer is None:
        return None
    src = act.operands[0].producer
    up = as_projection(src)
    if up is None and src.kind == "add":
        inner = [v.producer for v in src.operands if v.producer is not None and not v.is_const()]
        up = as_projection(inner[0]) if len(inner) == 1 else None
    if up is None or up.out is not act.operands[0] or len(up.out.users) != 1:
        return None
    try:
        width_ops: list[Op] = []
        down = trace_forward(act.result, width_ops)
    except MatchFailed:
        return None
    norm = _residual_norm(down.out)
    if norm is None:
        return None
    try:
        return _feed_forward(up, act, down, norm, width_ops)
    except MatchFailed:
        return None


def analyze_structure(graph: Graph) -> Structure:
    softmaxes = [op for op in graph.ops if op.kind == "softmax" and op.result.type.rank >= 3]
    layers = []
    for i, sm in enumerate(softmaxes):
        layer = Layer(i)
        try:
            layer.attention = match_attention(sm)
        except MatchFailed as e:
            layer.problems.append(f"attention at softmax {sm.loc}: {e}")
        if layer.attention is not None:
            start = layer.attention.norm.result if layer.attention.norm else layer.attention.o.out
            try:
                layer.ffn = match_ffn(start)
            except MatchFailed as e:
                layer.problems.append(f"feed-forward: {e}")
        layers.append(layer)
    layers = _add_orphan_ffns(graph, layers, softmaxes)
    structure = Structure(layers)
    graph.analyses["structure"] = structure.summary()
    return structure


def _add_orphan_ffns(graph: Graph, layers: list[Layer], softmaxes: list[Op]) -> list[Layer]:
    """Give FFNs that no attention led to a layer, keeping layers in graph order.

    An orphan FFN joins the layer just before it when that layer has no FFN
    (its attention failed to match, or its FFN does not read the attention
    output directly, as in pre-norm encoders); otherwise it is a layer of its own.
    """
    claimed = {id(layer.ffn.activation) for layer in layers if layer.ffn}
    orphans = [f for f in (_orphan_ffn(op, claimed) for op in graph.ops if op.kind in ACTIVATIONS) if f]
    if not orphans:
        return layers
    pos = {id(op): i for i, op in enumerate(graph.ops)}
    anchored = [(pos[id(sm)], layer) for sm, layer in zip(softmaxes, layers)]
    for ffn in orphans:
        at = pos[id(ffn.up.op)]
        before = [(p, layer) for p, layer in anchored if p < at]
        prev = max(before, key=lambda t: t[0])[1] if before else None
        if prev is not None and prev.ffn is None:
            prev.ffn = ffn
            prev.problems = [p for p in prev.problems if not p.startswith("feed-forward:")]
            continue
        orphan = Layer(-1, None, ffn, ["no attention sublayer before this feed-forward (all heads pruned?)"])
        anchored.append((at, orphan))
    ordered = [layer for _, layer in sorted(anchored, key=lambda t: t[0])]
    for i, layer in enumerate(ordered):
        layer.index = i
    return ordered
