"""Shape and data-movement ops: reshape, shape, slice, squeeze, unsqueeze, concat,
gather, tile, expand, range, one_hot (pad, nonzero and gather_nd are in ``indexing``).

Ops whose arguments are usually constant take them as attributes (readable in
the text form, lowered as constants).  When the source graph computes them at
run time (``tf.shape`` arithmetic), the same ops take them as an extra operand
instead; symbolic evaluation (``Value.sym``) still gives exact output shapes.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import UNKNOWN, DTYPES, TensorType, dim_div, dim_prod, is_static, normalize_axis, same_elements
from ._util import as_int_list, axis_of, require_same_dtype, shape_arg, t, unknown_shape

INT_MAX = 2**63 - 1


# ------------------------------------------------------------------ reshape
def resolve_reshape(in_shape, target) -> tuple:
    """ONNX Reshape rules over symbolic dims: 0 copies the input dim, -1 is inferred."""
    dims = [in_shape[i] if d == 0 else d for i, d in enumerate(target)]
    if dims.count(-1) > 1:
        raise OpError(f"reshape target {list(target)} has more than one -1")
    if -1 in dims:
        known = dim_prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = dim_div(dim_prod(in_shape), known)
    return tuple(dims)


def _reshape_type(op) -> TensorType:
    x = t(op)
    target = shape_arg(op, "shape", 1)
    if target is None:
        return x.with_shape(unknown_shape(_static_len(op, 1)))
    shape = resolve_reshape(x.shape, target)
    same_elements(x.shape, shape)  # while the importer finds which input dims are one
    total_in, total_out = dim_prod(x.shape), dim_prod(shape)
    if is_static(total_in) and is_static(total_out) and total_in != total_out:
        raise OpError(f"reshape of {x} to {list(target)}: {total_in} elements into {total_out}")
    return x.with_shape(shape)


def _static_len(op, i: int) -> int:
    n = op.operands[i].shape[0] if op.operands[i].type.rank else 1
    if not is_static(n):
        raise OpError(f"'{op.kind}' shape operand has unknown length")
    return n


def _reshape_kernel(attrs, x, shape=None):
    target = attrs["shape"] if shape is None else as_int_list(shape)
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return np.reshape(x, dims)


def _reshape_verify(op) -> None:
    has_attr, has_operand = op.attrs["shape"] is not None, len(op.operands) > 1
    if has_attr == has_operand:
        raise OpError("reshape takes its target shape either as attribute 'shape' or as an operand")


define("reshape", ("x", "shape?"), _reshape_type, _reshape_kernel,
       attrs={"shape": Attr("ints", None, "target dims; 0 copies the input dim, -1 is inferred")},
       verify=_reshape_verify, sym=lambda op: [op.operands[0].sym] if t(op).rank <= 1 else None,
       doc="same elements, new shape (ONNX semantics: 0 copies, -1 infers)")


# ------------------------------------------------------------------ shape
define("shape", ("x",), lambda op: TensorType(op.attrs["dtype"], (t(op).rank,)),
       lambda attrs, x: np.array(x.shape, dtype=DTYPES[attrs["dtype"]]),
       attrs={"dtype": Attr("str", "i64")}, sym=lambda op: [tuple(t(op).shape)],
       doc="the run-time shape of x as a 1-D integer tensor")


# ------------------------------------------------------------------ slice
def _slice_args(op) -> tuple[list | None, list | None]:
    if len(op.operands) == 1:
        return list(op.attrs["starts"]), list(op.attrs["ends"])
    return shape_arg(op, "starts", 1), shape_arg(op, "ends", 2)


def _slice_dim(d, start, end, step):
    if is_static(d) and isinstance(start, int) and isinstance(end, int):
        return len(range(*slice(start, end, step).indices(d)))
    if step == 1 and start == 0 and (end == d or (isinstance(end, int) and end >= INT_MAX // 2)):
        return d
    if step == 1 and isinstance(start, int) and start >= 0 and not isinstance(end, int):
        if start == 0:
            return end  # x[:n] with a symbolic n; the kernel clamps, BERT never overruns
    if step == 1 and start == 0 and end == 1:
        return 1  # x[:1] of a symbolic dim (a [CLS] token): dims are never empty here
    if step == -1 and start in (-1, INT_MAX) and isinstance(end, int) and end <= -(INT_MAX // 2):
        return d  # x[::-1]: the whole axis, reversed
    return UNKNOWN


def _slice_type(op) -> TensorType:
    x = t(op)
    axes = [normalize_axis(a, x.rank) for a in op.attrs["axes"]]
    steps = list(op.attrs["steps"]) or [1] * len(axes)
    starts, ends = _slice_args(op)
    shape = list(x.shape)
    for i, ax in enumerate(axes):
        if starts is None or ends is None:
            shape[ax] = UNKNOWN
        else:
            shape[ax] = _slice_dim(x.shape[ax], starts[i], ends[i], steps[i])
    return x.with_shape(shape)


def _slice_kernel(attrs, x, starts=None, ends=None):
    starts = attrs["starts"] if starts is None else as_int_list(starts)
    ends = attrs["ends"] if ends is None else as_int_list(ends)
    steps = attrs["steps"] or [1] * len(attrs["axes"])
    index = [slice(None)] * x.ndim
    for ax, s, e, st in zip(attrs["axes"], starts, ends, steps):
        index[ax] = slice(s, e, st)
    return x[tuple(index)]


def _slice_verify(op) -> None:
    n = len(op.attrs["axes"])
    dynamic = len(op.operands) > 1
    if dynamic and len(op.operands) != 3:
        raise OpError("slice takes (x) with starts/ends attributes, or (x, starts, ends)")
    if not dynamic and (op.attrs["starts"] is None or len(op.attrs["starts"]) != n or len(op.attrs["ends"]) != n):
        raise OpError(f"slice needs starts and ends for each of its {n} axes")
    if op.attrs["steps"] and (len(op.attrs["steps"]) != n or 0 in op.attrs["steps"]):
        raise OpError("slice steps must be non-zero, one per axis")


def _slice_sym(op):
    x = op.operands[0].sym
    if x is None or t(op).rank != 1:
        return None
    starts, ends = _slice_args(op)
    if starts is None or ends is None or not all(isinstance(v, int) for v in (*starts, *ends)):
        return None
    steps = list(op.attrs["steps"]) or [1]
    return [tuple(x[slice(starts[0], ends[0], steps[0])])]


define("slice", ("x", "starts?", "ends?"), _slice_type, _slice_kernel,
       attrs={"starts": Attr("ints", None), "ends": Attr("ints", None), "axes": Attr("ints"),
              "steps": Attr("ints", [])},
       verify=_slice_verify, sym=_slice_sym,
       doc="x[starts:ends:steps] along axes (python/ONNX clamping; ends may be INT_MAX)")


# ------------------------------------------------------------------ squeeze / unsqueeze
def _squeeze_type(op) -> TensorType:
    x = t(op)
    axes = {normalize_axis(a, x.rank) for a in op.attrs["axes"]}
    for a in axes:
        if x.shape[a] not in (1, UNKNOWN):
            raise OpError(f"squeeze axis {a} of {x} is not 1")
    return x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)


define("squeeze", ("x",), _squeeze_type,
       lambda attrs, x: np.squeeze(x, axis=tuple(attrs["axes"])),
       attrs={"axes": Attr("ints")}, sym=lambda op: [op.operands[0].sym],
       doc="drop size-1 axes")


def _unsqueeze_type(op) -> TensorType:
    x = t(op)
    rank = x.rank + len(op.attrs["axes"])
    axes = sorted(normalize_axis(a, rank) for a in op.attrs["axes"])
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.with_shape(shape)


def _unsqueeze_kernel(attrs, x):
    rank = x.ndim + len(attrs["axes"])
    return np.expand_dims(x, tuple(sorted(a % rank for a in attrs["axes"])))


define("unsqueeze", ("x",), _unsqueeze_type, _unsqueeze_kernel, attrs={"axes": Attr("ints")},
       sym=lambda op: [op.operands[0].sym], doc="insert size-1 axes (positions in the output)")


# ------------------------------------------------------------------ concat
def _concat_type(op) -> TensorType:
    first = t(op)
    ax = axis_of(op, first.rank)
    total = 0
    for v in op.operands:
        if v.type.rank != first.rank:
            raise OpError(f"concat of {first} and {v.type}: ranks differ")
        d = v.shape[ax]
        total = total + d if isinstance(total, int) and isinstance(d, int) else UNKNOWN
    shape = list(first.shape)
    shape[ax] = total
    for i in range(first.rank):
        if i != ax:
            known = [v.shape[i] for v in op.operands if v.shape[i] != UNKNOWN]
            shape[i] = known[0] if known else UNKNOWN
    return first.with_shape(shape)


def _concat_sym(op):
    syms = [v.sym for v in op.operands]
    if t(op).rank != 1 or any(s is None for s in syms):
        return None
    return [tuple(d for s in syms for d in s)]


define("concat", ("inputs*",), _concat_type,
       lambda attrs, *xs: np.concatenate(xs, axis=attrs["axis"]),
       attrs={"axis": Attr("int")}, verify=require_same_dtype, sym=_concat_sym,
       doc="join along an existing axis")


# ------------------------------------------------------------------ gather
def _gather_type(op) -> TensorType:
    data, idx = t(op, 0), t(op, 1)
    if idx.dtype not in ("i32", "i64"):
        raise OpError(f"gather indices must be i32 or i64, got {idx.dtype}")
    ax = axis_of(op, data.rank)
    return data.with_shape((*data.shape[:ax], *idx.shape, *data.shape[ax + 1:]))


def _gather_sym(op):
    data, idx = op.operands[0].sym, op.operands[1].const_value()
    if data is None or idx is None:
        return None
    picked = tuple(data[int(i)] for i in np.atleast_1d(idx))
    return [picked]


define("gather", ("data", "indices"), _gather_type,
       lambda attrs, d, i: np.take(d, i.astype(np.int64), axis=attrs["axis"]),
       attrs={"axis": Attr("int", 0)}, sym=_gather_sym,
       doc="take slices of data along axis at indices (embedding lookup); negative indices wrap")


# ------------------------------------------------------------------ tile / expand
def _tile_type(op) -> TensorType:
    x = t(op)
    reps = shape_arg(op, "repeats", 1)
    if reps is None:
        return x.with_shape(unknown_shape(x.rank))
    from ..ir.types import dim_mul

    return x.with_shape(dim_mul(d, r) for d, r in zip(x.shape, reps))


define("tile", ("x", "repeats?"), _tile_type,
       lambda attrs, x, r=None: np.tile(x, attrs["repeats"] if r is None else as_int_list(r)),
       attrs={"repeats": Attr("ints", None)}, doc="repeat x along each axis")


def _expand_type(op) -> TensorType:
    from ..ir.types import broadcast_shapes

    x = t(op)
    target = shape_arg(op, "shape", 1)
    if target is None:
        return x.with_shape(unknown_shape(max(x.rank, _static_len(op, 1))))
    try:
        return x.with_shape(broadcast_shapes(x.shape, tuple(target)))
    except ValueError as e:
        raise OpError(str(e)) from None


def _expand_kernel(attrs, x, shape=None):
    target = attrs["shape"] if shape is None else as_int_list(shape)
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(target))).copy()


define("expand", ("x", "shape?"), _expand_type, _expand_kernel,
       attrs={"shape": Attr("ints", None)},
       doc="broadcast x to shape (ONNX Expand, TF BroadcastTo/Fill)")


# ------------------------------------------------------------------ range / one_hot
def _scalar_dim(v):
    """A range bound as a dim: its symbolic value, or a constant that is a whole number
    (a float range such as RoFormer's positions counts the same as an integer one)."""
    if v.sym:
        return v.sym[0]
    c = v.const_value()
    if c is not None and np.asarray(c).size == 1 and float(np.asarray(c).reshape(())).is_integer():
        return int(np.asarray(c).reshape(()))
    return None


def _range_type(op) -> TensorType:
    start, limit, delta = (_scalar_dim(v) for v in op.operands)
    dtype = t(op).dtype
    if start == 0 and delta == 1 and limit is not None:
        return TensorType(dtype, (limit,))
    if all(isinstance(v, int) for v in (start, limit, delta)):
        return TensorType(dtype, (len(range(start, limit, delta)),))
    return TensorType(dtype, (UNKNOWN,))


def _range_sym(op):
    """A short integer range of known bounds (the permutations TF builds with range/concat)."""
    bounds = [v.sym[0] if v.sym and len(v.sym) == 1 else None for v in op.operands]
    if t(op).dtype not in ("i32", "i64") or not all(isinstance(b, int) for b in bounds) or bounds[2] == 0:
        return None
    values = range(*bounds)
    return [tuple(values)] if len(values) <= 64 else None


define("range", ("start", "limit", "delta"), _range_type,
       lambda attrs, s, l, d: np.arange(s, l, d, dtype=s.dtype),
       verify=require_same_dtype, sym=_range_sym, doc="[start, start+delta, …) below limit; scalar operands")


def _one_hot_depth(op):
    """The depth as a dim: the attribute, or the operand's constant or symbolic value."""
    if op.attrs["depth"] is not None:
        return op.attrs["depth"]
    d = shape_arg(op, "depth", 1)
    return d[0] if d and len(d) == 1 else UNKNOWN


def _one_hot_type(op) -> TensorType:
    idx = t(op)
    rank = idx.rank + 1
    ax = normalize_axis(op.attrs["axis"], rank)
    shape = list(idx.shape)
    shape.insert(ax, _one_hot_depth(op))
    return TensorType(op.attrs["dtype"], tuple(shape))


def _one_hot_verify(op) -> None:
    has_attr, has_operand = op.attrs["depth"] is not None, len(op.operands) > 1
    if has_attr == has_operand:
        raise OpError("one_hot takes its depth either as attribute 'depth' or as an operand")
    if has_operand and (op.operands[1].type.rank != 0 or op.operands[1].dtype not in ("i32", "i64")):
        raise OpError(f"one_hot's depth operand must be an i32/i64 scalar, got {op.operands[1].type}")


def _one_hot_kernel(attrs, idx, depth=None):
    depth, ax = (attrs["depth"] if depth is None else int(depth)), attrs["axis"]
    hot = np.arange(depth) == idx[..., None]
    out = np.where(hot, attrs["on_value"], attrs["off_value"]).astype(DTYPES[attrs["dtype"]])
    return np.moveaxis(out, -1, ax)


define("one_hot", ("indices", "depth?"), _one_hot_type, _one_hot_kernel,
       attrs={"depth": Attr("int", None), "on_value": Attr("float", 1.0), "off_value": Attr("float", 0.0),
              "axis": Attr("int", -1), "dtype": Attr("str", "f32")},
       verify=_one_hot_verify,
       doc="one-hot encode; out-of-range indices give an all-off row (as TF); the depth is an "
           "attribute, or a scalar operand when the graph computes it (tf.shape)")
