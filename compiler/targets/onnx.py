"""The ONNX target: a legal IR graph, lowered op by op to an ONNX model (opset 20).

Opset 20 is the first where both ``LayerNormalization`` (17) and ``Gelu`` (20)
are standard ops, so BERT's two fused blocks lower to one node each and stay
recognisable to runtimes; later opsets add nothing this lowering needs and only
narrow the runtimes that load the file.  onnxruntime 1.32 runs it on CPU.

The lowering is one table (``_LOWERINGS``) from IR op kind to a small function
that emits ONNX nodes.  ``CAPABILITIES`` says which op kinds, and which dtypes
of them, onnxruntime's CPU provider runs; anything else (``cumprod`` above all)
must be rewritten by a legalization pass first.  Constants become initializers
named after their weights; output is deterministic (same graph, same bytes).
"""

from __future__ import annotations

import logging
import re
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..cpu import METADATA_KEY as CPU_METADATA_KEY, resolve as resolve_cpu, u8s8_exact
from ..ir.names import UniqueNames
from ..ir.printer import INLINE_LIMIT, Namer
from ..ir.graph import Graph, Op, Value
from ..ir.decompose import decomposed
from ..ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, UNKNOWN, TensorType, is_static
from .base import LoweringError, Target, bias_operand, folded_bias, reads_graph_input

logger = logging.getLogger(__name__)

OPSET = 20
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_./:=,\[\]\-]")


def onnx_dtype(dtype: str) -> int:
    """The TensorProto element type of an IR dtype name."""
    return helper.np_dtype_to_tensor_dtype(DTYPES[dtype])


def value_info(name: str, type: TensorType) -> onnx.ValueInfoProto:
    """A typed graph input/output: static dims as dim_value, symbols as dim_param."""
    dims = [None if d == UNKNOWN else (int(d) if is_static(d) else str(d)) for d in type.shape]
    return helper.make_tensor_value_info(name, onnx_dtype(type.dtype), dims)


# --------------------------------------------------------------------------- emitter
class _Emitter:
    """Collects nodes and initializers, and gives every IR value a unique ONNX name."""

    def __init__(self, graph: Graph | None = None) -> None:
        # Value names as the text form prints them, so a graph and its printed-and-
        # reparsed copy lower to the same bytes.
        self._ssa: dict[int, str] = {}
        if graph is not None:
            namer = Namer()
            for v in graph.inputs:
                self._ssa[id(v)] = namer.name(v)
            for op in graph.ops:
                for r in op.results:
                    self._ssa[id(r)] = namer.name(r)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: dict[int, str] = {}
        self._taken = UniqueNames()
        self._consts: dict[tuple, str] = {}
        self._node_names: set[str] = set()
        self.op: Op | None = None  # the op being lowered: names and documents its nodes
        self.contrib = True  # emit com.microsoft kernels for the fused ops (else standard ONNX)
        self.shared: dict[tuple, str] = {}  # tensors computed once for several ops (expanded masks)
        self.cpu = "portable"  # the CPU kind int8 kernels must be exact on (bertc.cpu)

    # ---------------------------------------------------------------- names
    def unique(self, hint: str) -> str:
        return self._taken.claim(_NAME_CLEAN.sub("_", hint) or "t")

    def reserve(self, name: str) -> bool:
        """Claim ``name`` verbatim; False when it is already taken."""
        return self._taken.reserve(name)

    def name_of_bound(self, v: Value) -> str | None:
        return self._names.get(id(v))

    def bind(self, v: Value, name: str) -> str:
        """Give ``v`` the ONNX name ``name`` (already reserved)."""
        self._names[id(v)] = name
        return name

    def name_of(self, v: Value) -> str:
        if id(v) not in self._names:
            self._names[id(v)] = self.unique(self._ssa.get(id(v), v.name))
        return self._names[id(v)]

    def fresh(self, suffix: str) -> str:
        """A name for a helper tensor inside the current op's lowering."""
        base = self.op.results[0].name if self.op is not None and self.op.results else "tmp"
        return self.unique(f"{base}/{suffix}")

    # ---------------------------------------------------------------- emitting
    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             **attrs) -> str:
        """Append one node; returns its (first) output name."""
        outputs = outputs or [self.fresh(op_type)]
        loc = self.op.loc if self.op is not None else None
        base = _NAME_CLEAN.sub("_", loc.primary if loc and loc.names else op_type)
        name, k = base, 0
        while name in self._node_names:
            k += 1
            name = f"{base}.{k}"
        self._node_names.add(name)
        node = helper.make_node(op_type, inputs, outputs, name=name, **attrs)
        if loc is not None and len(loc.names) > 1:
            node.doc_string = str(loc)
        self.nodes.append(node)
        return outputs[0]

    def initializer(self, array: np.ndarray, name: str) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """A small helper constant (axes, shapes …), shared by the ops that need the same one.

        Its name says its role and, when short, its value: ``bertc/axes[0]``, ``bertc/zero=0``.
        """
        array = np.asarray(array)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            shown = ""
            if array.ndim == 0:
                shown = f"={array.item()}"
            elif array.ndim == 1 and array.size <= 8:
                shown = "[" + ",".join(str(x) for x in array.tolist()) + "]"
            self._consts[key] = self.initializer(array, self.unique(f"bertc/{hint}{shown}"))
        return self._consts[key]

    def i64(self, values, hint: str) -> str:
        """A 1-D int64 constant; python ints beyond int64 clamp (slice ends such as 2**63)."""
        return self.const(np.array([max(_INT64_MIN, min(_INT64_MAX, int(v))) for v in values],
                                   np.int64), hint)

    def cast(self, name: str, src: str, to: str) -> str:
        return name if src == to else self.node("Cast", [name], to=onnx_dtype(to))

    def i64_vector(self, name: str, v: Value) -> str:
        """A shape-like operand as the 1-D int64 tensor ONNX wants."""
        out = self.cast(name, v.dtype, "i64")
        if v.type.rank == 0:
            out = self.node("Unsqueeze", [out, self.i64([0], "axes")])
        return out

    def scalar(self, name: str, v: Value) -> str:
        """A one-element operand as a rank-0 tensor (Range wants scalars)."""
        if v.type.rank == 0:
            return name
        return self.node("Reshape", [name, self.const(np.zeros(0, np.int64), "scalar_shape")])


Lowering = Callable[[_Emitter, Op, list[str], list[str]], None]


# --------------------------------------------------------------------------- lowerings
def _simple(op_type: str, attrs: Callable[[Op], dict] | None = None) -> Lowering:
    """An IR op that is exactly one ONNX node with the same operands."""

    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        e.node(op_type, ins, outs, **(attrs(op) if attrs else {}))

    return lower


def _attr(*keys: str) -> Callable[[Op], dict]:
    return lambda op: {k: op.attrs[k] for k in keys}


def _lower_const(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.initializer(op.attrs["value"], outs[0])


def _lower_rsqrt(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """rsqrt(x) -> Reciprocal(Sqrt(x)); ONNX has no Rsqrt."""
    e.node("Reciprocal", [e.node("Sqrt", ins)], outs)


def _lower_not_equal(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Not", [e.node("Equal", ins)], outs)


def _lower_div(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """Signed integers floor-divide in the IR (TF FloorDiv) but truncate in ONNX Div:
    x // y = (x - x mod y) / y, where Mod (fmod=0) takes the divisor's sign and the
    division is exact."""
    if op.operands[0].dtype not in INT_DTYPES or op.operands[0].dtype == "u8":
        e.node("Div", ins, outs)
        return
    x, y = ins
    e.node("Div", [e.node("Sub", [x, e.node("Mod", [x, y], fmod=0)]), y], outs)


def _lower_where(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """onnxruntime's CPU Where has no bool kernel (Keras' causal masks select between masks):
    where(c, a, b) on bools is (c and a) or (not c and b)."""
    if op.operands[1].dtype != "bool":
        e.node("Where", ins, outs)
        return
    c, a, b = ins
    e.node("Or", [e.node("And", [c, a]), e.node("And", [e.node("Not", [c]), b])], outs)


def _lower_cast(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Cast", ins, outs, to=onnx_dtype(op.attrs["to"]))


def _reduce(op_type: str) -> Lowering:
    """Reductions take axes as an input (opset 18+); the IR's empty axes reduce nothing."""

    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if not op.attrs["axes"]:
            e.node("Identity", ins, outs)
            return
        e.node(op_type, [ins[0], e.i64(op.attrs["axes"], "axes")], outs,
               keepdims=int(op.attrs["keepdims"]))

    return lower


def _lower_cumsum(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    axis = e.const(np.array(op.attrs["axis"], np.int64), "axis")
    e.node("CumSum", [ins[0], axis], outs, exclusive=int(op.attrs["exclusive"]),
           reverse=int(op.attrs["reverse"]))


def _shape_operand(op_type: str, attr: str) -> Lowering:
    """Reshape / Tile / Expand: the target comes from an attribute or from an operand."""

    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if op.attrs[attr] is not None:
            arg = e.i64(op.attrs[attr], attr)
        else:
            arg = e.i64_vector(ins[1], op.operands[1])
        e.node(op_type, [ins[0], arg], outs)

    return lower


def _lower_shape(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if op.attrs["dtype"] == "i64":
        e.node("Shape", ins, outs)
        return
    e.node("Cast", [e.node("Shape", ins)], outs, to=onnx_dtype(op.attrs["dtype"]))


def _lower_slice(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if len(op.operands) == 1:
        starts, ends = e.i64(op.attrs["starts"], "starts"), e.i64(op.attrs["ends"], "ends")
    else:
        starts = e.i64_vector(ins[1], op.operands[1])
        ends = e.i64_vector(ins[2], op.operands[2])
    args = [ins[0], starts, ends, e.i64(op.attrs["axes"], "axes")]
    if op.attrs["steps"]:
        args.append(e.i64(op.attrs["steps"], "steps"))
    e.node("Slice", args, outs)


def _axes_op(op_type: str) -> Lowering:
    """Squeeze / Unsqueeze with axes as an input; empty axes mean no change in the IR
    (ONNX Squeeze without axes would drop every size-1 dim)."""

    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if not op.attrs["axes"]:
            e.node("Identity", ins, outs)
            return
        e.node(op_type, [ins[0], e.i64(op.attrs["axes"], "axes")], outs)

    return lower


def _lower_range(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Range", [e.scalar(n, v) for n, v in zip(ins, op.operands)], outs)


def _lower_one_hot(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """TF one-hot: negative indices give an all-off row, while ONNX OneHot counts them
    from the end, so they are moved out of range first.  onnxruntime has OneHot
    kernels for int64 indices with f16/f32/i64 values; other dtypes go through one."""
    dtype = op.attrs["dtype"]
    idx = e.cast(ins[0], op.operands[0].dtype, "i64")
    if op.attrs["depth"] is not None:
        depth_t = e.const(np.array(op.attrs["depth"], np.int64), "depth")
    else:
        depth_t = e.cast(ins[1], op.operands[1].dtype, "i64")
    negative = e.node("Less", [idx, e.const(np.array(0, np.int64), "zero")])
    idx = e.node("Where", [negative, depth_t, idx])
    values = np.array([op.attrs["off_value"], op.attrs["on_value"]], np.float64).astype(DTYPES[dtype])
    axis = op.attrs["axis"]
    if dtype in ("f16", "f32", "i64"):
        e.node("OneHot", [idx, depth_t, e.const(values, "one_hot_values")], outs, axis=axis)
    elif dtype == "f64":  # no f64 kernel: select the exact f64 values with a 0/1 mask
        hot = e.node("OneHot", [idx, depth_t, e.const(np.array([0, 1], np.int64), "one_hot_values")],
                     axis=axis)
        mask = e.node("Cast", [hot], to=TensorProto.BOOL)
        e.node("Where", [mask, e.const(values[1], "on_value"), e.const(values[0], "off_value")], outs)
    else:  # integers and bool: exact through int64
        hot = e.node("OneHot", [idx, depth_t, e.const(values.astype(np.int64), "one_hot_values")],
                     axis=axis)
        e.node("Cast", [hot], outs, to=onnx_dtype(dtype))


def _lower_scatter_nd(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """scatter_nd = zeros(shape) with updates added (duplicates add up): ScatterND add."""
    shape = e.i64(op.attrs["shape"], "shape") if op.attrs["shape"] is not None else \
        e.i64_vector(ins[2], op.operands[2])
    zero = numpy_helper.from_array(np.zeros(1, DTYPES[op.results[0].dtype]))
    zeros = e.node("ConstantOfShape", [shape], value=zero)
    idx = e.cast(ins[0], op.operands[0].dtype, "i64")
    e.node("ScatterND", [zeros, idx, ins[1]], outs, reduction="add")


def _scatter_into(reduction: str) -> Lowering:
    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        idx = e.cast(ins[1], op.operands[1].dtype, "i64")
        e.node("ScatterND", [ins[0], idx, ins[2]], outs, reduction=reduction)

    return lower


def _lower_mod(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """Floor mod.  Integers: ONNX Mod with fmod=0 takes the divisor's sign, as the IR does.
    Floats need fmod=1 (C fmod, the dividend's sign), then + y where the signs differ."""
    if op.operands[0].dtype not in FLOAT_DTYPES:
        e.node("Mod", ins, outs, fmod=0)
        return
    x, y = ins
    r = e.node("Mod", [x, y], fmod=1)
    zero = e.const(np.zeros((), DTYPES[op.operands[0].dtype]), "zero")
    differ = e.node("Xor", [e.node("Less", [r, zero]), e.node("Less", [y, zero])])
    fix = e.node("And", [differ, e.node("Not", [e.node("Equal", [r, zero])])])
    e.node("Where", [fix, e.node("Add", [r, y]), r], outs)


def _lower_pad(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """ONNX Pad wants [begin_0, ..., begin_n, end_0, ..., end_n]; the IR keeps TF's pairs."""
    rank = op.operands[0].type.rank
    if op.attrs["pads"] is not None:
        p = op.attrs["pads"]
        pads = e.i64([p[2 * i] for i in range(rank)] + [p[2 * i + 1] for i in range(rank)], "pads")
    else:
        pairs = e.cast(ins[1], op.operands[1].dtype, "i64")
        pads = e.node("Reshape", [e.node("Transpose", [pairs], perm=[1, 0]), e.i64([-1], "flat")])
    value = e.const(np.array(op.attrs["value"]).astype(DTYPES[op.operands[0].dtype]), "pad_value")
    e.node("Pad", [ins[0], pads, value], outs, mode="constant")


def _lower_nonzero(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """ONNX NonZero gives [rank, n]; TF's Where (and the IR) give [n, rank]."""
    e.node("Transpose", [e.node("NonZero", ins)], outs, perm=[1, 0])


def _lower_gather_nd(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("GatherND", [ins[0], e.cast(ins[1], op.operands[1].dtype, "i64")], outs)


def _arg_reduce(op_type: str) -> Lowering:
    """ArgMax/ArgMin give int64 and the first index of ties, as TF does."""

    def lower(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        attrs = {"axis": op.attrs["axis"], "keepdims": int(op.attrs["keepdims"]), "select_last_index": 0}
        if op.attrs["dtype"] == "i64":
            e.node(op_type, ins, outs, **attrs)
        else:
            e.node("Cast", [e.node(op_type, ins, **attrs)], outs, to=onnx_dtype(op.attrs["dtype"]))

    return lower


_UNARY = {"neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "exp": "Exp", "log": "Log", "tanh": "Tanh",
          "erf": "Erf", "sigmoid": "Sigmoid", "relu": "Relu", "reciprocal": "Reciprocal",
          "identity": "Identity", "logical_not": "Not", "floor": "Floor", "ceil": "Ceil", "round": "Round",
          "sign": "Sign", "sin": "Sin", "cos": "Cos"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "pow": "Pow", "maximum": "Max",
           "minimum": "Min", "equal": "Equal", "less": "Less", "less_equal": "LessOrEqual",
           "greater": "Greater", "greater_equal": "GreaterOrEqual", "logical_and": "And",
           "logical_or": "Or", "matmul": "MatMul"}

def _lower_gather(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """Gather; indices a caller feeds (token ids) first map negatives past the table's end.

    ONNX's Gather wraps a negative index (-1 is the last row), so an id of -1 would
    silently read the last embedding; TF and LiteRT refuse it.  ``Where(idx < 0,
    dtype max, idx)`` makes onnxruntime raise its out-of-bounds error instead.  Only
    indices that come from a graph input are guarded: those are the ones a user
    supplies; indices the graph computes itself were checked against TF at compile time.
    """
    idx = op.operands[1]
    if not reads_graph_input(idx):
        e.node("Gather", ins, outs, axis=op.attrs["axis"])
        return
    big = np.array(np.iinfo(DTYPES[idx.dtype]).max, DTYPES[idx.dtype])
    negative = e.node("Less", [ins[1], e.const(np.zeros((), DTYPES[idx.dtype]), "zero")])
    guarded = e.node("Where", [negative, e.const(big, "out_of_range"), ins[1]])
    e.node("Gather", [ins[0], guarded], outs, axis=op.attrs["axis"])


_LOWERINGS: dict[str, Lowering] = {
    **{k: _simple(v) for k, v in {**_UNARY, **_BINARY}.items()},
    "const": _lower_const,
    "rsqrt": _lower_rsqrt,
    "not_equal": _lower_not_equal,
    "where": _lower_where,
    "div": _lower_div,
    "cast": _lower_cast,
    "gelu": _simple("Gelu", _attr("approximate")),
    "einsum": _simple("Einsum", _attr("equation")),
    "transpose": _simple("Transpose", _attr("perm")),
    "softmax": _simple("Softmax", _attr("axis")),
    "layer_norm": _simple("LayerNormalization", _attr("axis", "epsilon")),
    "concat": _simple("Concat", _attr("axis")),
    "gather": _lower_gather,
    "reduce_mean": _reduce("ReduceMean"),
    "reduce_sum": _reduce("ReduceSum"),
    "reduce_max": _reduce("ReduceMax"),
    "reduce_min": _reduce("ReduceMin"),
    "reduce_prod": _reduce("ReduceProd"),
    "cumsum": _lower_cumsum,
    "reshape": _shape_operand("Reshape", "shape"),
    "tile": _shape_operand("Tile", "repeats"),
    "expand": _shape_operand("Expand", "shape"),
    "shape": _lower_shape,
    "slice": _lower_slice,
    "squeeze": _axes_op("Squeeze"),
    "unsqueeze": _axes_op("Unsqueeze"),
    "range": _lower_range,
    "one_hot": _lower_one_hot,
    "scatter_nd": _lower_scatter_nd,
    "scatter_nd_update": _scatter_into("none"),
    "scatter_nd_add": _scatter_into("add"),
    "mod": _lower_mod,
    "pad": _lower_pad,
    "nonzero": _lower_nonzero,
    "gather_nd": _lower_gather_nd,
    "argmax": _arg_reduce("ArgMax"),
    "argmin": _arg_reduce("ArgMin"),
}


# --------------------------------------------------------------------------- capabilities
Check = Callable[[Op], "str | None"]

_ALL = frozenset(DTYPES)
_F = FLOAT_DTYPES
_NUM = _F | INT_DTYPES
_F_I32_I64 = _F | {"i32", "i64"}
_F_I8_U8_I32_I64 = _F | {"i8", "u8", "i32", "i64"}


def _dtypes(allowed: frozenset[str], operand: int = 0) -> Check:
    """Operand ``operand`` must have a dtype that onnxruntime's CPU kernels take."""

    def check(op: Op) -> str | None:
        dt = op.operands[operand].dtype
        if dt in allowed:
            return None
        return (f"{op.kind} on {dt} has no onnxruntime CPU kernel "
                f"(it runs {', '.join(sorted(allowed))})")

    return check


def _check_gelu(op: Op) -> str | None:
    """Gelu has f16/f32 kernels; on f64 only the tanh form runs (through its function body)."""
    dt = op.operands[0].dtype
    if dt in ("f16", "f32") or (dt == "f64" and op.attrs["approximate"] == "tanh"):
        return None
    return f"gelu(approximate={op.attrs['approximate']!r}) on {dt} has no onnxruntime CPU kernel"


def _check_one_hot(op: Op) -> str | None:
    if op.operands[0].dtype not in INT_DTYPES:
        return f"one_hot indices must be integers, got {op.operands[0].dtype}"
    return None


def _check_scatter_add(updates: int) -> Check:
    base = _dtypes(_ALL - {"f16"}, updates)

    def check(op: Op) -> str | None:
        reason = base(op)
        return reason and reason + "; ScatterND with reduction='add' has no f16 kernel"

    return check


CAPABILITIES: dict[str, Check | None] = {
    "const": None, "identity": None, "transpose": None, "reshape": None, "shape": None,
    "slice": None, "squeeze": None, "unsqueeze": None, "concat": None, "gather": None,
    "tile": None, "expand": None, "cast": None, "equal": None, "not_equal": None,
    "scatter_nd_update": None,
    "neg": _dtypes(_F | {"i8", "i16", "i32", "i64"}),
    "abs": _dtypes(_NUM),
    **{k: _dtypes(_F) for k in ("sqrt", "rsqrt", "exp", "log", "tanh", "sigmoid", "reciprocal",
                                "softmax", "layer_norm")},
    "erf": _dtypes(frozenset({"f16", "f32"})),
    "gelu": _check_gelu,
    "relu": _dtypes(_F | {"i8", "i32"}),
    **{k: _dtypes(_NUM) for k in ("add", "sub", "mul", "div", "less", "less_equal", "greater",
                                  "greater_equal")},
    "pow": _dtypes(_F_I32_I64),
    "maximum": _dtypes(_F_I8_U8_I32_I64),
    "minimum": _dtypes(_F_I8_U8_I32_I64),
    **{k: _dtypes(frozenset({"bool"})) for k in ("logical_not", "logical_and", "logical_or")},
    "where": _dtypes(_F_I8_U8_I32_I64 | {"bool"}, operand=1),
    "matmul": _dtypes(_F_I32_I64),
    "einsum": _dtypes(_F_I32_I64),
    "reduce_mean": _dtypes(_F_I32_I64),
    "reduce_sum": _dtypes(_F_I32_I64),
    "reduce_prod": _dtypes(_F_I32_I64),
    "reduce_max": _dtypes(_F_I8_U8_I32_I64),
    "reduce_min": _dtypes(_F_I8_U8_I32_I64),
    "cumsum": _dtypes(_F_I32_I64),
    "range": _dtypes(_F - {"f16"} | {"i16", "i32", "i64"}),
    "one_hot": _check_one_hot,
    "scatter_nd": _check_scatter_add(updates=1),
    "scatter_nd_add": _check_scatter_add(updates=2),
    **{k: _dtypes(_F) for k in ("floor", "ceil", "round")},
    **{k: _dtypes(frozenset({"f32", "f64"})) for k in ("sin", "cos")},
    "sign": _dtypes(_NUM),
    "mod": _dtypes(_NUM),
    "pad": None,
    "nonzero": _dtypes(frozenset({"bool", "f32", "i32", "i64", "u8"})),
    "gather_nd": None,
    **{k: _dtypes(_F | {"i8", "u8", "i32"}) for k in ("argmax", "argmin")},
}
# --------------------------------------------------------------------------- quantization (issue 6)
# Scale and zero point are operands in the IR as in ONNX, so quantize/dequantize are
# one node each.  qmatmul is onnxruntime's contrib DynamicQuantizeMatMul (domain
# com.microsoft, opset 1): benchmarks/quantization.py measured it fastest at every
# graph optimization level (at ORT_ENABLE_ALL the standard-op spellings
# DynamicQuantizeLinear+MatMulInteger+Cast+Mul and QDQ are fused into this same
# kernel; without that fusion they are 2x and 10x slower).
MS_DOMAIN = "com.microsoft"


def _axis_attrs(op: Op) -> dict:
    return {} if op.attrs["axis"] is None else {"axis": int(op.attrs["axis"])}


def _lower_quantize(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("QuantizeLinear", ins, outs, **_axis_attrs(op))


def _lower_dequantize(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("DequantizeLinear", ins, outs, **_axis_attrs(op))


def _u8(array: np.ndarray) -> np.ndarray:
    """int8 data shifted into uint8: q + 128 (exact; the zero point shifts alike)."""
    return (np.asarray(array).astype(np.int16) + 128).astype(np.uint8)


_INTEGER_MATMULS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger")

# u8 x s8 pair sums stay inside int16 when every |kernel value| <= 64: 255 * 64 * 2 = 32640.
U8S8_EXACT_MAX = 64


def _u8s8_exact(e: _Emitter, kernel: Value, zero_point: Value) -> bool:
    return u8s8_exact_kernel(e.cpu, kernel, zero_point)


def u8s8_exact_kernel(cpu: str, kernel: Value, zero_point: Value) -> bool:
    """Whether onnxruntime's fast u8 x s8 kernels compute this int8 kernel exactly on every CPU
    of kind ``cpu`` (``--cpu``, see bertc.cpu): any kernel on VNNI/AMX, which accumulate in
    int32; elsewhere a symmetric kernel small enough (``weight_bits=7``) that AVX2's int16
    pair sums cannot saturate.  Otherwise the kernel is stored u8 (u8 x u8: exact, slower)."""
    if u8s8_exact(cpu):
        return True
    z = np.asarray(zero_point.const_value())
    return not z.any() and int(np.abs(kernel.const_value().astype(np.int16)).max(initial=0)) <= U8S8_EXACT_MAX


def u8u8_kernels(graph: Graph, cpu: str) -> int:
    """How many int8 matmuls of ``graph`` lower to u8 x u8 kernels for CPU kind ``cpu`` (the
    slower form that 8-bit kernels take unless the artifact is built for VNNI/AMX)."""
    n = 0
    for op in graph.ops:
        if op.kind == "qmatmul":
            b, zero_point = op.operands[1], op.operands[3]
        elif _static_int8_matmul(op):
            b, zero_point = op.operands[1].producer.operands[0], op.operands[1].producer.operands[2]
        else:
            continue
        if b.dtype == "i8" and b.is_const() and zero_point.is_const():
            n += not u8s8_exact_kernel(cpu, b, zero_point)
    return n


def _lower_qmatmul(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """DynamicQuantizeMatMul(a, b, b_scale, b_zero_point): onnxruntime quantizes ``a`` at run
    time to u8, asymmetric, per tensor (DynamicQuantizeLinear's rule), which is exactly the
    reference kernel for act_dtype="u8", per tensor.  Other act_* settings (the TFLite
    scheme) run with this one too: the activation is then rounded on a coarser grid than
    the IR says (one scale per tensor instead of per row), a documented difference."""
    if (op.attrs["act_dtype"], op.attrs["act_symmetric"], op.attrs["act_per_row"]) != ("u8", False, False):
        logger.debug("qmatmul at %s: onnxruntime quantizes the activation u8 per tensor", op.loc)
    a, b, scale, zero_point = op.operands
    if b.dtype == "i8" and b.is_const() and zero_point.is_const() and not _u8s8_exact(e, b, zero_point):
        # u8 activation x s8 kernel saturates on AVX2 CPUs without VNNI (vpmaddubsw adds pairs
        # of products into int16): off by 0.33 of an op's range on BERT-like data, measured.
        # The kernel shifted by 128 with its zero point is the same integer product, u8 x u8,
        # which onnxruntime computes exactly on every x86 CPU (see _static_int8_matmul below).
        # A 7-bit kernel, or any kernel built for VNNI/AMX, stays s8: u8 x s8, exact and faster.
        ins = [ins[0], e.const(_u8(b.const_value()), f"{b.producer.attrs['name']}_u8"), ins[2],
               e.const(_u8(zero_point.const_value()), "zero_point_u8")]
    add = folded_bias(op)
    if add is not None:  # the projection's bias, added by the kernel: one node less per layer
        ins, outs = ins + [e.name_of(bias_operand(add, op))], [e.name_of(add.result)]
    e.node("DynamicQuantizeMatMul", ins, outs, domain=MS_DOMAIN)


_LOWERINGS.update({"quantize": _lower_quantize, "dequantize": _lower_dequantize,
                   "qmatmul": _lower_qmatmul})


# quant_full's static form, matmul(dequantize(xq, sx, zx), dequantize(Wq, sw, zw){axis=1})
# [+ add(., b)], is lowered as one com.microsoft MatMulIntegerToFloat(xq, Wq, sx, sw, zx, zw[, b]):
# an integer product accumulated in int32, rescaled by sx*sw, plus the bias; the two
# dequantizes (when every reader is such a matmul) and the bias add are not emitted.
# Measured (benchmarks/quant_full.py: 2 BERT-base-wide layers, seq 128, 1 thread, onnxruntime
# 1.32 on an AVX2 CPU without VNNI; times as fractions of fp32's, over 4 noisy runs):
# * left as QDQ, onnxruntime fuses only matmuls whose DequantizeLinear has one reader
#   (Q, K and V share one: 4 of 12 encoder matmuls stay float) and never the bias: 0.82-0.99;
# * MatMulIntegerToFloat with s8 x s8 operands is exact but 3x *slower* than fp32;
#   u8 x s8 is the fast path (0.59-0.63, like quant_int8's DynamicQuantizeMatMul at
#   0.55-0.61) but inexact: AVX2's vpmaddubsw sums pairs of u8*s8 products into int16
#   and saturates (one 768x3072 product was off by 1e5 on full-range data; whole model
#   1.2-1.5% of the logits' range vs the IR); u8 x u8 is exact and 0.64-0.73.
# So both integer operands are emitted as u8, shifted by 128 with their zero points:
# saturate(round(x/s) + z + 128) to [0, 255] is saturate(round(x/s) + z) to [-128, 127]
# plus 128 exactly, and (q + 128) - (z + 128) = q - z, so the products are the IR's
# (each op within 7e-7 of its range of the reference interpreter, f32 rescale order).
# A kernel of 7-bit weights (|q| <= 64, ``weight_bits=7``) stays s8: u8 x s8 is then exact
# and the fast path (_u8s8_exact).
def _static_int8_matmul(op: Op) -> bool:
    """matmul of a per-tensor dequantized activation and a dequantized int8 constant kernel."""
    if op.kind != "matmul":
        return False
    x, w = (v.producer for v in op.operands)
    if x is None or w is None or x.kind != "dequantize" or w.kind != "dequantize":
        return False
    wq, wz = w.operands[0], w.operands[2]
    return (x.attrs["axis"] is None and x.operands[0].dtype in ("i8", "u8") and wq.is_const()
            and wz.is_const() and wq.dtype == "i8" and wq.type.rank == 2
            and w.attrs["axis"] in (None, 1, -1) and op.operands[0].type.rank >= 2)


def _folded_dequantize(op: Op) -> bool:
    """A dequantize that every reader takes as integers (MatMulIntegerToFloat): not emitted."""
    v = op.result
    return (op.kind == "dequantize" and bool(v.uses) and all(_static_int8_matmul(u) for u in v.users)
            and all(o is not v for o in op.graph.outputs.values()))


def _u8_activation(op: Op | None) -> bool:
    """An i8 per-tensor quantize read only by folded dequantizes: emitted as u8 (zero point + 128)."""
    if op is None or op.kind != "quantize" or op.attrs["axis"] is not None:
        return False
    z = op.operands[2]
    return (z.is_const() and z.dtype == "i8" and bool(op.result.uses)
            and all(_folded_dequantize(u) for u in op.result.users)
            and all(o is not op.result for o in op.graph.outputs.values()))


def _lower_matmul(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if not _static_int8_matmul(op):
        e.node("MatMul", ins, outs)
        return
    xdq, wdq = op.operands[0].producer, op.operands[1].producer
    xq, sx, zx = (e.name_of(v) for v in xdq.operands)
    wq, sw, zw = (e.name_of(v) for v in wdq.operands)
    a_u8 = xdq.operands[0].dtype == "u8"
    if not a_u8 and _u8_activation(xdq.operands[0].producer):  # else s8 x s8: exact, slower
        zx = e.const(_u8(xdq.operands[2].const_value()), "zero_point_u8")
        a_u8 = True
    if a_u8 and not _u8s8_exact(e, wdq.operands[0], wdq.operands[2]):  # u8 x u8, never a saturating u8 x s8
        w = wdq.operands[0]
        wq = e.const(_u8(w.const_value()), f"{w.producer.attrs['name']}_u8")
        zw = e.const(_u8(wdq.operands[2].const_value()), "zero_point_u8")
    add = folded_bias(op)
    if add is None:
        e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw], outs, domain=MS_DOMAIN)
        return
    e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw, e.name_of(bias_operand(add, op))],
           [e.name_of(add.result)], domain=MS_DOMAIN)


def _lower_dequantize_unless_folded(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if _folded_dequantize(op):
        return  # every reader is a MatMulIntegerToFloat that takes the integers directly
    _lower_dequantize(e, op, ins, outs)


def _lower_quantize_u8_if_folded(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if not _u8_activation(op):
        _lower_quantize(e, op, ins, outs)
        return
    e.node("QuantizeLinear", [ins[0], ins[1], e.const(_u8(op.operands[2].const_value()), "zero_point_u8")], outs)


def _lower_add(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    for v in op.operands:
        p = v.producer
        if p is not None and (_static_int8_matmul(p) or p.kind == "qmatmul") and folded_bias(p) is op:
            return  # emitted as MatMulIntegerToFloat's / DynamicQuantizeMatMul's bias
    e.node("Add", ins, outs)


_LOWERINGS.update({"matmul": _lower_matmul, "dequantize": _lower_dequantize_unless_folded, "add": _lower_add,
                   "quantize": _lower_quantize_u8_if_folded})
# The IR verifier already limits these to f32 <-> i8/u8, all of which onnxruntime's
# CPU kernels run (DynamicQuantizeMatMul takes an i8 or u8 kernel).
CAPABILITIES.update({"quantize": None, "dequantize": None, "qmatmul": None})

# --------------------------------------------------------------------------- fusions (issue 7)
# skip_layer_norm and bias_gelu are onnxruntime contrib kernels (com.microsoft, opset 1).
# onnxruntime 1.32 fuses MatMul+Add+Gelu into BiasGelu by itself at ORT_ENABLE_ALL, but
# not Add+LayerNormalization on our graphs (symbolic shapes), hence the explicit op.
# ``lower(graph, contrib=False)`` spells both in standard ONNX instead (Add + LayerNormalization,
# Add + Gelu): the fallback for runtimes without the contrib domain.
def _lower_skip_layer_norm(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """SkipLayerNormalization(input, skip, gamma, beta[, bias]) -> output 0 (the normed sum)."""
    if not e.contrib:
        s = e.node("Add", ins[:2])
        if len(ins) > 4:
            s = e.node("Add", [s, ins[4]])
        e.node("LayerNormalization", [s, ins[2], ins[3]], outs, axis=-1, epsilon=op.attrs["epsilon"])
        return
    e.node("SkipLayerNormalization", ins, outs, domain=MS_DOMAIN, epsilon=op.attrs["epsilon"])


def _lower_bias_gelu(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """BiasGelu(x, bias) is the erf form; FastGelu(x, bias) is the tanh form
    0.5x(1 + tanh(0.7978845608 (x + 0.044715 x^3))), the same formula as gelu(approximate='tanh')."""
    if not e.contrib:
        e.node("Gelu", [e.node("Add", ins)], outs, approximate=op.attrs["approximate"])
        return
    e.node("BiasGelu" if op.attrs["approximate"] == "none" else "FastGelu", ins, outs, domain=MS_DOMAIN)


def _lower_attention(e: _Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """MultiHeadAttention(q, k, v, -, -, attention_bias) {num_heads, scale}.  onnxruntime wants
    the bias as [batch or 1, heads or 1, seq, kv_seq]; BERT's mask is [batch, 1, 1, kv_seq], so it
    is expanded along the query axis once per mask and shared by every layer."""
    inputs = ins[:3]
    if len(ins) > 3:
        mask = op.operands[3]
        if mask.shape[2] == op.operands[0].shape[1]:
            inputs += ["", "", ins[3]]
        else:
            cache = e.shared
            key = ("expanded_mask", ins[3], str(op.operands[0].shape[1]))
            if key not in cache:
                seq = e.node("Shape", [ins[0]], start=1, end=2)
                shape = e.node("Concat", [e.const(np.array([1, 1], np.int64)), seq, e.const(np.array([1], np.int64))],
                               axis=0)
                cache[key] = e.node("Expand", [ins[3], shape])
            inputs += ["", "", cache[key]]
    e.node("MultiHeadAttention", inputs, outs, domain=MS_DOMAIN, num_heads=int(op.attrs["num_heads"]),
           scale=float(op.attrs["scale"]))


_LOWERINGS.update({"skip_layer_norm": _lower_skip_layer_norm, "bias_gelu": _lower_bias_gelu,
                   "multi_head_attention": _lower_attention})
# The contrib kernels are registered for f32 (and f16 on CPU); the verifier already keeps
# operands of one dtype and shape.
CAPABILITIES.update({"skip_layer_norm": _dtypes(frozenset({"f32"})),
                     "bias_gelu": _dtypes(frozenset({"f32"})),
                     "multi_head_attention": _dtypes(frozenset({"f32"}))})

# cumprod is left out on purpose: opset 20 has no CumProd (legalization rewrites it).
assert set(CAPABILITIES) <= set(_LOWERINGS), "every capability needs a lowering"


# --------------------------------------------------------------------------- driver
def _reserve_io_names(e: _Emitter, graph: Graph) -> None:
    """Inputs keep their IR names verbatim (callers feed by them); output names are
    reserved, and the op computing an output writes straight into its name
    (constants and values returned twice go through an Identity)."""
    for v in graph.inputs:
        if not e.reserve(v.name):
            raise ValueError(f"graph input name '{v.name}' is used twice")
        e.bind(v, v.name)
    for name, v in graph.outputs.items():
        if e.name_of_bound(v) == name:
            continue  # an input returned under its own name
        if not e.reserve(name):
            raise ValueError(f"output name '{name}' is also an input name")
        if e.name_of_bound(v) is None and (v.producer is None or v.producer.kind != "const"):
            e.bind(v, name)


def _is_live(op: Op, graph: Graph) -> bool:
    """Unused constants are not written (they would only be dead initializers)."""
    if op.kind != "const":
        return True
    v = op.result
    return bool(v.uses) or any(o is v for o in graph.outputs.values())


def lower(graph: Graph, contrib: bool = True, names: dict[int, str] | None = None,
          cpu: str = "portable") -> onnx.ModelProto:
    """Lower a legal graph to an ONNX model (opset 20) in one protobuf.

    ``contrib=False``: fused ops (skip_layer_norm, bias_gelu, multi_head_attention) in
    standard ONNX only.
    ``cpu``: the CPU kind its int8 kernels must be exact on (``--cpu``, see bertc.cpu); an
    artifact with integer matmuls records it in ``metadata_props['bertc.cpu']``.
    ``names``, when given, is filled with id(IR value) -> its ONNX tensor name (a value
    whose op was folded into another node's has a name that no node produces).
    """
    if not contrib:
        graph = decomposed(graph)  # multi_head_attention spelled out in core ops, on a copy
    TARGET.check_legal(graph)  # every offending op named at once
    e = _Emitter(graph)
    e.contrib = contrib
    e.cpu = resolve_cpu(cpu)
    _reserve_io_names(e, graph)
    for op in graph.ops:
        if not _is_live(op, graph):
            continue
        e.op = op
        if op.kind == "const" and e.name_of_bound(op.result) is None:
            value = op.attrs["value"]
            if value.size <= INLINE_LIMIT:
                # Small literals print inline, so their weight names don't survive the
                # text form: share one initializer per value, named by the value.
                e.bind(op.result, e.const(value))
                continue
            e.bind(op.result, e.unique(op.attrs["name"]))
        ins = [e.name_of(v) for v in op.operands]
        outs = [e.name_of(r) for r in op.results]
        try:
            _LOWERINGS[op.kind](e, op, ins, outs)
        except LoweringError:
            raise
        except Exception as err:  # a lowering bug or an odd attribute: say which op
            raise LoweringError(op, f"{type(err).__name__}: {err}") from err
    e.op = None
    outputs = []
    for name, v in graph.outputs.items():
        if e.name_of(v) != name:
            e.node("Identity", [e.name_of(v)], [name])
        outputs.append(value_info(name, v.type))
    read = {name for node in e.nodes for name in node.input}  # a folded lowering (quant_full's
    e.initializers = [t for t in e.initializers if t.name in read]  # int8 matmuls) leaves some unread
    onnx_graph = helper.make_graph(e.nodes, graph.name, [value_info(v.name, v.type) for v in graph.inputs],
                                   outputs, initializer=e.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == MS_DOMAIN for n in e.nodes):  # qmatmul, fusions: onnxruntime's contrib ops
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="bertc",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True))
    if any(n.op_type in _INTEGER_MATMULS for n in e.nodes):
        model.metadata_props.add(key=CPU_METADATA_KEY, value=e.cpu)
    if names is not None:
        names.update(e._names)
    logger.debug("lowered %s: %d nodes, %d initializers", graph.name, len(e.nodes),
                 len(e.initializers))
    return model


def lower_bytes(graph: Graph, cpu: str = "portable") -> bytes:
    """The serialized model: what ``bertc compile --target onnx`` writes to model.onnx."""
    return lower(graph, cpu=cpu).SerializeToString(deterministic=True)


TARGET = Target(name="onnx", file_name="model.onnx", capabilities=CAPABILITIES, lower=lower_bytes,
                cpu_dependent=True)
