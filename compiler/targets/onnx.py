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
from typing import BinaryIO, Callable, Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..cpu import METADATA_KEY as CPU_METADATA_KEY, resolve as resolve_cpu
from ..ir.printer import INLINE_LIMIT
from ..ir.graph import Graph, Op
from ..ir.decompose import decomposed
from ..ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES
from .base import LoweringError, Target, reads_graph_input
from .onnx_emitter import _INT64_MAX, _INT64_MIN, MS_DOMAIN, Emitter, Lowering, onnx_dtype, value_info  # noqa: F401
from .onnx_fused import FUSED_LOWERINGS
from .onnx_quant import _INTEGER_MATMULS, QUANT_LOWERINGS, u8u8_kernels  # noqa: F401

logger = logging.getLogger(__name__)

OPSET = 20



# --------------------------------------------------------------------------- lowerings
def _simple(op_type: str, attrs: Callable[[Op], dict] | None = None) -> Lowering:
    """An IR op that is exactly one ONNX node with the same operands."""

    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        e.node(op_type, ins, outs, **(attrs(op) if attrs else {}))

    return lower


def _attr(*keys: str) -> Callable[[Op], dict]:
    return lambda op: {k: op.attrs[k] for k in keys}


def _lower_const(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.initializer(op.attrs["value"], outs[0])


def _lower_rsqrt(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """rsqrt(x) -> Reciprocal(Sqrt(x)); ONNX has no Rsqrt."""
    e.node("Reciprocal", [e.node("Sqrt", ins)], outs)


def _lower_not_equal(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Not", [e.node("Equal", ins)], outs)


def _lower_div(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """Signed integers floor-divide in the IR (TF FloorDiv) but truncate in ONNX Div:
    x // y = (x - x mod y) / y, where Mod (fmod=0) takes the divisor's sign and the
    division is exact."""
    if op.operands[0].dtype not in INT_DTYPES or op.operands[0].dtype == "u8":
        e.node("Div", ins, outs)
        return
    x, y = ins
    e.node("Div", [e.node("Sub", [x, e.node("Mod", [x, y], fmod=0)]), y], outs)


def _lower_where(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """onnxruntime's CPU Where has no bool kernel (Keras' causal masks select between masks):
    where(c, a, b) on bools is (c and a) or (not c and b)."""
    if op.operands[1].dtype != "bool":
        e.node("Where", ins, outs)
        return
    c, a, b = ins
    e.node("Or", [e.node("And", [c, a]), e.node("And", [e.node("Not", [c]), b])], outs)


def _lower_cast(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Cast", ins, outs, to=onnx_dtype(op.attrs["to"]))


def _reduce(op_type: str) -> Lowering:
    """Reductions take axes as an input (opset 18+); the IR's empty axes reduce nothing."""

    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if not op.attrs["axes"]:
            e.node("Identity", ins, outs)
            return
        e.node(op_type, [ins[0], e.i64(op.attrs["axes"], "axes")], outs,
               keepdims=int(op.attrs["keepdims"]))

    return lower


def _lower_cumsum(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    axis = e.const(np.array(op.attrs["axis"], np.int64), "axis")
    e.node("CumSum", [ins[0], axis], outs, exclusive=int(op.attrs["exclusive"]),
           reverse=int(op.attrs["reverse"]))


def _shape_operand(op_type: str, attr: str) -> Lowering:
    """Reshape / Tile / Expand: the target comes from an attribute or from an operand."""

    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if op.attrs[attr] is not None:
            arg = e.i64(op.attrs[attr], attr)
        else:
            arg = e.i64_vector(ins[1], op.operands[1])
        e.node(op_type, [ins[0], arg], outs)

    return lower


def _lower_shape(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    if op.attrs["dtype"] == "i64":
        e.node("Shape", ins, outs)
        return
    e.node("Cast", [e.node("Shape", ins)], outs, to=onnx_dtype(op.attrs["dtype"]))


def _lower_slice(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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

    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        if not op.attrs["axes"]:
            e.node("Identity", ins, outs)
            return
        e.node(op_type, [ins[0], e.i64(op.attrs["axes"], "axes")], outs)

    return lower


def _lower_range(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("Range", [e.scalar(n, v) for n, v in zip(ins, op.operands)], outs)


def _lower_one_hot(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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


def _lower_scatter_nd(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """scatter_nd = zeros(shape) with updates added (duplicates add up): ScatterND add."""
    shape = e.i64(op.attrs["shape"], "shape") if op.attrs["shape"] is not None else \
        e.i64_vector(ins[2], op.operands[2])
    zero = numpy_helper.from_array(np.zeros(1, DTYPES[op.results[0].dtype]))
    zeros = e.node("ConstantOfShape", [shape], value=zero)
    idx = e.cast(ins[0], op.operands[0].dtype, "i64")
    e.node("ScatterND", [zeros, idx, ins[1]], outs, reduction="add")


def _scatter_into(reduction: str) -> Lowering:
    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        idx = e.cast(ins[1], op.operands[1].dtype, "i64")
        e.node("ScatterND", [ins[0], idx, ins[2]], outs, reduction=reduction)

    return lower


def _lower_mod(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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


def _lower_pad(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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


def _lower_nonzero(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """ONNX NonZero gives [rank, n]; TF's Where (and the IR) give [n, rank]."""
    e.node("Transpose", [e.node("NonZero", ins)], outs, perm=[1, 0])


def _lower_gather_nd(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    e.node("GatherND", [ins[0], e.cast(ins[1], op.operands[1].dtype, "i64")], outs)


def _arg_reduce(op_type: str) -> Lowering:
    """ArgMax/ArgMin give int64 and the first index of ties, as TF does."""

    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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

def _lower_gather(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
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


def _pool(op_type: str) -> Lowering:
    """AveragePool / MaxPool on the NCHW transpose of the IR's NHWC; TF's SAME puts the odd
    padding element at the end (SAME_UPPER), and an average counts no padding."""
    def lower(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
        extra = {"count_include_pad": 0} if op_type == "AveragePool" else {}
        nchw = e.node("Transpose", [ins[0]], perm=[0, 3, 1, 2])
        pooled = e.node(op_type, [nchw], kernel_shape=op.attrs["ksize"], strides=op.attrs["strides"],
                        auto_pad="SAME_UPPER" if op.attrs["padding"] == "SAME" else "VALID", **extra)
        e.node("Transpose", [pooled], outs, perm=[0, 2, 3, 1])
    return lower


def _emit_ops(e: Emitter, graph: Graph) -> None:
    """Lower every live op of ``graph`` (the model's, or a cond branch's) into ``e``."""
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


def _names_read(nodes) -> set[str]:
    """Every tensor name the nodes read, those read inside If branches included (a branch
    reads the values around it by name)."""
    read = set()
    for node in nodes:
        read.update(node.input)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                read |= _names_read(a.g.node)
    return read


def _lower_cond(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """An ONNX If whose branches are lowered in the scope of the model: a branch reads the op's
    arguments by their outer names, and every name stays unique across the scopes."""
    branches = {}
    for key in ("then", "else"):
        region = op.attrs[key]
        sub = Emitter(region)
        sub.contrib, sub.cpu, sub._taken, sub._node_names = e.contrib, e.cpu, e._taken, e._node_names
        for x, name in zip(region.inputs, ins[1:]):
            sub.bind(x, name)
        _emit_ops(sub, region)
        e.op = op
        outputs = []
        for out, (name, v) in zip(outs, region.outputs.items()):
            branch_out = sub.unique(f"{out}/{key}")
            sub.op = op
            sub.node("Identity", [sub.name_of(v)], [branch_out])
            outputs.append(value_info(branch_out, v.type))
        branches[key] = helper.make_graph(sub.nodes, sub.unique(f"{outs[0]}/{key}_branch"), [], outputs,
                                          initializer=sub.initializers)
    e.node("If", [ins[0]], outs, then_branch=branches["then"], else_branch=branches["else"])


_CORE: dict[str, Lowering] = {
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
    "cond": _lower_cond,
    "avg_pool": _pool("AveragePool"),
    "max_pool": _pool("MaxPool"),
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
    "cond": None,
    "avg_pool": _dtypes(frozenset({"f32"})),
    "max_pool": _dtypes(frozenset({"f32"})),
    "nonzero": _dtypes(frozenset({"bool", "f32", "i32", "i64", "u8"})),
    "gather_nd": None,
    **{k: _dtypes(_F | {"i8", "u8", "i32"}) for k in ("argmax", "argmin")},
}
# Quantized ops: the IR verifier already limits these to f32 <-> i8/u8, all of which onnxruntime's
# CPU kernels run (DynamicQuantizeMatMul takes an i8 or u8 kernel).
CAPABILITIES.update({"quantize": None, "dequantize": None, "qmatmul": None})
# The contrib kernels are registered for f32 (and f16 on CPU); the verifier already keeps
# operands of one dtype and shape.
CAPABILITIES.update({"skip_layer_norm": _dtypes(frozenset({"f32"})),
                     "bias_gelu": _dtypes(frozenset({"f32"})),
                     "multi_head_attention": _dtypes(frozenset({"f32"}))})

# The lowering table, read in this one place: the core ops, then the int8 forms (which take over
# matmul, add, quantize and dequantize to fold quant_full's static form) and the fused ops.
_LOWERINGS: dict[str, Lowering] = {**_CORE, **QUANT_LOWERINGS, **FUSED_LOWERINGS}

# cumprod is left out on purpose: opset 20 has no CumProd (legalization rewrites it).
assert set(CAPABILITIES) <= set(_LOWERINGS), "every capability needs a lowering"

# --------------------------------------------------------------------------- driver
def _reserve_io_names(e: Emitter, graph: Graph) -> None:
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
    model, initializers = _lowered(graph, contrib, names, cpu)
    model.graph.initializer.extend(initializers)
    return model


def _lowered(graph: Graph, contrib: bool = True, names: dict[int, str] | None = None,
             cpu: str = "portable") -> tuple[onnx.ModelProto, list[onnx.TensorProto]]:
    """``lower``'s model without its initializers, and the initializers, in order."""
    if not contrib:
        graph = decomposed(graph)  # multi_head_attention spelled out in core ops, on a copy
    TARGET.check_legal(graph)  # every offending op named at once
    e = Emitter(graph)
    e.contrib = contrib
    e.cpu = resolve_cpu(cpu)
    _reserve_io_names(e, graph)
    _emit_ops(e, graph)
    outputs = []
    for name, v in graph.outputs.items():
        if e.name_of(v) != name:
            e.node("Identity", [e.name_of(v)], [name])
        outputs.append(value_info(name, v.type))
    read = _names_read(e.nodes)  # a folded lowering (quant_full's int8 matmuls) leaves some unread
    e.initializers = [t for t in e.initializers if t.name in read]
    onnx_graph = helper.make_graph(e.nodes, graph.name, [value_info(v.name, v.type) for v in graph.inputs],
                                   outputs)
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
    return model, e.initializers


def serialized(graph: Graph, cpu: str = "portable") -> Iterator[bytes]:
    """The serialized model in pieces: first the model without its initializers, then each
    initializer alone in a ModelProto.  Protobuf merges concatenated messages (an embedded
    message merges, a repeated field appends), so the pieces joined are the whole model, while
    only one weight's copy is serialized at a time and each is let go once written: BERT-base's
    440 MB are held once, not three times (the IR's, the protobuf's and the bytes)."""
    model, initializers = _lowered(graph, cpu=cpu)
    yield model.SerializeToString(deterministic=True)
    del model
    initializers.reverse()
    while initializers:
        piece = onnx.ModelProto()
        piece.graph.initializer.append(initializers.pop())
        yield piece.SerializeToString(deterministic=True)


def lower_bytes(graph: Graph, cpu: str = "portable") -> bytes:
    """The serialized model: what ``bertc compile --target onnx`` writes to model.onnx."""
    return b"".join(serialized(graph, cpu))


def write(graph: Graph, file: BinaryIO, cpu: str = "portable") -> None:
    """Write the serialized model to ``file`` piece by piece (``serialized``)."""
    for piece in serialized(graph, cpu):
        file.write(piece)


TARGET = Target(name="onnx", file_name="model.onnx", capabilities=CAPABILITIES, lower=lower_bytes,
                write=write, cpu_dependent=True)
