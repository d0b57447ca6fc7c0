"""Numerics of every TF op the importer maps, against TensorFlow itself.

Each case is a tiny ``tf.function`` whose data operands are placeholders (never
constants, so nothing can pass by being constant-folded).  It is imported twice,
raw (``canonicalize=False``: the handlers' own output) and canonical (after
folding, shape simplification, CSE and the layer-norm/GELU fusions), and run
through the reference interpreter on random inputs with edge values (zeros,
-0.0, negatives, large magnitudes, ties, size-1 dims).  Every computed value's
dtype and shape is also checked against the type the IR inferred for it.

Tolerances: float32 results use atol 1e-6 / rtol 1e-5 unless a case says why
not (``why=``); integer, boolean and data-movement results must be bit-exact
(data movement includes the sign of zero).

TF on CPU flushes denormals to zero, so inputs avoid denormals (results that
underflow into them differ by < 1e-38, far inside atol).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from bertc.diagnostics import BertcError  # noqa: E402
import bertc.frontend.tf_ops  # noqa: E402,F401  (fills HANDLERS)
from bertc.frontend.tf import HANDLERS, import_function  # noqa: E402
from bertc.ir.interpreter import run_graph  # noqa: E402
from bertc.ir.types import DTYPES, UNKNOWN  # noqa: E402
from bertc.ir.verifier import verify  # noqa: E402

F32, F16, I32, I64, BOOL = tf.float32, tf.float16, tf.int32, tf.int64, tf.bool
Feeds = dict[str, np.ndarray]


# --------------------------------------------------------------------------- the case table
@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[..., Any]  # TF code; parameter names = input names, in ``specs`` order
    specs: dict[str, tuple[list[int | None], tf.DType]]
    feeds: Callable[[np.random.Generator], list[Feeds]]  # >1 feed set: run at several shapes
    ops: tuple[str, ...] = ()  # IR op kinds the raw import must contain
    tf_ops: tuple[str, ...] = ()  # TF op types the frozen graph must contain ("A|B": either)
    atol: float = 1e-6
    rtol: float = 1e-5
    why: str = ""  # the reason for a tolerance looser than the default
    exact: bool = False  # bit-exact floats, signed zeros included
    signed_zeros: bool = False  # floats within tolerance, and -0.0 where TF gives -0.0
    fused: dict[str, int] | None = None  # op kind -> count required after canonicalization
    xfail: str = ""  # a known bertc bug (strict)


CASES: list[Case] = []


def case(id: str, fn, specs, feeds, ops=(), tf_ops=(), **kw) -> None:
    CASES.append(Case(id, fn, specs, feeds, tuple(ops), tuple(tf_ops), **kw))


def S(*dims, dtype=F32):
    return (list(dims), dtype)


# --------------------------------------------------------------------------- input generators
EDGES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0, 1e-20, -1e-20, 1e4, -1e4, 1e30, -1e30],
                 np.float32)
# For sums: large values of one sign only (large values of both signs cancel, and what
# survives the cancellation depends on the order of addition, which TF does not fix).
REDUCE_EDGES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0, 1e-20, -1e-20, 1e4], np.float32)
NONFINITE = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0], np.float32)


def edgy(r: np.random.Generator, shape, scale: float = 2.0, edges=EDGES) -> np.ndarray:
    """Normal values with the edge values planted at random positions (up to half the tensor)."""
    a = (r.standard_normal(shape) * scale).astype(np.float32)
    flat = a.reshape(-1)
    k = min(len(edges), flat.size // 2)
    if k:
        flat[r.choice(flat.size, size=k, replace=False)] = r.choice(edges, size=k, replace=False)
    return a


def normal(r: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
    return (r.standard_normal(shape) * scale).astype(np.float32)


def ties(r: np.random.Generator, shape) -> np.ndarray:
    """Small integers as floats: many exact ties, zeros of both signs."""
    a = r.integers(-3, 4, shape).astype(np.float32)
    a[r.random(shape) < 0.2] = -0.0
    return a


def ints(r: np.random.Generator, shape, lo=-50, hi=50, dtype=np.int32) -> np.ndarray:
    a = r.integers(lo, hi, shape).astype(dtype)
    flat = a.reshape(-1)
    extremes = np.array([0, -1, 1, lo, hi - 1], dtype)
    k = min(len(extremes), flat.size // 2)
    flat[r.choice(flat.size, size=k, replace=False)] = extremes[:k]
    return a


def nonzero_ints(r: np.random.Generator, shape, lo=-9, hi=10, dtype=np.int32) -> np.ndarray:
    a = r.integers(lo, hi, shape).astype(dtype)
    a[a == 0] = 1
    return a


def near_one(r: np.random.Generator, shape) -> np.ndarray:
    """Factors for products that neither overflow nor vanish, with zeros of both signs."""
    a = r.uniform(-1.5, 1.5, shape).astype(np.float32)
    a[r.random(shape) < 0.1] = -0.0
    return a


def bools(r: np.random.Generator, shape) -> np.ndarray:
    return r.random(shape) < 0.5


# =========================================================================== plumbing
case("identity", lambda x: tf.identity(x) * 2.0, {"x": S(None, 4)},
     lambda r: [{"x": edgy(r, (3, 4))}], ["mul"], ["Identity", "Const"])
case("stop_gradient", lambda x: tf.stop_gradient(x) + x, {"x": S(None, 4)},
     lambda r: [{"x": edgy(r, (3, 4))}], ["add"], ["StopGradient"])
case("prevent_gradient", lambda x: tf.raw_ops.PreventGradient(input=x) - 1.0, {"x": S(2, 4)},
     lambda r: [{"x": edgy(r, (2, 4))}], ["sub"], ["PreventGradient"])
case("snapshot", lambda x: tf.raw_ops.Snapshot(input=x) * x, {"x": S(2, 4)},
     lambda r: [{"x": edgy(r, (2, 4))}], ["mul"], ["Snapshot"])
case("ensure_shape", lambda x: -tf.ensure_shape(x, [None, 4]), {"x": S(None, None)},
     lambda r: [{"x": edgy(r, (3, 4))}], ["neg"], ["EnsureShape"], signed_zeros=True)
case("check_numerics", lambda x: tf.debugging.check_numerics(x, "bad") + 1.0, {"x": S(None, 4)},
     lambda r: [{"x": normal(r, (3, 4))}], ["add"], ["CheckNumerics"])
case("placeholder_with_default", lambda x: x * tf.compat.v1.placeholder_with_default(tf.constant(2.0), []),
     {"x": S(None, 4)}, lambda r: [{"x": edgy(r, (3, 4))}], ["mul"], ["PlaceholderWithDefault"], signed_zeros=True)
case("identity_n", lambda x, y: tuple(v * 3.0 for v in tf.identity_n([x, y])),
     {"x": S(None, 4), "y": S(2, dtype=F32)},
     lambda r: [{"x": edgy(r, (3, 4)), "y": normal(r, (2,))}], ["mul"], ["IdentityN"])
case("identity_n_passthrough", lambda x, y: tuple(tf.identity_n([x, y])),
     {"x": S(None, 4), "y": S(None, dtype=I32)},
     lambda r: [{"x": edgy(r, (3, 4)), "y": ints(r, (5,))}], [], ["IdentityN"], exact=True)

# =========================================================================== binary elementwise
# (name, TF function, IR op kind, TF op type).  x is [batch, 3, 4]; y broadcasts in several ways.
_FLOAT_BINARY = [
    ("add", lambda x, y: tf.raw_ops.Add(x=x, y=y), "add", "Add"),
    ("add_v2", lambda x, y: x + y, "add", "AddV2"),
    ("sub", lambda x, y: x - y, "sub", "Sub"),
    ("mul", lambda x, y: x * y, "mul", "Mul"),
    ("real_div", lambda x, y: x / y, "div", "RealDiv"),
    ("div", lambda x, y: tf.raw_ops.Div(x=x, y=y), "div", "Div"),
    ("maximum", tf.maximum, "maximum", "Maximum"),
    ("minimum", tf.minimum, "minimum", "Minimum"),
    ("squared_difference", tf.math.squared_difference, "mul", "SquaredDifference"),
]
_BROADCASTS = [  # id, x dims, y dims, x shapes fed, y shapes fed
    ("vec", [None, 3, 4], [4], [(2, 3, 4), (1, 3, 4)], [(4,), (4,)]),
    ("col", [None, 3, 4], [3, 1], [(2, 3, 4)], [(3, 1)]),
    ("scalar", [None, 3, 4], [], [(2, 3, 4)], [()]),
    ("both", [None, 1, 4], [3, 1], [(2, 1, 4)], [(3, 1)]),
]
for _name, _fn, _kind, _tf in _FLOAT_BINARY:
    for _bid, _xd, _yd, _xs, _ys in _BROADCASTS:
        case(f"{_name}_f32_{_bid}", lambda x, y, f=_fn: f(x, y), {"x": S(*_xd), "y": S(*_yd)},
             lambda r, xs=_xs, ys=_ys: [{"x": edgy(r, a), "y": edgy(r, b)} for a, b in zip(xs, ys)],
             [_kind], [_tf], signed_zeros=_name in ("mul", "sub", "add_v2", "real_div"))
    case(f"{_name}_f32_ties", lambda x, y, f=_fn: f(x, y), {"x": S(None, 3, 4), "y": S(None, 3, 4)},
         lambda r: [{"x": ties(r, (2, 3, 4)), "y": ties(r, (2, 3, 4))}], [_kind], [_tf])
    case(f"{_name}_f32_nonfinite", lambda x, y, f=_fn: f(x, y), {"x": S(1, 7), "y": S(7, 1)},
         lambda r: [{"x": NONFINITE[None, :], "y": NONFINITE[:, None]}], [_kind], [_tf])

case("add_symbolic_broadcasts_static", tf.add, {"x": S(None, 7), "y": S(7, 1)},
     lambda r: [{"x": edgy(r, (1, 7)), "y": edgy(r, (7, 1))}, {"x": edgy(r, (7, 7)), "y": edgy(r, (7, 1))}],
     ["add"], ["AddV2"])
case("bias_add", tf.nn.bias_add, {"x": S(None, 3, 4), "b": S(4)},
     lambda r: [{"x": edgy(r, (2, 3, 4)), "b": edgy(r, (4,))}, {"x": edgy(r, (1, 3, 4)), "b": edgy(r, (4,))}],
     ["add"], ["BiasAdd"])
case("pow_f32", tf.pow, {"x": S(None, 8), "y": S(8)},
     lambda r: [{"x": edgy(r, (3, 8)), "y": np.array([0, 1, 2, -1, 0.5, 3, -2, 1.5], np.float32)},
                {"x": np.abs(normal(r, (2, 8))) + 0.1, "y": normal(r, (8,))}],
     ["pow"], ["Pow"])

_INT_BINARY = [
    ("add", lambda x, y: x + y, "add", "AddV2"),
    ("sub", lambda x, y: x - y, "sub", "Sub"),
    ("mul", lambda x, y: x * y, "mul", "Mul"),
    ("maximum", tf.maximum, "maximum", "Maximum"),
    ("minimum", tf.minimum, "minimum", "Minimum"),
    ("floor_div", tf.math.floordiv, "div", "FloorDiv"),
    ("squared_difference", tf.math.squared_difference, "mul", "SquaredDifference"),
]
for _dt, _np_dt in ((I32, np.int32), (I64, np.int64)):
    for _name, _fn, _kind, _tf in _INT_BINARY:
        case(f"{_name}_{_dt.name}", lambda x, y, f=_fn: f(x, y), {"x": S(None, 3, 4, dtype=_dt), "y": S(4, dtype=_dt)},
             lambda r, d=_np_dt: [{"x": ints(r, (2, 3, 4), dtype=d), "y": nonzero_ints(r, (4,), dtype=d)}],
             [_kind], [_tf])
case("div_int32_truncates", lambda x, y: tf.raw_ops.Div(x=x, y=y), {"x": S(None, dtype=I32), "y": S(None, dtype=I32)},
     lambda r: [{"x": np.array([-7, 7, -8, 8, -6, 0, -1, 9], np.int32),
                 "y": np.array([2, -2, 3, -3, 3, -5, 4, 9], np.int32)},
                {"x": ints(r, (64,)), "y": nonzero_ints(r, (64,))}],
     ["div"], ["Div"])
case("div_int64_truncates", lambda x, y: tf.raw_ops.Div(x=x, y=y), {"x": S(None, 4, dtype=I64), "y": S(4, dtype=I64)},
     lambda r: [{"x": ints(r, (5, 4), dtype=np.int64), "y": nonzero_ints(r, (4,), dtype=np.int64)}],
     ["div"], ["Div"])
case("pow_int32", tf.pow, {"x": S(None, 5, dtype=I32), "y": S(5, dtype=I32)},
     lambda r: [{"x": ints(r, (3, 5), -6, 7), "y": np.array([0, 1, 2, 3, 5], np.int32)}], ["pow"], ["Pow"])

_COMPARE = [
    ("equal", tf.equal, "equal", "Equal"),
    ("not_equal", tf.not_equal, "not_equal", "NotEqual"),
    ("less", tf.less, "less", "Less"),
    ("less_equal", tf.less_equal, "less_equal", "LessEqual"),
    ("greater", tf.greater, "greater", "Greater"),
    ("greater_equal", tf.greater_equal, "greater_equal", "GreaterEqual"),
]
for _name, _fn, _kind, _tf in _COMPARE:
    case(f"{_name}_f32", lambda x, y, f=_fn: f(x, y), {"x": S(None, 3, 4), "y": S(3, 1)},
         lambda r: [{"x": ties(r, (2, 3, 4)), "y": ties(r, (3, 1))},
                    {"x": edgy(r, (1, 3, 4), edges=np.array([np.nan, np.inf, -np.inf, 0, -0.0], np.float32)),
                     "y": np.array([[np.nan], [0.0], [-0.0]], np.float32)}],
         [_kind], [_tf])
    case(f"{_name}_i32", lambda x, y, f=_fn: f(x, y), {"x": S(None, 4, dtype=I32), "y": S(dtype=I32)},
         lambda r: [{"x": ints(r, (3, 4), -2, 3), "y": np.int32(1)}], [_kind], [_tf])
case("logical_and", tf.logical_and, {"x": S(None, 3, dtype=BOOL), "y": S(3, dtype=BOOL)},
     lambda r: [{"x": bools(r, (4, 3)), "y": np.array([True, False, True])}], ["logical_and"], ["LogicalAnd"])
case("logical_or", tf.logical_or, {"x": S(None, 3, dtype=BOOL), "y": S(None, 1, dtype=BOOL)},
     lambda r: [{"x": bools(r, (4, 3)), "y": bools(r, (4, 1))}], ["logical_or"], ["LogicalOr"])
case("logical_not", tf.logical_not, {"x": S(None, 3, dtype=BOOL)},
     lambda r: [{"x": bools(r, (4, 3))}], ["logical_not"], ["LogicalNot"])

# =========================================================================== unary elementwise
_UNARY_F = [  # name, TF function, IR kind, TF op type, extra case options
    ("neg", tf.negative, "neg", "Neg", {"signed_zeros": True}),
    ("abs", tf.abs, "abs", "Abs", {"signed_zeros": True}),
    ("sqrt", tf.sqrt, "sqrt", "Sqrt", {"signed_zeros": True}),
    ("rsqrt", tf.math.rsqrt, "rsqrt", "Rsqrt", {}),
    ("exp", tf.exp, "exp", "Exp", {}),
    ("log", tf.math.log, "log", "Log", {}),
    ("tanh", tf.tanh, "tanh", "Tanh", {}),
    ("erf", tf.math.erf, "erf", "Erf", {}),
    ("erfc", tf.math.erfc, "erf", "Erfc", {}),
    ("sigmoid", tf.sigmoid, "sigmoid", "Sigmoid", {}),
    ("relu", tf.nn.relu, "relu", "Relu", {}),
    ("reciprocal", tf.math.reciprocal, "reciprocal", "Reciprocal", {}),
    ("inv", lambda x: tf.raw_ops.Inv(x=x), "reciprocal", "Inv", {}),
    ("square", tf.square, "mul", "Square", {}),
]
_TRANSCENDENTAL_EDGES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 3.0, -3.0, 1e-20, -1e-20, 1e4, -1e4, 88.0,
                                  -88.0, 5.0, -5.0, 10.0, -10.0, np.inf, -np.inf, np.nan], np.float32)
for _name, _fn, _kind, _tf, _kw in _UNARY_F:
    case(f"{_name}_f32", lambda x, f=_fn: f(x), {"x": S(None, 6)},
         lambda r: [{"x": edgy(r, (7, 6), edges=_TRANSCENDENTAL_EDGES)}, {"x": edgy(r, (1, 6), scale=0.5)}],
         [_kind], [_tf], **_kw)
    case(f"{_name}_f32_large", lambda x, f=_fn: f(x), {"x": S(None, 5)},
         lambda r: [{"x": edgy(r, (4, 5), scale=1e3)}], [_kind], [_tf], **_kw)
for _name, _fn, _kind, _tf in (("neg", tf.negative, "neg", "Neg"), ("abs", tf.abs, "abs", "Abs"),
                               ("relu", tf.nn.relu, "relu", "Relu"), ("square", tf.square, "mul", "Square")):
    case(f"{_name}_i32", lambda x, f=_fn: f(x), {"x": S(None, 4, dtype=I32)},
         lambda r: [{"x": ints(r, (3, 4))}], [_kind], [_tf])

case("add_n_f32", lambda x, y, z: tf.add_n([x, y, z]), {"x": S(None, 4), "y": S(None, 4), "z": S(None, 4)},
     lambda r: [{k: edgy(r, (3, 4)) for k in "xyz"}, {k: normal(r, (1, 4)) for k in "xyz"}], ["add"], ["AddN"])
case("add_n_i64", lambda x, y: tf.add_n([x, y]), {"x": S(None, 4, dtype=I64), "y": S(None, 4, dtype=I64)},
     lambda r: [{k: ints(r, (3, 4), dtype=np.int64) for k in "xy"}], ["add"], ["AddN"])

case("softmax", tf.nn.softmax, {"x": S(None, 3, 5)},
     lambda r: [{"x": edgy(r, (2, 3, 5), edges=np.array([0, -0.0, 1e4, -1e4, -1e9, 30, -30], np.float32))},
                {"x": normal(r, (1, 3, 5), 10)}],
     ["softmax"], ["Softmax"])
case("softmax_masked", lambda x: tf.nn.softmax(x + tf.constant([0.0, 0.0, -1e9, -np.inf])),
     {"x": S(None, 4)}, lambda r: [{"x": normal(r, (3, 4), 5)}], ["softmax"], ["Softmax"])
case("softmax_size1", tf.nn.softmax, {"x": S(None, 1)}, lambda r: [{"x": edgy(r, (4, 1))}], ["softmax"], ["Softmax"])
case("softmax_axis1", lambda x: tf.nn.softmax(x, axis=1), {"x": S(None, 3, 5)},
     lambda r: [{"x": normal(r, (2, 3, 5), 4)}], ["softmax", "transpose"], ["Softmax"])

# =========================================================================== cast
_CASTS = [  # id, src spec dtype, dst, feed
    ("f32_to_i32", F32, I32, lambda r: np.concatenate([np.array([2.7, -2.7, 2.5, -2.5, 0.0, -0.0, 0.999, -0.999,
                                                                  1e9, -1e9], np.float32), normal(r, (14,), 50)])),
    ("f32_to_i64", F32, I64, lambda r: np.concatenate([np.array([3.9, -3.9, -0.0, 1e12, -1e12], np.float32),
                                                        normal(r, (11,), 1e3)])),
    ("f32_to_bool", F32, BOOL, lambda r: edgy(r, (16,))),
    ("f32_to_f16", F32, F16, lambda r: np.concatenate([np.array([1e5, -1e5, 1e-8, 65504, 0.1, -0.0], np.float32),
                                                        normal(r, (10,))])),
    ("i32_to_f32", I32, F32, lambda r: np.concatenate([np.array([2**24 + 1, -(2**31), 2**31 - 1], np.int32),
                                                        ints(r, (13,))])),
    ("i64_to_i32", I64, I32, lambda r: ints(r, (16,), -(2**31), 2**31 - 1, np.int64)),
    ("i32_to_i64", I32, I64, lambda r: ints(r, (16,), -(2**31), 2**31 - 1)),
    ("i32_to_bool", I32, BOOL, lambda r: ints(r, (16,), -2, 3)),
    ("bool_to_f32", BOOL, F32, lambda r: bools(r, (16,))),
    ("bool_to_i32", BOOL, I32, lambda r: bools(r, (16,))),
]
for _id, _src, _dst, _gen in _CASTS:
    case(f"cast_{_id}", lambda x, d=_dst: tf.cast(x, d), {"x": S(None, dtype=_src)},
         lambda r, g=_gen: [{"x": g(r)}], ["cast"], ["Cast"], exact=True)

# =========================================================================== select / fill-like
case("select_same_shape", tf.compat.v1.where, {"c": S(None, 4, dtype=BOOL), "x": S(None, 4), "y": S(None, 4)},
     lambda r: [{"c": bools(r, (3, 4)), "x": edgy(r, (3, 4)), "y": edgy(r, (3, 4))}], ["where"], ["Select"], exact=True)
case("select_vector_cond", tf.compat.v1.where, {"c": S(None, dtype=BOOL), "x": S(None, 3, 2), "y": S(None, 3, 2)},
     lambda r: [{"c": np.array([True, False, True, False]), "x": edgy(r, (4, 3, 2)), "y": edgy(r, (4, 3, 2))},
                {"c": np.array([False]), "x": edgy(r, (1, 3, 2)), "y": edgy(r, (1, 3, 2))}],
     ["where", "reshape"], ["Select"], exact=True)
case("select_scalar_cond", tf.compat.v1.where, {"c": S(dtype=BOOL), "x": S(None, 3), "y": S(None, 3)},
     lambda r: [{"c": np.bool_(True), "x": edgy(r, (2, 3)), "y": edgy(r, (2, 3))},
                {"c": np.bool_(False), "x": edgy(r, (2, 3)), "y": edgy(r, (2, 3))}], ["where"], ["Select"], exact=True)
case("select_v2_broadcast", tf.where, {"c": S(3, 1, dtype=BOOL), "x": S(None, 3, 4), "y": S()},
     lambda r: [{"c": np.array([[True], [False], [True]]), "x": edgy(r, (2, 3, 4)), "y": np.float32(-7.5)}],
     ["where"], ["SelectV2"], exact=True)
case("select_v2_int", tf.where, {"c": S(None, 4, dtype=BOOL), "x": S(4, dtype=I32), "y": S(None, 1, dtype=I32)},
     lambda r: [{"c": bools(r, (3, 4)), "x": ints(r, (4,)), "y": ints(r, (3, 1))}], ["where"], ["SelectV2"])
for _name, _fn, _tf in (("zeros_like", tf.zeros_like, "ZerosLike"), ("ones_like", tf.ones_like, "OnesLike")):
    for _dt, _gen in ((F32, lambda r, s: edgy(r, s)), (I32, lambda r, s: ints(r, s)), (BOOL, bools)):
        case(f"{_name}_{_dt.name}", lambda x, f=_fn: f(x), {"x": S(None, None, 3, dtype=_dt)},
             lambda r, g=_gen: [{"x": g(r, (2, 4, 3))}, {"x": g(r, (1, 1, 3))}], ["expand", "shape"], [_tf],
             exact=True)

# =========================================================================== linear algebra
# Dot products: TF (oneDNN/Eigen) and numpy (BLAS) add in different orders, yet the default tolerance holds.
for _ta in (False, True):
    for _tb in (False, True):
        _a = [5, None] if _ta else [None, 5]
        _b = [4, 5] if _tb else [5, 4]
        case(f"matmul_ta{int(_ta)}_tb{int(_tb)}",
             lambda a, b, ta=_ta, tb=_tb: tf.linalg.matmul(a, b, transpose_a=ta, transpose_b=tb),
             {"a": S(*_a), "b": S(*_b)},
             lambda r, ta=_ta, tb=_tb: [
                 {"a": normal(r, (5, 3) if ta else (3, 5)), "b": normal(r, (4, 5) if tb else (5, 4))},
                 {"a": ties(r, (5, 1) if ta else (1, 5)), "b": ties(r, (4, 5) if tb else (5, 4))}],
             ["matmul", "transpose"] if (_ta or _tb) else ["matmul"], ["MatMul"])
for _ax in (False, True):
    for _ay in (False, True):
        case(f"batch_matmul_v2_adjx{int(_ax)}_adjy{int(_ay)}",
             lambda a, b, ax=_ax, ay=_ay: tf.linalg.matmul(a, b, adjoint_a=ax, adjoint_b=ay),
             {"a": S(None, 2, 5, 3) if _ax else S(None, 2, 3, 5), "b": S(2, 4, 5) if _ay else S(2, 5, 4)},
             lambda r, ax=_ax, ay=_ay: [{"a": normal(r, (3, 2, 5, 3) if ax else (3, 2, 3, 5)),
                                         "b": normal(r, (2, 4, 5) if ay else (2, 5, 4))}],
             ["matmul", "transpose"] if (_ax or _ay) else ["matmul"], ["BatchMatMulV2"])
case("batch_matmul_v2_broadcast_batch", tf.linalg.matmul, {"a": S(None, 1, 3, 5), "b": S(4, 5, 6)},
     lambda r: [{"a": normal(r, (2, 1, 3, 5)), "b": normal(r, (4, 5, 6))}], ["matmul"], ["BatchMatMulV2"])
case("batch_matmul_v2_rank2_rhs", tf.linalg.matmul, {"a": S(None, None, 5), "b": S(5, 6)},
     lambda r: [{"a": normal(r, (2, 3, 5)), "b": normal(r, (5, 6))},
                {"a": normal(r, (1, 1, 5)), "b": normal(r, (5, 6))}],
     ["matmul"], ["BatchMatMulV2"])
case("matmul_k64", tf.linalg.matmul, {"a": S(None, 64), "b": S(64, 8)},
     lambda r: [{"a": normal(r, (6, 64)), "b": normal(r, (64, 8))}], ["matmul"], ["MatMul"])
case("matmul_i32", tf.linalg.matmul, {"a": S(None, 5, dtype=I32), "b": S(5, 3, dtype=I32)},
     lambda r: [{"a": ints(r, (4, 5), -100, 100), "b": ints(r, (5, 3), -100, 100)}], ["matmul"], ["MatMul"])
case("batch_matmul_v1", lambda a, b: tf.raw_ops.BatchMatMul(x=a, y=b, adj_x=False, adj_y=True),
     {"a": S(None, 3, 5), "b": S(None, 4, 5)},
     lambda r: [{"a": normal(r, (2, 3, 5)), "b": normal(r, (2, 4, 5))}], ["matmul", "transpose"], ["BatchMatMul"])
case("batch_matmul_v3", lambda a, b: tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=tf.float32, adj_x=True, adj_y=False),
     {"a": S(None, 5, 3), "b": S(1, 5, 4)},
     lambda r: [{"a": normal(r, (2, 5, 3)), "b": normal(r, (1, 5, 4))}], ["matmul", "transpose"], ["BatchMatMulV3"])
_EINSUMS = [  # the equations Keras' EinsumDense and MultiHeadAttention write
    ("abc,cde->abde", {"x": S(None, None, 8), "w": S(8, 2, 4)}, [(2, 3, 8), (8, 2, 4)], [(1, 5, 8), (8, 2, 4)]),
    ("abcd,cde->abe", {"x": S(None, None, 2, 4), "w": S(2, 4, 8)}, [(2, 3, 2, 4), (2, 4, 8)],
     [(1, 1, 2, 4), (2, 4, 8)]),
    ("aecd,abcd->acbe", {"x": S(None, None, 2, 4), "w": S(None, None, 2, 4)}, [(2, 5, 2, 4), (2, 5, 2, 4)],
     [(1, 3, 2, 4), (1, 3, 2, 4)]),
    ("acbe,aecd->abcd", {"x": S(None, 2, None, 5), "w": S(None, 5, 2, 4)}, [(2, 2, 3, 5), (2, 5, 2, 4)],
     [(1, 2, 1, 5), (1, 5, 2, 4)]),
]
for _eq, _specs, _s1, _s2 in _EINSUMS:
    case(f"einsum_{_eq.replace(',', '_').replace('->', '_to_')}", lambda x, w, eq=_eq: tf.einsum(eq, x, w), _specs,
         lambda r, s1=_s1, s2=_s2: [{"x": normal(r, s1[0]), "w": normal(r, s1[1])},
                                    {"x": normal(r, s2[0]), "w": normal(r, s2[1])}],
         ["einsum"], ["Einsum"])

case("transpose_perm", lambda x: tf.transpose(x, [2, 0, 1]), {"x": S(None, None, 3)},
     lambda r: [{"x": edgy(r, (2, 4, 3))}, {"x": edgy(r, (1, 1, 3))}], ["transpose"], ["Transpose"], exact=True)
case("transpose_default", tf.transpose, {"x": S(None, 3, 4)},
     lambda r: [{"x": edgy(r, (2, 3, 4))}], ["transpose"], ["Transpose"], exact=True)
case("transpose_i32", lambda x: tf.transpose(x, [1, 0]), {"x": S(None, 5, dtype=I32)},
     lambda r: [{"x": ints(r, (3, 5))}], ["transpose"], ["Transpose"])

# =========================================================================== shapes
_DYN = {"x": S(None, None, 4)}


def _two_shapes(r, gen=edgy):
    return [{"x": gen(r, (2, 3, 4))}, {"x": gen(r, (1, 5, 4))}]


case("shape_i32", tf.shape, _DYN, _two_shapes, ["shape"], ["Shape"])
case("shape_i64", lambda x: tf.shape(x, out_type=tf.int64), _DYN, _two_shapes, ["shape"], ["Shape"])
case("shape_static", lambda x: tf.raw_ops.Shape(input=x) + 1, {"x": S(2, 3)},
     lambda r: [{"x": edgy(r, (2, 3))}], ["shape"], ["Shape"])
case("shape_n", lambda x, y: tuple(tf.shape_n([x, y], out_type=tf.int64)), {"x": S(None, None, 4), "y": S(None, 2)},
     lambda r: [{"x": edgy(r, (2, 3, 4)), "y": edgy(r, (2, 2))}, {"x": edgy(r, (1, 1, 4)), "y": edgy(r, (1, 2))}],
     ["shape"], ["ShapeN"])
case("size_i32", tf.size, _DYN, _two_shapes, ["shape", "reduce_prod"], ["Size"])
case("size_i64", lambda x: tf.size(x, out_type=tf.int64), _DYN, _two_shapes, ["shape", "reduce_prod"], ["Size"])
case("size_scalar", lambda x: tf.raw_ops.Size(input=x) + 1, {"x": S()}, lambda r: [{"x": np.float32(3)}],
     ["shape", "reduce_prod"], ["Size"])

case("reshape_const_minus1", lambda x: tf.reshape(x, [-1, 6]), {"x": S(None, 3, 4)},
     lambda r: [{"x": edgy(r, (2, 3, 4))}, {"x": edgy(r, (1, 3, 4))}], ["reshape"], ["Reshape"], exact=True)
case("reshape_const_minus1_middle", lambda x: tf.reshape(x, [2, -1, 2]), {"x": S(None, 4)},
     lambda r: [{"x": edgy(r, (3, 4))}, {"x": edgy(r, (1, 4))}], ["reshape"], ["Reshape"], exact=True)
case("reshape_to_scalar", lambda x: tf.reshape(x, []), {"x": S(1, 1)},
     lambda r: [{"x": np.array([[-0.0]], np.float32)}], ["reshape"], ["Reshape"], exact=True)
case("reshape_split_heads", lambda x: tf.reshape(x, [tf.shape(x)[0], tf.shape(x)[1], 2, 2]), _DYN, _two_shapes,
     ["reshape"], ["Reshape", "Pack"], exact=True)
case("reshape_concat_target", lambda x: tf.reshape(x, tf.concat([tf.shape(x)[:-1], [2, -1]], 0)), _DYN, _two_shapes,
     ["reshape"], ["Reshape", "ConcatV2"], exact=True)
case("reshape_merge_leading", lambda x: tf.reshape(x, [-1, tf.shape(x)[-1]]), _DYN, _two_shapes,
     ["reshape"], ["Reshape"], exact=True)
case("reshape_like", lambda x, y: tf.reshape(x, tf.shape(y)), {"x": S(None, None, 4), "y": S(None, None, 2, 2)},
     lambda r: [{"x": edgy(r, (2, 3, 4)), "y": edgy(r, (2, 3, 2, 2))},
                {"x": edgy(r, (1, 5, 4)), "y": edgy(r, (1, 5, 2, 2))}],
     ["reshape"], ["Reshape"], exact=True)
case("reshape_mixed_batches", lambda x, y: tf.reshape(y, [tf.shape(x)[0], -1]), {"x": S(None, 4), "y": S(None, 6)},
     lambda r: [{"x": edgy(r, (2, 4)), "y": edgy(r, (3, 6))}], ["reshape"], ["Reshape"], exact=True)

case("squeeze_axis", lambda x: tf.squeeze(x, [1]), {"x": S(None, 1, 4)},
     lambda r: [{"x": edgy(r, (2, 1, 4))}, {"x": edgy(r, (1, 1, 4))}], ["squeeze"], ["Squeeze"], exact=True)
case("squeeze_negative_axes", lambda x: tf.squeeze(x, [-1, -3]), {"x": S(None, 1, 4, 1)},
     lambda r: [{"x": edgy(r, (2, 1, 4, 1))}], ["squeeze"], ["Squeeze"], exact=True)
case("squeeze_all_static", tf.squeeze, {"x": S(2, 1, 3, 1)},
     lambda r: [{"x": edgy(r, (2, 1, 3, 1))}], ["squeeze"], ["Squeeze"], exact=True)
for _axis in (0, 1, -1, -2):
    case(f"expand_dims_{_axis}".replace("-", "m"), lambda x, a=_axis: tf.expand_dims(x, a), _DYN, _two_shapes,
         ["unsqueeze"], ["ExpandDims"], exact=True)
case("expand_dims_scalar", lambda x: tf.expand_dims(x, -1), {"x": S()}, lambda r: [{"x": np.float32(-0.0)}],
     ["unsqueeze"], ["ExpandDims"], exact=True)

for _axis in (0, 1, -1):
    case(f"concat_axis{_axis}".replace("-", "m"), lambda x, y, z, a=_axis: tf.concat([x, y, z], a),
         {"x": S(None, None, 4), "y": S(None, None, 4), "z": S(None, None, 4)},
         lambda r: [{k: edgy(r, (2, 3, 4)) for k in "xyz"}, {k: edgy(r, (1, 1, 4)) for k in "xyz"}],
         ["concat"], ["ConcatV2"], exact=True)
case("concat_uneven_i32", lambda x, y: tf.concat([x, y], 1),
     {"x": S(None, 2, dtype=I32), "y": S(None, None, dtype=I32)},
     lambda r: [{"x": ints(r, (3, 2)), "y": ints(r, (3, 5))}, {"x": ints(r, (1, 2)), "y": ints(r, (1, 1))}],
     ["concat"], ["ConcatV2"])

for _axis in (0, 1, -1):
    case(f"pack_axis{_axis}".replace("-", "m"), lambda x, y, a=_axis: tf.stack([x, y], a),
         {"x": S(None, 3), "y": S(None, 3)},
         lambda r: [{"x": edgy(r, (2, 3)), "y": edgy(r, (2, 3))}, {"x": edgy(r, (1, 3)), "y": edgy(r, (1, 3))}],
         ["unsqueeze", "concat"], ["Pack"], exact=True)
case("pack_single", lambda x: tf.stack([x], 1), {"x": S(None, 3)}, lambda r: [{"x": edgy(r, (2, 3))}],
     ["unsqueeze"], ["Pack"], exact=True)
case("pack_scalars_i32", lambda x, y: tf.stack([x, y, x]), {"x": S(dtype=I32), "y": S(dtype=I32)},
     lambda r: [{"x": np.int32(-4), "y": np.int32(7)}], ["unsqueeze", "concat"], ["Pack"])
for _axis in (0, 1, -1):
    case(f"unpack_axis{_axis}".replace("-", "m"), lambda x, a=_axis: tuple(tf.unstack(x, axis=a)), {"x": S(3, 2, 4)},
         lambda r: [{"x": edgy(r, (3, 2, 4))}], ["slice", "squeeze"], ["Unpack"], exact=True)
case("unpack_dynamic", lambda x: tuple(tf.unstack(x, axis=1)), {"x": S(None, 2, None)},
     lambda r: [{"x": edgy(r, (3, 2, 4))}, {"x": edgy(r, (1, 2, 1))}], ["slice", "squeeze"], ["Unpack"], exact=True)

case("fill_const_dims", lambda v: tf.fill([2, 3], v), {"v": S()}, lambda r: [{"v": np.float32(-2.5)}],
     ["expand"], ["Fill"], exact=True)
case("fill_shape_of", lambda x, v: tf.fill(tf.shape(x), v), {"x": S(None, None, 4), "v": S(dtype=I32)},
     lambda r: [{"x": edgy(r, (2, 3, 4)), "v": np.int32(-7)}, {"x": edgy(r, (1, 1, 4)), "v": np.int32(5)}],
     ["expand"], ["Fill"])
case("fill_runtime_dims", lambda d, v: tf.fill(d, v), {"d": S(3, dtype=I32), "v": S()},
     lambda r: [{"d": np.array([2, 1, 3], np.int32), "v": np.float32(1e30)}], ["expand"], ["Fill"], exact=True)
case("broadcast_to_const", lambda x: tf.broadcast_to(x, [2, 3, 4]), {"x": S(3, 1)},
     lambda r: [{"x": edgy(r, (3, 1))}], ["expand"], ["BroadcastTo"], exact=True)
case("broadcast_to_shape_of", lambda x, y: tf.broadcast_to(x, tf.shape(y)), {"x": S(1, 4), "y": S(None, None, 4)},
     lambda r: [{"x": edgy(r, (1, 4)), "y": edgy(r, (2, 3, 4))}, {"x": edgy(r, (1, 4)), "y": edgy(r, (1, 1, 4))}],
     ["expand"], ["BroadcastTo"], exact=True)
case("tile_const", lambda x: tf.tile(x, [2, 1, 3]), {"x": S(None, 2, 2)},
     lambda r: [{"x": edgy(r, (2, 2, 2))}, {"x": edgy(r, (1, 2, 2))}], ["tile"], ["Tile"], exact=True)
case("tile_dynamic", lambda x, y: tf.tile(x, [tf.shape(y)[0], 1]), {"x": S(1, 3, dtype=I32), "y": S(None, 2)},
     lambda r: [{"x": ints(r, (1, 3)), "y": edgy(r, (4, 2))}, {"x": ints(r, (1, 3)), "y": edgy(r, (1, 2))}],
     ["tile"], ["Tile"])

case("range_of_shape", lambda x: tf.range(tf.shape(x)[1]), _DYN, _two_shapes, ["range"], ["Range"])
case("range_i32", tf.range, {"a": S(dtype=I32), "b": S(dtype=I32), "c": S(dtype=I32)},
     lambda r: [{"a": np.int32(-3), "b": np.int32(10), "c": np.int32(3)},
                {"a": np.int32(5), "b": np.int32(-6), "c": np.int32(-2)},
                {"a": np.int32(4), "b": np.int32(4), "c": np.int32(1)}], ["range"], ["Range"])
case("range_i64", tf.range, {"a": S(dtype=I64), "b": S(dtype=I64), "c": S(dtype=I64)},
     lambda r: [{"a": np.int64(0), "b": np.int64(7), "c": np.int64(1)}], ["range"], ["Range"])
case("range_f32", tf.range, {"a": S(), "b": S(), "c": S()},
     lambda r: [{"a": np.float32(0), "b": np.float32(1), "c": np.float32(0.25)},
                {"a": np.float32(-1.5), "b": np.float32(2.3), "c": np.float32(0.7)},
                {"a": np.float32(3), "b": np.float32(-2), "c": np.float32(-0.3)}],
     ["range"], ["Range"])  # TF accumulates value += delta, numpy computes start + i*delta: < 1e-6 apart here

case("gather_axis0", lambda p, i: tf.gather(p, i), {"p": S(None, 4), "i": S(2, None, dtype=I32)},
     lambda r: [{"p": edgy(r, (6, 4)), "i": np.array([[0, 5, 5], [2, 0, 1]], np.int32)},
                {"p": edgy(r, (1, 4)), "i": np.zeros((2, 1), np.int32)}], ["gather"], ["GatherV2"], exact=True)
case("gather_axis1_i64", lambda p, i: tf.gather(p, i, axis=1), {"p": S(None, 5, 2), "i": S(4, dtype=I64)},
     lambda r: [{"p": edgy(r, (3, 5, 2)), "i": np.array([4, 0, 4, 2], np.int64)}], ["gather"], ["GatherV2"], exact=True)
case("gather_axis_m1", lambda p, i: tf.gather(p, i, axis=-1), {"p": S(None, 5), "i": S(2, 2, dtype=I32)},
     lambda r: [{"p": edgy(r, (3, 5)), "i": np.array([[4, 0], [1, 1]], np.int32)}], ["gather"], ["GatherV2"],
     exact=True)
case("gather_scalar_index", lambda p, i: tf.gather(p, i), {"p": S(None, 4, dtype=I32), "i": S(dtype=I32)},
     lambda r: [{"p": ints(r, (3, 4)), "i": np.int32(2)}], ["gather"], ["GatherV2"])
case("gather_v1", lambda p, i: tf.raw_ops.Gather(params=p, indices=i), {"p": S(None, 4), "i": S(4, dtype=I32)},
     lambda r: [{"p": edgy(r, (5, 4)), "i": np.array([4, 0, 0, 3], np.int32)}], ["gather"], ["Gather"], exact=True)
_TABLE = np.random.default_rng(7).standard_normal((10, 4)).astype(np.float32)
_VARIABLE = tf.Variable(_TABLE, name="embeddings")
case("gather_variable", lambda i: tf.nn.embedding_lookup(_VARIABLE, i), {"i": S(None, None, dtype=I32)},
     lambda r: [{"i": r.integers(0, 10, (2, 3)).astype(np.int32)}, {"i": np.array([[9]], np.int32)}],
     ["gather"], ["GatherV2|ResourceGather"], exact=True)
_WEIGHT = tf.Variable(np.random.default_rng(8).standard_normal((4, 3)).astype(np.float32), name="kernel")
case("dense_variable", lambda x: tf.matmul(x, _WEIGHT) + _WEIGHT[0], {"x": S(None, 4)},
     lambda r: [{"x": normal(r, (5, 4))}, {"x": normal(r, (1, 4))}], ["matmul"], ["ReadVariableOp|Const"])

case("one_hot", lambda i: tf.one_hot(i, 5), {"i": S(None, dtype=I32)},
     lambda r: [{"i": np.array([0, 4, 2, -1, 5, 2], np.int32)}, {"i": np.array([3], np.int32)}], ["one_hot"],
     ["OneHot"], exact=True)
case("one_hot_axis0_onoff", lambda i: tf.one_hot(i, 4, on_value=2.5, off_value=-1.0, axis=0),
     {"i": S(None, 3, dtype=I64)},
     lambda r: [{"i": np.array([[0, 3, 1], [2, 2, 9]], np.int64)}], ["one_hot"], ["OneHot"], exact=True)
case("one_hot_i32_axis1", lambda i: tf.one_hot(i, 3, on_value=7, off_value=0, axis=1, dtype=tf.int32),
     {"i": S(None, None, dtype=I32)},
     lambda r: [{"i": r.integers(-1, 4, (2, 4)).astype(np.int32)}], ["one_hot"], ["OneHot"])

# --------------------------------------------------------------------------- slicing
case("slice_size_minus1", lambda x: tf.slice(x, [1, 0], [-1, 2]), {"x": S(None, 4)},
     lambda r: [{"x": edgy(r, (4, 4))}, {"x": edgy(r, (2, 4))}], ["slice"], ["Slice"], exact=True)
case("slice_static", lambda x: tf.slice(x, [0, 1, 1], [1, 2, 3]), {"x": S(2, 3, 4)},
     lambda r: [{"x": edgy(r, (2, 3, 4))}], ["slice"], ["Slice"], exact=True)
case("slice_size_from_shape", lambda x: tf.slice(x, [0, 1, 0], [tf.shape(x)[0], 2, -1]), _DYN,
     lambda r: [{"x": edgy(r, (2, 3, 4))}, {"x": edgy(r, (1, 5, 4))}], ["slice"], ["Slice"], exact=True)
case("slice_size_shape_of_other", lambda x, y: tf.slice(x, [0, 0, 0], tf.shape(y)),
     {"x": S(None, 8, 4), "y": S(None, None, 4)},
     lambda r: [{"x": edgy(r, (2, 8, 4)), "y": edgy(r, (2, 3, 4))}, {"x": edgy(r, (1, 8, 4)), "y": edgy(r, (1, 8, 4))}],
     ["slice"], ["Slice"], exact=True)

_SLICES = [  # id, TF indexing, input dims, fed shapes
    ("col0", lambda x: x[:, 0], [None, 4], [(3, 4), (1, 4)]),
    ("last_row", lambda x: x[-1], [None, 4], [(3, 4), (1, 4)]),
    ("second_to_last_col", lambda x: x[:, -2], [None, 4], [(3, 4)]),
    ("ellipsis_tail", lambda x: x[..., 1:], [None, None, 4], [(2, 3, 4), (1, 1, 4)]),
    ("ellipsis_index", lambda x: x[..., 1], [None, None, 4], [(2, 3, 4)]),
    ("new_axis", lambda x: x[:, None], [None, 4], [(3, 4), (1, 4)]),
    ("new_axis_ellipsis", lambda x: x[None, ..., None], [None, 4], [(3, 4)]),
    ("new_axis_and_shrink", lambda x: x[None, :, 0, None], [None, 3, 4], [(2, 3, 4)]),
    ("reverse", lambda x: x[::-1], [None, 4], [(3, 4), (1, 4)]),
    ("reverse_step2", lambda x: x[:, ::-2], [None, 5], [(3, 5)]),
    ("reverse_from", lambda x: x[:, 2::-1], [None, 5], [(3, 5)]),
    ("reverse_range", lambda x: x[3:0:-1], [5, 2], [(5, 2)]),
    ("reverse_negative_bounds", lambda x: x[-1:-4:-1], [None, 2], [(5, 2), (2, 2)]),
    ("step2_inner", lambda x: x[1:-1, ::2], [None, 5], [(4, 5), (3, 5)]),
    ("step_beyond", lambda x: x[::5], [None, 2], [(7, 2), (1, 2)]),
    ("end_beyond", lambda x: x[:100, 1:], [None, 3], [(3, 3)]),
    ("negative_begin", lambda x: x[-2:], [None, 3], [(4, 3), (1, 3)]),
    ("empty", lambda x: x[5:], [None, 3], [(3, 3)]),
    ("begin_and_end", lambda x: x[1:3, 1:-1], [None, None], [(4, 5), (3, 3)]),
    ("mixed_masks", lambda x: x[:, 1:3, None, -1], [None, 4, 5], [(2, 4, 5)]),
    ("to_shape_minus_0", lambda x: x[:, :tf.shape(x)[1] - 0], [None, None, 4], [(2, 3, 4), (1, 5, 4)]),
    ("to_shape", lambda x: x[:, :tf.shape(x)[1]], [None, None, 4], [(2, 3, 4), (1, 5, 4)]),
    ("from_1_to_shape", lambda x: x[1:tf.shape(x)[0]], [None, 4], [(3, 4), (1, 4)]),
]
_SLICE_OPS = {"new_axis": ["unsqueeze"], "new_axis_ellipsis": ["unsqueeze"], "to_shape": [],  # else ["slice"]
              "col0": ["slice", "squeeze"], "last_row": ["slice", "squeeze"],
              "new_axis_and_shrink": ["squeeze", "unsqueeze"]}
for _id, _fn, _dims, _shapes in _SLICES:
    case(f"strided_slice_{_id}", lambda x, f=_fn: f(x), {"x": S(*_dims)},
         lambda r, shapes=_shapes: [{"x": edgy(r, s)} for s in shapes], _SLICE_OPS.get(_id, ["slice"]),
         ["StridedSlice"], exact=True)
case("strided_slice_position_table", lambda ids, t: t[:tf.shape(ids)[1]],
     {"ids": S(None, None, dtype=I32), "t": S(16, 4)},
     lambda r: [{"ids": ints(r, (2, 5)), "t": edgy(r, (16, 4))}, {"ids": ints(r, (1, 16)), "t": edgy(r, (16, 4))},
                {"ids": ints(r, (3, 1)), "t": edgy(r, (16, 4))}],
     ["slice", "gather"], ["StridedSlice"], exact=True)
case("strided_slice_shape_arith", lambda x: tf.shape(x)[1:], _DYN, _two_shapes, ["slice"], ["StridedSlice"])

# =========================================================================== reductions
_REDUCTIONS = [("mean", tf.reduce_mean, "reduce_mean", "Mean"), ("sum", tf.reduce_sum, "reduce_sum", "Sum"),
               ("max", tf.reduce_max, "reduce_max", "Max"), ("min", tf.reduce_min, "reduce_min", "Min"),
               ("prod", tf.reduce_prod, "reduce_prod", "Prod")]
_AXES = [("last", -1, False), ("02_keep", [0, 2], True), ("all", None, False), ("1_keep", 1, True),
         ("m1m3", [-1, -3], False)]
for _name, _fn, _kind, _tf in _REDUCTIONS:
    for _aid, _axes, _keep in _AXES:
        case(f"{_name}_{_aid}", lambda x, f=_fn, a=_axes, k=_keep: f(x, axis=a, keepdims=k), {"x": S(None, None, 5)},
             lambda r, p=_name == "prod": [
                 {"x": ties(r, (2, 3, 5)) if not p else near_one(r, (2, 3, 5))},
                 {"x": edgy(r, (3, 4, 5), 3, REDUCE_EDGES) if not p else near_one(r, (3, 4, 5))},
                 {"x": edgy(r, (1, 1, 5), 3, REDUCE_EDGES) if not p else normal(r, (1, 1, 5))}],
             [_kind], [_tf])
    case(f"{_name}_i32", lambda x, f=_fn: f(x, axis=[0, 1]), {"x": S(None, 3, 4, dtype=I32)},
         lambda r: [{"x": ints(r, (2, 3, 4), -9, 10)}], [_kind], [_tf])
case("sum_large_magnitude", lambda x: tf.reduce_sum(x, axis=-1), {"x": S(None, 8)},
     lambda r: [{"x": normal(r, (4, 8), 1e4)}], ["reduce_sum"], ["Sum"], atol=1e-2, rtol=1e-5,
     why="|x| ~ 1e4: one float32 ulp of a partial sum is ~1e-3, and TF and numpy add in different orders")
case("mean_empty_axes", lambda x: tf.reduce_mean(x, axis=[]), {"x": S(None, 3)},
     lambda r: [{"x": edgy(r, (2, 3))}], ["reduce_mean"], ["Mean"])

# =========================================================================== scans
for _op, _fn, _kind in (("cumsum", tf.math.cumsum, "cumsum"), ("cumprod", tf.math.cumprod, "cumprod")):
    for _axis in (0, 1, -1):
        for _ex in (False, True):
            for _rev in (False, True):
                case(f"{_op}_axis{_axis}_ex{int(_ex)}_rev{int(_rev)}".replace("-", "m"),
                     lambda x, f=_fn, a=_axis, e=_ex, v=_rev: f(x, axis=a, exclusive=e, reverse=v),
                     {"x": S(None, 4, 5)},
                     lambda r, p=_op == "cumprod": [
                         {"x": ties(r, (3, 4, 5)) if not p else near_one(r, (3, 4, 5))},
                         {"x": edgy(r, (1, 4, 5), 3, REDUCE_EDGES) if not p else normal(r, (1, 4, 5))}],
                     [_kind], [_op.capitalize()])
    case(f"{_op}_i64", lambda x, f=_fn: f(x, axis=1, exclusive=True), {"x": S(None, 6, dtype=I64)},
         lambda r: [{"x": ints(r, (2, 6), -5, 6, np.int64)}], [_kind], [_op.capitalize()])
    case(f"{_op}_size1_axis", lambda x, f=_fn: f(x, axis=1, exclusive=True, reverse=True), {"x": S(None, 1)},
         lambda r: [{"x": edgy(r, (3, 1))}], [_kind], [_op.capitalize()])

# =========================================================================== scatters
case("scatter_nd_duplicates", lambda i, u: tf.scatter_nd(i, u, [5, 3]), {"i": S(None, 1, dtype=I32), "u": S(None, 3)},
     lambda r: [{"i": np.array([[0], [3], [0], [4], [3], [0]], np.int32), "u": normal(r, (6, 3))},
                {"i": np.array([[2]], np.int32), "u": edgy(r, (1, 3))}], ["scatter_nd"], ["ScatterNd"])
case("scatter_nd_elements_i64", lambda i, u: tf.scatter_nd(i, u, tf.constant([4, 5], tf.int64)),
     {"i": S(None, 2, dtype=I64), "u": S(None, dtype=I32)},
     lambda r: [{"i": np.array([[0, 0], [3, 4], [0, 0], [1, 2]], np.int64), "u": ints(r, (4,))}],
     ["scatter_nd"], ["ScatterNd"])
case("scatter_nd_shape_of", lambda x, i, u: tf.scatter_nd(i, u, tf.shape(x)),
     {"x": S(None, 3), "i": S(3, 1, dtype=I32), "u": S(3, 3)},
     lambda r: [{"x": edgy(r, (4, 3)), "i": np.array([[3], [1], [3]], np.int32), "u": normal(r, (3, 3))},
                {"x": edgy(r, (1, 3)), "i": np.zeros((3, 1), np.int32), "u": normal(r, (3, 3))}],
     ["scatter_nd"], ["ScatterNd"])
case("tensor_scatter_update", tf.tensor_scatter_nd_update,
     {"x": S(None, 3), "i": S(3, 1, dtype=I32), "u": S(3, 3)},
     lambda r: [{"x": edgy(r, (5, 3)), "i": np.array([[4], [0], [2]], np.int32), "u": edgy(r, (3, 3))}],
     ["scatter_nd_update"], ["TensorScatterUpdate"], exact=True)
case("tensor_scatter_update_elements", tf.tensor_scatter_nd_update,
     {"x": S(None, 4, dtype=I32), "i": S(3, 2, dtype=I64), "u": S(3, dtype=I32)},
     lambda r: [{"x": ints(r, (3, 4)), "i": np.array([[0, 3], [2, 0], [1, 1]], np.int64), "u": ints(r, (3,))}],
     ["scatter_nd_update"], ["TensorScatterUpdate"])
case("tensor_scatter_add_duplicates", tf.tensor_scatter_nd_add,
     {"x": S(None, 3), "i": S(4, 1, dtype=I32), "u": S(4, 3)},
     lambda r: [{"x": edgy(r, (5, 3)), "i": np.array([[4], [0], [4], [4]], np.int32), "u": normal(r, (4, 3))},
                {"x": edgy(r, (6, 3)), "i": np.array([[5], [5], [5], [5]], np.int32), "u": normal(r, (4, 3))}],
     ["scatter_nd_add"], ["TensorScatterAdd"])

# =========================================================================== batch norm
def _bn_feeds(r, shape=(2, 3, 3, 4), ch=4):
    return [{"x": normal(r, shape, 3), "scale": normal(r, (ch,)), "offset": normal(r, (ch,)),
             "mean": normal(r, (ch,)), "var": np.abs(normal(r, (ch,))) + np.float32(0.1)}]


_BN_SPECS = {"x": S(None, None, None, 4), "scale": S(4), "offset": S(4), "mean": S(4), "var": S(4)}
# The default tolerance holds although TF folds scale*rsqrt(var+eps) first (a different rounding order).
case("fused_batch_norm_v3_inference",
     lambda x, scale, offset, mean, var: tf.compat.v1.nn.fused_batch_norm(
         x, scale, offset, mean, var, epsilon=1e-3, is_training=False)[0],
     _BN_SPECS, _bn_feeds, ["rsqrt", "mul", "add"], ["FusedBatchNormV3"])
case("fused_batch_norm_v3_training",  # batch statistics (tf-keras' fused layer-norm trick)
     lambda x, scale, offset: tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=1e-3, is_training=True)[0],
     {k: _BN_SPECS[k] for k in ("x", "scale", "offset")},
     lambda r: [{k: v for k, v in f.items() if k in ("x", "scale", "offset")} for f in _bn_feeds(r)],
     ["reduce_mean", "rsqrt"], ["FusedBatchNormV3"])
case("fused_batch_norm_v1_inference",
     lambda x, scale, offset, mean, var: tf.raw_ops.FusedBatchNorm(
         x=x, scale=scale, offset=offset, mean=mean, variance=var, epsilon=1e-4, is_training=False)[0],
     _BN_SPECS, _bn_feeds, ["rsqrt"], ["FusedBatchNorm"])

# =========================================================================== fusions
_GAMMA = np.random.default_rng(11).uniform(0.5, 1.5, 16).astype(np.float32)
_BETA = np.random.default_rng(12).standard_normal(16).astype(np.float32)
_FUSE_TOL = dict(atol=1e-5, rtol=0.0, why="an absolute bound: fused layer_norm/gelu within 1e-5 of TF everywhere")
_LN_SPECS = {"x": S(None, None, 16)}


def _ln_feeds(r):
    return [{"x": normal(r, (2, 3, 16), 3) + np.float32(5)}, {"x": normal(r, (1, 1, 16))},
            {"x": ties(r, (1, 4, 16))}]


def _ln_moments(x):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-12) * _GAMMA + _BETA


def _ln_keras(x):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    inv = tf.math.rsqrt(var + 1e-3) * _GAMMA
    return x * inv + (_BETA - mean * inv)


def _ln_batch_normalization(x):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return tf.nn.batch_normalization(x, mean, var, _BETA, _GAMMA, 1e-6)


case("layer_norm_moments", _ln_moments, _LN_SPECS, _ln_feeds, ["reduce_mean", "rsqrt"],
     ["Mean", "SquaredDifference", "StopGradient", "Rsqrt"], fused={"layer_norm": 1, "reduce_mean": 0}, **_FUSE_TOL)
case("layer_norm_keras", _ln_keras, _LN_SPECS, _ln_feeds, ["reduce_mean", "rsqrt"], ["Mean", "Rsqrt"],
     fused={"layer_norm": 1, "reduce_mean": 0}, **_FUSE_TOL)
case("layer_norm_batch_normalization", _ln_batch_normalization, _LN_SPECS, _ln_feeds, ["reduce_mean", "rsqrt"],
     ["Mean", "Rsqrt"], fused={"layer_norm": 1, "reduce_mean": 0}, **_FUSE_TOL)


def _gelu_feeds(r):
    return [{"x": edgy(r, (2, 3, 16), scale=3, edges=_TRANSCENDENTAL_EDGES[:14])}, {"x": normal(r, (1, 1, 16))}]


case("gelu_exact_erfc", lambda x: tf.nn.gelu(x, approximate=False), _LN_SPECS, _gelu_feeds, ["erf"], ["Erfc"],
     fused={"gelu": 1, "erf": 0}, **_FUSE_TOL)
case("gelu_tanh", lambda x: tf.nn.gelu(x, approximate=True), _LN_SPECS, _gelu_feeds, ["tanh"], ["Tanh", "Pow"],
     fused={"gelu": 1, "tanh": 0}, **_FUSE_TOL)
case("gelu_bert_erf", lambda x: x * 0.5 * (1.0 + tf.math.erf(x / np.sqrt(2.0).astype(np.float32))), _LN_SPECS,
     _gelu_feeds, ["erf"], ["Erf"], fused={"gelu": 1, "erf": 0}, **_FUSE_TOL)


_LOWER_FROM = len(CASES)  # every case below is also lowered to both targets

# =========================================================================== foreign-graph ops
# Rounding, remainders and trigonometry (relative-position buckets, rotary embeddings).
_ROUNDING_EDGES = np.array([0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, 1e7 + 0.5, -3.0, 1e30],
                           np.float32)
for _name, _fn, _kind, _tf in [("floor", tf.math.floor, "floor", "Floor"), ("ceil", tf.math.ceil, "ceil", "Ceil"),
                               ("round", tf.math.round, "round", "Round"), ("sign", tf.math.sign, "sign", "Sign")]:
    case(f"{_name}_f32", _fn, {"x": S(None, 6)},
         lambda r: [{"x": edgy(r, (4, 6), edges=_ROUNDING_EDGES)}, {"x": NONFINITE[None, :6]}], [_kind], [_tf],
         exact=True)
case("sign_i32", tf.math.sign, {"x": S(None, dtype=I32)}, lambda r: [{"x": ints(r, (9,))}], ["sign"], ["Sign"])
case("sign_abs_i64", lambda x: (tf.math.sign(x), tf.abs(x)), {"x": S(None, dtype=I64)},  # TFLite: legalize_sign_abs
     lambda r: [{"x": np.array([0, 5, -5, 2**40, -(2**40), 2**63 - 1, -(2**63)], np.int64)}], ["sign", "abs"],
     ["Sign", "Abs"])
case("sin_cos", lambda x: (tf.sin(x), tf.cos(x)), {"x": S(None, 8)},
     lambda r: [{"x": edgy(r, (3, 8), scale=4.0, edges=_ROUNDING_EDGES[:9])}], ["sin", "cos"], ["Sin", "Cos"],
     atol=2e-6, why="sin/cos of |x| up to ~12 differ from TF's Eigen polynomials by a few ulps")
case("floor_div_f32", tf.math.floordiv, {"x": S(None, 4), "y": S(4)},
     lambda r: [{"x": edgy(r, (3, 4)), "y": np.array([2.0, -0.5, 3.0, -7.0], np.float32)}], ["floor", "div"],
     ["FloorDiv"])
case("floor_mod_i32", tf.math.floormod, {"x": S(None, 5, dtype=I32), "y": S(5, dtype=I32)},
     lambda r: [{"x": ints(r, (3, 5)), "y": np.array([3, -3, 7, 1, -2], np.int32)}], ["mod"], ["FloorMod"])
case("floor_mod_i64_buckets", lambda x: tf.math.floormod(x, tf.constant(4, tf.int64)), {"x": S(None, dtype=I64)},
     lambda r: [{"x": ints(r, (11,), dtype=np.int64)}], ["mod"], ["FloorMod"])
case("floor_mod_f32", tf.math.floormod, {"x": S(None, 4), "y": S(4)},
     lambda r: [{"x": edgy(r, (3, 4), edges=_ROUNDING_EDGES[:8]), "y": np.array([2.0, -0.5, 3.0, -7.0], np.float32)}],
     ["mod"], ["FloorMod"], atol=1e-6)

# Padding, computed or constant (trigram embeddings pad shifted copies; windows pad to a multiple).
case("pad_const", lambda x: tf.pad(x, [[0, 0], [1, 0], [0, 2]]), {"x": S(None, None, 3)},
     lambda r: [{"x": edgy(r, (2, 4, 3))}, {"x": edgy(r, (1, 1, 3))}], ["pad"], ["Pad"], exact=True)
case("pad_v2_value", lambda x: tf.pad(x, [[0, 1], [2, 0]], constant_values=-1e4), {"x": S(None, 3)},
     lambda r: [{"x": edgy(r, (2, 3))}], ["pad"], ["PadV2"], exact=True)
case("pad_to_multiple", lambda x: tf.pad(x, [[0, 0], [0, (4 - tf.shape(x)[1] % 4) % 4], [0, 0]]),
     {"x": S(None, None, 3)},
     lambda r: [{"x": edgy(r, (2, 5, 3))}, {"x": edgy(r, (1, 8, 3))}, {"x": edgy(r, (3, 1, 3))}],
     ["pad"], ["Pad", "FloorMod"], exact=True)
case("pad_ids_i32", lambda x: tf.pad(x, [[0, 0], [1, 1]], constant_values=7), {"x": S(None, None, dtype=I32)},
     lambda r: [{"x": ints(r, (2, 3))}], ["pad"], ["PadV2"])

# Coordinates of a mask, gathers and scatters at computed indices.
case("where_coordinates", lambda m: tf.where(m), {"m": S(None, None, dtype=BOOL)},
     lambda r: [{"m": bools(r, (3, 5))}, {"m": np.zeros((2, 2), bool)}, {"m": np.ones((1, 4), bool)}],
     ["nonzero"], ["Where"])
case("where_of_ints", lambda x: tf.where(x), {"x": S(None, dtype=I32)},
     lambda r: [{"x": ints(r, (9,), -2, 3)}], ["nonzero", "not_equal"], ["Where"])
case("scatter_at_mask", lambda ids, m: tf.tensor_scatter_nd_update(ids, tf.where(m), tf.boolean_mask(ids, m) * 0 + 5),
     {"ids": S(None, None, dtype=I32), "m": S(None, None, dtype=BOOL)},
     lambda r: [{"ids": ints(r, (2, 6)), "m": bools(r, (2, 6))}], ["nonzero", "scatter_nd_update"], ["Where"])
case("gather_nd_rows", lambda x, i: tf.gather_nd(x, i), {"x": S(None, None, 3), "i": S(4, 2, dtype=I32)},
     lambda r: [{"x": edgy(r, (2, 4, 3)), "i": np.array([[0, 3], [1, 0], [1, 1], [0, 3]], np.int32)}],
     ["gather_nd"], ["GatherNd"], exact=True)
case("gather_nd_elements_i64", lambda x, i: tf.gather_nd(x, i), {"x": S(None, 4), "i": S(2, 2, dtype=I64)},
     lambda r: [{"x": edgy(r, (3, 4)), "i": np.array([[2, 3], [0, 0]], np.int64)}], ["gather_nd"], ["GatherNd"],
     exact=True)
case("argmax_argmin", lambda x: (tf.argmax(x, axis=-1), tf.argmin(x, axis=1, output_type=tf.int32)),
     {"x": S(None, 5)}, lambda r: [{"x": ties(r, (4, 5))}, {"x": edgy(r, (2, 5))}], ["argmax", "argmin"],
     ["ArgMax", "ArgMin"])

# Splits of a fused projection.
case("split_even", lambda x: tuple(tf.split(x, 3, axis=-1)), {"x": S(None, None, 6)},
     lambda r: [{"x": edgy(r, (2, 3, 6))}], ["slice"], ["Split"], exact=True)
case("split_symbolic_axis", lambda x: tuple(tf.split(x, 2, axis=1)), {"x": S(None, None, 3)},
     lambda r: [{"x": edgy(r, (2, 4, 3))}, {"x": edgy(r, (1, 2, 3))}], ["slice"], ["Split"], exact=True)
case("split_v", lambda x: tuple(tf.split(x, [1, -1, 2], axis=1)), {"x": S(None, 6)},
     lambda r: [{"x": edgy(r, (2, 6))}], ["slice"], ["SplitV"], exact=True)

# Segment reductions (pooling per sentence, per word piece).
case("unsorted_segment_sum", lambda x, s: tf.math.unsorted_segment_sum(x, s, 4),
     {"x": S(None, 3), "s": S(None, dtype=I32)},
     lambda r: [{"x": edgy(r, (6, 3), edges=REDUCE_EDGES), "s": np.array([0, 3, 3, 1, 0, 3], np.int32)}],
     ["scatter_nd"], ["UnsortedSegmentSum"])
case("unsorted_segment_sum_2d_ids", lambda x, s: tf.math.unsorted_segment_sum(x, s, 3),
     {"x": S(None, None, 2), "s": S(None, None, dtype=I32)},
     lambda r: [{"x": ties(r, (2, 3, 2)), "s": np.array([[0, 2, 2], [1, 0, 2]], np.int32)}],
     ["scatter_nd"], ["UnsortedSegmentSum"])
case("segment_sum_sorted", tf.math.segment_sum, {"x": S(None, 2), "s": S(None, dtype=I32)},
     lambda r: [{"x": ties(r, (5, 2)), "s": np.array([0, 0, 1, 3, 3], np.int32)}], ["scatter_nd"], ["SegmentSum"])
case("segment_mean", tf.math.segment_mean, {"x": S(None, 2), "s": S(None, dtype=I64)},
     lambda r: [{"x": ties(r, (5, 2)), "s": np.array([0, 0, 2, 2, 2], np.int64)}], ["scatter_nd", "div"],
     ["SegmentMean"])

# Small compositions foreign code uses.
case("clip_relu6_leaky", lambda x: (tf.raw_ops.ClipByValue(t=x, clip_value_min=-1.0, clip_value_max=2.0),
                                    tf.nn.relu6(x), tf.nn.leaky_relu(x, 0.1)),
     {"x": S(None, 8)}, lambda r: [{"x": edgy(r, (3, 8), scale=4.0)}], ["maximum", "minimum", "where"],
     ["ClipByValue", "Relu6", "LeakyRelu"])
case("activations", lambda x: (tf.nn.softplus(x), tf.nn.elu(x), tf.nn.selu(x), tf.nn.softsign(x)),
     {"x": S(None, 8)}, lambda r: [{"x": np.array([[-30, -14, -13, 0, 1e-3, 13, 14, 30]], np.float32)},
                                   {"x": normal(r, (3, 8), scale=4.0)}], ["exp", "where"],
     ["Softplus", "Elu", "Selu", "Softsign"], atol=2e-6, why="exp/log of f32 values: a few ulps from TF's kernels")
case("euclidean_norm", lambda x: (tf.norm(x, axis=-1), tf.math.reduce_euclidean_norm(x, axis=[0, 1], keepdims=True)),
     {"x": S(None, None, 4)}, lambda r: [{"x": normal(r, (2, 3, 4))}], ["sqrt"], ["EuclideanNorm"])
case("float_classes", lambda x: (tf.math.is_nan(x), tf.math.is_inf(x), tf.math.is_finite(x)), {"x": S(None, 7)},
     lambda r: [{"x": NONFINITE[None, :]}], ["not_equal"], ["IsNan", "IsInf", "IsFinite"])
case("float_range_of_length", lambda x: x * tf.range(0.0, tf.cast(tf.shape(x)[1], tf.float32), 1.0)[None, :],
     {"x": S(None, None)}, lambda r: [{"x": edgy(r, (2, 5))}, {"x": edgy(r, (1, 1))}], ["range"], ["Range"],
     signed_zeros=True)
case("bucketize", lambda x: (tf.raw_ops.Bucketize(input=x, boundaries=[-1.0, 0.0, 2.5]),
                             tf.raw_ops.Bucketize(input=tf.cast(x, tf.int32), boundaries=[0.0, 3.0])),
     {"x": S(None, 6)}, lambda r: [{"x": np.array([[-2, -1, -0.5, 0, 2.5, 9]], np.float32)}],
     ["reduce_sum"], ["Bucketize"])
case("broadcast_args", lambda x, y: tf.broadcast_to(x, tf.raw_ops.BroadcastArgs(s0=tf.shape(x), s1=tf.shape(y))),
     {"x": S(None, 1, 3), "y": S(None, 3)}, lambda r: [{"x": edgy(r, (2, 1, 3)), "y": edgy(r, (4, 3))}],
     ["expand"], ["BroadcastArgs"], exact=True)
case("rank", lambda x: tf.raw_ops.Rank(input=x) + tf.shape(x)[0], {"x": S(None, 3)}, lambda r: [{"x": edgy(r, (2, 3))}], [],
     ["Rank"])
case("all_any", lambda m: (tf.reduce_all(m, axis=1), tf.reduce_any(m, axis=[0, 1], keepdims=True)),
     {"m": S(None, None, dtype=BOOL)}, lambda r: [{"m": bools(r, (3, 4))}, {"m": np.ones((2, 2), bool)}],
     ["reduce_min", "reduce_max"], ["All", "Any"])
case("band_part_causal", lambda x: (tf.linalg.band_part(x, -1, 0), tf.linalg.band_part(x, 1, 2)),
     {"x": S(None, None, None)}, lambda r: [{"x": edgy(r, (2, 4, 5))}, {"x": edgy(r, (1, 3, 3))}],
     ["where", "range"], ["MatrixBandPart"], exact=True)
case("log_softmax", tf.nn.log_softmax, {"x": S(None, 6)}, lambda r: [{"x": normal(r, (3, 6), scale=3.0)}],
     ["log", "exp"], ["LogSoftmax"], atol=2e-6, why="log of a sum of exps: a few ulps from TF's fused kernel")

# One-hot depths and slice bounds computed at run time.
case("one_hot_depth_from_shape", lambda x: tf.one_hot(tf.argmax(x, axis=-1, output_type=tf.int32), tf.shape(x)[1]),
     {"x": S(None, None)}, lambda r: [{"x": edgy(r, (3, 5))}, {"x": edgy(r, (2, 2))}], ["one_hot"], ["OneHot"],
     exact=True)
case("one_hot_depth_data", lambda i, d: tf.one_hot(i, d[0]), {"i": S(None, dtype=I32), "d": S(1, dtype=I32)},
     lambda r: [{"i": np.array([0, 2, 1, -1], np.int32), "d": np.array([3], np.int32)}], ["one_hot"], ["OneHot"])
case("strided_slice_runtime_begin", lambda x: x[tf.shape(x)[0] - 1], {"x": S(None, 4)},
     lambda r: [{"x": edgy(r, (3, 4))}, {"x": edgy(r, (1, 4))}], ["slice", "squeeze"], ["StridedSlice"], exact=True)
case("strided_slice_runtime_window", lambda x, k: x[:, k[0]:k[0] + 2], {"x": S(None, None), "k": S(1, dtype=I32)},
     lambda r: [{"x": edgy(r, (2, 6)), "k": np.array([3], np.int32)}, {"x": edgy(r, (1, 4)), "k": np.array([-3], np.int32)}],
     ["slice"], ["StridedSlice"], exact=True)
case("strided_slice_runtime_last", lambda x, k: x[k[0]], {"x": S(None, 3), "k": S(1, dtype=I32)},
     lambda r: [{"x": edgy(r, (4, 3)), "k": np.array([-1], np.int32)}, {"x": edgy(r, (4, 3)), "k": np.array([2], np.int32)}],
     ["slice"], ["StridedSlice"], exact=True)
# tf.cond decided by the shapes (DeBERTa: rebuild relative positions when key_len != query_len).
_COND_W = tf.Variable(np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32), name="cond_w")


def _cond_on_lengths(q):
    k = q * 3.0
    rebuilt = lambda: tf.matmul(q, _COND_W)  # noqa: E731
    kept = lambda: tf.matmul(k, _COND_W) + 1.0  # noqa: E731
    return tf.cond(tf.not_equal(tf.shape(k)[-2], tf.shape(q)[-2]), rebuilt, kept)


case("cond_decided_by_shapes", _cond_on_lengths, {"q": S(None, None, 4)},
     lambda r: [{"q": edgy(r, (2, 3, 4))}, {"q": edgy(r, (1, 5, 4))}], ["matmul"], ["If|StatelessIf"])
case("cond_decided_by_static_dim", lambda x: tf.cond(tf.shape(x)[1] > 2, lambda: x * 2.0, lambda: -x),
     {"x": S(None, 3)}, lambda r: [{"x": edgy(r, (2, 3))}], ["mul"], ["If|StatelessIf"], signed_zeros=True)
# Gathers per batch element, reversals, rolls, segment extremes, sequence convolutions.
case("gather_batch_dims", lambda x, i: tf.gather(x, i, batch_dims=2),
     {"x": S(None, None, 5), "i": S(None, None, 3, dtype=I32)},
     lambda r: [{"x": edgy(r, (2, 3, 5)), "i": r.integers(0, 5, (2, 3, 3)).astype(np.int32)}], ["gather"],
     ["GatherV2"], exact=True)
case("gather_batch_dims_rows", lambda x, i: tf.gather(x, i, axis=1, batch_dims=1),
     {"x": S(None, 4, 2), "i": S(None, 6, dtype=I64)},
     lambda r: [{"x": edgy(r, (3, 4, 2)), "i": r.integers(0, 4, (3, 6))}], ["gather"], ["GatherV2"], exact=True)
case("reverse", lambda x: (tf.reverse(x, [1]), tf.reverse(x, [0, -1])), {"x": S(None, None, 3)},
     lambda r: [{"x": edgy(r, (2, 4, 3))}, {"x": edgy(r, (1, 1, 3))}], ["slice"], ["ReverseV2"], exact=True)
case("roll", lambda x: (tf.roll(x, shift=[1, 2], axis=[1, 2]), tf.roll(x, shift=-5, axis=1)),
     {"x": S(None, None, 3)}, lambda r: [{"x": edgy(r, (2, 4, 3))}, {"x": edgy(r, (1, 7, 3))}],
     ["concat", "slice"], ["Roll"], exact=True)
case("unsorted_segment_min_max", lambda x, s: (tf.math.unsorted_segment_min(x, s, 4),
                                               tf.math.unsorted_segment_max(x, s, 4)),
     {"x": S(None, None, 2), "s": S(None, None, dtype=I32)},
     lambda r: [{"x": edgy(r, (2, 3, 2)), "s": np.array([[0, 2, 2], [1, 0, 2]], np.int32)}],
     ["reduce_min", "reduce_max"], ["UnsortedSegmentMin", "UnsortedSegmentMax"], exact=True)
case("unsorted_segment_min_runtime_count", lambda x, s: tf.math.unsorted_segment_min(x, s, tf.shape(x)[0] * 2),
     {"x": S(None, 2), "s": S(None, dtype=I32)},
     lambda r: [{"x": edgy(r, (3, 2)), "s": np.array([0, 5, 5], np.int32)}], ["reduce_min", "range"],
     ["UnsortedSegmentMin"], exact=True)
case("segment_min_max_sorted", lambda x, s: (tf.math.segment_min(x, s), tf.math.segment_max(x, s)),
     {"x": S(None, 2), "s": S(None, dtype=I32)},
     lambda r: [{"x": edgy(r, (5, 2)), "s": np.array([0, 0, 2, 2, 4], np.int32)},  # segments 1 and 3 empty: 0
                {"x": edgy(r, (1, 2)), "s": np.array([0], np.int32)}],
     ["reduce_min", "reduce_max"], ["SegmentMin", "SegmentMax"], exact=True)
case("segment_max_int_flat_rows", lambda x, s: tf.math.segment_max(tf.reshape(x, [-1]), s),
     {"x": S(None, 3, dtype=I32), "s": S(6, dtype=I64)},
     lambda r: [{"x": ints(r, (2, 3)), "s": np.array([0, 1, 1, 1, 3, 3], np.int64)}], ["reduce_max"], ["SegmentMax"])
case("div_mul_no_nan", lambda x, y: (tf.math.divide_no_nan(x, y), tf.math.multiply_no_nan(x, y),
                                     tf.math.divide_no_nan(x, y[:, :1])),
     {"x": S(None, 7), "y": S(None, 7)},
     lambda r: [{"x": np.tile(NONFINITE, (2, 1)), "y": np.array([[0.0, -0.0, 2.0, 0.0, -4.0, 0.0, 0.5],
                                                                 [0.0, 1.0, 0.0, 3.0, 0.0, -0.0, 0.0]], np.float32)}],
     ["where", "div", "mul"], ["DivNoNan", "MulNoNan"])


def _ln_tf_keras_fused(x):
    """tf-keras' LayerNormalization: x laid out [1, rows, features, 1], batch-normed per row (NCHW)
    with tf.ones/tf.zeros([rows]) as scale and offset, laid back, then gamma and beta."""
    s = tf.shape(x)
    rows = s[0] * s[1]
    y = tf.compat.v1.nn.fused_batch_norm(tf.reshape(x, [1, rows, 16, 1]), tf.ones([rows]), tf.zeros([rows]),
                                         epsilon=1e-3, data_format="NCHW")[0]
    return tf.reshape(y, s) * _GAMMA + _BETA


case("layer_norm_tf_keras_fused", _ln_tf_keras_fused, _LN_SPECS, _ln_feeds, ["reduce_mean", "rsqrt"],
     ["FusedBatchNormV3", "Fill"], fused={"layer_norm": 1, "reduce_mean": 0, "reshape": 0}, **_FUSE_TOL)
case("where_between_bool_masks", lambda c, a, b: tf.where(c, a, tf.logical_not(b)),
     {"c": S(None, None, dtype=BOOL), "a": S(None, None, dtype=BOOL), "b": S(1, None, dtype=BOOL)},
     lambda r: [{"c": bools(r, (3, 5)), "a": bools(r, (3, 5)), "b": bools(r, (1, 5))}], ["where"], ["SelectV2"])
case("kernel_expanded_at_run_time", lambda x: tf.nn.conv2d(x, tf.expand_dims(_CONV_K[0], 0), 1, "SAME"),
     {"x": S(None, 1, None, 4)}, lambda r: [{"x": normal(r, (2, 1, 5, 4))}], ["matmul"], ["Conv2D", "ExpandDims"],
     atol=1e-5, why="a sum over kernel taps in another order")
_CONV_RNG = np.random.default_rng(11)
_DEPTHWISE_K = tf.constant(_CONV_RNG.standard_normal((1, 3, 4, 1)).astype(np.float32))
_DEPTHWISE_K2 = tf.constant(_CONV_RNG.standard_normal((1, 2, 4, 2)).astype(np.float32))
_POINTWISE_K = tf.constant(_CONV_RNG.standard_normal((1, 1, 4, 5)).astype(np.float32))
_CONV_K = tf.constant(_CONV_RNG.standard_normal((2, 3, 4, 3)).astype(np.float32))
case("separable_conv1d", lambda x: tf.nn.separable_conv2d(x, _DEPTHWISE_K, _POINTWISE_K, [1, 1, 1, 1], "SAME"),
     {"x": S(None, 1, None, 4)}, lambda r: [{"x": normal(r, (2, 1, 6, 4))}, {"x": normal(r, (1, 1, 2, 4))}],
     ["mul", "matmul"], ["DepthwiseConv2dNative", "Conv2D"], atol=1e-5, why="a sum over kernel taps in another order")
case("depthwise_multiplier_valid", lambda x: tf.nn.depthwise_conv2d(x, _DEPTHWISE_K2, [1, 1, 1, 1], "VALID"),
     {"x": S(None, 1, None, 4)}, lambda r: [{"x": normal(r, (2, 1, 5, 4))}], ["mul", "reshape"],
     ["DepthwiseConv2dNative"], atol=1e-5, why="a sum over kernel taps in another order")
case("conv2d_same", lambda x: tf.nn.conv2d(x, _CONV_K, 1, "SAME"), {"x": S(None, None, None, 4)},
     lambda r: [{"x": normal(r, (2, 3, 5, 4))}, {"x": normal(r, (1, 1, 1, 4))}], ["matmul", "pad"], ["Conv2D"],
     atol=1e-5, why="a sum over kernel taps in another order")
case("avg_pool1d_same", lambda x: tf.nn.avg_pool1d(x, 2, 2, "SAME"), {"x": S(None, None, 4)},
     lambda r: [{"x": normal(r, (2, 5, 4))}, {"x": normal(r, (1, 1, 4))}], ["avg_pool"], ["AvgPool"])
case("max_pool2d_valid", lambda x: -tf.nn.max_pool2d(-x, (3, 2), (2, 1), "VALID"), {"x": S(None, None, 3, 4)},
     lambda r: [{"x": normal(r, (2, 7, 3, 4))}], ["max_pool"], ["MaxPool"])
def _guarded(ids):
    """A tf.cond on the data whose branches both hand back ``ids`` (one only after an Assert):
    the form of transformers' AssertGuard, whose result the graph reads on."""
    def fine():
        return tf.identity(ids)

    def broken():
        with tf.control_dependencies([tf.debugging.Assert(False, [ids])]):
            return tf.identity(ids)

    return tf.cast(tf.cond(tf.reduce_all(ids < 100), fine, broken), tf.float32) * 2.0


case("assert_guard_on_data", _guarded, {"ids": S(None, None, dtype=I32)},
     lambda r: [{"ids": r.integers(0, 100, (2, 5)).astype(np.int32)}], ["cast"], ["If|StatelessIf"])
case("eye_dynamic", lambda x: tf.eye(tf.shape(x)[1]) * 2.0 + tf.linalg.diag(x), {"x": S(None, None)},
     lambda r: [{"x": edgy(r, (2, 4))}, {"x": edgy(r, (1, 1))}], ["where", "range"],
     ["MatrixDiagV3"], exact=True)
case("eye_rectangular", lambda x: tf.eye(tf.shape(x)[1], 3, dtype=tf.int32) + tf.shape(x)[0],
     {"x": S(None, None)}, lambda r: [{"x": edgy(r, (2, 5))}, {"x": edgy(r, (1, 2))}], ["where"], ["MatrixSetDiagV3"])
case("matrix_diag_v1_v2", lambda d, m: (tf.raw_ops.MatrixDiag(diagonal=d),
                                         tf.raw_ops.MatrixDiagV2(diagonal=d, k=0, num_rows=-1, num_cols=-1,
                                                                 padding_value=-1.0),
                                         tf.raw_ops.MatrixSetDiag(input=m, diagonal=d),
                                         tf.raw_ops.MatrixSetDiagV2(input=m, diagonal=d, k=0)),
     {"d": S(None, 3), "m": S(None, 3, 3)}, lambda r: [{"d": edgy(r, (2, 3)), "m": edgy(r, (2, 3, 3))}], ["where"],
     ["MatrixDiag", "MatrixDiagV2", "MatrixSetDiag", "MatrixSetDiagV2"], exact=True)
case("repeat_of_unknown_dim", lambda x: tf.repeat(x[:, ::2], 2, axis=1), {"x": S(None, None)},
     lambda r: [{"x": edgy(r, (2, 6))}, {"x": edgy(r, (1, 3))}], ["tile"], ["Tile"], exact=True)
case("einsum_ellipsis", lambda x, w: (tf.einsum("...,a->...a", x, w), tf.einsum("...ij,jk->...ik", x, w[:, None])),
     {"x": S(None, None, 4), "w": S(4)}, lambda r: [{"x": normal(r, (2, 3, 4)), "w": normal(r, (4,))}],
     ["einsum"], ["Einsum"])
case("fft2d_real", lambda x: tf.math.real(tf.signal.fft2d(tf.complex(x, tf.zeros_like(x)))),
     {"x": S(None, None, 6)}, lambda r: [{"x": normal(r, (2, 5, 6))}, {"x": normal(r, (1, 1, 6))}], ["matmul", "cos"],
     ["Complex", "FFT2D", "Real"], atol=2e-5, rtol=1e-4, why="a DFT as two f32 matmuls vs TF's FFT: sums of N terms")
case("fft_complex_input", lambda x, y: (tf.math.real(tf.signal.fft(tf.complex(x, y))),
                                        tf.math.imag(tf.signal.fft(tf.complex(x, y)))),
     {"x": S(None, 8), "y": S(None, 8)}, lambda r: [{"x": normal(r, (3, 8)), "y": normal(r, (3, 8))}], ["matmul"],
     ["Complex", "FFT", "Real", "Imag"], atol=2e-5, rtol=1e-4, why="a DFT as f32 matmuls vs TF's FFT")
case("slice_runtime_begin", lambda x, b: tf.slice(x, b, [-1, 2]), {"x": S(None, 5), "b": S(2, dtype=I32)},
     lambda r: [{"x": edgy(r, (3, 5)), "b": np.array([1, 2], np.int32)}], ["slice"], ["Slice"], exact=True)


_LOWERED = {c.id for c in CASES[_LOWER_FROM:]}


# --------------------------------------------------------------------------- running a case
_BY_ID = {c.id: c for c in CASES}
assert len(_BY_ID) == len(CASES), "case ids must be unique"
assert all(c.why for c in CASES if c.atol > 1e-6 or c.rtol > 1e-5), "a looser tolerance needs a reason"


@functools.cache
def _concrete(case_id: str):
    c = _BY_ID[case_id]
    sig = [tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in c.specs.items()]

    def wrapped(*args):
        out = c.fn(*args)
        if isinstance(out, dict):
            return out
        outs = out if isinstance(out, tuple) else (out,)
        return {f"y{i}": v for i, v in enumerate(outs)}

    return tf.function(wrapped, input_signature=sig).get_concrete_function()


@functools.cache
def _feeds(case_id: str) -> list[Feeds]:
    return _BY_ID[case_id].feeds(np.random.default_rng(zlib.crc32(case_id.encode())))


def _dim_value(d, binding: dict[str, int]) -> int | None:
    """The run-time size of an inferred dim (an int or a product of symbols), or None if unknown."""
    if isinstance(d, int):
        return d
    if d == UNKNOWN:
        return None
    n = 1
    for part in d.split("*"):
        if part.isdigit():
            n *= int(part)
        elif part in binding:
            n *= binding[part]
        else:
            return None
    return n


def _type_checker(graph, feeds: Feeds):
    """An ``observe`` hook: every computed array has the dtype and the (symbolic) shape its value was typed with."""
    binding: dict[str, int] = {}
    for v in graph.inputs:
        for d, n in zip(v.shape, np.shape(feeds[v.name])):
            if isinstance(d, str) and d != UNKNOWN:
                binding.setdefault(d, n)

    def observe(v, arr) -> None:
        arr = np.asarray(arr)
        assert arr.dtype == DTYPES[v.dtype], f"%{v.name} is typed {v.type} but holds {arr.dtype}"
        assert arr.ndim == v.type.rank, f"%{v.name} is typed {v.type} but holds shape {arr.shape}"
        for d, n in zip(v.shape, arr.shape):
            want = _dim_value(d, binding)
            assert want is None or want == n, f"%{v.name} is typed {v.type} but holds shape {arr.shape}"

    return observe


def _assert_close(c: Case, key: str, got: np.ndarray, want) -> None:
    want = np.asarray(want)
    got = np.asarray(got)
    where = f"output {key} of {c.id}"
    assert got.dtype == want.dtype, f"{where}: dtype {got.dtype}, TF gives {want.dtype}"
    assert got.shape == want.shape, f"{where}: shape {got.shape}, TF gives {want.shape}"
    if want.dtype.kind in "biu" or c.exact:
        np.testing.assert_array_equal(got, want, err_msg=where)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=c.atol, rtol=c.rtol,
                                   equal_nan=True, err_msg=where)
    if want.dtype.kind == "f" and (c.exact or c.signed_zeros):
        zeros = want == 0
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]),
                                      err_msg=f"{where}: the sign of zero differs")


def _params():
    for c in CASES:
        for mode in ("raw", "canon"):
            marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
            yield pytest.param(c, mode == "canon", id=f"{c.id}-{mode}", marks=marks)


@pytest.mark.parametrize("c,canonicalize", list(_params()))
def test_op_matches_tf(c: Case, canonicalize: bool) -> None:
    fn = _concrete(c.id)
    graph, frozen = import_function(fn, canonicalize=canonicalize)
    verify(graph)
    tf_types = {n.op for n in frozen.graph_def.node}
    missing = [op for op in c.tf_ops if not set(op.split("|")) & tf_types]
    assert not missing, f"the frozen graph lacks {missing}: {sorted(tf_types)}"
    hist = graph.histogram()
    if not canonicalize:
        missing = [k for k in c.ops if k not in hist]
        assert not missing, f"raw import lacks {missing}: {hist}"
    elif c.fused is not None:
        assert {k: hist.get(k, 0) for k in c.fused} == c.fused, hist
    for feeds in _feeds(c.id):
        want = frozen.function(**feeds)
        with np.errstate(all="ignore"):  # exp overflow, log(0) … are part of the edge cases
            got = run_graph(graph, feeds, observe=_type_checker(graph, feeds))
        assert set(got) == set(want)
        for key in want:
            _assert_close(c, key, got[key], want[key])


@pytest.mark.parametrize("target_name", ["onnx", "tflite"])
@pytest.mark.parametrize("case_id", sorted(_LOWERED))
def test_foreign_op_lowers_and_matches_tf(case_id: str, target_name: str) -> None:
    """The ops foreign graphs use, legalized as ``bertc compile`` does, run on onnxruntime and LiteRT.

    Integers and booleans must match TF bit for bit, floats within the case's
    tolerance; the sign of a zero is not compared (onnxruntime's Where may turn
    a kept -0.0 into +0.0), the reference-interpreter test above checks it.
    """
    from bertc.legalize import plan
    from bertc.pass_manager import PassManager
    from bertc.runtime.session import open_session
    from bertc.targets import onnx as onnx_target, tflite as tflite_target

    c = dataclasses.replace(_BY_ID[case_id], exact=False, signed_zeros=False)
    target = {"onnx": onnx_target.TARGET, "tflite": tflite_target.TARGET}[target_name]
    graph, frozen = import_function(_concrete(c.id))
    PassManager(plan(graph, [target])).run(graph)
    assert not target.unsupported(graph), target.unsupported(graph)
    session = open_session(target.lower(graph), kind=target.name)
    for feeds in _feeds(c.id):
        want = frozen.function(**feeds)
        got = session.run(feeds)
        for key in want:
            _assert_close(c, f"{key} on {target_name}", got[key], want[key])


# --------------------------------------------------------------------------- refusals and coverage
_REFUSED = [  # id, TF code, specs, what the error says
    ("bias_add_nchw", lambda x, b: tf.nn.bias_add(x, b, data_format="NCHW"), {"x": S(None, 3, 4, 4), "b": S(3)},
     "NCHW"),
    ("mirror_pad", lambda x: tf.pad(x, [[0, 0], [1, 1]], mode="REFLECT"), {"x": S(None, 4)}, "MirrorPad"),
    ("squeeze_unknown_dims", tf.squeeze, {"x": S(None, 1, 4)}, "Squeeze"),
    ("gather_batch_dims_inner_axis", lambda p, i: tf.gather(p, i, axis=2, batch_dims=1),
     {"p": S(None, 3, 5), "i": S(None, 2, dtype=I32)}, "batch_dims"),
    ("conv2d_strided", lambda x: tf.nn.conv2d(x, _CONV_K, 2, "SAME"), {"x": S(None, 4, 4, 4)}, "strides"),
    ("complex_elsewhere", lambda x: tf.math.real(tf.complex(x, x) * tf.complex(x, x)), {"x": S(None, 3)},
     "reads a complex value"),
    ("pad_v2_runtime_value", lambda x, v: tf.pad(x, [[0, 1]], constant_values=v[0]),
     {"x": S(None), "v": S(1)}, "PadV2"),
    ("dropout_at_inference", lambda x: tf.nn.dropout(x, rate=0.1), {"x": S(None, 4)},
     r"random ops are not supported(.|\n)*RandomUniform \(1x\): 'dropout/random_uniform"),
    ("py_function", lambda x: tf.py_function(lambda t: t * 2.0, [x], tf.float32), {"x": S(None, 4)},
     r"Python calls \(tf.py_function(.|\n)*EagerPyFunc"),
]


@pytest.mark.parametrize("fn,specs,match", [pytest.param(*r[1:], id=r[0]) for r in _REFUSED])
def test_unsupported_forms_are_refused_by_name(fn, specs, match) -> None:
    """What the handlers cannot express exactly is an import error naming the op, never a wrong answer."""
    sig = [tf.TensorSpec(shape, dtype, name=name) for name, (shape, dtype) in specs.items()]
    concrete = tf.function(lambda *a: {"y": fn(*a)}, input_signature=sig).get_concrete_function()
    with pytest.raises(BertcError, match=match):
        import_function(concrete, canonicalize=False)


# Handlers no case can reach: a signature's placeholders are its inputs, so this one only raises.
_UNREACHABLE = {"Placeholder"}


def test_every_handler_has_a_case() -> None:
    """Every TF op type in the handler table occurs in some case's imported TF graph."""
    from bertc.frontend.tf_loader import freeze_function

    seen = {n.op for c in CASES for n in freeze_function(_concrete(c.id)).graph_def.node}
    missing = sorted(set(HANDLERS) - seen - _UNREACHABLE)
    assert not missing, f"TF ops with a handler but no numeric case: {missing}"
