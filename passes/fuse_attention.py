"""Fuse each attention block's head split, scores, softmax and context into ``multi_head_attention``.

What BERT computes between the Q/K/V projections and the output projection,

    reshape q/k/v [B, S, H] -> [B, S, N, D], transpose to [B, N, S, D]
    scores = q k^T (scaled by a constant, on q, k or the scores) + mask
    context = softmax(scores) v, transposed and reshaped back to [B, S, H]

is about a dozen nodes per layer.  At the short sequences of a chat message,
onnxruntime's per-node cost rivals the arithmetic (docs/performance.md), and
its com.microsoft MultiHeadAttention kernel does all of it in one node.

Matching starts from each ``softmax`` and walks the dataflow: back from its
input through scalar ``mul``/``div`` and one ``add`` (the additive mask) to the
scores ``matmul``; back from each scores/context operand through single-use
``reshape``/``transpose``/scalar scalings to the rank-3 q, k, v; forward from
the context through ``transpose``/``reshape`` to the first rank-3 value.
Every intermediate value must be used only inside that region.  Then, as for
the other fusions (bertc.rewrite), the region is *run* on random q, k, v and
mask and compared with the fused op's definition, with the head count read
from the scores' shape and the scale from the constants on the way; a region
that computes anything else (a different head layout, a mask applied another
way) stays as it is, with the reason in the debug log.

Run it after the passes that need the attention structure (pruning,
quantization), since they find heads by this same dataflow.  An
onnxruntime-oriented pass, opt in with ``--passes ...,fuse_attention``; it is
not in the ``ort_fusions`` preset because onnxruntime 1.32's CPU kernel
measured 2-7% slower than the dozen plain nodes it replaces (BERT-base at 16
and 128 tokens, the Sara MiniLM at 8; docs/performance.md).  TFLite, and the
ONNX target's ``contrib=False`` mode, spell the op out again in core ops
(``bertc.ir.decompose``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from bertc.ir import Graph, Loc, Op, Value
from bertc.ir.registry import get_op_def
from bertc.ir.types import DTYPES, is_static
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

MOVES = frozenset({"reshape", "transpose"})
ATOL, RTOL = 1e-5, 1e-4


class NoMatch(Exception):
    """Why a softmax's neighbourhood is not a fusable attention block."""


@dataclass
class Block:
    q: Value
    k: Value
    v: Value
    mask: Value | None
    exit: Value
    heads: int
    scale: float
    ops: list[Op] = field(default_factory=list)


def _single_use(v: Value, graph: Graph) -> bool:
    return len(v.uses) == 1 and all(o is not v for o in graph.outputs.values())


def _scalar(v: Value) -> float | None:
    c = v.const_value() if v.is_const() else None
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None


def _unscale(v: Value, graph: Graph, ops: list[Op]) -> tuple[Value, float]:
    """Back through single-use scalar ``mul``/``div``: (the value before them, their product)."""
    scale = 1.0
    while (p := v.producer) is not None and p.kind in ("mul", "div") and _single_use(v, graph):
        a, b = p.operands
        if p.kind == "mul" and _scalar(a) is not None:
            a, b = b, a
        s = _scalar(b)
        if s is None or a.is_const() or s == 0.0:
            break
        scale *= s if p.kind == "mul" else 1.0 / s
        ops.append(p)
        v = a
    return v, scale


def _scores_side(add: Op, graph: Graph) -> int | None:
    """Which operand of an ``add`` before the softmax carries the scores (the other is a mask
    or a constant): the one that leads, through scalar scalings, to the scores matmul, else to
    another such add; None when neither does."""
    for kinds in (("matmul",), ("add",)):
        for i in (0, 1):
            w, _ = _unscale(add.operands[i], graph, [])
            if w.producer is not None and w.producer.kind in kinds and _single_use(w, graph):
                return i
    return None


def _head_source(v: Value, graph: Graph, ops: list[Op]) -> tuple[Value, float]:
    """Back from an attention matmul operand through single-use moves and scalar scalings to
    the [B, S, H] value the heads are cut from: (that value, the scale picked up)."""
    scale = 1.0
    while True:
        v, s = _unscale(v, graph, ops)
        scale *= s
        p = v.producer
        if p is None or p.kind not in MOVES or not _single_use(v, graph):
            break
        ops.append(p)
        v = p.operands[0]
    if v.type.rank != 3:
        raise NoMatch(f"a head input comes from {v.type}, not a [batch, seq, hidden] tensor")
    return v, scale


def match(softmax: Op, graph: Graph) -> Block:
    """The attention block around ``softmax``, or NoMatch with the reason."""
    ops: list[Op] = [softmax]
    if softmax.attrs["axis"] % softmax.result.type.rank != softmax.result.type.rank - 1:
        raise NoMatch("the softmax is not over the last axis")
    v, scale = _unscale(softmax.operands[0], graph, ops)
    terms: list[Value] = []  # what is added to the scores: the mask, and constants
    while (p := v.producer) is not None and p.kind == "add" and _single_use(v, graph):
        side = _scores_side(p, graph)
        if side is None:
            break
        inner: list[Op] = []
        w, s = _unscale(p.operands[side], graph, inner)
        ops += [p, *inner]
        terms.append(p.operands[1 - side])
        v, scale = w, scale * s
    masks = [x for x in terms if not x.is_const()]
    if len(masks) > 1 or any(x.is_const() and x.const_value().size != 1 for x in terms):
        raise NoMatch("the scores get more than one mask, or a constant that is not a scalar")
    mask = masks[0] if masks else None  # a scalar constant shifts every score alike: softmax ignores it
    scores = v.producer
    if scores is None or scores.kind != "matmul" or not _single_use(v, graph):
        raise NoMatch("the softmax's input is not a (scaled, masked) matmul")
    ops.append(scores)
    if scores.result.type.rank != 4 or not is_static(scores.result.shape[1]):
        raise NoMatch(f"the scores {scores.result.type} are not [batch, heads, seq, seq] with a known head count")
    probs = softmax.result
    if not _single_use(probs, graph) or probs.uses[0][0].kind != "matmul" or probs.uses[0][1] != 0:
        raise NoMatch("the probabilities are not used once, as the left side of a matmul")
    context = probs.uses[0][0]
    ops.append(context)
    q, sq = _head_source(scores.operands[0], graph, ops)
    k, sk = _head_source(scores.operands[1], graph, ops)
    vv, sv = _head_source(context.operands[1], graph, ops)
    if sv != 1.0:
        raise NoMatch("the values are scaled")
    out = context.result
    while out.type.rank != 3:
        if not _single_use(out, graph) or out.uses[0][0].kind not in MOVES or out.uses[0][1] != 0:
            raise NoMatch("the context does not go straight back to [batch, seq, hidden]")
        out = out.uses[0][0].result
        ops.append(out.producer)
    if mask is not None and (mask.type.rank != 4 or mask.dtype != q.dtype):
        raise NoMatch(f"the mask {mask.type} is not a 4-D additive mask")
    inside = {id(r) for op in ops for r in op.results}
    allowed = inside | {id(x) for x in (q, k, vv, mask) if x is not None}
    for op in ops:
        for x in op.operands:
            if id(x) not in allowed and not x.is_const():
                raise NoMatch(f"{op.kind} at {op.loc.primary} also reads {x.name} (shape arithmetic? "
                              "run simplify_shapes first)")
    for op in ops:
        for r in op.results:
            if r is not out and (any(id(u) not in {id(o) for o in ops} for u in r.users)
                                 or any(o is r for o in graph.outputs.values())):
                raise NoMatch(f"{r.name} is used outside the attention block")
    order = {id(op): i for i, op in enumerate(graph.ops)}
    return Block(q, k, vv, mask, out, int(scores.result.shape[1]), scale * sq * sk,
                 sorted(ops, key=lambda op: order[id(op)]))


def _sizes(values: list[Value]) -> dict:
    """A size for every symbolic dim, shared across the values (batch 2, then 5, 7, ...)."""
    sizes: dict = {}
    for v in values:
        for d in v.shape:
            if not is_static(d) and d not in sizes:
                sizes[d] = (2, 5, 7, 3)[min(len(sizes), 3)]
    return sizes


def computes_attention(block: Block, rng: np.random.Generator, trials: int = 2) -> bool:
    """Does the region compute multi_head_attention(q, k, v, mask) on random inputs?"""
    inputs = [x for x in (block.q, block.k, block.v, block.mask) if x is not None]
    sizes = _sizes(inputs)
    attrs = {"num_heads": block.heads, "scale": block.scale}
    kernel = get_op_def("multi_head_attention").kernel
    for _ in range(trials):
        env = {}
        for x in inputs:
            shape = [int(d) if is_static(d) else sizes[d] for d in x.shape]
            env[id(x)] = rng.standard_normal(shape).astype(DTYPES[x.dtype])
        try:
            for op in block.ops:
                args = [x.const_value() if x.is_const() else env[id(x)] for x in op.operands]
                for r, a in zip(op.results, get_op_def(op.kind).run(op, args)):
                    env[id(r)] = a
            want = kernel(attrs, *(env[id(x)] for x in inputs))
        except Exception as e:  # shapes that do not split into the heads, and the like
            log.debug("attention check failed to run: %s", e)
            return False
        got = env[id(block.exit)]
        if got.shape != want.shape or not np.allclose(got, want, atol=ATOL, rtol=RTOL):
            return False
    return True


def fuse(block: Block, graph: Graph) -> Op:
    operands = [block.q, block.k, block.v] + ([block.mask] if block.mask is not None else [])
    fused = graph.add("multi_head_attention", operands, {"num_heads": block.heads, "scale": block.scale},
                      Loc.fused(op.loc for op in block.ops), "attention", before=block.exit.producer)
    block.exit.replace_all_uses_with(fused.result)
    for op in reversed(block.ops):
        graph.erase(op)
    return fused


@register_pass
@dataclass(frozen=True)
class FuseAttention(Pass):
    """Fuse head split + scaled, masked softmax(q k^T) v + head merge into multi_head_attention
    (onnxruntime MultiHeadAttention)."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        rng = np.random.default_rng(0)
        count, skipped = 0, []
        for softmax in [op for op in graph.ops if op.kind == "softmax"]:
            try:
                block = match(softmax, graph)
            except NoMatch as e:
                skipped.append(f"{softmax.loc.primary}: {e}")
                continue
            if block.q.type.shape[2] != block.k.type.shape[2] or not computes_attention(block, rng):
                skipped.append(f"{softmax.loc.primary}: the block does not compute multi-head attention "
                               f"with {block.heads} heads and scale {block.scale:g}")
                continue
            fuse(block, graph)
            count += 1
        for why in skipped:
            log.debug("softmax not fused: %s", why)
        ctx.report.setdefault("fusions", {})["multi_head_attention"] = count
        if skipped:
            ctx.report["fusions"]["multi_head_attention_skipped"] = skipped[:8]
        return count > 0
