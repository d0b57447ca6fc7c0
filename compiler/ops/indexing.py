"""Indexing ops whose output shape can depend on data: pad, nonzero, gather_nd, argmax, argmin.

``pad`` takes its paddings as an attribute when they are constant and as an
operand when the source graph computes them (padding a sequence to a multiple
of a window).  ``nonzero`` is the one op whose output size is only known at
run time: the importer gives that dim a fresh symbol, so the ops downstream
still type their results by it.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import UNKNOWN, TensorType, is_static, normalize_axis
from ._util import axis_of, t


# ------------------------------------------------------------------ pad
def _pad_pairs(op) -> list[tuple[int, int]] | None:
    """The (before, after) pair of each axis, when known at compile time."""
    if op.attrs["pads"] is not None:
        p = list(op.attrs["pads"])
        return [(p[2 * i], p[2 * i + 1]) for i in range(len(p) // 2)]
    c = op.operands[1].const_value() if len(op.operands) > 1 else None
    if c is None:
        return None
    return [(int(b), int(e)) for b, e in np.asarray(c).reshape(-1, 2)]


def _pad_dim(d, before: int, after: int):
    if is_static(d):
        return d + before + after
    return d if before == after == 0 else UNKNOWN


def _pad_type(op) -> TensorType:
    x = t(op)
    pairs = _pad_pairs(op)
    if pairs is None:
        return x.with_shape((UNKNOWN,) * x.rank)
    return x.with_shape(_pad_dim(d, b, e) for d, (b, e) in zip(x.shape, pairs))


def _pad_verify(op) -> None:
    x = t(op)
    has_attr, has_operand = op.attrs["pads"] is not None, len(op.operands) > 1
    if has_attr == has_operand:
        raise OpError("pad takes its paddings either as attribute 'pads' or as an operand")
    if has_attr and len(op.attrs["pads"]) != 2 * x.rank:
        raise OpError(f"pad of {x} needs {2 * x.rank} pads (before, after per axis), "
                      f"got {len(op.attrs['pads'])}")
    if has_operand:
        p = op.operands[1].type
        if p.dtype not in ("i32", "i64") or p.rank != 2 or p.shape[1] not in (2, UNKNOWN) \
                or p.shape[0] not in (x.rank, UNKNOWN):
            raise OpError(f"pad's paddings must be i32/i64[{x.rank},2], got {p}")


def _pad_kernel(attrs, x, pads=None):
    pairs = (np.asarray(attrs["pads"]).reshape(-1, 2) if pads is None else np.asarray(pads)).astype(np.int64)
    if (pairs < 0).any():
        raise ValueError("pad: negative paddings are not supported")
    return np.pad(x, [tuple(p) for p in pairs], constant_values=np.asarray(attrs["value"]).astype(x.dtype))


define("pad", ("x", "pads?"), _pad_type, _pad_kernel,
       attrs={"pads": Attr("ints", None, "before and after each axis: [b0, e0, b1, e1, ...] (TF order)"),
              "value": Attr("float", 0.0, "the fill value")},
       verify=_pad_verify,
       doc="x surrounded by value (TF Pad/PadV2; an operand's paddings are i32/i64[rank, 2])")


# ------------------------------------------------------------------ nonzero
def _nonzero_type(op) -> TensorType:
    return TensorType("i64", (UNKNOWN, t(op).rank))


define("nonzero", ("x",), _nonzero_type,
       lambda attrs, x: np.argwhere(x).astype(np.int64).reshape(-1, x.ndim),
       doc="the coordinates of the non-zero (true) elements, one row each, in row-major order "
           "(TF one-argument Where); the row count is known only at run time")


# ------------------------------------------------------------------ gather_nd
def _gather_nd_type(op) -> TensorType:
    data, idx = t(op, 0), t(op, 1)
    if idx.dtype not in ("i32", "i64"):
        raise OpError(f"gather_nd indices must be i32 or i64, got {idx.dtype}")
    k = idx.shape[-1] if idx.rank else UNKNOWN
    if not is_static(k):
        raise OpError(f"gather_nd needs the indices' last dim to be known, got {idx}")
    if k > data.rank:
        raise OpError(f"gather_nd indices of depth {k} into {data}")
    return data.with_shape((*idx.shape[:-1], *data.shape[k:]))


def _gather_nd_kernel(attrs, data, idx):
    idx = idx.astype(np.int64)
    k = idx.shape[-1]
    flat = idx.reshape(-1, k)
    out = np.stack([data[tuple(i)] for i in flat]) if len(flat) else np.zeros((0, *data.shape[k:]), data.dtype)
    return out.reshape(*idx.shape[:-1], *data.shape[k:]).astype(data.dtype)


define("gather_nd", ("data", "indices"), _gather_nd_type, _gather_nd_kernel,
       doc="data[indices[..., :]]: each row of the last indices axis picks a slice (TF GatherNd, "
           "ONNX GatherND with batch_dims=0)")


# ------------------------------------------------------------------ argmax / argmin
def _arg_type(op) -> TensorType:
    x = t(op)
    ax = axis_of(op, x.rank)
    shape = [1 if i == ax else d for i, d in enumerate(x.shape)] if op.attrs["keepdims"] else \
        [d for i, d in enumerate(x.shape) if i != ax]
    return TensorType(op.attrs["dtype"], tuple(shape))


def _arg_verify(op) -> None:
    if op.attrs["dtype"] not in ("i32", "i64"):
        raise OpError(f"{op.kind} gives i32 or i64 indices, not {op.attrs['dtype']}")


def _arg(name: str, fn, doc: str) -> None:
    def kernel(attrs, x):
        ax = normalize_axis(attrs["axis"], x.ndim)
        return fn(x, axis=ax, keepdims=attrs["keepdims"]).astype(np.dtype(attrs["dtype"].replace("i", "int")))

    define(name, ("x",), _arg_type, kernel,
           attrs={"axis": Attr("int", -1), "keepdims": Attr("bool", False), "dtype": Attr("str", "i64")},
           verify=_arg_verify, doc=doc)


_arg("argmax", np.argmax, "index of the largest element along axis; ties give the first (TF ArgMax)")
_arg("argmin", np.argmin, "index of the smallest element along axis; ties give the first (TF ArgMin)")
