"""Elementwise ops: unary math, broadcasting binary math, comparisons, select, cast.

Binary ops broadcast like numpy (and ONNX, and TF).  Kernels compute in the
operands' dtype, as the runtimes do, so the reference interpreter rounds the
way they round.
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import DTYPES, FLOAT_DTYPES, UNKNOWN, dim_div, dim_mul
from ._util import broadcast_type, require_same_dtype, same_as_first, t


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised (numpy has none).

    Chebyshev fit of erfc (Numerical Recipes, ``erfcc``): fractional error
    below 1.2e-7 everywhere, i.e. within float32 rounding.
    """
    x64 = np.asarray(x, dtype=np.float64)
    z = np.abs(x64)
    tt = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + tt * (1.00002368 + tt * (0.37409196 + tt * (0.09678418 + tt * (
        -0.18628806 + tt * (0.27886807 + tt * (-1.13520398 + tt * (1.48851587 + tt * (
            -0.82215223 + tt * 0.17087277)))))))))
    erfc = tt * np.exp(poly)
    out = np.where(x64 >= 0, 1.0 - erfc, erfc - 1.0)
    return out.astype(np.asarray(x).dtype)


def _float_only(op) -> None:
    if t(op).dtype not in FLOAT_DTYPES:
        raise OpError(f"'{op.kind}' needs a float operand, got {t(op).dtype}")


def _unary(name: str, fn, doc: str, floats: bool = True) -> None:
    define(name, ("x",), same_as_first, lambda a, x: np.asarray(fn(x)).astype(x.dtype),
           verify=_float_only if floats else None, doc=doc)


_unary("neg", np.negative, "-x", floats=False)
_unary("abs", np.abs, "|x|", floats=False)
_unary("sqrt", np.sqrt, "square root")
_unary("rsqrt", lambda x: 1.0 / np.sqrt(x), "1 / sqrt(x)")
_unary("exp", np.exp, "e^x")
_unary("log", np.log, "natural logarithm")
_unary("tanh", np.tanh, "hyperbolic tangent")
_unary("erf", erf, "error function")
_unary("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)), "logistic sigmoid")
_unary("relu", lambda x: np.maximum(x, 0), "max(x, 0)", floats=False)
_unary("reciprocal", lambda x: 1.0 / x, "1 / x")
_unary("floor", np.floor, "largest integer <= x")
_unary("ceil", np.ceil, "smallest integer >= x")
_unary("round", np.round, "nearest integer, halves to even (TF Round, ONNX Round)")
_unary("sin", np.sin, "sine")
_unary("cos", np.cos, "cosine")
_unary("sign", np.sign, "-1, 0 or 1 by the sign of x (0 for -0.0; NaN stays NaN)", floats=False)
define("identity", ("x",), same_as_first, lambda a, x: x, sym=lambda op: [op.operands[0].sym],
       doc="x, unchanged; identity removal deletes it")
define("logical_not", ("x",), same_as_first, lambda a, x: np.logical_not(x), doc="not x (bool)")


def _gelu(a, x):
    x64 = x.astype(np.float64)
    if a["approximate"] == "tanh":
        y = 0.5 * x64 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x64 + 0.044715 * x64 ** 3)))
    else:
        y = 0.5 * x64 * (1.0 + erf(x64 / np.sqrt(2.0)))
    return y.astype(x.dtype)


def _verify_gelu(op) -> None:
    _float_only(op)
    if op.attrs["approximate"] not in ("none", "tanh"):
        raise OpError(f"gelu approximate must be 'none' or 'tanh', got {op.attrs['approximate']!r}")


define("gelu", ("x",), same_as_first, _gelu, attrs={"approximate": Attr("str", "none")},
       verify=_verify_gelu,
       doc="x * Phi(x): exact (erf) when approximate='none', else the tanh form")


def _binary(name: str, fn, doc: str, result_dtype: str | None = None, sym=None) -> None:
    def kernel(a, x, y):
        out = fn(x, y)
        return np.asarray(out, dtype=result_dtype and DTYPES[result_dtype] or x.dtype)

    define(name, ("x", "y"), lambda op: broadcast_type(op, result_dtype), kernel,
           verify=require_same_dtype, sym=sym, doc=doc)


def _sym_binary(fn):
    """Symbolic evaluation of shape arithmetic: elementwise, or one side a single element."""

    def sym(op):
        a, b = op.operands[0].sym, op.operands[1].sym
        if a is None or b is None:
            return None
        if len(b) == 1:
            return [tuple(fn(x, b[0]) for x in a)]
        if len(a) == 1:
            return [tuple(fn(a[0], y) for y in b)]
        if len(a) == len(b):
            return [tuple(fn(x, y) for x, y in zip(a, b))]
        return None

    return sym


def _mul_dims(x, y):
    return dim_mul(x, y)


def _add_dims(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x + y
    if y == 0:
        return x
    if x == 0:
        return y
    raise ValueError("symbolic add")


def _sub_dims(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x - y
    if y == 0:
        return x
    raise ValueError("symbolic sub")


def _div_dims(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x // y
    q = dim_div(x, y)
    if q == UNKNOWN:
        raise ValueError("inexact symbolic division")
    return q


def _mod_dims(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x % y
    raise ValueError("symbolic mod")


_binary("add", np.add, "x + y", sym=_sym_binary(_add_dims))
_binary("sub", np.subtract, "x - y", sym=_sym_binary(_sub_dims))
_binary("mul", np.multiply, "x * y", sym=_sym_binary(_mul_dims))
_binary("div", lambda x, y: np.floor_divide(x, y) if x.dtype.kind in "iu" else np.divide(x, y),
        "x / y (floor division on integers, as TF's FloorDiv; true division on floats)",
        sym=_sym_binary(_div_dims))
_binary("mod", np.mod,
        "x - floor(x / y) * y: the remainder with the sign of y (TF FloorMod, Python %)",
        sym=_sym_binary(_mod_dims))
_binary("pow", np.power, "x ** y")
_binary("maximum", np.maximum, "max(x, y)")
_binary("minimum", np.minimum, "min(x, y)")
def _compare_dims(fn, same: bool):
    """A comparison of dims when it is decidable: two ints, or one symbol with itself
    (``seq == seq`` is true whatever seq is; ``seq == batch`` is not decidable)."""

    def cmp(x, y):
        if isinstance(x, int) and isinstance(y, int):
            return bool(fn(x, y))
        if x == y and x != UNKNOWN:
            return same
        raise ValueError("undecidable comparison of dims")

    return cmp


def _logic_dims(fn):
    def logic(x, y):
        if isinstance(x, int) and isinstance(y, int):
            return bool(fn(bool(x), bool(y)))
        raise ValueError("symbolic logic")

    return logic


_binary("equal", np.equal, "x == y", "bool", sym=_sym_binary(_compare_dims(np.equal, True)))
_binary("not_equal", np.not_equal, "x != y", "bool", sym=_sym_binary(_compare_dims(np.not_equal, False)))
_binary("less", np.less, "x < y", "bool", sym=_sym_binary(_compare_dims(np.less, False)))
_binary("less_equal", np.less_equal, "x <= y", "bool", sym=_sym_binary(_compare_dims(np.less_equal, True)))
_binary("greater", np.greater, "x > y", "bool", sym=_sym_binary(_compare_dims(np.greater, False)))
_binary("greater_equal", np.greater_equal, "x >= y", "bool",
        sym=_sym_binary(_compare_dims(np.greater_equal, True)))
_binary("logical_and", np.logical_and, "x and y", "bool", sym=_sym_binary(_logic_dims(np.logical_and)))
_binary("logical_or", np.logical_or, "x or y", "bool", sym=_sym_binary(_logic_dims(np.logical_or)))


def _verify_where(op) -> None:
    if op.operands[0].dtype != "bool":
        raise OpError(f"where's condition must be bool, got {op.operands[0].dtype}")
    require_same_dtype(op, (1, 2))


define("where", ("cond", "x", "y"), lambda op: broadcast_type(op, t(op, 1).dtype),
       lambda a, c, x, y: np.where(c, x, y).astype(x.dtype), verify=_verify_where,
       doc="x where cond else y, broadcasting all three")


def _cast_kernel(a, x):
    return x.astype(DTYPES[a["to"]])


def _verify_cast(op) -> None:
    if op.attrs["to"] not in DTYPES:
        raise OpError(f"cast to unknown dtype {op.attrs['to']!r}")


define("cast", ("x",), lambda op: t(op).with_dtype(op.attrs["to"]), _cast_kernel,
       attrs={"to": Attr("str")}, verify=_verify_cast,
       sym=lambda op: [op.operands[0].sym],
       doc="convert dtype; float to int truncates toward zero, as TF and ONNX do")
