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
as in Keras' einsum kernels), and ``head_ops``, the reshapes/transposes between
the projections and the attention matmuls.  The FFN width lives in the up
kernel's output axis, its bias, the down kernel's input axis and ``width_ops``.
An FFN whose layer has no attention any more (every head pruned) is still
found, by its dense -> activation -> dense -> residual layer norm shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.graph import Graph, Op, Value

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


@dataclass
class FeedForward:
    up: Projection
    activation: Op
    down: Projection
    norm: Op | None = None
    width_ops: list[Op] = field(default_factory=list)  # data movement between activation and down

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
            v = src
            continue
        proj = as_projection(op)
        if proj is not None:
            return proj
        src = _data_input(op) if op.kind in PASS_THROUGH else None
        if src is None:
            raise MatchFailed(f"stopped at {op.kind} {op.loc}")
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
            raise MatchFailed(f"stopped at {op.kind} {op.loc}")
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


def match_attention(softmax: Op) -> Attention:
    scores, swapped = _scores_matmul(softmax)
    context = _probs_consumer(softmax)
    head_ops: list[Op] = []
    qi = _query_operand(scores) ^ int(swapped)
    q = trace_back(scores.operands[qi], head_ops)
    k = trace_back(scores.operands[1 - qi], head_ops)
    v = trace_back(context.operands[1], head_ops)
    o = trace_forward(context.result, head_ops)
    probs_shape = softmax.result.shape
    heads = probs_shape[1] if len(probs_shape) == 4 else None
    head_size = _head_size(scores, qi)
    if not isinstance(heads, int) or not isinstance(head_size, int):
        raise MatchFailed(f"attention probabilities {softmax.result.type} do not show the head count")
    if q.out_features != heads * head_size:
        raise MatchFailed(f"Q projection has {q.out_features} outputs, not heads*head_size={heads * head_size}")
    return Attention(softmax, scores, context, q, k, v, o, heads, head_size,
                     [op for op in head_ops if op.kind in ("reshape", "transpose")], _residual_norm(o.out))


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
    return FeedForward(up, act, down, _residual_norm(down.out), width_ops)


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
    return FeedForward(up, act, down, norm, width_ops)


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
