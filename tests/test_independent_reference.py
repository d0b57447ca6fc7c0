"""qmatmul, quantize and dequantize against references written here from their definitions.

The ONNX/LiteRT tests elsewhere compare the runtimes with bertc's reference
interpreter; for the IR-only quantized ops that is circular (the qmatmul kernel
was written to reproduce what the runtimes compute).  Here a float64 numpy
reference is written from each op's definition, without bertc's kernels, and
bertc's interpreter, onnxruntime, LiteRT (and TF where it has the op) are each
compared with it.  ``test_independent_reference_float.py`` does the same for the
float fused ops.

Definitions (f32 values are rounded to f32 where the definition says the value is
f32: the references compute in f64 and round once; for + - * / that is IEEE f32
arithmetic exactly, since 53 >= 2 * 24 + 2 bits makes double rounding harmless):

* quantize (ONNX QuantizeLinear): saturate(round_half_even(x / scale) + zp) to
  [-128, 127] (i8) or [0, 255] (u8); per axis, scale and zp run along ``axis``.
* dequantize (ONNX DequantizeLinear): (q - zp) * scale.
* qmatmul: quantize a at run time (ONNX DynamicQuantizeLinear: range
  [min(a, 0), max(a, 0)], scale = (max - min) / (qmax - qmin) in f32, zp =
  round(saturate(qmin - min / scale)), a zero range gives scale 1), per tensor
  (act u8_tensor) or per row (i8_row); dequantize a and the kernel, multiply.
  Since (q - zp) * s and (w - wz) * ws are exact, the product is acc * s * ws with
  the exact integer acc = (q - zp) @ (w - wz).

Tolerances (u = 2**-24, f32's unit roundoff):

* quantize: exact integers: the runtime must produce the same integer.
* dequantize: one f32 rounding of the exact product: |y - ref| <= u |ref|.
* qmatmul: the integer accumulators recovered from the output, rint(y / (s * ws)),
  must equal acc exactly (the float error below is < 0.5 of one unit of acc for
  |acc| < 1.6e6; here |acc| <= 16 * 255 * 127 = 518160), and elementwise
  |y - ref| <= c u |ref|: c = 3 for f32(acc) * f32(s * ws) (three roundings:
  onnxruntime and the interpreter), c = 5 for LiteRT, whose XNNPACK kernel may
  form the row scale as (max - min) * f32(1/255) (two more roundings) and rescales
  in two products.  A scheme that quantizes on another grid breaks the integer
  check at once, which is how the cross-scheme cases below are shown to differ.

Each runtime is checked against its own true scheme and, where that differs from
the IR's, the cross-scheme comparison is a strict xfail that says what differs; across
schemes the outputs are still held to the quantization bound: each scheme's activation
is within half of its own step of a, so the two products differ by at most
(s_runtime + s_ir) / 2 * sum_k |w_kj ws_j| (measured: 0.37 of it).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bertc.ir import Graph, TensorType
from bertc.runtime.onnx_session import OnnxSession
from bertc.runtime.session import ReferenceSession
from bertc.runtime.tflite_session import TFLiteSession
from bertc.targets.onnx import TARGET as ONNX
from bertc.targets.tflite import TARGET as TFLITE

U = 2.0 ** -24
RANGES = {"i8": (-128, 127), "u8": (0, 255)}
NP = {"i8": np.int8, "u8": np.uint8}
SCHEMES = {"u8_tensor": ("u8", False), "i8_row": ("i8", True)}  # passes/quant_int8.py ACT_SCHEMES
ACT_ATTRS = {"u8_tensor": {"act_dtype": "u8", "act_symmetric": False, "act_per_row": False},
             "i8_row": {"act_dtype": "i8", "act_symmetric": False, "act_per_row": True}}
RUNTIME_SCHEME = {"onnx": "u8_tensor", "tflite": "i8_row"}  # what each runtime's kernel really does
WHY_ONNX = ("onnxruntime's DynamicQuantizeMatMul quantizes the activation u8 per tensor; the IR's "
            "i8_row says one int8 grid per row, so the integers differ")
WHY_TFLITE = ("LiteRT's hybrid FULLY_CONNECTED quantizes each row to int8 (asymmetric); the IR's "
              "u8_tensor says one u8 grid for the whole tensor, so the integers differ")


# --------------------------------------------------------------------------- references
def f32(v) -> np.ndarray:
    """v rounded to the nearest f32, kept as f64."""
    return np.asarray(v, np.float64).astype(np.float32).astype(np.float64)


def along(p, axis: int | None, ndim: int) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if axis is None:
        return p
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return p.reshape(shape)


def round_half(v: np.ndarray, ties: str) -> np.ndarray:
    if ties == "even":
        return np.rint(v)  # IEEE round to nearest, ties to even
    if ties == "up":
        return np.floor(v + 0.5)  # ties toward +inf
    return np.sign(v) * np.floor(np.abs(v) + 0.5)  # ties away from zero


def ref_quantize(x, scale, zp, axis, dtype, ties="even") -> np.ndarray:
    lo, hi = RANGES[dtype]
    q = f32(np.asarray(x, np.float64) / along(scale, axis, np.ndim(x)))  # x / scale in f32
    return np.clip(round_half(q, ties) + along(zp, axis, np.ndim(x)), lo, hi)


def ref_dequantize(q, scale, zp, axis) -> np.ndarray:
    return (np.asarray(q, np.float64) - along(zp, axis, np.ndim(q))) * along(scale, axis, np.ndim(q))


def ref_dynamic(x, dtype: str, per_row: bool):
    """ONNX DynamicQuantizeLinear (generalised to i8 and rows): q, scale, zp (f64, exact values)."""
    qmin, qmax = RANGES[dtype]
    x = np.asarray(x, np.float64)
    axis = -1 if per_row else None
    lo = np.minimum(x.min(axis=axis, keepdims=per_row), 0.0)
    hi = np.maximum(x.max(axis=axis, keepdims=per_row), 0.0)
    scale = np.where(hi > lo, f32(f32(hi - lo) / (qmax - qmin)), 1.0)
    zp = np.rint(np.clip(f32(qmin - f32(lo / scale)), qmin, qmax))
    q = np.clip(np.rint(f32(x / scale)) + zp, qmin, qmax)
    return q, scale, zp


def ref_qmatmul(x, w, w_scale, scheme: str):
    """(acc, a_scale per row, y): y = dequantize(q) @ dequantize(w) = acc * s * ws, for a
    kernel ``w`` given less its zero point."""
    q, s, zp = ref_dynamic(x, *SCHEMES[scheme])
    acc = (q - zp) @ np.asarray(w, np.float64)  # exact: integers below 2**53
    s_rows = np.broadcast_to(s, (x.shape[0], 1))
    return acc, s_rows, acc * s_rows * np.asarray(w_scale, np.float64)


# The interpreter's quantize divides inf or 3e38 by the scale on the way to saturating it.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")


# --------------------------------------------------------------------------- helpers
def sessions(g: Graph) -> dict:
    return {"interp": ReferenceSession(g), "onnx": OnnxSession(ONNX.lower(g), threads=1),
            "tflite": TFLiteSession(TFLITE.lower(g), threads=1)}


def check_qmatmul(y, x, w, w_scale, scheme: str, c: float, what: str) -> None:
    acc, s, want = ref_qmatmul(x, w, w_scale, scheme)
    y = np.asarray(y, np.float64)
    got_acc = np.rint(y / (s * np.asarray(w_scale, np.float64)))
    bad = np.argwhere(got_acc != acc)
    assert not bad.size, (f"{what}: integer accumulators differ from the {scheme} definition at "
                          f"{bad[:4].tolist()}: {got_acc[tuple(bad[0])]} vs {acc[tuple(bad[0])]}")
    err = np.abs(y - want)
    assert np.all(err <= c * U * np.abs(want)), f"{what}: max error {(err / (U * np.abs(want) + 1e-300)).max():.2f} u"


# --------------------------------------------------------------------------- qmatmul
K, N = 16, 8


def qmatmul_inputs() -> dict[str, np.ndarray]:
    """Activations [6, 16] with the edge cases of both schemes."""
    rng = np.random.default_rng(11)
    # range [-1, 255/64 - 1]: scale exactly 1/64 (zp 64 for u8, -64 for i8), values at k + 1/2 steps
    ties = (rng.integers(-64, 191, (6, K)) + 0.5) / 64
    ties[:, 0], ties[:, 1] = -1.0, 255 / 64 - 1
    ties[3] = 0.0  # a zero row: per row its range is zero (scale 1)
    ties[4] = 0.5  # an all-equal row: per row every value maps to qmax
    ties[5, 2:] = -(rng.integers(0, 64, K - 2) + 0.5) / 64  # per row: all <= 0, zp at qmax
    ties[5, 1] = -0.25
    large = rng.standard_normal((6, K)) * 1e4
    large[2] = rng.standard_normal(K) * 1e-3  # next to 1e4 rows: per tensor it quantizes to zp
    return {"ties": ties, "normal": rng.standard_normal((6, K)),
            "large": large, "positive": rng.uniform(0.1, 3.0, (6, K)),
            "zeros": np.zeros((6, K))}


@functools.lru_cache(maxsize=None)
def qmatmul_case(bits: int, per_channel: bool, scheme: str):
    rng = np.random.default_rng(bits * 10 + per_channel)
    m = 127 if bits == 8 else 63
    w = rng.integers(-m, m + 1, (K, N))
    w[0], w[1, : N // 2], w[1, N // 2:] = m, -m, m  # the saturation extremes
    ws = (rng.uniform(0.5, 2.0, N) / 64).astype(np.float32) if per_channel else np.float32(0.013)
    g = Graph("qmatmul")
    x = g.add_input("x", TensorType("f32", ("n", K)))
    zero = np.zeros(N if per_channel else (), np.int8)
    g.outputs["y"] = g.add("qmatmul", [x, g.const(w.astype(np.int8), "w"), g.const(ws, "ws"), g.const(zero, "wz")],
                           {"axis": 1 if per_channel else None, **ACT_ATTRS[scheme]}).result
    s = sessions(g)
    runs = {name: {case: sess.run({"x": a.astype(np.float32)})["y"] for case, a in qmatmul_inputs().items()}
            for name, sess in s.items()}
    return w, ws, runs


CONFIGS = [(b, pc, sc) for b in (8, 7) for pc in (True, False) for sc in SCHEMES]
IDS = [f"w{b}-{'channel' if pc else 'tensor'}-{sc}" for b, pc, sc in CONFIGS]


@pytest.mark.parametrize("bits, per_channel, scheme", CONFIGS, ids=IDS)
def test_qmatmul_interpreter_is_the_definition(bits, per_channel, scheme):
    w, ws, runs = qmatmul_case(bits, per_channel, scheme)
    for case, x in qmatmul_inputs().items():
        check_qmatmul(runs["interp"][case], f32(x), w, ws, scheme, 3, f"interpreter {case}")


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
@pytest.mark.parametrize("bits, per_channel, scheme", CONFIGS, ids=IDS)
def test_qmatmul_runtime_is_its_own_scheme(runtime, bits, per_channel, scheme):
    """Whatever the IR's act says, each runtime's integers are its own scheme's, exactly."""
    w, ws, runs = qmatmul_case(bits, per_channel, scheme)
    own = RUNTIME_SCHEME[runtime]
    for case, x in qmatmul_inputs().items():
        check_qmatmul(runs[runtime][case], f32(x), w, ws, own, 3 if runtime == "onnx" else 5,
                      f"{runtime} {case} ({own})")


def _ir_scheme_params():
    out = []
    for (b, pc, sc), i in zip(CONFIGS, IDS):
        for rt in ("onnx", "tflite"):
            marks = () if RUNTIME_SCHEME[rt] == sc else pytest.mark.xfail(
                strict=True, raises=AssertionError, reason=WHY_ONNX if rt == "onnx" else WHY_TFLITE)
            out.append(pytest.param(rt, b, pc, sc, id=f"{rt}-{i}", marks=marks))
    return out


@pytest.mark.parametrize("runtime, bits, per_channel, scheme", _ir_scheme_params())
def test_qmatmul_runtime_is_the_irs_scheme(runtime, bits, per_channel, scheme):
    w, ws, runs = qmatmul_case(bits, per_channel, scheme)
    for case, x in qmatmul_inputs().items():
        check_qmatmul(runs[runtime][case], f32(x), w, ws, scheme, 3 if runtime == "onnx" else 5,
                      f"{runtime} {case} (IR {scheme})")


@pytest.mark.parametrize("runtime", ["onnx", "tflite"])
@pytest.mark.parametrize("bits, per_channel, scheme", CONFIGS, ids=IDS)
def test_qmatmul_runtime_within_half_a_step_of_each_scheme(runtime, bits, per_channel, scheme):
    """Across schemes the integers differ, but each scheme's dequantized activation is within
    half of its step of a: the range [lo, hi] spans 255 steps and the zero point is rounded by at
    most half a step, so even a clipped code is within s / 2 (plus 255 * 2u * s from the f32
    scale).  Both products are then within (s / 2) sum_k |w_kj ws_j| of a @ dequantize(w), and
    the runtime's output within the sum of the two of the IR scheme's, plus 5u of each."""
    w, ws, runs = qmatmul_case(bits, per_channel, scheme)
    wd = np.abs(w * np.asarray(ws, np.float64)).sum(axis=0)
    for case, x in qmatmul_inputs().items():
        _, s_ir, want = ref_qmatmul(f32(x), w, ws, scheme)
        _, s_rt, _ = ref_qmatmul(f32(x), w, ws, RUNTIME_SCHEME[runtime])
        y = runs[runtime][case].astype(np.float64)
        bound = (0.5 + 255 * 2 * U) * (s_ir + s_rt) * wd + 5 * U * (np.abs(want) + np.abs(y))
        assert np.all(np.abs(y - want) <= bound), (case, (np.abs(y - want) / bound).max())


@pytest.mark.parametrize("per_row", [True, False], ids=["row", "tensor"])
def test_qmatmul_symmetric_activations_in_the_interpreter(per_row):
    """act_symmetric (i8 only): scale = max|a| / 127 in f32 (1 for a zero range), zero point 0,
    codes in [-127, 127].  No runtime runs this scheme (both lower it to their own, as above);
    only hand-written IR holds it, and the interpreter must still follow the definition."""
    w, ws, _ = qmatmul_case(8, True, "u8_tensor")
    g = Graph("qmatmul_symmetric")
    x = g.add_input("x", TensorType("f32", ("n", K)))
    g.outputs["y"] = g.add("qmatmul", [x, g.const(w.astype(np.int8), "w"), g.const(ws, "ws"),
                                       g.const(np.zeros(N, np.int8), "wz")],
                           {"axis": 1, "act_dtype": "i8", "act_symmetric": True, "act_per_row": per_row}).result
    interp = ReferenceSession(g)
    for case, a in qmatmul_inputs().items():
        a = f32(a)
        amax = np.abs(a).max(axis=-1 if per_row else None, keepdims=per_row)
        s = np.broadcast_to(np.where(amax > 0, f32(amax / 127), 1.0), (a.shape[0], 1))
        acc = np.clip(np.rint(f32(a / s)), -127, 127) @ w
        y = interp.run({"x": a.astype(np.float32)})["y"].astype(np.float64)
        assert np.array_equal(np.rint(y / (s * ws)), acc), case
        assert np.all(np.abs(y - acc * s * ws) <= 3 * U * np.abs(acc * s * ws)), case


def test_qmatmul_with_kernel_zero_points():
    """A u8 kernel with per-channel zero points (ONNX's form; LiteRT's hybrid kernels refuse it):
    dequantize(w) = (w - wz) * ws.  |acc| <= 16 * 255 * 255 still lets the integers be recovered."""
    rng = np.random.default_rng(9)
    w = rng.integers(0, 256, (K, N))
    w[0], w[1] = 255, 0
    wz = rng.integers(100, 156, N)
    ws = (rng.uniform(0.5, 2.0, N) / 64).astype(np.float32)
    g = Graph("qmatmul_zero_points")
    x = g.add_input("x", TensorType("f32", ("n", K)))
    operands = [x, g.const(w.astype(np.uint8), "w"), g.const(ws, "ws"), g.const(wz.astype(np.uint8), "wz")]
    g.outputs["y"] = g.add("qmatmul", operands, {"axis": 1, **ACT_ATTRS["u8_tensor"]}).result
    for name, sess in (("interp", ReferenceSession(g)), ("onnx", OnnxSession(ONNX.lower(g), threads=1))):
        for case, a in qmatmul_inputs().items():
            check_qmatmul(sess.run({"x": a.astype(np.float32)})["y"], f32(a), w - wz, ws, "u8_tensor", 3,
                          f"{name} {case}")


# --------------------------------------------------------------------------- quantize / dequantize
QUANT_CONFIGS = [(dt, axis) for dt in ("i8", "u8") for axis in (None, 1, 0)]
QIDS = [f"{dt}-axis{axis}" for dt, axis in QUANT_CONFIGS]


def quant_params(dtype: str, axis: int | None, pow2: bool):
    """Scale and zero point for x [4, 8]: powers of two (so x / scale is exact and ties are
    ties), or scales that are not."""
    n = {None: (), 1: (8,), 0: (4,)}[axis]
    scale = (2.0 ** np.resize([-2, 0, 1, -4, 3, -1, 0, 2], n)) if pow2 else np.resize([0.3, 0.07, 1.7, 0.011], n)
    zp = np.resize([3, -5, 0, 100] if dtype == "i8" else [3, 128, 0, 250], n)
    return np.asarray(scale, np.float32), np.asarray(zp, NP[dtype])


def quant_inputs(dtype: str, axis: int | None) -> dict[str, np.ndarray]:
    """x [4, 8] in units of the scale along axis: ties, the saturation edges (row 2, relative to
    the zero point), far outside the range (1e9 units fits int32, 3e38 does not or is inf)."""
    lo, hi = RANGES[dtype]
    scale, zp = quant_params(dtype, axis, True)
    s, z = (np.broadcast_to(along(p, axis, 2), (4, 8)) for p in (scale, zp))
    units = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.0],
                      [0.0, 0.25, 0.75, -0.75, 7.5, -7.5, 100.5, -100.5],
                      [hi + 0.5, hi - 0.5, hi + 0.49, hi + 1, lo - 0.5, lo + 0.5, lo - 0.49, lo - 1],
                      [1e9, -1e9, 3e38, -3e38, 0.5, 1.5, 2.5, 4.5]])
    units[2] -= z[2]
    rng = np.random.default_rng(5)
    with np.errstate(over="ignore"):
        return {"edges": f32(units * s), "normal": f32(rng.standard_normal((4, 8)) * 40)}


@functools.lru_cache(maxsize=None)
def quant_case(dtype: str, axis: int | None, pow2: bool):
    scale, zp = quant_params(dtype, axis, pow2)
    g = Graph("quantize")
    x = g.add_input("x", TensorType("f32", (4, 8)))
    g.outputs["q"] = g.add("quantize", [x, g.const(scale, "s"), g.const(zp, "z")], {"axis": axis}).result
    runs = {name: {c: sess.run({"x": a.astype(np.float32)})["q"] for c, a in quant_inputs(dtype, axis).items()}
            for name, sess in sessions(g).items()}
    return scale, zp, runs


def check_quantize(got, x, scale, zp, axis, dtype, ties, what):
    want = ref_quantize(x, scale, zp, axis, dtype, ties)
    assert got.dtype == NP[dtype], what
    bad = np.argwhere(got != want)
    assert not bad.size, (f"{what}: {len(bad)} integers differ, e.g. x={x[tuple(bad[0])]!r}: "
                          f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]:.0f}")


# LiteRT runs a per-tensor QUANTIZE on XNNPACK (ties to even, as ONNX; its builtin kernel, used
# when XNNPACK is off, also rounds them to even) and a per-axis one on its builtin kernel, which
# rounds ties away from zero (TfLiteRound).
LITERT_TIES = {None: "even", 1: "away", 0: "away"}


@pytest.mark.parametrize("runtime", ["interp", "onnx", "tflite"])
@pytest.mark.parametrize("dtype, axis", QUANT_CONFIGS, ids=QIDS)
def test_quantize_runtime_is_its_own_scheme(runtime, dtype, axis):
    ties = LITERT_TIES[axis] if runtime == "tflite" else "even"
    scale, zp, runs = quant_case(dtype, axis, True)
    for case, x in quant_inputs(dtype, axis).items():
        check_quantize(runs[runtime][case], x, scale, zp, axis, dtype, ties, f"{runtime} {case} (ties {ties})")


@pytest.mark.parametrize("dtype, axis", [pytest.param(
    dt, ax, id=i, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
        "LiteRT's per-axis QUANTIZE (builtin kernel) rounds x / scale ties away from zero; "
        "ONNX QuantizeLinear and the IR round them to even")) if ax is not None else ())
    for (dt, ax), i in zip(QUANT_CONFIGS, QIDS)])
def test_quantize_tflite_is_the_definition(dtype, axis):
    scale, zp, runs = quant_case(dtype, axis, True)
    for case, x in quant_inputs(dtype, axis).items():
        check_quantize(runs["tflite"][case], x, scale, zp, axis, dtype, "even", f"tflite {case}")


@pytest.mark.parametrize("dtype, axis", QUANT_CONFIGS, ids=QIDS)
def test_quantize_with_scales_that_are_not_powers_of_two(dtype, axis):
    """x / scale rounded to f32 first: every runtime's integers are the definition's (no ties here)."""
    scale, zp, runs = quant_case(dtype, axis, False)
    x = quant_inputs(dtype, axis)["normal"]
    for runtime in ("interp", "onnx", "tflite"):
        check_quantize(runs[runtime]["normal"], x, scale, zp, axis, dtype, "even", runtime)


@pytest.mark.parametrize("dtype, axis", QUANT_CONFIGS, ids=QIDS)
def test_dequantize_is_the_definition(dtype, axis):
    lo, hi = RANGES[dtype]
    scale, zp = quant_params(dtype, axis, False)
    q = np.random.default_rng(2).integers(lo, hi + 1, (4, 8))
    q[0, :4] = [lo, hi, lo, hi]
    q[1] = np.resize(zp, 8) if axis in (None, 1) else q[1]
    q = q.astype(NP[dtype])
    g = Graph("dequantize")
    x = g.add_input("q", TensorType(dtype, (4, 8)))
    g.outputs["y"] = g.add("dequantize", [x, g.const(scale, "s"), g.const(zp, "z")], {"axis": axis}).result
    want = ref_dequantize(q, scale, zp, axis)
    for name, sess in sessions(g).items():
        y = sess.run({"q": q})["y"]
        err = np.abs(y.astype(np.float64) - want)
        assert y.dtype == np.float32 and np.all(err <= U * np.abs(want)), (name, err.max())


# --------------------------------------------------------------------------- TF
# TF has no (scale, zero point) quantize; QuantizeV2 in SCALED mode with range
# [-127 s, 127 s] and a power-of-two s quantizes with scale s and zero point 0 (its
# scale factor 127 / (127 s) is exact), so it can be checked against the definition.
def _tf_quantize(x, s, axis):
    import tensorflow as tf

    lo, hi = (-127 * s, 127 * s)
    r = tf.quantization.quantize(x, lo, hi, tf.qint8, mode="SCALED", round_mode="HALF_TO_EVEN",
                                 axis=axis)
    back = tf.quantization.dequantize(r.output, lo, hi, mode="SCALED", axis=axis)
    return r.output.numpy().astype(np.int64), back.numpy()


TF_SCALES = {None: np.float32(2.0 ** -4), 1: (2.0 ** np.array([-4, -2, 0, 1, -3, -1, 2, 0])).astype(np.float32)}


def tf_inputs(axis):
    """Ties and in-range values in units of TF's scales (its range is [-127 s, 127 s])."""
    units = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.0],
                      [0.0, 0.25, 0.75, -0.75, 7.5, -7.5, 100.5, -100.5]])
    return f32(units * along(TF_SCALES[axis], axis, 2))


@pytest.mark.parametrize("axis", [None, 1])
def test_tf_quantize_is_its_own_scheme(axis):
    x = tf_inputs(axis)
    got, back = _tf_quantize(x.astype(np.float32), TF_SCALES[axis], axis)
    ties = "away" if axis is None else "even"
    check_quantize(got.astype(np.int8), x, TF_SCALES[axis], np.zeros(np.shape(TF_SCALES[axis]), np.int8), axis,
                   "i8", ties, f"tf (ties {ties})")
    want = ref_dequantize(got, TF_SCALES[axis], np.zeros(np.shape(TF_SCALES[axis])), axis)
    assert np.all(np.abs(back - want) <= U * np.abs(want))


@pytest.mark.parametrize("axis", [pytest.param(None, marks=pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="TF QuantizeV2 per tensor rounds ties away from zero "
    "although round_mode='HALF_TO_EVEN' (per axis it rounds them to even)")), 1])
def test_tf_quantize_is_the_definition(axis):
    x = tf_inputs(axis)
    got, _ = _tf_quantize(x.astype(np.float32), TF_SCALES[axis], axis)
    check_quantize(got.astype(np.int8), x, TF_SCALES[axis], np.zeros(np.shape(TF_SCALES[axis]), np.int8), axis,
                   "i8", "even", "tf")


# fake_quant_with_min_max_args(min = -64 s, max = 191 s), s a power of two, is
# dequantize(quantize(x, s, 64, u8)): its range needs no nudging and its arithmetic is exact.
FQ_SCALE = 2.0 ** -3


def _tf_fake_quant(x):
    import tensorflow as tf

    return tf.quantization.fake_quant_with_min_max_args(x, -64 * FQ_SCALE, 191 * FQ_SCALE, num_bits=8).numpy()


def _fake_quant_inputs():
    units = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -63.5, 126.5],
                      [-64.5, -65, 190.5, 191.5, 300.0, -0.25, 0.0, 7.0]])
    return f32(units * FQ_SCALE)


def test_tf_fake_quant_is_its_own_scheme():
    x = _fake_quant_inputs()
    want = ref_dequantize(ref_quantize(x, FQ_SCALE, 64, None, "u8", "up"), FQ_SCALE, 64, None)
    assert np.array_equal(_tf_fake_quant(x.astype(np.float32)), want)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="TF fake_quant rounds ties up, floor(x / s + 0.5); "
                   "ONNX QuantizeLinear and the IR round them to even")
def test_tf_fake_quant_is_the_definition():
    x = _fake_quant_inputs()
    want = ref_dequantize(ref_quantize(x, FQ_SCALE, 64, None, "u8", "even"), FQ_SCALE, 64, None)
    assert np.array_equal(_tf_fake_quant(x.astype(np.float32)), want)
