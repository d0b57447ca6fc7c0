"""TF op handlers for indexing, padding, splitting, segment reductions and masks.

These are the ops foreign graphs use to build masks, position ids and pooled
outputs at run time: one-argument ``Where`` (``tf.where(mask)``), ``GatherNd``
and batched gathers, ``Pad`` with computed paddings, reversals and rolls,
``Split`` of a fused QKV projection, segment sums/means/extremes, ``ArgMax``,
band and diagonal masks.  Each is spelled with core ops, exactly; what
cannot be spelled exactly is an import error naming the node.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..ir.registry import OpError
from ..ir.types import is_static, np_dtype
from .tf import ImportContext, handler

INT_MAX = 2**63 - 1


def _scalar_int(ctx: ImportContext, v: Value) -> int:
    return int(ctx.const_of(v).reshape(()))


def _set_type(v: Value, shape) -> Value:
    """Give a data-dependent result the dims the importer knows (inference left them '?')."""
    v.type = v.type.with_shape(tuple(shape))
    return v


# ------------------------------------------------------------------ pad
@handler("Pad", "PadV2")
def _pad(ctx, node, ins):
    x, paddings = ins[:2]
    value = 0.0
    if node.op == "PadV2":
        c = ins[2].const_value()
        if c is None:
            raise OpError("PadV2 with a fill value computed at run time is not supported")
        value = float(np.asarray(c).reshape(()))
    c = paddings.const_value()
    if c is not None:
        pads = [int(p) for p in np.asarray(c).reshape(-1)]
        if min(pads, default=0) < 0:
            raise OpError("negative paddings (cropping) are not supported")
        return ctx.emit("pad", [x], {"pads": pads, "value": value})
    return ctx.emit("pad", [x, paddings], {"value": value})


# ------------------------------------------------------------------ where / gather_nd / argmax
@handler("Where")
def _where_coordinates(ctx, node, ins):
    """One-argument tf.where: the coordinates of the true (non-zero) elements."""
    x = ins[0]
    if x.dtype != "bool":
        zero = ctx.const(np.zeros((), np_dtype(x.dtype)), ctx.name + "/zero")
        x = ctx.emit("not_equal", [x, zero])
    out = ctx.emit("nonzero", [x])
    return _set_type(out, (ctx.graph.fresh_dim("nonzero"), x.type.rank))


@handler("GatherNd")
def _gather_nd(ctx, node, ins):
    return ctx.emit("gather_nd", ins[:2])


@handler("ArgMax", "ArgMin")
def _arg(ctx, node, ins):
    x, axis = ins
    return ctx.emit(node.op.lower(), [x], {"axis": _scalar_int(ctx, axis),
                                           "dtype": ctx.attr("output_type", "i64")})


def batched_gather(ctx, params: Value, idx: Value, axis: int, batch_dims: int) -> Value:
    """tf.gather(params, idx, axis=b, batch_dims=b): per batch element, a gather of its own rows.

    The b batch dims are flattened into the gathered axis, and each element's
    indices are offset by its position times that axis' length:
    params[B..., N, R...] -> [prod(B) * N, R...] at idx + flat_batch_position * N.
    """
    b = batch_dims % idx.type.rank if batch_dims < 0 else batch_dims
    axis = axis % params.type.rank
    if axis != b:
        raise OpError(f"GatherV2 with batch_dims={batch_dims} along axis {axis} is not supported "
                      "(only along the first axis after the batch dims)")
    i32 = np.int32
    pshape = ctx.emit("shape", [params], {"dtype": "i32"})
    n = ctx.emit("gather", [pshape, ctx.const(np.array(b, np.int64), ctx.name + "/axis")])
    outer = ctx.emit("reduce_prod", [ctx.emit("slice", [pshape], {"starts": [0], "ends": [b], "axes": [0]})],
                     {"axes": [0], "keepdims": False})
    step = ctx.const(np.array(1, i32), ctx.name + "/one")
    offsets = ctx.emit("mul", [ctx.emit("range", [ctx.const(np.array(0, i32), ctx.name + "/zero"), outer, step]), n])
    batch_shape = ctx.emit("slice", [ctx.emit("shape", [idx], {"dtype": "i32"})],
                           {"starts": [0], "ends": [b], "axes": [0]})
    ones = ctx.const(np.ones(idx.type.rank - b, i32), ctx.name + "/ones")
    offsets = ctx.emit("reshape", [offsets, ctx.emit("concat", [batch_shape, ones], {"axis": 0})])
    flat_idx = ctx.emit("add", [idx if idx.dtype == "i32" else ctx.emit("cast", [idx], {"to": "i32"}), offsets])
    rest = ctx.emit("slice", [pshape], {"starts": [b + 1], "ends": [INT_MAX], "axes": [0]})
    flat = ctx.emit("reshape", [params, ctx.emit("concat", [ctx.const(np.array([-1], i32), ctx.name + "/all"),
                                                            rest], {"axis": 0})])
    out = ctx.emit("gather", [flat, flat_idx], {"axis": 0})
    return _set_type(out, (*idx.shape, *params.shape[b + 1:]))


@handler("ReverseV2")
def _reverse(ctx, node, ins):
    """x[::-1] along each axis: a slice with step -1."""
    x, axes = ins
    ax = sorted({int(a) % x.type.rank for a in np.atleast_1d(ctx.const_of(axes))})
    if not ax:
        return x
    return ctx.emit("slice", [x], {"starts": [-1] * len(ax), "ends": [-INT_MAX] * len(ax), "axes": ax,
                                   "steps": [-1] * len(ax)})


@handler("Roll")
def _roll(ctx, node, ins):
    """roll by s along an axis of length n = concat(x[n - s mod n:], x[:n - s mod n])."""
    x, shifts, axes = ins
    out = x
    for s, a in zip(np.atleast_1d(ctx.const_of(shifts)).tolist(), np.atleast_1d(ctx.const_of(axes)).tolist()):
        a = int(a) % x.type.rank
        dim = x.shape[a]
        if is_static(dim):
            k = int(s) % dim if dim else 0
            if k:
                out = ctx.emit("concat", [ctx.emit("slice", [out], {"starts": [dim - k], "ends": [INT_MAX], "axes": [a]}),
                                          ctx.emit("slice", [out], {"starts": [0], "ends": [dim - k], "axes": [a]})],
                               {"axis": a})
            continue
        n = ctx.emit("gather", [ctx.emit("shape", [out], {"dtype": "i64"}),
                                ctx.const(np.array([a], np.int64), ctx.name + "/axis")])
        cut = ctx.emit("sub", [n, ctx.emit("mod", [ctx.const(np.array([int(s)], np.int64), ctx.name + "/shift"), n])])
        zero = ctx.const(np.array([0], np.int64), ctx.name + "/zero")
        end = ctx.const(np.array([INT_MAX], np.int64), ctx.name + "/end")
        head = ctx.emit("slice", [out, cut, end], {"axes": [a]})
        tail = ctx.emit("slice", [out, zero, cut], {"axes": [a]})
        out = _set_type(ctx.emit("concat", [head, tail], {"axis": a}), x.shape)
    return out


# ------------------------------------------------------------------ split
def _split_parts(ctx, x: Value, axis: int, sizes: list[int]) -> list[Value]:
    """Consecutive slices of ``sizes`` along ``axis``; one size may be -1 (the rest)."""
    dim = x.shape[axis]
    if -1 in sizes:
        if not is_static(dim):
            known = [s for s in sizes if s != -1]
            if sizes.index(-1) != len(sizes) - 1:
                raise OpError(f"split of a symbolic dim with -1 before the end: {sizes}")
            sizes = known + [None]
        else:
            sizes = [s if s != -1 else dim - (sum(sizes) + 1) for s in sizes]
    outs, start = [], 0
    for s in sizes:
        end = INT_MAX if s is None else start + s
        outs.append(ctx.emit("slice", [x], {"starts": [start], "ends": [end], "axes": [axis]}))
        start = end
    return outs


def _even_split(ctx, x: Value, axis: int, n: int) -> list[Value]:
    dim = x.shape[axis]
    if is_static(dim):
        if dim % n:
            raise OpError(f"Split of {dim} into {n} equal parts")
        return _split_parts(ctx, x, axis, [dim // n] * n)
    # a symbolic dim: the part size is read at run time from the shape
    shape = ctx.emit("shape", [x], {"dtype": "i32"})  # i32: TFLite divides no i64
    size = ctx.emit("div", [ctx.emit("gather", [shape, ctx.const(np.array([axis], np.int64),
                                                                  ctx.name + "/axis")]),
                            ctx.const(np.array(n, np.int32), ctx.name + "/parts")])
    outs = []
    for i in range(n):
        start = ctx.emit("mul", [size, ctx.const(np.array(i, np.int32), ctx.name + f"/k{i}")])
        end = ctx.emit("add", [start, size])
        outs.append(ctx.emit("slice", [x, start, end], {"axes": [axis]}))
    return outs


@handler("Split")
def _split(ctx, node, ins):
    axis_v, x = ins
    axis = _scalar_int(ctx, axis_v) % max(x.type.rank, 1)
    return _even_split(ctx, x, axis, ctx.attr("num_split"))


@handler("SplitV")
def _split_v(ctx, node, ins):
    x, sizes, axis_v = ins
    axis = _scalar_int(ctx, axis_v) % max(x.type.rank, 1)
    return _split_parts(ctx, x, axis, [int(s) for s in ctx.const_of(sizes).reshape(-1)])


# ------------------------------------------------------------------ segment reductions
def _segment_sum(ctx, data: Value, ids: Value, num: Value) -> Value:
    """sum of data rows per segment id = scatter_nd(ids[..., None], data, [num, *rest]):
    scatter_nd adds duplicate indices up, which is exactly the segment sum."""
    k = ids.type.rank
    idx = ctx.emit("unsqueeze", [ids], {"axes": [k]})
    num64 = num if num.dtype == "i64" else ctx.emit("cast", [num], {"to": "i64"})
    num64 = ctx.emit("reshape", [num64], {"shape": [1]})
    rest = ctx.emit("slice", [ctx.emit("shape", [data], {"dtype": "i64"})],
                    {"starts": [k], "ends": [INT_MAX], "axes": [0]})
    shape = ctx.emit("concat", [num64, rest], {"axis": 0})
    return ctx.emit("scatter_nd", [idx, data, shape])


def _num_segments(ctx, ids: Value) -> Value:
    """Sorted segment ops size the result by max(ids) + 1 (0 rows for no ids)."""
    top = ctx.emit("reduce_max", [ids], {"axes": list(range(ids.type.rank)), "keepdims": False})
    one = ctx.const(np.ones((), np.int64 if ids.dtype == "i64" else np.int32), ctx.name + "/one")
    return ctx.emit("add", [top, one])


def _segment_type(ctx, out: Value, data: Value, ids: Value, num: Value | None) -> Value:
    c = None if num is None else num.const_value()
    first = int(np.asarray(c).reshape(())) if c is not None else ctx.graph.fresh_dim("segments")
    return _set_type(out, (first, *data.shape[ids.type.rank:]))


@handler("UnsortedSegmentSum", "SegmentSum")
def _segment_sum_handler(ctx, node, ins):
    data, ids = ins[:2]
    num = ins[2] if node.op == "UnsortedSegmentSum" else None
    out = _segment_sum(ctx, data, ids, num if num is not None else _num_segments(ctx, ids))
    return _segment_type(ctx, out, data, ids, num)


@handler("SegmentMean")
def _segment_mean(ctx, node, ins):
    """sum / max(count, 1): a segment with no rows is 0, as in TF."""
    data, ids = ins
    num = _num_segments(ctx, ids)
    total = _segment_type(ctx, _segment_sum(ctx, data, ids, num), data, ids, None)
    dt = np_dtype(data.dtype)
    ones = ctx.emit("expand", [ctx.const(np.ones((), dt), ctx.name + "/one_row"),
                               ctx.emit("shape", [ids], {"dtype": "i64"})])
    count = _set_type(_segment_sum(ctx, ones, ids, num), (total.shape[0],))
    count = ctx.emit("maximum", [count, ctx.const(np.ones((), dt), ctx.name + "/at_least_one")])
    count = ctx.emit("reshape", [count], {"shape": [-1] + [1] * (total.type.rank - 1)})
    return ctx.emit("div", [total, count])


@handler("UnsortedSegmentMin", "UnsortedSegmentMax")
def _unsorted_segment_extreme(ctx, node, ins):
    """min/max of data rows per segment, as a masked reduction: rows of other segments read
    the dtype's largest (min) or lowest (max) value, which is also what TF gives an empty
    segment.  Costs rows x segments; ids outside [0, num_segments) are dropped, as in TF."""
    data, ids, num = ins
    c = ctx.folded(num)
    if c is not None:
        segments = ctx.const(np.arange(int(np.asarray(c).reshape(())), dtype=np_dtype(ids.dtype)),
                             ctx.name + "/segments")
    else:  # as many segments as the graph computes (TAPAS: cells per row times rows)
        segments = _segment_range(ctx, num if num.dtype == ids.dtype else ctx.emit("cast", [num], {"to": ids.dtype}),
                                  ids)
    picked, _ = _rows_per_segment(ctx, data, ids, segments, "Min" in node.op)
    kind = "reduce_min" if "Min" in node.op else "reduce_max"
    return ctx.emit(kind, [picked], {"axes": list(range(ids.type.rank)), "keepdims": False})


@handler("SegmentMin", "SegmentMax")
def _sorted_segment_extreme(ctx, node, ins):
    """tf.math.segment_min/max: sorted ids, max(ids) + 1 segments, and 0 (not the dtype's
    extreme, as in the unsorted form) for a segment no row belongs to."""
    data, ids = ins
    segments = _segment_range(ctx, _num_segments(ctx, ids), ids)
    picked, member = _rows_per_segment(ctx, data, ids, segments, node.op == "SegmentMin")
    axes = list(range(ids.type.rank))
    out = ctx.emit("reduce_min" if node.op == "SegmentMin" else "reduce_max", [picked], {"axes": axes, "keepdims": False})
    present = ctx.emit("reduce_max", [ctx.emit("cast", [member], {"to": "i32"})], {"axes": axes, "keepdims": False})
    present = ctx.emit("greater", [present, ctx.const(np.zeros((), np.int32), ctx.name + "/zero_i32")])
    out = ctx.emit("where", [present, out, ctx.const(np.zeros((), np_dtype(data.dtype)), ctx.name + "/empty")])
    return _segment_type(ctx, out, data, ids, None)


def _segment_range(ctx, num: Value, ids: Value) -> Value:
    """0, 1, ..., num - 1 in the dtype of ``ids``, computed at run time."""
    dt = np_dtype(ids.dtype)
    return ctx.emit("range", [ctx.const(np.zeros((), dt), ctx.name + "/zero"), num,
                              ctx.const(np.ones((), dt), ctx.name + "/one")])


def _rows_per_segment(ctx, data: Value, ids: Value, segments: Value, is_min: bool) -> tuple[Value, Value]:
    """(data laid out [N..., S, R...] with the rows of other segments replaced by the dtype's
    largest (min) or lowest (max) value, membership mask [N..., S, 1...])."""
    k = ids.type.rank
    dt = np_dtype(data.dtype)
    info = np.finfo(dt) if dt.kind == "f" else np.iinfo(dt)
    fill = ctx.const(np.asarray(info.max if is_min else info.min, dt), ctx.name + "/fill")
    mask = ctx.emit("equal", [ctx.emit("unsqueeze", [ids], {"axes": [k]}), segments])  # [N..., S]
    rest = data.type.rank - k
    if rest:
        mask = ctx.emit("unsqueeze", [mask], {"axes": list(range(k + 1, k + 1 + rest))})
    rows = ctx.emit("unsqueeze", [data], {"axes": [k]})  # [N..., 1, R...]
    return ctx.emit("where", [mask, rows, fill]), mask


# ------------------------------------------------------------------ band and diagonal masks
@handler("MatrixBandPart")
def _band_part(ctx, node, ins):
    """Keep x[..., i, j] where (lower < 0 or i - j <= lower) and (upper < 0 or j - i <= upper)."""
    x, lower, upper = ins
    lo, up = _scalar_int(ctx, lower), _scalar_int(ctx, upper)
    rank = x.type.rank
    shape = ctx.emit("shape", [x], {"dtype": "i64"})

    def index(axis: int) -> Value:
        n = ctx.emit("gather", [shape, ctx.const(np.array(axis, np.int64), ctx.name + f"/axis{axis}")])
        r = ctx.emit("range", [ctx.const(np.array(0, np.int64), ctx.name + "/start"), n,
                               ctx.const(np.array(1, np.int64), ctx.name + "/step")])
        return _set_type(r, (x.shape[axis],))

    i = ctx.emit("unsqueeze", [index(rank - 2)], {"axes": [1]})
    j = ctx.emit("unsqueeze", [index(rank - 1)], {"axes": [0]})
    keep = None
    for bound, a, b in ((lo, i, j), (up, j, i)):
        if bound < 0:
            continue
        ok = ctx.emit("less_equal", [ctx.emit("sub", [a, b]), ctx.const(np.array(bound, np.int64),
                                                                         ctx.name + "/bound")])
        keep = ok if keep is None else ctx.emit("logical_and", [keep, ok])
    if keep is None:
        return x
    zero = ctx.const(np.zeros((), np_dtype(x.dtype)), ctx.name + "/zero")
    return ctx.emit("where", [keep, x, zero])


def _main_diagonal_only(ctx, k: Value | None) -> None:
    if k is not None and np.asarray(ctx.const_of(k)).reshape(-1).tolist() != [0]:
        raise OpError("only the main diagonal (k=0) is supported")


def _on_diagonal(ctx, diag: Value, rows: Value, cols: Value, other: Value) -> Value:
    """out[..., i, j] = diag[..., i] where i == j, else ``other`` (a scalar or a matrix)."""
    zero, one = (ctx.const(np.array(k, np.int32), ctx.name + f"/c{k}") for k in (0, 1))
    i = ctx.emit("unsqueeze", [ctx.emit("range", [zero, rows, one])], {"axes": [1]})
    j = ctx.emit("unsqueeze", [ctx.emit("range", [zero, cols, one])], {"axes": [0]})
    length = _dim(ctx, diag, diag.type.rank - 1)
    at_row = ctx.emit("gather", [diag, ctx.emit("minimum", [i, ctx.emit("sub", [length, one])])],
                      {"axis": diag.type.rank - 1})  # [..., rows, 1]
    return ctx.emit("where", [ctx.emit("equal", [i, j]), at_row, other])


def _dim(ctx, v: Value, axis: int) -> Value:
    return ctx.emit("gather", [ctx.emit("shape", [v], {"dtype": "i32"}),
                               ctx.const(np.array(axis, np.int64), ctx.name + f"/axis{axis}")])


@handler("MatrixDiag", "MatrixDiagV2", "MatrixDiagV3")
def _matrix_diag(ctx, node, ins):
    """A matrix with ``diagonal`` on its main diagonal, padding elsewhere (tf.eye, tf.linalg.diag)."""
    diag = ins[0]
    _main_diagonal_only(ctx, ins[1] if len(ins) > 1 else None)
    length = _dim(ctx, diag, diag.type.rank - 1)
    rows = cols = length
    if len(ins) > 2:
        minus_one = ctx.const(np.array(-1, np.int32), ctx.name + "/minus_one")
        given = [v if v.dtype == "i32" else ctx.emit("cast", [v], {"to": "i32"}) for v in ins[2:4]]
        rows, cols = (ctx.emit("where", [ctx.emit("equal", [g, minus_one]), length, g]) for g in given)
    pad = ctx.const(np.asarray(ctx.const_of(ins[4]) if len(ins) > 4 else 0, np_dtype(diag.dtype)).reshape(()),
                    ctx.name + "/pad")
    out = _on_diagonal(ctx, diag, rows, cols, pad)
    return out if len(ins) > 2 else _set_type(out, (*diag.shape, diag.shape[-1]))


@handler("MatrixSetDiag", "MatrixSetDiagV2", "MatrixSetDiagV3")
def _matrix_set_diag(ctx, node, ins):
    """``input`` with its main diagonal replaced by ``diagonal``."""
    x, diag = ins[:2]
    _main_diagonal_only(ctx, ins[2] if len(ins) > 2 else None)
    rank = x.type.rank
    out = _on_diagonal(ctx, diag, _dim(ctx, x, rank - 2), _dim(ctx, x, rank - 1), x)
    return _set_type(out, x.shape)
