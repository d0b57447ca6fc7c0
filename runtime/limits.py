"""What token ids a model accepts: the rows of its embedding tables, read from any artifact.

``bertc run`` and ``bertc eval`` check ids before running, so an id outside
[0, vocab) or a sequence longer than the position table is refused with a message
that names the id (or the length) and the limit, whatever the runtime would do
(onnxruntime wraps a negative index, LiteRT and TF raise, numpy wraps).

Every format is read the same way: a graph of nodes (kind, inputs, outputs) plus
the shapes of its constant tensors.  The vocabulary of an ids input is the row
count of the first table a gather reads at indices reached from that input; the
position table is a 2-D constant whose name says "position".
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from ..diagnostics import BertcError
from .inputs import input_role

_GATHERS = frozenset({"gather", "Gather", "GATHER", "GatherV2", "ResourceGather"})
_SLICES = frozenset({"Slice", "SLICE", "STRIDED_SLICE", "StridedSlice"})
_MAX_HOPS = 8  # ids reach their embedding gather within a few reshapes and casts
# Ops that read only a tensor's shape: the walk from the ids must not follow them, or it
# would reach the position table through range(seq_len) and call its rows the vocabulary.
_SHAPE_ONLY = frozenset({"shape", "Shape", "SHAPE", "ShapeN", "Size", "SIZE", "Rank", "RANK", "range", "Range",
                         "RANGE"})


@dataclass
class Limits:
    """Rows of each ids input's embedding table, and of the position table (None: not found)."""

    vocab: dict[str, int] = field(default_factory=dict)
    positions: int | None = None


@dataclass
class _Net:
    """A model as plain nodes: (kind, input tensor names, output tensor names), table shapes."""

    nodes: list[tuple[str, list[str], list[str]]]
    shapes: dict[str, tuple[int, ...]]  # constant tensors (weights) by name
    names: dict[str, str] = field(default_factory=dict)  # tensor -> the weight's own name, where it differs
    int_tables: set[str] = field(default_factory=set)  # integer constants: index buffers, never embeddings

    def limits(self, inputs: dict[str, str]) -> Limits:
        """``inputs``: the session's input name -> the tensor name it feeds."""
        users: dict[str, list[tuple[int, int]]] = {}
        for n, (_, ins, _) in enumerate(self.nodes):
            for i, name in enumerate(ins):
                users.setdefault(name, []).append((n, i))
        vocab = {}
        for feed, tensor in inputs.items():
            if input_role(feed) == "ids":
                rows = self._table_rows(tensor, users)
                if rows is not None:
                    vocab[feed] = rows
        return Limits(vocab, self._position_rows())

    def _position_rows(self) -> int | None:
        """Rows of a 2-D table named "position" that a gather or slice reads (keras-hub slices it)."""
        rows = [self.shapes[ins[0]][0] for kind, ins, _ in self.nodes
                if kind in _GATHERS | _SLICES and ins and self._is_table(ins[0])
                and "position" in self.names.get(ins[0], ins[0]).lower()]
        return min(rows) if rows else None

    def _is_table(self, tensor: str) -> bool:
        """A 2-D constant of values (float, or int8 when quantized) with more than one row."""
        shape = self.shapes.get(tensor, ())
        return len(shape) == 2 and shape[0] > 1 and tensor not in self.int_tables

    def _table_rows(self, start: str, users) -> int | None:
        frontier, seen = [start], {start}
        for _ in range(_MAX_HOPS):
            nxt = []
            for tensor in frontier:
                for n, i in users.get(tensor, []):
                    kind, ins, outs = self.nodes[n]
                    if kind in _GATHERS and i == 1 and self._is_table(ins[0]):
                        return int(self.shapes[ins[0]][0])
                    if kind in _SHAPE_ONLY:
                        continue
                    nxt += [o for o in outs if o not in seen]
                    seen.update(outs)
            frontier = nxt
        return None


def onnx_net(path) -> tuple[_Net, dict[str, str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = [(n.op_type, list(n.input), list(n.output)) for n in model.graph.node]
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    ints = {t.name for t in model.graph.initializer if t.data_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64)}
    return _Net(nodes, shapes, int_tables=ints), {i.name: i.name for i in model.graph.input}


def _tflite_net(session) -> tuple[_Net, dict[str, str]]:
    interp = session.interpreter
    details = {t["index"]: t for t in interp.get_tensor_details()}
    name = {i: f"{i}:{t['name']}" for i, t in details.items()}
    nodes = [(o["op_name"], [name.get(int(x), "") for x in o["inputs"]], [name[int(x)] for x in o["outputs"]])
             for o in interp._get_ops_details()]
    produced = {out for _, _, outs in nodes for out in outs}
    inputs = {feed: name[index] for feed, index in session._inputs}
    shapes = {name[i]: tuple(int(d) for d in t["shape"]) for i, t in details.items()
              if name[i] not in produced and name[i] not in inputs.values()}
    ints = {name[i] for i, t in details.items() if np.dtype(t["dtype"]) in (np.int32, np.int64)}
    return _Net(nodes, shapes, int_tables=ints), inputs


def _dtype(value) -> np.dtype:
    """A variable's numpy dtype without copying its value (a tf.Variable or a numpy array)."""
    as_numpy = getattr(getattr(value, "dtype", None), "as_numpy_dtype", None)
    return np.dtype(as_numpy) if as_numpy is not None else np.asarray(value).dtype


def _tf_net(frozen) -> tuple[_Net, dict[str, str]]:
    """A frozen GraphDef: constants and captured variables are the tables."""
    nodes, shapes, names, ints = [], {}, {}, set()
    for node in frozen.graph_def.node:
        ins = [i.split("^")[-1].split(":")[0] for i in node.input if not i.startswith("^")]
        nodes.append((node.op, ins, [node.name]))
        if node.op == "Const":
            shapes[node.name] = tuple(int(d.size) for d in node.attr["value"].tensor.tensor_shape.dim)
            if node.attr["dtype"].type in (3, 9):  # DT_INT32, DT_INT64
                ints.add(node.name)
            names[node.name] = (frozen.weight_names or {}).get(node.name, node.name)
    for placeholder, (variable, value) in (frozen.variables or {}).items():
        shapes[placeholder] = tuple(int(d) for d in np.shape(value))
        names[placeholder] = variable
        if _dtype(value).kind in "iu" and _dtype(value).itemsize >= 4:
            ints.add(placeholder)
    # Variables are read through Identity / ReadVariableOp: those reads are tables too.
    for kind, ins, outs in nodes:
        if kind in ("Identity", "ReadVariableOp") and ins and ins[0] in shapes:
            shapes[outs[0]], names[outs[0]] = shapes[ins[0]], names.get(ins[0], ins[0])
            if ins[0] in ints:
                ints.add(outs[0])
    return _Net(nodes, shapes, names, ints), {i.name: i.node for i in frozen.inputs}


def model_limits(session) -> Limits:
    """The limits of whatever ``open_session`` returned; empty when they cannot be read."""
    from .session import ReferenceSession, TFSession

    try:
        if isinstance(session, ReferenceSession):
            return _graph_limits(session.graph)
        if isinstance(session, TFSession):
            net, inputs = _tf_net(session.frozen)
        elif type(session).__name__ == "TFLiteSession":
            net, inputs = _tflite_net(session)
        elif type(session).__name__ == "OnnxSession" and session.source is not None:
            net, inputs = onnx_net(session.source)
        else:
            return Limits()
        return net.limits(inputs)
    except Exception:  # limits are a courtesy: the runtime still refuses what it cannot run
        return Limits()


def _graph_limits(graph) -> Limits:
    from .inputs import position_table_rows, vocab_size

    vocab = {}
    for v in graph.inputs:
        if input_role(v.name) == "ids":
            rows = vocab_size(graph, v.name, default=None)
            if rows is not None:
                vocab[v.name] = rows
    return Limits(vocab, position_table_rows(graph))


def check_ids(feeds: dict[str, np.ndarray], limits: Limits, source: str, what: str = "--ids") -> None:
    """Refuse ids outside [0, vocab) and sequences longer than the position table, naming both."""
    for name, ids in feeds.items():
        if input_role(name) != "ids":
            continue
        ids, rows = np.asarray(ids), limits.vocab.get(name)
        bad = ids[(ids < 0) | (ids >= rows)] if rows is not None else ids[ids < 0]
        if bad.size:
            size = f"which has {rows} ids (valid ids are 0..{rows - 1})" if rows is not None else "ids start at 0"
            raise BertcError(f"{what}: token id {int(bad.flat[0])} is outside the vocabulary of {source}, {size}.",
                             "Use the model's own tokenizer (vocab.txt) to make the ids.")
    seq = max((np.shape(a)[-1] for n, a in feeds.items() if input_role(n) == "ids" and np.ndim(a) >= 2),
              default=0)
    if limits.positions is not None and seq > limits.positions:
        raise BertcError(f"{what}: {seq} tokens, but the position-embedding table of {source} has "
                         f"{limits.positions} rows, so the model takes at most {limits.positions} tokens.",
                         f"Truncate the input to {limits.positions} tokens.")
