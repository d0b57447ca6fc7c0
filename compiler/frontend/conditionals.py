"""``tf.cond`` (If / StatelessIf) whose predicate is decided by the shapes.

BERT inference has no real control flow, but foreign code writes shape checks
as conditionals: DeBERTa's ``tf.cond(key_len != query_len, rebuild, keep)``.
When the predicate is known at import, a constant or a comparison that
symbolic shape evaluation decides (``seq != seq`` is false whatever ``seq``
is), the taken branch's function body is imported in place of the If and the
choice is logged.  An If whose branches both return the same inputs unchanged
(``tf.debugging.assert_*`` guards, which only raise in the other branch) is
those inputs.  Any other predicate that only the data decides is refused
with a message naming the node: both branches would have to be kept, and the
IR has no control flow.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from .tf import ImportContext, _reachable, check_supported, clean_name, import_nodes

log = logging.getLogger(__name__)


def decided(pred: Value) -> bool | None:
    """The predicate's value when the graph fixes it, else None."""
    c = pred.const_value()
    if c is not None and np.asarray(c).size == 1:
        return bool(np.asarray(c).reshape(()))
    if pred.sym is not None and len(pred.sym) == 1 and isinstance(pred.sym[0], (int, bool, np.integer)):
        return bool(pred.sym[0])
    return None


def import_cond(ctx: ImportContext, node: Any, ins: list[Value]) -> list[Value]:
    """Import the branch the predicate takes; its arguments are the If's other inputs."""
    taken = decided(ins[0])
    name = clean_name(node.name)
    if taken is None:
        forwarded = _same_passthrough(ctx, node)
        if forwarded is not None:  # an assertion guard: both branches hand back the same inputs
            log.info("tf.cond '%s' returns its inputs %s on either branch (an assertion); imported as them",
                     name, forwarded)
            return [ins[1 + i] for i in forwarded]
        raise OpError("its predicate depends on the data (or on dims bertc cannot compare), so neither "
                      "branch can be chosen at import; write the choice with tf.where, or export the "
                      "model without the tf.cond")
    branch = node.attr["then_branch" if taken else "else_branch"].func.name
    fdef = ctx.functions.get(branch)
    if fdef is None:
        raise OpError(f"its branch function '{branch}' is not in the graph's library")
    log.info("tf.cond '%s' takes its %s branch (%s): the predicate is %s for every input of these shapes",
             name, "then" if taken else "else", branch, taken)
    return _import_function(ctx, node, fdef, ins[1:])


def _passthrough(fdef: Any) -> list[int] | None:
    """For each output, the argument it is (through Identity nodes), or None when any output
    is computed.  Assert and NoOp nodes only guard: control edges are not followed."""
    args = {a.name: i for i, a in enumerate(fdef.signature.input_arg)}
    nodes = {n.name: n for n in fdef.node_def}
    out = []
    for o in fdef.signature.output_arg:
        ref = fdef.ret[o.name].split(":")[0]
        while ref in nodes and nodes[ref].op in ("Identity", "StopGradient"):
            ref = next(i for i in nodes[ref].input if not i.startswith("^")).split(":")[0]
        if ref not in args:
            return None
        out.append(args[ref])
    return out


def _same_passthrough(ctx: ImportContext, node: Any) -> list[int] | None:
    """The argument indices both branches return unchanged, when they agree (an AssertGuard)."""
    branches = [ctx.functions.get(node.attr[b].func.name) for b in ("then_branch", "else_branch")]
    if any(f is None for f in branches):
        return None
    then, other = (_passthrough(f) for f in branches)
    return then if then is not None and then == other else None


def _import_function(ctx: ImportContext, caller: Any, fdef: Any, args: list[Value]) -> list[Value]:
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    graph_def, flat = function_def_to_graph_def(fdef)
    nodes = {n.name: n for n in graph_def.node}
    arg_names = [a.name for a in fdef.signature.input_arg]
    outer_inputs = [i for i in caller.input if not i.startswith("^")][1:]
    env: dict[str, list] = {}
    added: list[str] = []
    for arg, outer, value in zip(arg_names, outer_inputs, args):
        env[arg] = [value]
        source = outer.split(":")[0]
        if source in ctx.variables and arg not in ctx.variables:  # a variable handle passed in
            ctx.variables[arg] = ctx.variables[source]
            added.append(arg)
    results = [flat[fdef.ret[o.name]] for o in fdef.signature.output_arg]
    order = _reachable(nodes, [r.split(":")[0] for r in results])
    check_supported(f"{ctx.source} (branch '{fdef.signature.name}' of tf.cond '{clean_name(caller.name)}')",
                    nodes, order, set(arg_names))
    try:
        import_nodes(ctx, nodes, order, env)
    finally:
        for arg in added:
            del ctx.variables[arg]
        ctx.node = caller
    outs = []
    for r in results:
        src, _, idx = r.partition(":")
        outs.append(env[src][int(idx or 0)])
    return outs
