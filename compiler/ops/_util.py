"""Small helpers shared by the op definitions."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..ir.graph import Op
from ..ir.registry import OpError
from ..ir.types import UNKNOWN, Dim, TensorType, broadcast_shapes, normalize_axis


def t(op: Op, i: int = 0) -> TensorType:
    """The type of operand ``i``."""
    return op.operands[i].type


def same_as_first(op: Op) -> TensorType:
    return t(op)


def broadcast_type(op: Op, dtype: str | None = None) -> TensorType:
    try:
        shape = broadcast_shapes(*(v.type.shape for v in op.operands))
    except ValueError as e:
        raise OpError(str(e)) from None
    return TensorType(dtype or t(op).dtype, shape)


def require_same_dtype(op: Op, indices: Sequence[int] | None = None) -> None:
    idx = range(len(op.operands)) if indices is None else indices
    dtypes = {op.operands[i].dtype for i in idx}
    if len(dtypes) > 1:
        raise OpError(f"'{op.kind}' operands must share a dtype, got {', '.join(sorted(dtypes))}")


def axis_of(op: Op, rank: int, key: str = "axis") -> int:
    try:
        return normalize_axis(int(op.attrs[key]), rank)
    except ValueError as e:
        raise OpError(str(e)) from None


def shape_arg(op: Op, attr: str, operand: int) -> list[Dim] | None:
    """A shape-like argument given either as an attribute or as an operand.

    Returns the dims (ints or symbols) when they are known statically or
    symbolically, and None when only the run-time value knows them.
    """
    if op.attrs.get(attr) is not None:
        return list(op.attrs[attr])
    if len(op.operands) > operand:
        v = op.operands[operand]
        if v.sym is not None:
            return list(v.sym)
        c = v.const_value()
        if c is not None:
            return [int(x) for x in np.atleast_1d(c)]
    return None


def unknown_shape(rank: int) -> tuple[Dim, ...]:
    return (UNKNOWN,) * rank


def as_int_list(arr) -> list[int]:
    return [int(x) for x in np.atleast_1d(np.asarray(arr))]
