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
projections and the output projection with the axis that holds the heads in its
result, found by following the head axis over the whole sublayer
(``bertc.analysis.region``): side terms that vary along the heads (MPNet's
relative-position bias table, DeBERTa's c2p/p2c position keys, per-head
biases, RoFormer's rotated copies) are part of it and sliced with the heads.  The head count is the output
projection's width over the head size the scores contract; a fused QKV projection holds them per head
([heads, q|k|v], DeBERTa's in_proj) or per third ([q|k|v], each third all the heads: tf.split or a reshape to
[.., 3, heads, head_size] cuts it), whichever the head axis can be followed from (``Attention.qkv_units``).  Heads may sit
on an axis of their own, be merged with head_size ([batch*seq, 64] in Google's modeling.py) or with batch; each chain
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
from .projection import MatchFailed, Projection, _non_const, as_projection  # noqa: F401 (re-exported)
from .region import Region, head_region
from .written_out import ACTIVATIONS, activation_of, dense_readers, past_written_out_norm  # noqa: F401

# Ops that move or rescale data without mixing positions: tracing goes through them.
PASS_THROUGH = {"transpose", "reshape", "mul", "div", "identity", "cast", "squeeze", "unsqueeze", "where"}
# Tracing back from the scores also goes through elementwise combinations and pieces of one tensor
# (RoFormer's q*cos + rotate(q)*sin, DeBERTa's split of a fused QKV projection): it follows every branch
# and accepts them when all the branches that reach a dense layer reach the same one.
BACK_THROUGH = PASS_THROUGH | {"add", "sub", "neg", "slice", "concat", "tile"}
# Between the scores and the softmax, and between the softmax and the context matmul (masks, scaling,
# DeBERTa's XSoftmax: where(mask, -inf, scores) -> softmax -> where(mask, 0, probs)).
SCORE_PATH = {"add", "sub", "mul", "div", "where", "cast", "identity", "reshape", "transpose"}


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
    # every tensor that carries the heads, and the side terms (tables, position projections) to slice
    region: Region | None = None
    qkv_units: dict[int, Units] = field(default_factory=dict)  # id(Q/K/V op) -> the heads in its output

    @property
    def projections(self) -> list[Projection]:
        """Q, K, V without repeats (a fused QKV projection plays all three roles)."""
        return _distinct([self.q, self.k, self.v])

    def group_size(self, p: Projection) -> int:
        """The features per head of one of the Q/K/V projections (head_size, or more when fused)."""
        return p.out_features // self.heads

    def split(self, p: Projection) -> tuple[int, int]:
        """How a Q/K/V projection's single output axis holds the heads, as (outer, size): (1, group_size)
        per head ([heads, q|k|v]), or (3, head_size) for a fused [q|k|v] kernel cut into thirds."""
        u = self.qkv_units.get(id(p.op))
        if u is None or len(p.kernel_axes()[1]) != 1 or not isinstance(u.inner, int):
            return 1, self.group_size(p)
        return p.out_features // (self.heads * u.inner), u.inner


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
    notes: list[str] = field(default_factory=list)  # what the analysis found that is not a problem


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
            if layer.notes:
                d["notes"] = layer.notes
            out.append(d)
        return out


def _activation_name(op: Op) -> str:
    if op.kind not in ACTIVATIONS:
        return f"elementwise (ends in {op.kind})"
    if op.kind == "gelu":
        return "gelu" if op.attrs["approximate"] == "none" else "gelu_tanh"
    return op.kind


def _data_input(op: Op) -> Value | None:
    """The tensor a data-movement op moves: a reshape's first operand (its target may be
    computed from tf.shape pieces), else the op's only non-constant operand."""
    if op.kind == "reshape":
        return op.operands[0]
    nc = _non_const(op)
    return nc[0] if len(nc) == 1 else None


def _not_followed(op: Op) -> str:
    """Why tracing stops at ``op``: a matmul without a constant kernel, or an op that is not data movement."""
    if op.kind in ("matmul", "einsum") and len(op.operands) == 2 and not op.operands[1].is_const():
        src = op.operands[1].producer
        made = f" (made by {src.kind} at {src.loc})" if src is not None else " (a graph input)"
        return f"{op.kind} at {op.loc} is not a dense layer: its kernel %{op.operands[1].name}{made} is not a constant"
    return f"stopped at {op.kind} {op.loc}, which is neither a dense layer nor data movement"


def _back_inputs(op: Op) -> list[Value]:
    """The operands tracing follows back from ``op``: a reshape's data, else its non-constant operands
    (a where's condition is a mask, not data)."""
    if op.kind in ("reshape", "tile"):
        return [op.operands[0]]
    if op.kind == "where":
        return [v for v in op.operands[1:] if not v.is_const()]
    return _non_const(op)


def trace_back(v: Value, seen: list[Op], depth: int = 24) -> Projection:
    """Follow ``v`` backwards through data movement to the projection that made it."""
    for _ in range(depth):
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
        srcs = _back_inputs(op) if op.kind in BACK_THROUGH else []
        if not srcs:
            raise MatchFailed(_not_followed(op))
        seen.append(op)
        if len(srcs) > 1:
            return _trace_branches(op, srcs, seen, depth)
        v = srcs[0]
    raise MatchFailed(f"no projection within {depth} ops")


def _trace_branches(op: Op, srcs: list[Value], seen: list[Op], depth: int) -> Projection:
    """The one projection the branches of ``op`` that reach a dense layer all reach."""
    found, errors = [], []
    for src in srcs:
        try:
            found.append(trace_back(src, seen, depth // 2))
        except MatchFailed as e:
            errors.append(str(e))
    if not found:
        raise MatchFailed(errors[0])
    if len({id(p.op) for p in found}) > 1:
        locs = ", ".join(str(p.op.loc) for p in found)
        raise MatchFailed(f"{op.kind} at {op.loc} combines the outputs of different dense layers ({locs})")
    return found[0]


def trace_forward(v: Value, seen: list[Op]) -> Projection:
    """Follow ``v`` forwards through data movement to the projection it feeds."""
    for _ in range(12):
        users = [u for u in v.users if u.kind != "shape"]  # run-time shapes follow the pruned tensor
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
    """The context matmul, possibly behind a mask select, a dropout-free mul, a reshape, or the
    probabilities times a 0/1 mask and divided by their new sum (masking after the softmax)."""
    v = softmax.result
    for _ in range(6):
        users = [u for u in v.users if u.kind != "shape"]
        mm = [u for u in users if u.kind in ("matmul", "einsum") and u.operands[0] is v]
        if mm:
            return mm[0]
        nxt = [u for u in users if u.kind in SCORE_PATH
               and (_data_input_of(u) is v or (u.kind in ("mul", "div") and u.operands[0] is v))]
        if len(nxt) != 1:
            break
        v = nxt[0].result
    raise MatchFailed(f"no context matmul after softmax {softmax.loc}")


def _data_input_of(op: Op) -> Value | None:
    """The probabilities' operand of an op after the softmax: a where's non-constant branch, else the data."""
    if op.kind == "where":
        nc = [v for v in op.operands[1:] if not v.is_const()]
        return nc[0] if len(nc) == 1 else None
    return _data_input(op)


def _scores_matmul(softmax: Op) -> tuple[Op, bool]:
    """The q·k matmul feeding the softmax, and whether its rows/columns were swapped since.

    Walks back through masks, scaling and additive score terms (relative-position biases, DeBERTa's
    c2p/p2c); of the matmuls found, the first whose two operands both come from dense layers is q·k.
    """
    frontier: list[tuple[Value, bool]] = [(softmax.operands[0], False)]
    candidates: list[tuple[Op, bool]] = []
    for _ in range(8):
        nxt = []
        for v, swapped in frontier:
            op = v.producer
            if op is None or op.kind == "const":
                continue
            if op.kind in ("matmul", "einsum") and not any(x.is_const() for x in op.operands):
                candidates.append((op, swapped))
                continue
            if op.kind not in SCORE_PATH:
                continue
            if op.kind == "transpose":
                perm = op.attrs["perm"]
                swapped ^= perm[-2:] == [len(perm) - 1, len(perm) - 2]
            nxt += [(x, swapped) for x in _back_inputs(op)]
        frontier = nxt
    for op, swapped in candidates:
        try:
            for x in op.operands:
                trace_back(x, [])
        except MatchFailed:
            continue
        return op, swapped
    if candidates:
        return candidates[0]
    raise MatchFailed(f"no scores matmul before softmax {softmax.loc}")


def _no_norm(op: Op) -> Op | None:
    """MobileBERT's NoNorm: x * gamma + beta with constant vectors; the op that ends it."""
    if op.kind != "mul" or len(_non_const(op)) != 1:
        return None
    users = op.result.users
    if len(users) == 1 and users[0].kind == "add" and len(_non_const(users[0])) == 1:
        return users[0]
    return None


def _norm_at(op: Op) -> Op | None:
    if op.kind == "layer_norm":
        return op
    return _no_norm(op)


def _residual_norm(v: Value) -> Op | None:
    """The layer norm (or NoNorm) after ``v`` + residual.  In a pre-norm layer the sum also
    feeds the next residual add, in whichever order the graph lists them: any reader counts."""
    users = v.users
    if len(users) == 1 and users[0].kind == "add":
        nxt = users[0].result.users
        if len(nxt) >= 1:
            return _norm_at(nxt[0]) or next((n for n in map(_norm_at, nxt[1:]) if n is not None), None)
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


def _distinct(projections: list[Projection]) -> list[Projection]:
    out: list[Projection] = []
    for p in projections:
        if all(p.op is not q.op for q in out):
            out.append(p)
    return out


def _count_heads(q: Projection, k: Projection, v: Projection, o: Projection, head_size: int) -> int:
    """Heads = the output projection's width over head_size; each of Q, K, V must hold them in groups of
    head_size, or of head_size times the roles a fused QKV projection plays (DeBERTa's in_proj: [heads, q|k|v
    of head_size]).  One projection may also play several roles with one group each: CSE merges Q, K and V
    when their weights are equal (keras-hub's ESM initializes them from one seed)."""
    roles = {id(p.op): sum(r.op is p.op for r in (q, k, v)) for p in (q, k, v)}
    if o.in_features % head_size:
        raise MatchFailed(f"O projection at {o.op.loc} has {o.in_features} features, not a multiple of "
                          f"head_size={head_size}")
    heads = o.in_features // head_size
    for name, p in (("Q", q), ("K", k), ("V", v)):
        n = p.out_features
        if not any(n == heads * head_size * r for r in range(1, roles[id(p.op)] + 1)):
            raise MatchFailed(f"{name} projection at {p.op.loc} has {n} features, not heads*head_size="
                              f"{heads}*{head_size}")
    return heads


def _region(graph: Graph, qkv: list[Projection], o: Projection, heads: int,
            seeds: dict[int, Units]) -> Region:
    """The heads followed over the sublayer; every dense layer that reads them must be O, reading them as
    its kernel does, and every one whose output brings them must be sliceable into the heads."""
    try:
        region = head_region(graph, [(p.out, seeds[id(p.op)]) for p in qkv])
    except LayoutError as e:
        raise MatchFailed(f"following the heads: {e}") from None
    for p, u in region.sinks:
        if p.op is not o.op:
            raise MatchFailed(f"the heads reach the dense layer at {p.op.loc} besides the output projection")
        if u != o.units("in", heads):
            raise MatchFailed(f"the output projection at {o.op.loc} reads the heads as {o.units('in', heads)}, "
                              f"but the context brings them as {u}")
    if not region.sinks:
        raise MatchFailed(f"the heads never reach the output projection at {o.op.loc}")
    for p, u in region.sources:
        if p.out_features % heads or u != p.units("out", heads):
            raise MatchFailed(f"the dense layer at {p.op.loc} adds a per-head term, but its {p.out_features} "
                              f"outputs do not hold the {heads} heads as {u}")
    return region


def _thirds(qkv: list[Projection], roles: list[Projection], heads: int, head_size: int) -> dict[int, Units] | None:
    """Seeds for a fused projection whose output axis is [q|k|v], each third holding every head (split by
    tf.split, or reshaped to [.., 3, heads, head_size]), rather than [heads, q|k|v]; None if none is fused."""
    seeds, fused = {}, False
    for p in qkv:
        n = sum(r.op is p.op for r in roles)
        u = p.units("out", heads)
        if n > 1 and len(p.kernel_axes()[1]) == 1 and p.out_features == n * heads * head_size:
            u, fused = Units(u.axis, heads, head_size), True
        seeds[id(p.op)] = u
    return seeds if fused else None


def _fused_region(graph: Graph, qkv: list[Projection], roles: list[Projection], o: Projection, heads: int,
                  head_size: int) -> tuple[Region, dict[int, Units]]:
    """The region from per-head groups of Q/K/V, or else (a fused kernel) from its thirds' heads."""
    seeds = {id(p.op): p.units("out", heads) for p in qkv}
    try:
        return _region(graph, qkv, o, heads, seeds), seeds
    except MatchFailed:
        thirds = _thirds(qkv, roles, heads, head_size)
        if thirds is None:
            raise
        try:
            return _region(graph, qkv, o, heads, thirds), thirds
        except MatchFailed as e:
            raise MatchFailed(f"{e} (and as thirds of a fused QKV projection)") from None


def match_attention(softmax: Op, graph: Graph) -> Attention:
    scores, swapped = _scores_matmul(softmax)
    context = _probs_consumer(softmax)
    qi = _query_operand(scores) ^ int(swapped)
    q = trace_back(scores.operands[qi], [])
    k = trace_back(scores.operands[1 - qi], [])
    v = trace_back(context.operands[1], [])
    o = trace_forward(context.result, [])
    head_size = _head_size(scores, qi)
    if len(softmax.result.shape) < 3 or not isinstance(head_size, int) or head_size <= 0:
        raise MatchFailed(f"attention probabilities {softmax.result.type} do not show the head size")
    heads = _count_heads(q, k, v, o, head_size)
    region, seeds = _fused_region(graph, _distinct([q, k, v]), [q, k, v], o, heads, head_size)
    ctx_units = region.of(context.result)
    if ctx_units is None:
        raise MatchFailed(f"the heads of V do not reach the context matmul at {context.loc}")
    paths = region.ops
    head_ops = [op for op, _ in paths if op.kind in ("reshape", "transpose")]
    return Attention(softmax, scores, context, q, k, v, o, heads, head_size, head_ops, _residual_norm(o.out),
                     paths, ctx_units, region, seeds)


def match_ffn(start: Value) -> FeedForward:
    users = dense_readers(start)
    if not users and (normed := past_written_out_norm(start)) is not None:
        users = dense_readers(normed)
    if not users:
        raise MatchFailed(f"no dense layer reads the attention output %{start.name}")
    up = as_projection(users[0])
    act = activation_of(up.out)
    if act is None:
        raise MatchFailed(f"the first FFN dense layer at {up.op.loc} is not followed by an activation")
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
            layer.attention = match_attention(sm, graph)
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


def _stacked_on(ffn: FeedForward, prev: Layer) -> bool:
    """MobileBERT's stacked FFNs (num_feedforward_networks): this FFN reads the previous one's norm."""
    last = prev.ffn
    return last is not None and last.norm is not None and ffn.up.op.operands[0] is last.norm.result


def _add_orphan_ffns(graph: Graph, layers: list[Layer], softmaxes: list[Op]) -> list[Layer]:
    """Give FFNs that no attention led to a layer, keeping layers in graph order.

    An orphan FFN joins the layer just before it when that layer has no FFN
    (its attention failed to match, or its FFN does not read the attention
    output directly, as in pre-norm encoders); otherwise it is a layer of its own: a layer whose
    attention is gone, or one of MobileBERT's stacked FFNs (each prunable as an FFN; the bottleneck
    dense layers around them are no FFN and keep their widths).
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
        if prev is not None and _stacked_on(ffn, prev):
            orphan = Layer(-1, None, ffn, [], [f"stacked feed-forward: reads the one at {prev.ffn.up.op.loc}"])
        else:
            orphan = Layer(-1, None, ffn, ["no attention sublayer before this feed-forward (all heads pruned?)"])
        anchored.append((at, orphan))
    ordered = [layer for _, layer in sorted(anchored, key=lambda t: t[0])]
    for i, layer in enumerate(ordered):
        layer.index = i
    return ordered
