"""Where the IR first departs from TensorFlow: IR values against the TF nodes they came from.

When a compile's artifacts compute what their IR says (``op_parity``) and still
differ from the source model, the IR itself is wrong: an importer handler or a
pass changed the numbers.  This finds the first place: the source graph runs in
TF with every node an IR op names in its location fetched, the IR runs on the
reference interpreter, and in graph order the first IR value farther from its
node's output than float rounding allows is named, with its TF node.

Only single-node locations are compared (a fused op stands for several nodes),
and each node once, by the last IR op that names it (a handler that emits
several ops ends with the node's output).  It is a diagnosis for a failed
compile, so it loads the source model again and copies its weights into the
graph: seconds for BERT-base.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..fidelity import Tolerance
from ..ir.graph import Graph, Value

log = logging.getLogger(__name__)

# Values far down a network gather float rounding from every op before them: this is looser
# than one op's bound (op_parity), and far under what a wrong handler does.
DIVERGENCE = Tolerance(rtol=1e-4, atol=1e-5)


@dataclass
class Divergence:
    op: str  # the IR op, as the text form prints it
    node: str  # the TF node it came from
    max_abs_error: float
    ratio: float

    def describe(self) -> str:
        return (f"{self.op} (TF node '{self.node}'): differs by {self.max_abs_error:.3g}, "
                f"{self.ratio:.3g}x float rounding")


def first_divergence(model, graph: Graph, feeds: Mapping[str, np.ndarray],
                     tolerance: Tolerance = DIVERGENCE) -> Divergence | None:
    """The first IR value (graph order) whose TF node computes something else, or None."""
    from ..frontend.tf import clean_name
    from ..ir.interpreter import run_graph
    from ..ir.printer import Namer, format_op

    graph_def = _weights_as_constants(model)
    if graph_def is None:
        return None
    tf_names = {clean_name(n.name): n.name for n in graph_def.node}
    by_node: dict[str, Value] = {}
    for op in graph.ops:
        if op.kind != "const" and len(op.loc.names) == 1 and op.loc.names[0] in tf_names and op.results:
            by_node[op.loc.names[0]] = op.results[0]  # the last op naming a node holds its output
    tf_values = _run_tf(graph_def, model, [tf_names[n] for n in by_node], feeds)
    ir_values: dict[int, np.ndarray] = {}
    wanted = {id(v) for v in by_node.values()}
    run_graph(graph, feeds, observe=lambda v, a: ir_values.__setitem__(id(v), a) if id(v) in wanted else None)
    order = {id(op.results[0]): i for i, op in enumerate(graph.ops) if op.results}
    namer = Namer.of(graph)
    for node, value in sorted(by_node.items(), key=lambda kv: order[id(kv[1])]):
        got, want = ir_values.get(id(value)), tf_values.get(tf_names[node])
        if got is None or want is None or np.shape(got) != np.shape(want) or np.asarray(want).dtype.kind != "f":
            continue
        ratio, err = _ratio(np.asarray(got, np.float64), np.asarray(want, np.float64), tolerance)
        if ratio > 1:
            return Divergence(format_op(value.producer, namer).strip(), node, err, ratio)
    return None


def _ratio(got: np.ndarray, want: np.ndarray, tol: Tolerance) -> tuple[float, float]:
    finite = np.isfinite(want)
    err = np.where(finite, np.abs(got - want), np.where(got == want, 0.0, np.inf))
    ref = np.abs(np.where(finite, want, 0.0))
    rms = float(np.sqrt(np.mean(ref * ref))) if ref.size else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = err / (tol.atol + tol.rtol * (ref + rms))
    return (float(np.nanmax(ratio)) if ratio.size else 0.0), (float(np.nanmax(err)) if err.size else 0.0)


def _weights_as_constants(model):
    """The frozen GraphDef with the captured variables' values in Const nodes, so that TF can run
    it with any node fetched: reads of a variable handle (through Identity nodes) become its
    value, an embedding's ResourceGather a GatherV2 of it."""
    import tensorflow as tf

    resource = tf.resource.as_datatype_enum
    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(model.graph_def)
    variables = model.variables or {}
    handle_of: dict[str, str] = {}  # node -> the variable placeholder whose handle it is
    extra = []
    for node in graph_def.node:  # topological enough: a handle's Identity follows its source
        src = node.input[0].split(":")[0] if node.input else ""
        if node.name in variables and node.op == "Placeholder":
            if node.attr["dtype"].type == resource:
                handle_of[node.name] = node.name
            else:
                _make_const(node, np.asarray(variables[node.name][1]))
        elif node.op == "Identity" and node.attr["T"].type == resource and src in handle_of:
            handle_of[node.name] = handle_of[src]
        elif node.op == "ReadVariableOp" and src in handle_of:
            _make_const(node, np.asarray(variables[handle_of[src]][1]))
        elif node.op == "ResourceGather" and src in handle_of:
            extra += _as_gather(node, np.asarray(variables[handle_of[src]][1]))
    graph_def.node.extend(extra)
    return graph_def


def _as_gather(node, table: np.ndarray) -> list:
    """Rewrite ResourceGather(handle, ids) in place as GatherV2(table, ids, 0); the new Consts."""
    import tensorflow as tf

    data, axis = tf.compat.v1.NodeDef(), tf.compat.v1.NodeDef()
    data.name, axis.name = f"{node.name}/bertc_table", f"{node.name}/bertc_axis"
    _make_const(data, table)
    _make_const(axis, np.asarray(0, np.int32))
    ids = node.input[1]
    batch_dims = node.attr["batch_dims"].i if "batch_dims" in node.attr else 0
    index_type = node.attr["Tindices"].type
    for key in list(node.attr):
        del node.attr[key]
    del node.input[:]
    node.op = "GatherV2"
    node.input.extend([data.name, ids, axis.name])
    node.attr["Tparams"].type = tf.as_dtype(table.dtype).as_datatype_enum
    node.attr["Tindices"].type = index_type
    node.attr["Taxis"].type = tf.int32.as_datatype_enum
    node.attr["batch_dims"].i = batch_dims
    return [data, axis]


def _make_const(node, value: np.ndarray) -> None:
    import tensorflow as tf

    for key in list(node.attr):
        del node.attr[key]
    del node.input[:]
    node.op = "Const"
    node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))


def _run_tf(graph_def, model, fetch: list[str], feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the graph in TF as written (grappler's remapper off), fetching ``fetch``'s outputs :0."""
    import tensorflow as tf

    from ..frontend.tf_loader import _graph_as_written

    fn = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
    ins = [fn.graph.get_tensor_by_name(f"{i.node}:{i.index}") for i in model.inputs]
    names = [n for n in fetch if _has_output(fn.graph, n)]
    outs = [fn.graph.get_tensor_by_name(f"{n}:0") for n in names]
    pruned = fn.prune(ins, outs)
    with _graph_as_written(tf):
        res = pruned(*[tf.constant(np.asarray(feeds[i.name]).astype(i.dtype)) for i in model.inputs])
    return {n: r.numpy() for n, r in zip(names, res)}


def _has_output(graph, name: str) -> bool:
    try:
        op = graph.get_operation_by_name(name)
    except KeyError:
        return False
    return len(op.outputs) > 0 and op.outputs[0].dtype.is_floating
