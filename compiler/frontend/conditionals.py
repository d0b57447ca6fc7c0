"""``tf.cond`` (If / StatelessIf) whose predicate is decided by the shapes.

BERT inference has no real control flow, but foreign code writes shape checks
as conditionals: DeBERTa's ``tf.cond(key_len != query_len, rebuild, keep)``.
When the predicate is known at import, a constant or a comparison that
symbolic shape evaluation decides (``seq != seq`` is false whatever ``seq``
is), the taken branch's function body is imported in place of the If and the
choice is logged.  An If whose branches both return the same inputs unchanged
(``tf.debugging.assert_*`` guards, which only raise in the other branch) is
those inputs.  Any other predicate only the data decides (Funnel pools only
sequences longer than two tokens) becomes a ``cond`` op holding both branches as
sub-graphs (``bertc.ops.control``); the targets lower it to ONNX If and TFLite IF.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.registry import OpError
from ..ir.types import DTYPES, UNKNOWN, TensorType
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
        return _import_as_cond(ctx, node, ins)
    branch = node.attr["then_branch" if taken else "else_branch"].func.name
    fdef = ctx.functions.get(branch)
    if fdef is None:
        raise OpError(f"its branch function '{branch}' is not in the graph's library")
    log.info("tf.cond '%s' takes its %s branch (%s): the predicate is %s for every input of these shapes",
             name, "then" if taken else "else", branch, taken)
    return _import_function(ctx, node, fdef, ins[1:])


def _import_as_cond(ctx: ImportContext, node: Any, ins: list[Value]) -> list[Value]:
    """Both branches as sub-graphs of one ``cond`` op: the predicate only the data decides.

    Inside a branch the predicate is known (true in ``then``), so a branch that is passed the
    predicate itself sees it as that constant.  Autograph writes Python's lazy ``p and q`` as
    ``tf.cond(p, lambda: q, lambda: p)``: with the predicate known, a result whose branches
    fold to the same constant is that constant, and a bool result that is true exactly in the
    then branch is the predicate (false exactly there: its negation).  Only the results left
    keep the ``cond`` op."""
    name = clean_name(node.name)
    pred = _as_bool_scalar(ctx, ins[0])
    outer_inputs = [i for i in node.input if not i.startswith("^")][1:]
    if any(v is not None and not isinstance(v, Value) for v in ins[1:]):
        raise OpError("it passes a complex value to its branches; bertc keeps complex tensors only from "
                      "Complex through FFT to Real/Imag")
    passed = [(i, v) for i, v in enumerate(ins[1:]) if isinstance(v, Value)]  # variable handles stay behind
    known = {i for i, v in passed if v is ins[0] and v.dtype == "bool"}  # the predicate, passed on
    regions = []
    for key, value in (("then_branch", True), ("else_branch", False)):
        fdef = ctx.functions.get(node.attr[key].func.name)
        if fdef is None:
            raise OpError(f"its branch function '{node.attr[key].func.name}' is not in the graph's library")
        regions.append(_import_region(ctx, node, fdef, passed, outer_inputs, {i: value for i in known}))
    then, other = regions
    if len(then.outputs) != len(other.outputs):
        raise OpError(f"its branches return {len(then.outputs)} and {len(other.outputs)} values")
    for i, (a, b) in enumerate(zip(then.outputs.values(), other.outputs.values())):
        if a.dtype != b.dtype or a.type.rank != b.type.rank:
            raise OpError(f"its branches return result {i} as {a.type} and as {b.type}; bertc keeps one "
                          "dtype and rank per result (TF leaves it unknown and lets the run decide)")
    resolved = [_resolved(ctx, pred, then, other, a, b)
                for a, b in zip(then.outputs.values(), other.outputs.values())]
    if all(r is not None for r in resolved):
        log.info("tf.cond '%s' depends on the data, but each result is the same on either branch, or the "
                 "predicate itself: imported without a branch", name)
        return resolved
    passed = [(i, v) for i, v in passed if i not in known]
    op = ctx.graph.add("cond", [pred] + [v for _, v in passed],
                       {"then": ctx.graph.adopt(then), "else": ctx.graph.adopt(other)}, ctx.loc,
                       name.rsplit("/", 1)[-1])
    for r in op.results:  # a dim the branches disagree on is a size only the run decides
        if UNKNOWN in r.shape:
            r.type = TensorType(r.dtype, tuple(ctx.graph.fresh_dim(f"{r.name}_d{j}") if d == UNKNOWN else d
                                               for j, d in enumerate(r.shape)))
    log.info("tf.cond '%s' depends on the data: both branches kept, as a cond op (%d and %d ops)",
             name, len(then.ops), len(other.ops))
    return [r if r is not None else c for r, c in zip(resolved, op.results)]


def _resolved(ctx: ImportContext, pred: Value, then: Graph, other: Graph, a: Value, b: Value) -> Value | None:
    """The value of a cond result the predicate's known value in each branch decides, else None."""
    ta, tb = (ImportContext(g).folded(v) for g, v in ((then, a), (other, b)))
    if ta is None or tb is None:
        return None
    ta, tb = np.asarray(ta), np.asarray(tb)
    if ta.shape == tb.shape and ta.dtype == tb.dtype and np.array_equal(ta, tb):
        return ctx.const(ta, f"{ctx.name}/value")
    if a.dtype == "bool" and ta.size == 1 and tb.size == 1 and ta.shape == tb.shape:
        if bool(ta.reshape(-1)[0]) and not bool(tb.reshape(-1)[0]):
            return pred if pred.type.shape == a.type.shape else ctx.emit("reshape", [pred], {"shape": list(ta.shape)})
        if not bool(ta.reshape(-1)[0]) and bool(tb.reshape(-1)[0]):
            return ctx.emit("logical_not", [pred if pred.type.shape == a.type.shape else
                                            ctx.emit("reshape", [pred], {"shape": list(ta.shape)})])
    return None


def _as_bool_scalar(ctx: ImportContext, pred: Value) -> Value:
    """TF's If reads a non-bool scalar predicate as "non-zero"."""
    if any(d != 1 for d in pred.shape):
        raise OpError(f"its predicate is {pred.type}, not a scalar; bertc keeps a tf.cond on a scalar only")
    if pred.dtype == "bool":
        return pred
    return ctx.emit("not_equal", [pred, ctx.graph.const(np.zeros((), DTYPES[pred.dtype]))])


def _import_region(ctx: ImportContext, caller: Any, fdef: Any, passed: list[tuple[int, Value]],
                   outer_inputs: list[str], known: dict[int, bool]) -> Graph:
    """One branch function as a closed graph whose inputs are the values the If passes, but for
    the arguments in ``known``: the predicate, a constant in this branch."""
    arg_names = [a.name for a in fdef.signature.input_arg]
    region = Graph(_region_name(caller, fdef))
    variables = dict(ctx.variables)
    for arg, outer in zip(arg_names, outer_inputs):  # variable handles passed in: read inside
        source = outer.split(":")[0]
        if source in ctx.variables and arg not in variables:
            variables[arg] = ctx.variables[source]
    args = {}
    for i, v in passed:
        if i in known:
            args[arg_names[i]] = region.const(np.full(tuple(v.shape), known[i]), f"{arg_names[i]}/known")
            continue
        x = region.add_input(arg_names[i], v.type)
        x.sym = v.sym  # shape vectors keep their symbolic value inside the branch
        args[arg_names[i]] = x
    sub = ImportContext(region, ctx.weight_names, variables, ctx.functions, ctx.source)
    outs = _import_body(sub, caller, fdef, args)
    for o, v in zip(fdef.signature.output_arg, outs):
        if not isinstance(v, Value):
            raise OpError(f"its branch '{fdef.signature.name}' returns a complex value")
        region.outputs[o.name] = v
    return region


def _region_name(caller: Any, fdef: Any) -> str:
    """``cond_1_then`` from the If's node name and which branch the function is."""
    which = "then" if fdef.signature.name == caller.attr["then_branch"].func.name else "else"
    return f"{clean_name(caller.name).rsplit('/', 1)[-1]}_{which}"


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
    """The taken branch's body, imported in place into ``ctx.graph``."""
    arg_names = [a.name for a in fdef.signature.input_arg]
    outer_inputs = [i for i in caller.input if not i.startswith("^")][1:]
    added: list[str] = []
    for arg, outer in zip(arg_names, outer_inputs):
        source = outer.split(":")[0]
        if source in ctx.variables and arg not in ctx.variables:  # a variable handle passed in
            ctx.variables[arg] = ctx.variables[source]
            added.append(arg)
    try:
        return _import_body(ctx, caller, fdef, dict(zip(arg_names, args)))
    finally:
        for arg in added:
            del ctx.variables[arg]


def _import_body(ctx: ImportContext, caller: Any, fdef: Any, args: dict[str, Value | None]) -> list:
    """Import a function's nodes into ``ctx.graph`` with its arguments bound to ``args``;
    its results, in order."""
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    graph_def, flat = function_def_to_graph_def(fdef)
    nodes = {n.name: n for n in graph_def.node}
    arg_names = [a.name for a in fdef.signature.input_arg]
    env: dict[str, list] = {arg: [args.get(arg)] for arg in arg_names}
    results = [flat[fdef.ret[o.name]] for o in fdef.signature.output_arg]
    order = _reachable(nodes, [r.split(":")[0] for r in results])
    check_supported(f"{ctx.source} (branch '{fdef.signature.name}' of tf.cond '{clean_name(caller.name)}')",
                    nodes, order, set(arg_names))
    try:
        import_nodes(ctx, nodes, order, env)
    finally:
        ctx.node = caller
    outs = []
    for r in results:
        src, _, idx = r.partition(":")
        outs.append(env[src][int(idx or 0)])
    return outs
