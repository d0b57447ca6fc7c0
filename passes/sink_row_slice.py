"""Sink a slice along a row axis towards the inputs, so rows that nothing reads are never computed.

A [CLS]-pooled classifier reads one row of its last encoder layer::

    %h  = layer_norm (add %x, (ffn (layer_norm (add %x, (attention %x)))))   : f32[batch,seq,H]
    %cls = slice %h {axes=[1], starts=[0], ends=[1]}                          : f32[batch,1,H]

Everything between ``%x`` and ``%h`` works on each row of the seq axis alone,
except attention, whose row i reads query row i and *every* key and value row.
So the slice can move up, op by op, until it sits on the query projection's
input and on the residual, and the last layer's Q projection, attention output,
layer norms and FFN run on one row instead of ``seq``: 6.5% / 6.9% of BERT-base's
multiply-adds at 16 / 128 tokens (counted from the layer shapes; measured 3-10% faster).
The result is the same computation (each row is computed as before; only the
float summation order inside a kernel may differ).

``slice(op(a, b, ...))`` becomes ``op(slice(a), slice(b), ...)`` when ``op``'s
result has no other reader and ``op`` is, along the sliced axis:

* element-wise (unary, binary or ``where``, with numpy broadcasting: an operand
  whose dim there is 1, or which lacks that axis, is left whole);
* ``layer_norm`` / ``softmax`` over another axis;
* ``matmul``: along a row (or batch) axis the left operand is sliced (the right
  one only along a shared batch axis), along the column axis the right one;
* ``einsum`` where it is a free output index: each operand carrying it is sliced;
* ``quantize`` / ``dequantize`` with fixed parameters (quant_full's static form)
  unless they are per-axis along it; ``qmatmul`` only with one range per row
  (``act=i8_row``);
* ``transpose`` (the slice moves to the permuted axis) or ``reshape`` that keeps
  every dim up to that axis (``0`` in the target, or ``-1`` at the axis itself).

Anything else stops it, and so does a value read elsewhere too (identical slices
of one value are first merged into one), unless the op is a cheap quantize or
dequantize: that one is computed twice, whole for its other readers and sliced
here, so that quant_full's quantize -> dequantize -> matmul chain (one
MatMulIntegerToFloat on ONNX) stays intact on the sliced rows.  quant_int8's default qmatmul stops it on
purpose: its activation range is taken over every row at run time, and fewer rows
could change it.  So run this pass after pruning and before ``quant_int8`` and the
fusions (fused ops stop it too).

Slices with a step, several axes, or run-time bounds are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertc.ir import Graph, Op, Value
from bertc.ir.types import UNKNOWN
from bertc.pass_manager import Pass, PassContext, register_pass

# cheap ops worth computing twice (whole for their other readers, sliced for this one): a
# static int8 matmul's quantize -> dequantize pair stays whole, which its lowering needs
CLONABLE = frozenset({"quantize", "dequantize"})
# element-wise with numpy broadcasting (unary, binary, and where's select)
ELEMENTWISE = frozenset({"neg", "abs", "sqrt", "rsqrt", "exp", "log", "tanh", "erf", "sigmoid", "relu",
                         "reciprocal", "gelu", "cast", "identity",
                         "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where"})


@register_pass
@dataclass(frozen=True)
class SinkRowSlice(Pass):
    """Move row slices (x[:, 0:1], a [CLS] token) up through row-wise ops: unread rows are not computed."""

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        moved = 0
        while _sink_one(graph):
            moved += 1
        if moved:
            eliminate_dead_code(graph)
        ctx.report[self.name] = {"ops_moved_past": moved}
        return moved > 0


def _sink_one(graph: Graph) -> bool:
    """Move the first slice that can move one op up; False when none can."""
    for op in graph.ops:
        if _simple_row_slice(op) and _sink(graph, op):
            return True
    return False


def _simple_row_slice(op: Op) -> bool:
    """One axis, constant bounds, step 1: the only slices this pass moves."""
    if op.kind != "slice" or len(op.operands) != 1 or len(op.attrs["axes"]) != 1:
        return False
    steps = list(op.attrs["steps"])
    return steps in ([], [1]) and all(isinstance(v, int) for v in (*op.attrs["starts"], *op.attrs["ends"]))


def _axis(op: Op) -> int:
    x = op.operands[0]
    a = op.attrs["axes"][0]
    return a + x.type.rank if a < 0 else a


def _merge_twins(graph: Graph, s: Op) -> None:
    """Identical slices of one value become one, so that value may have a single reader."""
    v = s.operands[0]
    for other in v.users:
        if other is not s and other.kind == "slice" and _simple_row_slice(other) and other.attrs == s.attrs:
            graph.replace_op(other, [s.result])


def _sink(graph: Graph, s: Op) -> bool:
    """Move slice ``s`` above its operand's producer if that is exact; True if it moved."""
    v = s.operands[0]
    _merge_twins(graph, s)
    p = v.producer
    if p is None or p.kind == "const" or len(p.results) != 1:
        return False
    shared = len(v.uses) != 1 or any(o is v for o in graph.outputs.values())
    if shared and p.kind not in CLONABLE:
        return False
    a = _axis(s)
    plan = _plan(p, a)
    if plan is None:
        return False
    new_operands: list[Value] = []
    for operand, axis in zip(p.operands, plan):
        if axis is None:
            new_operands.append(operand)
        else:
            attrs = dict(s.attrs, axes=[axis])
            new_operands.append(graph.add("slice", [operand], attrs, s.loc, f"{operand.name}_rows", before=p).result)
    new = graph.add(p.kind, new_operands, dict(p.attrs), p.loc, v.name, before=p)
    graph.replace_op(s, [new.result])
    if not shared:
        graph.erase(p)
    return True


def _plan(p: Op, a: int) -> list[int | None] | None:
    """For each operand of ``p``: the axis to slice it along (None: leave it whole), so that
    slicing ``p``'s result along ``a`` equals ``p`` of the sliced operands; None if no such plan."""
    out = p.result.type
    r = out.rank
    if p.kind in ELEMENTWISE:
        plan: list[int | None] = []
        for o in p.operands:
            oa = a - (r - o.type.rank)
            if oa < 0 or o.type.shape[oa] == 1:
                plan.append(None)
            elif o.type.shape[oa] == UNKNOWN or o.type.shape[oa] != out.shape[a]:
                return None
            else:
                plan.append(oa)
        return plan if any(x is not None for x in plan) else None
    if p.kind in ("layer_norm", "softmax"):
        norm = p.attrs["axis"] % r
        return None if norm == a else [a] + [None] * (len(p.operands) - 1)
    if p.kind == "matmul":
        x, w = p.operands
        if x.type.rank != r or w.type.rank < 2:
            return None
        if a == r - 1:  # a column: (x @ w)[..., j] = x @ w[..., j]
            return [None, w.type.rank - 1]
        if a == r - 2:
            return [a, None]
        wa = a - (r - w.type.rank)  # a batch axis: w shares it or broadcasts over it
        if wa < 0 or w.type.shape[wa] == 1:
            return [a, None]
        return [a, wa] if w.type.shape[wa] == x.type.shape[a] else None
    if p.kind in ("quantize", "dequantize"):  # fixed parameters: element-wise unless per-axis along a
        axis = p.attrs["axis"]
        return None if axis is not None and axis % r == a else [a, None, None]
    if p.kind == "qmatmul":  # quantized at run time: row-wise only with one range per row
        return [a, None, None, None] if p.attrs["act_per_row"] and a < r - 1 else None
    if p.kind == "einsum":
        return _einsum_plan(p, a)
    if p.kind == "transpose":
        return [list(p.attrs["perm"])[a]]
    if p.kind == "reshape":
        # dims before a are copies (0) and a itself is copied or inferred (-1), with the same
        # dims up to a before and after: each block of rows keeps its layout
        target, x = p.attrs["shape"], p.operands[0].type
        if len(p.operands) != 1 or target is None or len(target) <= a or x.rank <= a:
            return None
        same = all(x.shape[i] == out.shape[i] != UNKNOWN for i in range(a + 1))
        return [a] if same and all(d == 0 for d in target[:a]) and target[a] in (0, -1) else None
    return None


def _einsum_plan(p: Op, a: int) -> list[int | None] | None:
    """An output index of an einsum is free: each operand that carries it is sliced along it."""
    eq = p.attrs["equation"].replace(" ", "")
    if "..." in eq or "->" not in eq:
        return None
    ins, out = eq.split("->")
    letter = out[a]
    plan: list[int | None] = []
    for spec in ins.split(","):
        if spec.count(letter) > 1:
            return None
        plan.append(spec.index(letter) if letter in spec else None)
    return plan if len(plan) == len(p.operands) and any(x is not None for x in plan) else None
