"""layer_norm, skip_layer_norm, gelu, bias_gelu and multi_head_attention against float64
references written here from their definitions (see test_independent_reference.py for
why: the runtimes were otherwise only compared with bertc's own kernels).

Definitions:

* layer_norm(x): mean m and biased variance v over the normalized axes,
  (x - m) / sqrt(v + eps) * gamma + beta;  skip_layer_norm = layer_norm(x + skip + bias).
* gelu(s) = 0.5 s (1 + erf(s / sqrt 2)) (erf from math.erf);  bias_gelu(x) = gelu(x + bias).
* multi_head_attention: per head h (features h*d .. h*d + d - 1 of q, k, v),
  softmax(q_h k_h^T * scale + mask) v_h, heads merged back in order; the mask is
  additive and broadcasts to [batch, heads, seq, kv_seq].

Tolerances: first-order forward error bounds of an f32 evaluation, u = 2**-24 (the
same formulas with u = 2**-53, plus the final f32 rounding u |ref|, for bertc's
interpreter, which computes in f64).  Per output element:

* layer norm over n values, with M = max |input| of the row, sigma = sqrt(v + eps),
  z the normalized value, A the row's max |x| + |skip| + |bias| (skip only):
  the sums (recursive summation, any order) move the mean by (n + 1) u M; the
  centered value, the variance ((n + 3) u relative), the epsilon add and the rsqrt
  (2 roundings) move z by (n + 1) u M / sigma + |z| (n + 14) u / 2; the sum
  x + skip + bias adds 2 u A / sigma twice (once through z, once through sigma); the
  scale and shift add u |z gamma| + u |y|:
      |dy| <= |gamma| ((n + 1) u M / sigma + 4 u A / sigma + (n + 16) u |z| / 2) + u |y|.
  M / sigma is the row's condition: a row of equal values with eps = 1e-12 has
  sigma = 1e-6 and may legitimately be far off; the runtimes still get it exact.
* gelu: the add (bias_gelu: 1.13 u |s|, 1.13 = max |gelu'|), s / sqrt 2 (2 roundings:
  0.8 u s^2 exp(-s^2 / 2)), an f32 erf accurate to 4 u |erf| (2 ulps; 0.5 |s| times
  that), 1 + erf and the product (2 u |y|):
      |dy| <= u (1.13 |s| [bias] + 0.8 s^2 exp(-s^2/2) + 2 |s erf(s / sqrt 2)| + 2 |y|).
  The interpreter's erf is a Chebyshev fit of erfc documented to 1.2e-7 relative: its
  bound is 0.5 |s| (1.2e-7 erfc(|s| / sqrt 2) + 4 u64) + 2 u64 |s| + u |y|.
* attention, per query row and head, with t_j = scale q.k_j, a_j = t_j + mask_j,
  p = softmax(a), over the keys j with a finite mask: the dot products and scale err by
  delta_j = (d + 3) u scale sum_c |q_c k_jc|, the mask add and the max subtraction by
  u |a_j| + u |a_j - max a|; softmax turns a score error delta into a relative
  probability error of at most 2 delta, exp (4 u relative), the sum (n_kv u) and the
  division (u) add (n_kv + 5) u; the product with v adds n_kv u:
      |do_c| <= (2 max_j delta_j + (2 n_kv + 5) u) sum_j p_j |v_jc| + u |o_c|.
  A mask of -1e4 on every key of a row is defined (it cancels in the softmax) but its
  f32 add costs u 1e4 = 6e-4 of the scores: the bound says so.

TF has gelu (tf.nn.gelu), layer norm (tf.nn.moments) and softmax attention: each is held
to the f32 bound too.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from bertc.ir import Graph, TensorType
from bertc.runtime.onnx_session import OnnxSession
from bertc.runtime.session import ReferenceSession
from bertc.runtime.tflite_session import TFLiteSession
from bertc.targets.onnx import lower
from bertc.targets.tflite import TARGET as TFLITE

U32, U64 = 2.0 ** -24, 2.0 ** -53
RUNTIMES = ["interp", "onnx", "onnx_std", "tflite"]  # onnx_std: lowered without com.microsoft kernels
erf = np.vectorize(math.erf, otypes=[np.float64])
erfc = np.vectorize(math.erfc, otypes=[np.float64])


def sessions(g: Graph) -> dict:
    return {"interp": ReferenceSession(g),
            "onnx": OnnxSession(lower(g).SerializeToString(), threads=1),
            "onnx_std": OnnxSession(lower(g, contrib=False).SerializeToString(), threads=1),
            "tflite": TFLiteSession(TFLITE.lower(g), threads=1)}


def run_all(g: Graph, feed_sets: dict[str, dict]) -> dict:
    """{runtime: {case: output}}: every runtime on every feed set, once per module."""
    return {name: {case: s.run(feeds)["y"] for case, feeds in feed_sets.items()} for name, s in sessions(g).items()}


def check(got, want, bound, what: str) -> None:
    err = np.abs(np.asarray(got, np.float64) - want)
    assert np.all(np.isfinite(got)), f"{what}: non-finite output"
    ratio = err / np.maximum(bound, 1e-300)
    i = np.unravel_index(np.argmax(ratio), ratio.shape)
    assert np.all(err <= bound), f"{what}: error {err[i]:.3g} at {list(i)} is {ratio[i]:.2f}x the bound {bound[i]:.3g}"


# --------------------------------------------------------------------------- layer norm
def ref_layer_norm(s, gamma, beta, eps: float, axes: tuple):
    """(y, z, sigma) in f64 from the definition."""
    n = int(np.prod([s.shape[a] for a in axes]))
    m = s.sum(axis=axes, keepdims=True) / n
    v = ((s - m) ** 2).sum(axis=axes, keepdims=True) / n
    sigma = np.sqrt(v + eps)
    z = (s - m) / sigma
    return z * gamma + beta, z, sigma


def ln_bound(u, x_abs, a_abs, z, sigma, gamma, y, axes, n):
    M = x_abs.max(axis=axes, keepdims=True)
    A = a_abs.max(axis=axes, keepdims=True)
    return np.abs(gamma) * ((n + 1) * u * M / sigma + 4 * u * A / sigma + (n + 16) * u * np.abs(z) / 2) + u * np.abs(y)


def ln_rows(shape, rng) -> np.ndarray:
    """Rows (along the last axis) of the edge cases, in a tensor of ``shape``."""
    x = rng.standard_normal(shape).reshape(-1, shape[-1])
    x[1] = 0.0                               # zero row: y = beta
    x[2] = 0.5                               # all equal: y = beta, sigma = sqrt(eps)
    x[3] = 1000.0 + rng.standard_normal(shape[-1])  # large mean over a small spread
    x[4] *= 1e4                              # large magnitude
    x[5] *= 1e-3                             # small magnitude (near sqrt(eps) when eps = 1e-5)
    return x.reshape(shape).astype(np.float32)


LN_CONFIGS = {"ln-eps1e-12-last": ((6, 16), -1, 1e-12), "ln-eps1e-5-last2": ((3, 4, 8), -2, 1e-5)}


@functools.lru_cache(maxsize=None)
def layer_norm_case(name: str):
    shape, axis, eps = LN_CONFIGS[name]
    rng = np.random.default_rng(1)
    norm = shape[axis % len(shape):]
    gamma = rng.uniform(0.5, 1.5, norm).astype(np.float32)
    beta = rng.standard_normal(norm).astype(np.float32)
    g = Graph("layer_norm")
    x = g.add_input("x", TensorType("f32", ("n", *shape[1:])))
    g.outputs["y"] = g.add("layer_norm", [x, g.const(gamma, "gamma"), g.const(beta, "beta")],
                           {"axis": axis, "epsilon": eps}).result
    x = ln_rows(shape, rng)
    return x, gamma, beta, run_all(g, {"x": {"x": x}})


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(LN_CONFIGS))
def test_layer_norm(name, runtime):
    shape, axis, eps = LN_CONFIGS[name]
    x, gamma, beta, runs = layer_norm_case(name)
    axes = tuple(range(axis % len(shape), len(shape)))
    n = int(np.prod([shape[a] for a in axes]))
    y, z, sigma = ref_layer_norm(x.astype(np.float64), gamma, beta, eps, axes)
    u = U64 if runtime == "interp" else U32
    bound = ln_bound(u, np.abs(x), np.zeros_like(y), z, sigma, gamma, y, axes, n)
    if runtime == "interp":
        bound = bound + U32 * np.abs(y)
    check(runs[runtime]["x"], y, bound, f"{runtime} {name}")


SLN_CONFIGS = {"sln-bias": True, "sln-no-bias": False}


@functools.lru_cache(maxsize=None)
def skip_layer_norm_case(with_bias: bool):
    rng = np.random.default_rng(2)
    h = 16
    gamma = rng.uniform(0.5, 1.5, h).astype(np.float32)
    beta, bias = (rng.standard_normal(h).astype(np.float32) for _ in range(2))
    g = Graph("skip_layer_norm")
    x, skip = (g.add_input(nm, TensorType("f32", ("b", "s", h))) for nm in ("x", "skip"))
    extra = [g.const(bias, "bias")] if with_bias else []
    g.outputs["y"] = g.add("skip_layer_norm", [x, skip, g.const(gamma, "gamma"), g.const(beta, "beta"), *extra],
                           {"epsilon": 1e-12}).result
    xs = ln_rows((2, 3, h), rng)
    skips = rng.standard_normal((2, 3, h)).astype(np.float32)
    skips.reshape(-1, h)[1] = -xs.reshape(-1, h)[1]  # x + skip = 0 exactly
    skips.reshape(-1, h)[3] = -xs.reshape(-1, h)[3] + 0.25  # cancels a large row to a small one
    return xs, skips, gamma, beta, bias if with_bias else np.zeros(h, np.float32), run_all(
        g, {"x": {"x": xs, "skip": skips}})


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(SLN_CONFIGS))
def test_skip_layer_norm(name, runtime):
    x, skip, gamma, beta, bias, runs = skip_layer_norm_case(SLN_CONFIGS[name])
    s = x.astype(np.float64) + skip + bias
    y, z, sigma = ref_layer_norm(s, gamma, beta, 1e-12, (-1,))
    u = U64 if runtime == "interp" else U32
    a_abs = np.abs(x) + np.abs(skip) + np.abs(bias)
    bound = ln_bound(u, a_abs, a_abs, z, sigma, gamma, y, (-1,), s.shape[-1])
    if runtime == "interp":
        bound = bound + U32 * np.abs(y)
    check(runs[runtime]["x"], y, bound, f"{runtime} {name}")


# --------------------------------------------------------------------------- gelu
def ref_gelu(s):
    return 0.5 * s * (1.0 + erf(s / math.sqrt(2.0)))


def gelu_bound(s, y, runtime: str, added: bool):
    if runtime == "interp":
        return 0.5 * np.abs(s) * (1.2e-7 * erfc(np.abs(s) / math.sqrt(2.0)) + 4 * U64) + 2 * U64 * np.abs(s) \
            + U32 * np.abs(y)
    return U32 * (1.13 * np.abs(s) * added + 0.8 * s * s * np.exp(-s * s / 2)
                  + 2 * np.abs(s * erf(s / math.sqrt(2.0))) + 2 * np.abs(y))


def gelu_inputs() -> np.ndarray:
    rng = np.random.default_rng(3)
    special = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 5.19, -5.19,
               10.0, -10.0, 30.0, -30.0, 1e4, -1e4, 3e38, -3e38]
    x = np.concatenate([special, np.linspace(-12, 12, 256), rng.standard_normal(236) * 3])
    return x.reshape(-1, 16).astype(np.float32)


@functools.lru_cache(maxsize=None)
def gelu_case(kind: str):
    g = Graph(kind)
    x = g.add_input("x", TensorType("f32", ("n", 16)))
    bias = np.zeros(16, np.float32)
    if kind == "gelu":
        g.outputs["y"] = g.add("gelu", [x], {"approximate": "none"}).result
    else:
        bias = np.random.default_rng(4).standard_normal(16).astype(np.float32)
        bias[:2] = 0.0  # the special values pass through unchanged
        g.outputs["y"] = g.add("bias_gelu", [x, g.const(bias, "bias")], {"approximate": "none"}).result
    return bias, run_all(g, {"x": {"x": gelu_inputs()}})


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["gelu", "bias_gelu"])
def test_gelu(kind, runtime):
    bias, runs = gelu_case(kind)
    s = gelu_inputs().astype(np.float64) + bias
    keep = np.abs(s) < 1e30  # s^2 in the bound overflows at +-3e38: those must be exact (3e38 and 0)
    y = ref_gelu(s)
    got = runs[runtime]["x"]
    check(got[keep], y[keep], gelu_bound(s[keep], y[keep], runtime, kind == "bias_gelu"), f"{runtime} {kind}")
    assert np.array_equal(got[~keep], y[~keep].astype(np.float32)), f"{runtime} {kind} at +-3e38"


# --------------------------------------------------------------------------- attention
def ref_attention(q, k, v, mask, heads: int, scale: float):
    """(o, p, a, t_abs) in f64, head by head, from the definition."""
    b, sq, hq = q.shape
    d, dv = hq // heads, v.shape[2] // heads
    o = np.zeros((b, sq, v.shape[2]))
    bound_parts = []
    for h in range(heads):
        qh, kh, vh = q[:, :, h * d:(h + 1) * d], k[:, :, h * d:(h + 1) * d], v[:, :, h * dv:(h + 1) * dv]
        t = scale * np.einsum("bic,bjc->bij", qh, kh)
        t_abs = scale * np.einsum("bic,bjc->bij", np.abs(qh), np.abs(kh))
        m = np.zeros_like(t) if mask is None else np.broadcast_to(mask, (b, heads, sq, k.shape[1]))[:, h]
        a = t + m
        e = np.exp(a - a.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        o[:, :, h * dv:(h + 1) * dv] = p @ vh
        bound_parts.append((h, dv, d, p, a, t_abs, np.isfinite(m), vh))
    return o, bound_parts


def attention_bound(o, parts, u, n_kv):
    bound = np.zeros_like(o)
    for h, dv, d, p, a, t_abs, finite, vh in parts:
        amax = np.where(finite, a, -np.inf).max(-1, keepdims=True)
        delta = (d + 3) * u * t_abs + u * np.abs(np.where(finite, a, 0)) + u * np.abs(np.where(finite, a - amax, 0))
        delta = np.where(finite, delta, 0).max(-1, keepdims=True)
        spread = p @ np.abs(vh)
        bound[:, :, h * dv:(h + 1) * dv] = (2 * delta + (2 * n_kv + 5) * u) * spread
    return bound + u * np.abs(o)


MHA_CONFIGS = {  # name: (batch, q seq, kv seq, heads, head size, scale, mask form)
    "self-keymask": (2, 5, 5, 2, 4, 0.5, "keys"),
    "cross-querymask": (2, 3, 6, 4, 2, 0.37, "queries"),
    "nomask-scale1": (2, 4, 4, 2, 4, 1.0, None),
}


def mha_feeds(cfg):
    b, sq, skv, heads, d, scale, form = cfg
    rng = np.random.default_rng(6)
    q = rng.standard_normal((b, sq, heads * d))
    k = rng.standard_normal((b, skv, heads * d))
    v = rng.standard_normal((b, skv, heads * d))
    q[1] *= 30.0  # peaked softmax rows
    k[0, 1] = k[0, 0]  # equal keys: tied scores
    v[1] *= 1e3
    feeds = {"q": q.astype(np.float32), "k": k.astype(np.float32), "v": v.astype(np.float32)}
    if form == "keys":  # [b, 1, 1, kv]: BERT's padding mask, one key -inf in batch 0
        mask = np.zeros((b, 1, 1, skv))
        mask[0, 0, 0, -1] = -np.inf
        mask[1, 0, 0, -2:] = -1e4
        feeds["mask"] = mask.astype(np.float32)
    elif form == "queries":  # [b, 1, sq, kv]: per query, one row fully masked by -1e4
        mask = np.where(rng.random((b, 1, sq, skv)) < 0.3, -1e4, 0.0)
        mask[0, 0, 1] = -1e4
        feeds["mask"] = mask.astype(np.float32)
    return feeds


@functools.lru_cache(maxsize=None)
def mha_case(name: str):
    b, sq, skv, heads, d, scale, form = cfg = MHA_CONFIGS[name]
    g = Graph("attention")
    ins = [g.add_input(n, TensorType("f32", ("b", "s" if n == "q" else "t", heads * d))) for n in "qkv"]
    if form is not None:
        ins.append(g.add_input("mask", TensorType("f32", ("b", 1, "s" if form == "queries" else 1, "t"))))
    g.outputs["y"] = g.add("multi_head_attention", ins, {"num_heads": heads, "scale": scale}).result
    return run_all(g, {"x": mha_feeds(cfg)})


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", list(MHA_CONFIGS))
def test_multi_head_attention(name, runtime):
    b, sq, skv, heads, d, scale, form = cfg = MHA_CONFIGS[name]
    f = {k: v.astype(np.float64) for k, v in mha_feeds(cfg).items()}
    o, parts = ref_attention(f["q"], f["k"], f["v"], f.get("mask"), heads, scale)
    u = U64 if runtime == "interp" else U32
    bound = attention_bound(o, parts, u, skv) + (U32 * np.abs(o) if runtime == "interp" else 0)
    check(mha_case(name)[runtime]["x"], o, bound, f"{runtime} {name}")


# --------------------------------------------------------------------------- TF
def test_tf_gelu_layer_norm_and_attention():
    import tensorflow as tf

    s = gelu_inputs().astype(np.float64)
    keep = np.abs(s) < 1e30
    got = tf.nn.gelu(tf.constant(gelu_inputs()), approximate=False).numpy()
    check(got[keep], ref_gelu(s[keep]), gelu_bound(s[keep], ref_gelu(s[keep]), "tf", False), "tf gelu")

    x, gamma, beta, _ = layer_norm_case("ln-eps1e-12-last")
    mean, var = tf.nn.moments(tf.constant(x), axes=[-1], keepdims=True)
    got = ((x - mean) * tf.math.rsqrt(var + 1e-12) * gamma + beta).numpy()
    y, z, sigma = ref_layer_norm(x.astype(np.float64), gamma, beta, 1e-12, (-1,))
    check(got, y, ln_bound(U32, np.abs(x), np.zeros_like(y), z, sigma, gamma, y, (-1,), 16), "tf layer norm")

    b, sq, skv, heads, d, scale, form = cfg = MHA_CONFIGS["cross-querymask"]
    f = mha_feeds(cfg)
    split = [tf.transpose(tf.reshape(f[n], (b, -1, heads, d)), (0, 2, 1, 3)) for n in "qkv"]
    scores = tf.matmul(split[0], split[1], transpose_b=True) * scale + f["mask"]
    got = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(scores, axis=-1), split[2]), (0, 2, 1, 3)), (b, sq, -1))
    f64 = {k: v.astype(np.float64) for k, v in f.items()}
    o, parts = ref_attention(f64["q"], f64["k"], f64["v"], f64["mask"], heads, scale)
    check(got.numpy(), o, attention_bound(o, parts, U32, skv), "tf attention")
