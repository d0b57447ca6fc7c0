"""``cond``: run one of two sub-graphs, chosen by a boolean scalar at run time.

TF's ``tf.cond`` (If / StatelessIf) whose predicate only the data decides (Funnel
pools only sequences longer than two tokens; a mask-dependent branch).  The
importer resolves every predicate the shapes decide; what is left becomes this op.

Operands: ``pred`` (a one-element bool tensor), then the arguments both branches
take.  Attributes ``then`` and ``else`` are closed sub-graphs (regions): their
inputs are the arguments in order, their outputs the op's results in order, and
they read nothing from the graph around them.  The two branches may disagree on a
result's dims (pooling halves the sequence in one branch only): such a dim is
unknown to the op's type, and the importer gives it a fresh symbol.

Targets lower it to ONNX ``If`` and TFLite ``IF``; the reference kernel runs the
taken branch with the interpreter.  Passes see the op as one opaque, pure op: the
ops inside a branch are not pruned or quantized.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Op
from ..ir.registry import Attr, OpError, define
from ..ir.types import UNKNOWN, TensorType, is_static

BRANCHES = ("then", "else")


def branches(op: Op) -> tuple[Graph, Graph]:
    return op.attrs["then"], op.attrs["else"]


def _local_dims(g: Graph) -> set:
    """Symbols a branch's inputs carry: the dims it shares with the graph around it."""
    return {d for v in g.inputs for d in v.shape if isinstance(d, str)}


def merged_dim(a, b, then: Graph, other: Graph):
    """A result dim both branches agree on (a number, or a symbol of the arguments), else UNKNOWN."""
    if a == b and (is_static(a) or (a in _local_dims(then) and b in _local_dims(other))):
        return a
    return UNKNOWN


def _infer(op: Op) -> list[TensorType]:
    then, other = branches(op)
    out = []
    for a, b in zip(then.outputs.values(), other.outputs.values()):
        dims = tuple(merged_dim(x, y, then, other) for x, y in zip(a.shape, b.shape))
        out.append(TensorType(a.dtype, dims))
    return out


def _verify(op: Op) -> None:
    pred = op.operands[0]
    if pred.dtype != "bool" or not all(d == 1 for d in pred.shape if is_static(d)):
        raise OpError(f"cond's predicate must be a one-element bool tensor, got {pred.type}")
    args = op.operands[1:]
    for key, g in zip(BRANCHES, branches(op)):
        if len(g.inputs) != len(args):
            raise OpError(f"cond's {key} branch takes {len(g.inputs)} arguments, the op passes {len(args)}")
        for i, (x, a) in enumerate(zip(g.inputs, args)):
            if x.dtype != a.dtype or x.type.rank != a.type.rank:
                raise OpError(f"cond's {key} branch argument {i} is {x.type}, the op passes {a.type}")
    then, other = branches(op)
    if len(then.outputs) != len(other.outputs):
        raise OpError(f"cond's branches return {len(then.outputs)} and {len(other.outputs)} values")
    for i, (a, b) in enumerate(zip(then.outputs.values(), other.outputs.values())):
        if a.dtype != b.dtype or a.type.rank != b.type.rank:
            raise OpError(f"cond's branches disagree on result {i}: {a.type} and {b.type}")


def _kernel(attrs, pred, *args):
    from ..ir.interpreter import run_graph

    g = attrs["then"] if bool(np.asarray(pred).reshape(-1)[0]) else attrs["else"]
    out = run_graph(g, {x.name: a for x, a in zip(g.inputs, args)})
    return [out[k] for k in g.outputs]


define("cond", ("pred", "args*"), _infer, _kernel,
       attrs={"then": Attr("graph", doc="the branch run when pred is true"),
              "else": Attr("graph", doc="the branch run when pred is false")},
       verify=_verify,
       doc="tf.cond whose predicate only the data decides: runs the then or else sub-graph")
