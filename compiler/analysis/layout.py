"""Where a family of feature groups (attention heads, FFN neurons) lives in each tensor of a chain.

A dense layer's output holds its features on one axis (``[batch*seq, 64]``
with 4 heads of 16) or on two (Keras' einsum ``[batch, seq, 4, 16]``).  Data
movement then moves them: a reshape splits ``[batch*seq, 64]`` into
``[batch, seq, 4, 16]``, a transpose brings heads forward, another reshape may
merge them with batch (``[batch*4, seq, 16]``) or with head_size again
(``[batch*seq, 64]``).  ``Units`` says, for one tensor, which axis holds the
groups and how: ``shape[axis] = outer * count * inner``, where ``inner`` is
what each group spans on that axis (head_size when heads are merged with it,
1 when heads have an axis of their own) and ``outer`` whatever was merged in
front of them (batch, or 1).

``follow`` carries a ``Units`` through one op, from the shapes alone, so the
pruning passes know which entry of every reshape target carries the count,
whatever the graph spells (constants, ``tf.shape`` pieces computed at run
time) and whatever axes it merges.  A reshape is followed by strides: group
``g`` starts at element ``g * inner * prod(shape[axis+1:])`` of the flattened
tensor; in the result, the groups sit on the one axis ``b`` whose trailing
product divides that stride (symbolic dims compare as monomials).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Op, Value
from ..ir.types import UNKNOWN, Dim, dim_div, dim_mul, dim_prod

ELEMENTWISE = {"mul", "div", "add", "sub", "identity", "cast", "where"}


class LayoutError(Exception):
    """A chain op moves the groups in a way the analysis cannot follow (the reason is the message)."""


@dataclass(frozen=True)
class Units:
    """``count`` groups on ``axis``: ``shape[axis] = outer * count * inner``."""

    axis: int
    count: int
    inner: Dim = 1

    def outer(self, shape: tuple) -> Dim:
        """What is merged in front of the groups on their axis (1, batch …), or UNKNOWN."""
        return dim_div(shape[self.axis], dim_mul(self.count, self.inner))

    def dim_with(self, shape: tuple, count: int) -> Dim:
        """The axis' size once only ``count`` groups are left."""
        return dim_mul(self.outer(shape), dim_mul(count, self.inner))

    def stride(self, shape: tuple) -> Dim:
        """Elements between the starts of two neighbouring groups in the row-major flattening."""
        return dim_mul(self.inner, dim_prod(shape[self.axis + 1:]))


def _divides(a: Dim, b: Dim) -> bool:
    return dim_div(b, a) != UNKNOWN


def through_reshape(src: tuple, dst: tuple, u: Units) -> Units:
    """The groups of a tensor shaped ``src`` after a reshape to ``dst``."""
    if u.outer(src) == UNKNOWN:
        raise LayoutError(f"axis {u.axis} of {list(src)} does not hold {u.count} groups of {u.inner}")
    dst = _complete(src, dst)
    stride = u.stride(src)
    if stride == UNKNOWN:
        raise LayoutError(f"the dims of {list(src)} after axis {u.axis} are not known")
    found = []
    for b in range(len(dst)):
        # Unknown dims in front of an axis do not move the groups on it (the groups repeat every
        # count*stride elements, and dst[b]*tail is a multiple of that): only dst[b] and its tail must be known.
        tail = dim_prod(dst[b + 1:])
        if UNKNOWN in (tail, dst[b]):
            continue
        if _divides(tail, stride) and _divides(dim_mul(u.count, dim_div(stride, tail)), dst[b]):
            found.append(Units(b, u.count, dim_div(stride, tail)))
    # With two or more groups at most one axis fits; a single group fits several: prefer one of its own.
    own = [c for c in found if c.outer(dst) == 1]
    if own or found:
        return (own or found)[0]
    if UNKNOWN in dst:
        raise LayoutError(f"the reshape's result shape {list(dst)} is not known where the groups would go")
    raise LayoutError(f"reshaping {list(src)} to {list(dst)} splits the {u.count} groups of axis {u.axis} "
                      "across axes")


def _complete(src: tuple, dst: tuple) -> tuple:
    """``dst`` with its one unknown dim, if it has just one, solved from the element count (a reshape keeps it):
    RoFormer-V2 merges the heads back with a target whose last entry is computed at run time."""
    unknown = [i for i, d in enumerate(dst) if d == UNKNOWN]
    if len(unknown) != 1:
        return dst
    d = dim_div(dim_prod(src), dim_prod(x for x in dst if x != UNKNOWN))
    return dst if d == UNKNOWN else tuple(d if x == UNKNOWN else x for x in dst)


def follow(op: Op, x: Value, u: Units) -> Units:
    """``u`` (the groups of operand ``x`` of ``op``) in ``op``'s result."""
    xs, ys = x.shape, op.result.shape
    if op.kind == "reshape":
        return through_reshape(xs, ys, u)
    if op.kind == "transpose":
        return Units(list(op.attrs["perm"]).index(u.axis), u.count, u.inner)
    if op.kind == "unsqueeze":
        kept = [i for i in range(len(ys)) if i not in [a % len(ys) for a in op.attrs["axes"]]]
        return Units(kept[u.axis], u.count, u.inner)
    if op.kind == "squeeze":
        axes = [a % len(xs) for a in op.attrs.get("axes") or [i for i, d in enumerate(xs) if d == 1]]
        if u.axis in axes:
            raise LayoutError(f"squeeze at {op.loc} removes the axis of the {u.count} groups")
        return Units(u.axis - sum(a < u.axis for a in axes), u.count, u.inner)
    if op.kind in ELEMENTWISE:
        axis = u.axis + len(ys) - len(xs)
        _check_other_operands(op, x, axis)
        return Units(axis, u.count, u.inner)
    raise LayoutError(f"{op.kind} at {op.loc} is not data movement the analysis can follow")


def _check_other_operands(op: Op, x: Value, axis: int) -> None:
    """An elementwise op's other operands must not vary along the groups (pruning would not slice them)."""
    rank = op.result.type.rank
    for v in op.operands:
        if v is x or v.type.rank == 0:
            continue
        at = axis - (rank - v.type.rank)
        if 0 <= at < v.type.rank and v.shape[at] != 1:
            raise LayoutError(f"{op.kind} at {op.loc} combines the groups with %{v.name} {v.type}, "
                              "which varies along them")


def follow_chain(ops: list[Op], start: Value, u: Units) -> tuple[list[tuple[Op, Units]], Units]:
    """``u`` carried from ``start`` through ``ops`` in flow order: each op with its result's Units, and the last."""
    out, v = [], start
    for op in ops:
        src = v if any(w is v for w in op.operands) else None
        if src is None:
            raise LayoutError(f"{op.kind} at {op.loc} does not read %{v.name}")
        u = follow(op, src, u)
        out.append((op, u))
        v = op.result
    return out, u
