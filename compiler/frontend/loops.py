"""``tf.while_loop`` over constants: run once at import, its results become constants.

BERT inference has no loops, but library code computes constants with them:
``tf.signal.frame`` (Longformer's sliding windows) takes the gcd of the frame
length and step in a ``tf.while_loop``.  A loop whose inputs are all known at
import (constants, or shape arithmetic bertc folds) is run by TensorFlow itself,
once, and its results are imported as constants, with the choice logged.  A loop
whose trip count the data decides is refused before anything is built.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from .tf import ImportContext

log = logging.getLogger(__name__)

LOOPS = {"While", "StatelessWhile"}
_PURE_LEAVES = {"Const"}


def from_constants(nodes: dict[str, Any], name: str, arguments: set[str]) -> bool:
    """Whether every data input of the loop ``name`` is computed from constants only (no graph
    input, function argument or variable on the way)."""
    stack, seen = [i for i in nodes[name].input if not i.startswith("^")], set()
    while stack:
        src = stack.pop().split(":")[0]
        if src in seen:
            continue
        seen.add(src)
        node = nodes.get(src)
        if node is None or src in arguments or node.op in ("Placeholder", "VarHandleOp", "ReadVariableOp"):
            return False
        if node.op in _PURE_LEAVES:
            continue
        stack.extend(i for i in node.input if not i.startswith("^"))
    return True


def import_loop(ctx: ImportContext, node: Any, ins: list[Value]) -> list[Value]:
    """The loop's results, computed by TF from its constant inputs."""
    values = []
    for v in ins:
        c = None if v is None else ctx.folded(v)
        if c is None:
            raise OpError("control flow: its loop variables depend on the model's inputs, so the number of "
                          "iterations is only known at run time; bertc has no loops (write it without "
                          "tf.while_loop, or export the model without it)")
        values.append(np.asarray(c))
    outs = _run_in_tf(ctx, node, values)
    log.info("tf.while_loop '%s' runs over constants: computed at import (%d results)", ctx.name, len(outs))
    return [ctx.const(o, f"{ctx.name}/result_{k}") for k, o in enumerate(outs)]


def _run_in_tf(ctx: ImportContext, node: Any, values: list[np.ndarray]) -> list[np.ndarray]:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    for fdef in ctx.functions.values():
        graph_def.library.function.add().CopyFrom(fdef)
    names = []
    for k, arr in enumerate(values):
        const = graph_def.node.add()
        const.name, const.op = f"bertc_loop_input_{k}", "Const"
        const.attr["dtype"].type = tf.dtypes.as_dtype(arr.dtype).as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr))
        names.append(const.name)
    loop = graph_def.node.add()
    loop.CopyFrom(node)
    loop.name = "bertc_loop"
    del loop.input[:]
    loop.input.extend(names)
    n_out = len(node.attr["T"].list.type)
    g = tf.Graph()
    try:
        with g.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return [np.asarray(x) for x in sess.run([f"bertc_loop:{k}" for k in range(n_out)])]
    except Exception as e:  # the loop fails on its own constants: TF's reason, in one line
        raise OpError(f"running the loop over its constant inputs failed: {str(e).splitlines()[0]}") from None


