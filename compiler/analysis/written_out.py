"""FFN pieces foreign graphs write out op by op, found by what they are made of.

An activation need not be one op: SiLU is ``x * sigmoid(x)``, quick GELU
``x * sigmoid(1.702 x)``, a clipped ReLU ``min(max(x, 0), 6)``.  A norm need not
be one either: the annotated Transformer's ``(x - mean) / (std + eps)`` and
RMSNorm are no layer norm, so nothing fuses them.  ``structure.py`` asks this
module for the op that ends an activation and for the value past a norm that
the FFN's first dense layer reads.
"""

from __future__ import annotations

from ..ir.graph import Op, Value
from .projection import as_projection

ACTIVATIONS = {"gelu", "relu", "tanh", "sigmoid"}


# What an activation written out op by op is made of (x * sigmoid(x), x * sigmoid(1.702 x),
# min(max(x, 0), 6), a GELU the fusion did not recognise): elementwise ops, scalar constants.
ELEMENTWISE = ACTIVATIONS | {"mul", "add", "sub", "div", "neg", "erf", "exp", "log", "pow", "sqrt", "abs",
                             "maximum", "minimum", "reciprocal"}
NONLINEAR = ACTIVATIONS | {"erf", "exp", "log", "pow", "sqrt", "abs", "maximum", "minimum", "reciprocal"}


def activation_of(x: Value, limit: int = 16) -> Op | None:
    """The op that applies the FFN's activation to ``x`` (the up projection's output): its one
    user when that is an activation op, else the op where an elementwise composition of ``x``
    with scalar constants joins back into one value.  None when there is neither."""
    if len(x.users) == 1 and x.users[0].kind in ACTIVATIONS:
        return x.users[0]
    region: dict[int, Op] = {}
    frontier = [x]
    while frontier:  # every elementwise op reachable from x
        for u in frontier.pop().users:
            if u.kind in ELEMENTWISE and as_projection(u) is None and id(u) not in region:
                region[id(u)] = u
                frontier.append(u.result)
                if len(region) > limit:
                    return None
    inside = {id(x)} | {id(op.result) for op in region.values()}
    for op in region.values():
        if any(id(o) not in inside and not (o.is_const() and o.type.num_elements == 1) for o in op.operands):
            return None  # reads something else: a residual, a per-neuron constant
    exits = [v for v in (x, *(op.result for op in region.values()))
             if any(id(u) not in region for u in v.users) or not v.users]
    if len(exits) != 1 or exits[0] is x or not any(op.kind in NONLINEAR for op in region.values()):
        return None
    return exits[0].producer


# What a norm written out by hand is made of, after the residual add: (x - mean) / (std + eps)
# (the annotated Transformer), RMSNorm's x * rsqrt(mean(x^2) + eps), and the add itself.
NORM_KINDS = frozenset({"add", "sub", "mul", "div", "neg", "reduce_mean", "rsqrt", "sqrt", "pow", "reciprocal",
                        "maximum"})


def dense_readers(v: Value) -> list[Op]:
    """The dense layers (matmul/einsum with a constant kernel) that take ``v`` as their input."""
    return [u for u in v.users if as_projection(u) is not None and u.operands[0] is v]


def past_written_out_norm(start: Value, limit: int = 24) -> Value | None:
    """The nearest value after ``start`` (the attention output) that a dense layer reads, reached
    through the residual add and a norm that is not one op (ops of ``NORM_KINDS`` only), else None."""
    frontier, seen = [start], {id(start)}
    while frontier and len(seen) <= limit:
        nxt = []
        for v in frontier:
            for u in v.users:
                if u.kind not in NORM_KINDS or id(u.result) in seen:
                    continue
                if dense_readers(u.result):
                    return u.result
                seen.add(id(u.result))
                nxt.append(u.result)
        frontier = nxt
    return None
