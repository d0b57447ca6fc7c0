"""Neural-network ops: softmax, layer_norm, reductions, scans and scatters."""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import FLOAT_DTYPES, TensorType, dim_prod, normalize_axis
from ._util import axis_of, shape_arg, t, unknown_shape


def _softmax_kernel(attrs, x):
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=attrs["axis"], keepdims=True))
    return (e / e.sum(axis=attrs["axis"], keepdims=True)).astype(x.dtype)


define("softmax", ("x",), lambda op: (axis_of(op, t(op).rank), t(op))[1], _softmax_kernel,
       attrs={"axis": Attr("int", -1)}, doc="exp(x) / sum(exp(x)) along axis")


def _layer_norm_kernel(attrs, x, gamma, beta):
    x64 = x.astype(np.float64)
    axes = tuple(range(attrs["axis"] % x.ndim, x.ndim))
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + attrs["epsilon"]) * gamma + beta).astype(x.dtype)


def _layer_norm_verify(op) -> None:
    x = t(op)
    if x.dtype not in FLOAT_DTYPES:
        raise OpError(f"layer_norm needs a float input, got {x}")
    ax = axis_of(op, x.rank)
    norm_shape = x.shape[ax:]
    for v in op.operands[1:]:
        if v.type.shape != norm_shape:
            raise OpError(f"layer_norm scale/bias {v.type} must have the normalized shape {list(norm_shape)}")


define("layer_norm", ("x", "scale", "bias"), lambda op: t(op), _layer_norm_kernel,
       attrs={"axis": Attr("int", -1), "epsilon": Attr("float", 1e-12)}, verify=_layer_norm_verify,
       doc="(x - mean) / sqrt(var + epsilon) * scale + bias over axes [axis, rank) (ONNX LayerNormalization)")


# ------------------------------------------------------------------ reductions
def _reduce_type(op) -> TensorType:
    x = t(op)
    axes = {normalize_axis(a, x.rank) for a in op.attrs["axes"]}
    if op.attrs["keepdims"]:
        return x.with_shape(1 if i in axes else d for i, d in enumerate(x.shape))
    return x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)


def _reduction(name: str, fn, doc: str, sym=None) -> None:
    def kernel(attrs, x):
        return np.asarray(fn(x, axis=tuple(attrs["axes"]), keepdims=attrs["keepdims"])).astype(x.dtype)

    define(name, ("x",), _reduce_type, kernel,
           attrs={"axes": Attr("ints"), "keepdims": Attr("bool", False)}, sym=sym, doc=doc)


def _prod_sym(op):
    """The element count of a shape vector (Tensordot's reshape targets)."""
    x = op.operands[0].sym
    if x is None or t(op).rank != 1:
        return None
    return [(dim_prod(x),)]


_reduction("reduce_mean", np.mean, "mean over axes")
_reduction("reduce_sum", np.sum, "sum over axes")
_reduction("reduce_max", np.max, "max over axes")
_reduction("reduce_min", np.min, "min over axes")
_reduction("reduce_prod", np.prod, "product over axes", sym=_prod_sym)


# ------------------------------------------------------------------ scans
def _scan_kernel(ufunc):
    def kernel(attrs, x):
        ax = attrs["axis"] % x.ndim
        y = np.flip(x, ax) if attrs["reverse"] else x
        out = ufunc.accumulate(y, axis=ax, dtype=x.dtype)
        if attrs["exclusive"]:
            ident = np.full_like(np.take(out, [0], axis=ax), ufunc.identity)
            out = np.concatenate([ident, np.take(out, range(out.shape[ax] - 1), axis=ax)], axis=ax)
        return np.flip(out, ax) if attrs["reverse"] else out

    return kernel


_SCAN_ATTRS = {"axis": Attr("int"), "exclusive": Attr("bool", False), "reverse": Attr("bool", False)}
define("cumsum", ("x",), lambda op: (axis_of(op, t(op).rank), t(op))[1], _scan_kernel(np.add),
       attrs=_SCAN_ATTRS, doc="running sum along axis (TF Cumsum: exclusive, reverse)")
define("cumprod", ("x",), lambda op: (axis_of(op, t(op).rank), t(op))[1], _scan_kernel(np.multiply),
       attrs=_SCAN_ATTRS, doc="running product along axis (TF Cumprod: exclusive, reverse)")


# ------------------------------------------------------------------ scatters
def _scatter_nd_type(op) -> TensorType:
    upd = t(op, 1)
    shape = shape_arg(op, "shape", 2)
    if shape is None:
        return TensorType(upd.dtype, unknown_shape(op.operands[2].shape[0]))
    return TensorType(upd.dtype, tuple(shape))


def _scatter_into(out, idx, upd, accumulate):
    k = idx.shape[-1]
    flat_idx = idx.reshape(-1, k).astype(np.int64)
    flat_upd = upd.reshape(flat_idx.shape[0], *out.shape[k:])
    for i, u in zip(flat_idx, flat_upd):
        if accumulate:
            out[tuple(i)] += u
        else:
            out[tuple(i)] = u
    return out


def _scatter_nd_kernel(attrs, idx, upd, shape=None):
    dims = attrs["shape"] if shape is None else [int(x) for x in shape]
    return _scatter_into(np.zeros(dims, upd.dtype), idx, upd, True)


define("scatter_nd", ("indices", "updates", "shape?"), _scatter_nd_type, _scatter_nd_kernel,
       attrs={"shape": Attr("ints", None)},
       doc="zeros(shape) with updates added at indices; duplicate indices add up (TF ScatterNd)")
define("scatter_nd_update", ("data", "indices", "updates"), lambda op: t(op),
       lambda attrs, d, i, u: _scatter_into(d.copy(), i, u, False),
       doc="data with slices at indices replaced by updates (TF TensorScatterUpdate; "
           "with duplicate indices the last one wins)")
define("scatter_nd_add", ("data", "indices", "updates"), lambda op: t(op),
       lambda attrs, d, i, u: _scatter_into(d.copy(), i, u, True),
       doc="data with updates added at indices (TF TensorScatterAdd)")
