"""Linear algebra: matmul (numpy/ONNX semantics), einsum and transpose."""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import UNKNOWN, TensorType, broadcast_shapes, same_dim
from ._util import require_same_dtype, t


def _matmul_type(op) -> TensorType:
    a, b = t(op, 0), t(op, 1)
    if a.rank < 2 or b.rank < 2:
        raise OpError(f"matmul needs rank >= 2 operands, got {a} and {b}")
    k1, k2 = a.shape[-1], b.shape[-2]
    if not same_dim(k1, k2) and UNKNOWN not in (k1, k2):
        raise OpError(f"matmul contracts {a} with {b}: inner dims {k1} and {k2} differ")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as e:
        raise OpError(f"matmul batch dims: {e}") from None
    return TensorType(a.dtype, (*batch, a.shape[-2], b.shape[-1]))


def _matmul_kernel(attrs, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.matmul, with [..., K] @ [K, N] flattened to one 2-D product: numpy's stacked
    matmul does not reach BLAS for broadcast or non-contiguous operands (25x slower
    on BERT-base), and the reference interpreter runs calibration on big models."""
    if b.ndim == 2 and a.ndim > 2:
        out = np.ascontiguousarray(a).reshape(-1, a.shape[-1]) @ b
        return out.reshape(*a.shape[:-1], b.shape[-1])
    return np.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))


define("matmul", ("a", "b"), _matmul_type, _matmul_kernel,
       verify=require_same_dtype,
       doc="a @ b over the last two dims, broadcasting leading (batch) dims, as numpy and ONNX MatMul")


def parse_equation(eq: str) -> tuple[list[str], str]:
    """'abc,cd->abd' -> (['abc', 'cd'], 'abd').  Ellipses are not supported."""
    eq = eq.replace(" ", "")
    if "..." in eq or "->" not in eq:
        raise OpError(f"einsum equation {eq!r}: only explicit '->' forms without '...' are supported")
    lhs, out = eq.split("->")
    return lhs.split(","), out


def _einsum_type(op) -> TensorType:
    ins, out = parse_equation(op.attrs["equation"])
    if len(ins) != len(op.operands):
        raise OpError(f"einsum equation has {len(ins)} inputs, op has {len(op.operands)} operands")
    dims: dict[str, object] = {}
    for spec, v in zip(ins, op.operands):
        if len(spec) != v.type.rank:
            raise OpError(f"einsum term {spec!r} does not match operand type {v.type}")
        for ch, d in zip(spec, v.type.shape):
            if ch in dims and d != 1 and dims[ch] != 1 and UNKNOWN not in (d, dims[ch]) and not same_dim(dims[ch], d):
                raise OpError(f"einsum index {ch!r} is {dims[ch]} in one operand and {d} in another")
            if ch not in dims or dims[ch] == 1:
                dims[ch] = d
    try:
        return TensorType(t(op).dtype, tuple(dims[ch] for ch in out))
    except KeyError as e:
        raise OpError(f"einsum output index {e} appears in no input") from None


define("einsum", ("inputs*",), _einsum_type,
       lambda attrs, *xs: np.einsum(attrs["equation"], *xs).astype(xs[0].dtype),
       attrs={"equation": Attr("str")}, verify=require_same_dtype,
       doc="Einstein summation with an explicit output; legalize_einsum rewrites it to matmul")


def _transpose_type(op) -> TensorType:
    x = t(op)
    perm = list(op.attrs["perm"])
    if sorted(perm) != list(range(x.rank)):
        raise OpError(f"transpose perm {perm} is not a permutation of {x.rank} axes")
    return x.with_shape(x.shape[p] for p in perm)


define("transpose", ("x",), _transpose_type, lambda attrs, x: np.transpose(x, attrs["perm"]),
       attrs={"perm": Attr("ints")}, doc="permute axes: out.shape[i] = x.shape[perm[i]]")
