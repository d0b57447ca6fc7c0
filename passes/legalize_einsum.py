"""Rewrite two-operand einsum into transpose + reshape + matmul.

    einsum("abc,cde->abde", x, w)   -> reshape(matmul(x, reshape(w, [c, d*e])), [0, 0, d, e])
    einsum("aecd,abcd->acbe", k, q) -> transpose(matmul(transpose(k, a c e d), transpose(q, a c d b)), ...)

Letters fall in four groups: batch (both inputs and the output), left (first
input and output), right (second input and output) and contracted (both
inputs, not the output).  Each operand is transposed to [batch, left,
contracted] and [batch, contracted, right]; groups of more than one letter are
merged by a reshape; one batched matmul contracts; a reshape splits the groups
again and a transpose puts the output in the equation's order.  Transposes and
reshapes of constant weights fold away afterwards (fold_constants).

Exact: the same multiply-adds in a different order of summation.  Picked for
every einsum the target lacks (TFLite has none; Keras' MultiHeadAttention and
keras-hub write their projections and attention this way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertc.ir import Graph, Op, Value
from bertc.ir.shape_vector import shape_vector
from bertc.ir.types import dim_prod, is_static
from bertc.ops.linalg import parse_equation
from bertc.pass_manager import Pass, PassContext, register_pass


class Unsupported(Exception):
    pass


def _arrange(graph: Graph, op: Op, v: Value, spec: str, order: list[str]) -> Value:
    perm = [spec.index(c) for c in order]
    if perm == list(range(len(perm))):
        return v
    return graph.add("transpose", [v], {"perm": perm}, op.loc, v.name + "_t", before=op).result


def _reshape_at_run_time(graph: Graph, op: Op, v: Value, dims: list, what: str) -> Value:
    """``v`` reshaped to ``dims`` (two or more of them symbolic), the target computed from the
    shapes of the einsum's operands, which carry every symbol."""
    target = shape_vector(graph, op, dims, [v, *op.operands])
    if target is None:
        raise Unsupported(f"{what} {v.type} into {list(dims)}: a dim is on none of the einsum's operands")
    return graph.add("reshape", [v, target], {}, op.loc, v.name + "_r", before=op).result


def _merge(graph: Graph, op: Op, v: Value, sizes: list[int]) -> Value:
    """Reshape consecutive axes of ``v`` into groups of ``sizes`` axes each (0 = a new 1-axis)."""
    if all(n == 1 for n in sizes):
        return v
    target: list[int] = []
    pos = 0
    for n in sizes:
        if n == 1 and pos == len(target):
            target.append(0)  # a lone axis that stays where it is: copy it
        else:
            prod = dim_prod(v.shape[pos:pos + n])
            target.append(int(prod) if is_static(prod) else -1)
        pos += n
    if target.count(-1) > 1:  # several symbolic groups: the target is read at run time
        groups, pos = [], 0
        for n in sizes:
            groups.append(dim_prod(v.shape[pos:pos + n]) if n else 1)
            pos += n
        return _reshape_at_run_time(graph, op, v, groups, "merging")
    return graph.add("reshape", [v], {"shape": target}, op.loc, v.name + "_r", before=op).result


def _split(graph: Graph, op: Op, v: Value, dims: list) -> Value:
    """Reshape ``v`` to ``dims``; dims equal to v's at the same position are copied (0)."""
    if tuple(v.shape) == tuple(dims):
        return v
    target = [0 if i < v.type.rank and v.shape[i] == d else (int(d) if is_static(d) else -1)
              for i, d in enumerate(dims)]
    if target.count(-1) > 1:  # several symbolic dims: the target is read at run time
        return _reshape_at_run_time(graph, op, v, list(dims), "splitting")
    return graph.add("reshape", [v], {"shape": target}, op.loc, v.name + "_s", before=op).result


def rewrite_einsum(graph: Graph, op: Op) -> Value:
    (sa, sb), out = parse_equation(op.attrs["equation"])
    if len(op.operands) != 2 or len(set(sa)) != len(sa) or len(set(sb)) != len(sb):
        raise Unsupported("only two operands without repeated letters")
    if any(c not in sb and c not in out for c in sa) or any(c not in sa and c not in out for c in sb):
        raise Unsupported("letters summed inside one operand")
    a, b = op.operands
    batch = [c for c in out if c in sa and c in sb]
    left = [c for c in out if c in sa and c not in sb]
    right = [c for c in out if c in sb and c not in sa]
    contracted = [c for c in sa if c in sb and c not in out]
    dims = {c: d for spec, v in ((sa, a), (sb, b)) for c, d in zip(spec, v.shape)}
    nb = len(batch)

    x = _arrange(graph, op, a, sa, batch + left + contracted)
    if nb == 0:
        # [left..., K] @ [K, R]: matmul broadcasts the 2-D right side over all left axes,
        # so symbolic left dims (batch, seq) never need merging.
        x = _merge(graph, op, x, [1] * len(left) + [len(contracted)])
        if not left:
            x = graph.add("unsqueeze", [x], {"axes": [0]}, op.loc, x.name + "_u", before=op).result
    else:
        x = _merge(graph, op, x, [1] * nb + [len(left), len(contracted)])
    y = _arrange(graph, op, b, sb, batch + contracted + right)
    y = _merge(graph, op, y, [1] * nb + [len(contracted), len(right)])
    m = graph.add("matmul", [x, y], {}, op.loc, op.result.name, before=op).result
    z = _split(graph, op, m, [dims[c] for c in batch + left + right])
    return _arrange(graph, op, z, "".join(batch + left + right), list(out))


@register_pass
@dataclass(frozen=True)
class LegalizeEinsum(Pass):
    """Rewrite einsum into transpose, reshape and matmul (exact)."""

    legalizes: ClassVar[tuple[str, ...]] = ("einsum",)

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        changed = False
        for op in graph.ops_of("einsum"):
            try:
                new = rewrite_einsum(graph, op)
            except Unsupported as e:
                from bertc.diagnostics import BertcError

                raise BertcError(f"einsum {op.attrs['equation']!r} at {op.loc}: no rewrite ({e}).") from None
            op.result.replace_all_uses_with(new)
            changed = True
        eliminate_dead_code(graph)
        return changed
