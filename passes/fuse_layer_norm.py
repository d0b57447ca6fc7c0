"""Fuse the spelled-out layer normalisation into one ``layer_norm`` op.

    mean = reduce_mean(x, [-1]);  var = reduce_mean((x - mean)^2, [-1])
    y = (x - mean) * rsqrt(var + eps) * gamma + beta          -> layer_norm(x, gamma, beta, eps)

TF, Keras and Hugging Face spell this differently (gamma folded into the
rsqrt, ``beta - mean * inv`` added last, ``SquaredDifference`` or ``sub``/
``mul``).  The region from each ``reduce_mean`` over the last axis is run on
random inputs; gamma and beta are solved for per channel, must equal constants
of the region (or ones/zeros when the layer has none), and the fused op must
then reproduce the region's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertc.ir import Graph, Op, Value
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.rewrite import Region, matches, sample_input, single_exit_regions


# What a spelled-out layer norm is made of (anything else ends the search).
LAYER_NORM_KINDS = frozenset({"reduce_mean", "sub", "mul", "add", "div", "rsqrt", "sqrt", "pow", "neg",
                              "reciprocal", "cast", "identity"})


def _epsilon(region: Region) -> float | None:
    """The scalar constant added to the variance."""
    means = [op for op in region.ops if op.kind == "reduce_mean"]
    if len(means) < 2:
        return None
    var = means[1].result
    frontier = [u for u, _ in var.uses]
    for op in frontier:
        if op.kind == "add":
            for v in op.operands:
                c = v.const_value()
                if c is not None and c.size == 1:
                    # the shortest decimal that is this float32 (1e-12, not 9.99999996e-13)
                    return float(str(c.reshape(())))
    return None


def _normalize(x: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdims=True)
    return (x64 - mean) / np.sqrt(var + eps)


def _pick(fitted: np.ndarray, region: Region, default: float) -> np.ndarray | None:
    """The region constant equal to the fitted per-channel vector, else ones/zeros, else None."""
    for c in region.consts():
        if c.size == fitted.size and c.dtype.kind == "f":
            flat = c.reshape(-1).astype(np.float64)
            if np.allclose(flat, fitted, rtol=1e-4, atol=1e-5):
                return c.reshape(-1)
    if np.allclose(fitted, default, atol=1e-5):
        return np.full(fitted.shape, default, np.float32)
    return None


def find_layer_norm(graph: Graph, mean_op: Op, rng: np.random.Generator):
    """The largest region from ``mean_op``'s input that is a layer norm (gamma and beta included)."""
    found = None
    for region in _candidate_regions(graph, mean_op):
        match = _match(region, rng)
        if match is not None:
            found = (region, *match)
    return found


def _candidate_regions(graph: Graph, mean_op: Op):
    x = mean_op.operands[0]
    rank = x.type.rank
    if not mean_op.attrs["keepdims"] or [a % rank for a in mean_op.attrs["axes"]] != [rank - 1]:
        return
    if not isinstance(x.shape[-1], int) or x.shape[-1] < 2:
        return
    yield from single_exit_regions(graph, x, mean_op, max_ops=24, kinds=LAYER_NORM_KINDS)


def _match(region: Region, rng: np.random.Generator):
    """(gamma, beta, eps) when the region computes a layer norm, else None."""
    x = region.input
    eps = _epsilon(region)
    if eps is None or region.exit.type != x.type:
        return None
    xs = sample_input(x, rng, rows=8)
    xs2 = sample_input(x, rng, rows=8)
    try:
        ys = [region.evaluate(a).reshape(-1, x.shape[-1]) for a in (xs, xs2)]
    except Exception:
        return None
    ns = [_normalize(a, eps).reshape(-1, x.shape[-1]) for a in (xs, xs2)]
    n, y = np.concatenate(ns), np.concatenate(ys).astype(np.float64)
    nc = n - n.mean(0)
    gamma = (nc * (y - y.mean(0))).sum(0) / np.maximum((nc * nc).sum(0), 1e-12)
    beta = y.mean(0) - gamma * n.mean(0)
    g, b = _pick(gamma, region, 1.0), _pick(beta, region, 0.0)
    if g is None or b is None:
        return None

    def ref(a, g=g, b=b, eps=eps):
        return (_normalize(a, eps) * g + b).astype(a.dtype)

    if matches(region, ref, rng, atol=1e-4, rtol=1e-4):
        return g, b, eps
    return None


@register_pass
@dataclass(frozen=True)
class FuseLayerNorm(Pass):
    """Replace mean/variance/rsqrt layer-norm subgraphs by one layer_norm op."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        rng = np.random.default_rng(0)
        changed = False
        for op in graph:
            if op.kind != "reduce_mean" or op not in graph.ops:
                continue
            found = find_layer_norm(graph, op, rng)
            if found is None:
                continue
            region, gamma, beta, eps = found
            exit_op = region.exit.producer
            g = _as_operand(graph, region, gamma, "gamma", exit_op)
            b = _as_operand(graph, region, beta, "beta", exit_op)
            fused = graph.add("layer_norm", [region.input, g, b], {"axis": -1, "epsilon": eps}, region.loc,
                              "layer_norm", before=exit_op)
            region.exit.replace_all_uses_with(fused.result)
            eliminate_dead_code(graph)
            changed = True
        return changed


def _as_operand(graph: Graph, region: Region, value: np.ndarray, what: str, before: Op) -> Value:
    """Reuse the region's own constant when it has the right shape, else make one."""
    for op in region.ops:
        for v in op.operands:
            c = v.const_value()
            if c is not None and c.shape == value.shape and np.array_equal(c, value):
                return v
    for op in region.ops:  # same numbers in another shape (e.g. [1, 1, D]): keep the name
        for v in op.operands:
            c = v.const_value()
            if c is not None and c.size == value.size and np.array_equal(c.reshape(-1), value):
                return graph.const(value.astype(np.float32), v.producer.attrs["name"], region.loc, before=before)
    return graph.const(value.astype(np.float32), f"{region.loc.primary}/{what}", region.loc, before=before)
