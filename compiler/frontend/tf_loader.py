"""Load a TensorFlow model and freeze it into one GraphDef.

Accepts a SavedModel directory (a signature, ``serving_default`` by default),
a frozen GraphDef ``.pb`` (input and output node names given, or found) or a Keras
``.keras`` file.  Variables become constants and functions are inlined
(``convert_variables_to_constants_v2``), so the importer sees one flat graph.
Every way this can go wrong becomes a ``BertcError`` that names the file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..diagnostics import BertcError, did_you_mean

log = logging.getLogger(__name__)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class TensorSpecInfo:
    name: str  # the user-facing name (signature key)
    node: str  # the placeholder / output node name in the GraphDef
    index: int  # output index of that node
    dtype: str  # numpy dtype name
    shape: list[int | None] | None


@dataclass
class FrozenModel:
    graph_def: object  # tf.compat.v1.GraphDef
    inputs: list[TensorSpecInfo]
    outputs: list[TensorSpecInfo]
    source: str
    function: object = None  # a callable running the original model, for verification
    weight_names: dict[str, str] | None = None  # const node -> the variable's name
    # Captured placeholder node -> (variable name, value): the weights, read
    # straight from the variables instead of being copied into Const protos.
    variables: dict[str, tuple[str, object]] | None = None


def _tf():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def load_model(path: str | Path, signature: str = "serving_default", inputs: list[str] | None = None,
               outputs: list[str] | None = None) -> FrozenModel:
    path = Path(path)
    if not path.exists():
        raise BertcError(f"{path}: no such file or directory.",
                         "Pass a SavedModel directory, a frozen GraphDef .pb or a .keras file.")
    if path.is_dir():
        return load_saved_model(path, signature)
    if path.suffix == ".keras":
        return load_keras(path)
    if path.suffix in (".pb", ".pbtxt"):
        return load_graph_def(path, inputs, outputs)
    if path.suffix in (".h5", ".hdf5"):
        raise BertcError(f"{path}: a legacy Keras HDF5 file, which bertc does not read.",
                         "Load it with the Keras that wrote it and export a SavedModel "
                         "(model.export(DIR), or model.save(DIR) in tf-keras), then compile that.")
    raise BertcError(f"{path}: not a model bertc can read.",
                     "Pass a SavedModel directory, a frozen GraphDef .pb or a .keras file.")


def load_saved_model(path: Path, signature: str = "serving_default") -> FrozenModel:
    if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
        raise BertcError(f"{path}: this directory is not a SavedModel (it has no saved_model.pb).",
                         "Export one with tf.saved_model.save(model, DIR) or model.export(DIR).")
    tf = _tf()
    try:
        obj = tf.saved_model.load(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if not (path / "variables").is_dir():
            raise BertcError(f"{path}: the SavedModel has no variables/ directory, which holds its weights "
                             f"({first}).", "Copy the whole SavedModel directory, variables/ included.") from None
        raise BertcError(f"{path}: TensorFlow could not load this SavedModel ({first}).",
                         "The file may be corrupt or truncated; export it again.") from None
    sigs = dict(obj.signatures)
    if signature not in sigs:
        avail = ", ".join(sigs) or "none"
        raise BertcError(f"{path}: the SavedModel has no signature '{signature}'.{did_you_mean(signature, sigs)}",
                         f"Its signatures: {avail}. Choose one with --signature NAME.")
    fn = sigs[signature]
    return freeze_function(fn, str(path), obj)


def freeze_function(fn, source: str = "<function>", keepalive=None) -> FrozenModel:
    """Flatten a concrete function (a signature, or ``tf.function(...).get_concrete_function()``).

    Function calls are inlined by grappler; the weights are read from the
    captured variables directly.  (TF's ``convert_variables_to_constants_v2``
    does the same but copies every weight through protobuf: 20 s and several
    GB for BERT-base, against well under a second this way.)
    """
    tf = _tf()
    graph_def, variables = _inline(fn, source)
    weight_names = {node: name for node, (name, _) in variables.items()}
    _, kw_specs = fn.structured_input_signature
    captured = {internal.name for _, internal in fn.graph.captures}
    placeholders = [t for t in fn.inputs if t.dtype != tf.resource and t.name not in captured]
    specs = list(kw_specs.items()) if kw_specs else [(t.name.split(":")[0], None) for t in placeholders]
    by_node = {t.name.split(":")[0]: t for t in placeholders}
    ins: list[TensorSpecInfo] = []
    for i, (key, spec) in enumerate(specs):
        tensor = by_node.get(getattr(spec, "name", None) or key)
        if tensor is None and i < len(placeholders):
            tensor = placeholders[i]
        if tensor is None:
            raise BertcError(f"{source}: cannot find the placeholder of input '{key}'.")
        shape = tensor.shape.as_list() if tensor.shape.rank is not None else None
        ins.append(TensorSpecInfo(key, tensor.name.split(":")[0], 0, tensor.dtype.as_numpy_dtype.__name__, shape))
    # The function's own argument order (stable), not the signature dict's.
    order = {t.name.split(":")[0]: i for i, t in enumerate(placeholders)}
    ins.sort(key=lambda spec: order.get(spec.node, len(order)))
    out_struct = fn.structured_outputs
    if isinstance(out_struct, dict):
        keys = sorted(out_struct)
    else:
        keys = [f"output_{i}" for i in range(len(fn.outputs))]
    outs: list[TensorSpecInfo] = []
    for key, tensor in zip(keys, fn.outputs):
        node, _, idx = tensor.name.partition(":")
        shape = tensor.shape.as_list() if tensor.shape.rank is not None else None
        outs.append(TensorSpecInfo(key, node, int(idx or 0), tensor.dtype.as_numpy_dtype.__name__, shape))

    def run(**feeds):
        res = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in res.items()} if isinstance(res, dict) else res

    run.keepalive = keepalive  # the loaded object owns the variables fn reads
    return FrozenModel(graph_def, ins, outs, source, run, weight_names, variables)


def _inline(fn, source: str):
    """(GraphDef with calls inlined, {capture placeholder: (variable name, value)})."""
    try:
        graph_def = _inline_graph(fn)
    except Exception as e:
        raise BertcError(f"{source}: inlining the model's functions failed: {str(e).splitlines()[0][:300]}") from None
    by_handle = {id(v.handle): v for v in getattr(fn, "variables", ())}
    variables: dict[str, tuple[str, object]] = {}
    for external, internal in fn.graph.captures:
        node = internal.name.split(":")[0]
        var = by_handle.get(id(external))
        if var is not None:
            variables[node] = (var.name.split(":")[0], var.numpy())
        elif hasattr(external, "numpy") and external.dtype.name != "resource":
            variables[node] = (node, external.numpy())  # a captured constant tensor
    return graph_def, variables


# Marks that keep grappler from inlining a call: a function compiled with XLA
# (``tf.function(jit_compile=True)``, Keras' ``jit_compile``) is a call the
# optimizer leaves in place.  bertc compiles the body itself, so they go.
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_XlaCompile", "_noinline", "_XlaScope", "_XlaInternalScope")


def _inline_graph(fn):
    """``fn``'s GraphDef with every call inlined, XLA-compiled functions included.

    TF's ``_run_inline_graph_optimization`` with one step more: the attributes that
    mark a function for XLA (or forbid inlining it) are removed from the call nodes
    and the function library first; the computation is the same either way.
    """
    from tensorflow.python.framework import convert_to_constants as c2c

    graph_def = fn.graph.as_graph_def()
    _strip_no_inline(graph_def)
    as_graph_def = fn.graph.as_graph_def
    fn.graph.as_graph_def = lambda *a, **k: graph_def  # the helper reads the graph through this
    try:
        return c2c._run_inline_graph_optimization(fn, lower_control_flow=False, aggressive_inlining=True)
    finally:
        fn.graph.as_graph_def = as_graph_def


def _strip_no_inline(graph_def) -> None:
    """Remove the no-inline marks from the call nodes and the library functions, in place."""
    node_lists = [graph_def.node] + [f.node_def for f in graph_def.library.function]
    for nodes in node_lists:
        for node in nodes:
            for key in _NO_INLINE_ATTRS:
                if key in node.attr:
                    del node.attr[key]
    for function in graph_def.library.function:
        for key in _NO_INLINE_ATTRS:
            if key in function.attr:
                del function.attr[key]


def load_keras(path: Path) -> FrozenModel:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise BertcError(f"{path}: not a .keras file (a .keras file is a zip archive; this one is not): it is "
                         "corrupt or has the wrong extension.",
                         "Save the model again with model.save('model.keras').")
    tf = _tf()
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise BertcError(f"{path}: Keras could not load this file ({str(e).splitlines()[0][:300]}).",
                         "A .keras file holds a model's configuration, not its code: custom layers and Lambda "
                         "functions load only where their Python code is registered. Export a SavedModel where "
                         "the model was built (model.export(DIR)) and compile that.") from None
    specs = {}
    model_inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
    for t in model_inputs:
        specs[t.name] = tf.TensorSpec([None] * len(t.shape), t.dtype, name=t.name)

    @tf.function(input_signature=[specs])
    def serve(features):
        out = model(features if len(specs) > 1 else next(iter(features.values())), training=False)
        return out if isinstance(out, dict) else {"output_0": out}

    fn = serve.get_concrete_function()
    return freeze_function(fn, str(path), model)


# Sinks that are not results: bookkeeping, checks, savers and training updates.
_NOT_OUTPUTS = {"NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert", "Print", "PrintV2",
                "SaveV2", "RestoreV2", "MergeV2Checkpoints", "VarHandleOp", "VariableV2", "Variable",
                "VarIsInitializedOp", "AssignVariableOp", "Assign", "AssignAdd", "AssignSub",
                "ScalarSummary", "HistogramSummary", "MergeSummary", "WriteScalarSummary"}


def _default_inputs(nodes: dict) -> list[str]:
    """Every Placeholder, in graph order (what a TF1 feed dict would fill)."""
    return [name for name, n in nodes.items() if n.op == "Placeholder"]


def _default_outputs(nodes: dict, inputs: list[str]) -> list[str]:
    """The nodes nothing consumes that are computed from the inputs: the model's results.

    Training-only and bookkeeping sinks (savers, assigns, summaries, no-ops)
    and sinks that do not depend on any input (an initializer, a global step)
    are not results.
    """
    consumed = {i.split(":")[0].lstrip("^") for n in nodes.values() for i in n.input}
    readers: dict[str, list[str]] = {}
    for name, n in nodes.items():
        for i in n.input:
            if not i.startswith("^"):
                readers.setdefault(i.split(":")[0], []).append(name)
    computed, stack = set(inputs), list(inputs)  # everything the inputs flow into
    while stack:
        for r in readers.get(stack.pop(), ()):
            if r not in computed:
                computed.add(r)
                stack.append(r)
    return [name for name, n in nodes.items() if name not in consumed and n.op not in _NOT_OUTPUTS
            and not n.op.startswith(("Apply", "ResourceApply", "Save", "Restore")) and name in computed]


def load_graph_def(path: Path, inputs: list[str] | None, outputs: list[str] | None) -> FrozenModel:
    """A frozen GraphDef; without ``--inputs``/``--outputs`` its Placeholders are the inputs
    and the nodes nothing consumes are the outputs (the choice is logged)."""
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    try:
        data = path.read_bytes()
        if path.suffix == ".pbtxt":
            from google.protobuf import text_format

            text_format.Parse(data.decode(), graph_def)
        else:
            graph_def.ParseFromString(data)
    except Exception as e:
        raise _not_a_graph_def(path, data if "data" in locals() else b"", type(e).__name__) from None
    if data and not _looks_like_graph_def(graph_def):
        raise _not_a_graph_def(path, data, "its bytes parse, but hold no TF nodes")
    nodes = {n.name: n for n in graph_def.node}
    if not inputs:
        inputs = _default_inputs(nodes)
        if not inputs:
            raise BertcError(f"{path}: the GraphDef has no Placeholder to feed.",
                             "Name the input nodes with --inputs input_ids,attention_mask")
        log.warning("%s: no --inputs given; using its Placeholders: %s", path, ", ".join(inputs))
    if not outputs:
        outputs = _default_outputs(nodes, [i.partition(":")[0] for i in inputs])
        if not outputs:
            raise BertcError(f"{path}: no node of the GraphDef is computed from its inputs and unused.",
                             "Name the output nodes with --outputs logits")
        log.warning("%s: no --outputs given; using the nodes nothing consumes: %s", path, ", ".join(outputs))
    ins = []
    for name in inputs:
        node, _, idx = name.partition(":")
        if node not in nodes:
            raise BertcError(f"{path}: no input node '{node}'.{did_you_mean(node, nodes)}")
        n = nodes[node]
        dtype = tf.dtypes.as_dtype(n.attr["dtype"].type).as_numpy_dtype.__name__
        shape = None
        if "shape" in n.attr and not n.attr["shape"].shape.unknown_rank:
            shape = [d.size if d.size >= 0 else None for d in n.attr["shape"].shape.dim]
        ins.append(TensorSpecInfo(node, node, int(idx or 0), dtype, shape))
    outs = []
    for name in outputs:
        node, _, idx = name.partition(":")
        if node not in nodes:
            raise BertcError(f"{path}: no output node '{node}'.{did_you_mean(node, nodes)}")
        outs.append(TensorSpecInfo(node, node, int(idx or 0), _output_dtype(tf, nodes[node]), None))

    def run(**feeds):
        fn = tf.compat.v1.wrap_function(lambda: tf.graph_util.import_graph_def(graph_def, name=""), [])
        pruned = fn.prune([fn.graph.get_tensor_by_name(f"{i.node}:{i.index}") for i in ins],
                          [fn.graph.get_tensor_by_name(f"{o.node}:{o.index}") for o in outs])
        with _graph_as_written(tf):
            res = pruned(*[tf.constant(feeds[i.name]) for i in ins])
        return {o.name: r.numpy() for o, r in zip(outs, res)}

    return FrozenModel(graph_def, ins, outs, str(path), run)


_OP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_>]*$")


def _looks_like_graph_def(graph_def) -> bool:
    """Random bytes can parse as a GraphDef (protobuf skips unknown fields); a real one has
    nodes, each with a name and an op name TF could register."""
    return len(graph_def.node) > 0 and all(n.name and _OP_NAME.match(n.op) for n in graph_def.node)


def _not_a_graph_def(path: Path, data: bytes, why: str) -> BertcError:
    """The error for a .pb that is not a frozen GraphDef, with what it is instead when that is clear."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        is_saved_model = bool(data) and saved.ParseFromString(data) is not None and len(saved.meta_graphs) > 0
    except Exception:
        is_saved_model = False
    if is_saved_model:
        return BertcError(f"{path}: this is a SavedModel's saved_model.pb, not a frozen GraphDef.",
                          "Pass the SavedModel's directory (the one holding saved_model.pb and variables/).")
    return BertcError(f"{path}: not a TensorFlow GraphDef ({why}); the file is corrupt or not a frozen graph.",
                      "Freeze the model again (convert_variables_to_constants_v2), or pass a SavedModel directory.")


def _output_dtype(tf, node) -> str:
    """The numpy dtype name of a node's first output, from its type attribute (float32 if none)."""
    for key in ("T", "dtype", "DstT", "out_type", "output_type"):
        if key in node.attr and node.attr[key].type:
            return tf.dtypes.as_dtype(node.attr[key].type).as_numpy_dtype.__name__
    return "float32"


class _graph_as_written:
    """Run a frozen graph the way it is written: grappler's remapper (with oneDNN) fuses a
    graph-mode matmul + bias + GELU into kernels that differ from the ops by ~1e-3 on a
    modeling.py BERT, which would make the reference, not the artifact, wrong."""

    def __init__(self, tf) -> None:
        self.tf = tf

    def __enter__(self) -> None:
        self.saved = self.tf.config.optimizer.get_experimental_options()
        self.tf.config.optimizer.set_experimental_options({"remapping": False})

    def __exit__(self, *exc) -> None:
        self.tf.config.optimizer.set_experimental_options({"remapping": self.saved.get("remapping", True)})
