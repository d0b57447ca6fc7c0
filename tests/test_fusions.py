"""onnxruntime-oriented fusions (issue 7): skip_layer_norm, bias_gelu and multi_head_attention.

The fused ops' kernels equal the unfused composition; the passes fire on real
models and keep the numbers; the ONNX artifact with com.microsoft kernels (and
its standard-ONNX fallback) and the TFLite artifact (which decomposes the ops
again) match TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest

from bertc.ir import Graph, TensorType, get_op_def
from bertc.pass_manager import PassContext, PassManager, parse_pipeline
from bertc.runtime.inputs import random_inputs
from bertc.runtime.session import ReferenceSession

ORT_FUSIONS = "ort_fusions,fuse_attention"  # fuse_skip_layer_norm,fuse_bias_gelu + attention
RNG = np.random.default_rng(7)


def _kernel(kind: str, attrs: dict, *args):
    opdef = get_op_def(kind)
    return opdef.kernel(opdef.complete_attrs(dict(attrs)), *args)


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("with_bias", [False, True])
def test_skip_layer_norm_kernel_is_add_then_layer_norm(with_bias):
    x, skip = RNG.normal(size=(2, 5, 8)).astype(np.float32), RNG.normal(size=(2, 5, 8)).astype(np.float32)
    gamma, beta, bias = (RNG.normal(size=8).astype(np.float32) for _ in range(3))
    s = x + skip + (bias if with_bias else 0)
    want = _kernel("layer_norm", {"epsilon": 1e-5}, s, gamma, beta)
    got = _kernel("skip_layer_norm", {"epsilon": 1e-5}, x, skip, gamma, beta, *([bias] if with_bias else []))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bias_gelu_kernel_is_add_then_gelu(approximate):
    x, bias = RNG.normal(size=(3, 16)).astype(np.float32) * 4, RNG.normal(size=16).astype(np.float32)
    want = _kernel("gelu", {"approximate": approximate}, x + bias)
    got = _kernel("bias_gelu", {"approximate": approximate}, x, bias)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)


def test_attention_kernel_is_per_head_softmax_attention():
    """Written here head by head, as a loop, against the kernel's batched reshapes."""
    b, s, heads, d = 2, 5, 3, 4
    q, k, v = (RNG.normal(size=(b, s, heads * d)).astype(np.float32) for _ in range(3))
    mask = np.where(RNG.random((b, 1, 1, s)) < 0.3, -1e4, 0.0).astype(np.float32)
    want = np.zeros_like(q)
    for i in range(b):
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            scores = q[i, :, cols].astype(np.float64) @ k[i, :, cols].T * 0.4 + mask[i, 0]
            p = np.exp(scores - scores.max(-1, keepdims=True))
            want[i, :, cols] = (p / p.sum(-1, keepdims=True)) @ v[i, :, cols]
    got = _kernel("multi_head_attention", {"num_heads": heads, "scale": 0.4}, q, k, v, mask)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)


def test_verifier_rejects_broadcast_skip():
    g = Graph("bad")
    x = g.add_input("x", TensorType("f32", ("b", "s", 4)))
    y = g.add_input("y", TensorType("f32", ("b", 1, 4)))
    one = g.const(np.ones(4, np.float32))
    with pytest.raises(Exception, match="one shape"):
        op = g.add("skip_layer_norm", [x, y, one, one])
        get_op_def("skip_layer_norm").check(op)


# --------------------------------------------------------------------------- passes
def _fuse(graph) -> dict:
    ctx = PassContext()
    PassManager(parse_pipeline(ORT_FUSIONS)).run(graph, ctx)
    return ctx.report["fusions"]


def _feeds(graph, seq: int = 7):
    specs = ReferenceSession(graph)
    return random_inputs(zip(specs.input_names, specs.input_dtypes), 2, seq, np.random.default_rng(0))


def test_passes_fire_on_tf_bert_and_keep_the_numbers(tf_bert):
    g = tf_bert.graph()
    feeds = _feeds(g)
    before = ReferenceSession(g).run(feeds)
    counts = _fuse(g)
    hist = g.histogram()
    # embeddings + 2 per layer (2 layers); both FFN GELUs; both attention blocks
    assert counts == {"skip_layer_norm": 5, "bias_gelu": 2, "multi_head_attention": 2}
    assert hist.get("layer_norm", 0) == 0 and hist.get("gelu", 0) == 0 and hist.get("softmax", 0) == 0
    assert {op.attrs["num_heads"] for op in g.ops_of("multi_head_attention")} == {4}
    # every residual norm took its projection's bias
    assert sum(len(op.operands) == 5 for op in g.ops_of("skip_layer_norm")) == 4
    after = ReferenceSession(g).run(feeds)
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-5, rtol=0)


def test_passes_fire_on_hf_bert(hf_bert):
    g = hf_bert.graph()
    feeds = _feeds(g)
    before = ReferenceSession(g).run(feeds)
    n_ln, n_gelu = g.histogram().get("layer_norm", 0), g.histogram().get("gelu", 0)
    n_softmax = g.histogram().get("softmax", 0)
    counts = _fuse(g)
    assert counts["skip_layer_norm"] >= n_ln - 1 and counts["skip_layer_norm"] >= 2
    assert counts["bias_gelu"] == n_gelu >= 1
    # HF adds the mask and then a scalar constant to the scores: softmax ignores the constant
    assert counts["multi_head_attention"] == n_softmax >= 1
    after = ReferenceSession(g).run(feeds)
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-5, rtol=0)


def _strided_head_attention() -> Graph:
    """Attention whose heads take every 4th feature (reshape [.., 2, 4], heads = the inner axis)
    instead of 4 consecutive ones: same ops, other numbers; must not become multi_head_attention."""
    g = Graph("strided_heads")
    q, k, v = (g.add_input(n, TensorType("f32", ("b", "s", 8))) for n in "qkv")

    def heads(x, perm):
        return g.add("transpose", [g.add("reshape", [x], {"shape": [0, 0, 2, 4]}).result], {"perm": perm}).result

    scores = g.add("matmul", [heads(q, [0, 3, 1, 2]), heads(k, [0, 3, 2, 1])]).result  # [b, 4, s, s]
    probs = g.add("softmax", [scores], {"axis": -1}).result
    context = g.add("matmul", [probs, heads(v, [0, 3, 1, 2])]).result  # [b, 4, s, 2]
    merged = g.add("transpose", [context], {"perm": [0, 2, 3, 1]}).result  # [b, s, 2, 4]
    g.outputs["y"] = g.add("reshape", [merged], {"shape": [0, 0, -1]}).result
    return g


def test_attention_fusion_checks_what_the_block_computes(caplog):
    g = _strided_head_attention()
    feeds = {n: RNG.normal(size=(2, 5, 8)).astype(np.float32) for n in "qkv"}
    before = ReferenceSession(g).run(feeds)
    with caplog.at_level("DEBUG", logger="bertc.passes.fuse_attention"):
        counts = _fuse(g)
    assert counts["multi_head_attention"] == 0 and g.histogram().get("softmax") == 1
    assert "does not compute multi-head attention with 4 heads" in caplog.text
    np.testing.assert_array_equal(ReferenceSession(g).run(feeds)["y"], before["y"])


def test_attention_fusion_leaves_keras_hub_attention_with_a_reason(keras_hub_bert):
    """keras-hub masks with where() before and after the softmax and keeps [b, s, heads, d]
    einsum projections: not MultiHeadAttention's form; the report says why per layer."""
    g = keras_hub_bert.graph()
    counts = _fuse(g)
    assert counts["multi_head_attention"] == 0
    assert len(counts["multi_head_attention_skipped"]) == g.histogram()["softmax"] >= 1


def test_attention_fusion_after_quant_int8(tf_bert):
    """Fusions run last: on quant_int8's graph the attention still fuses, and onnxruntime's
    DynamicQuantizeMatMul (bias folded in) + MultiHeadAttention artifact matches the IR."""
    from bertc.runtime.onnx_session import OnnxSession
    from bertc.targets.onnx import lower

    g = tf_bert.graph()
    PassManager(parse_pipeline("quant_int8")).run(g, PassContext())
    feeds = _feeds(g)
    want = ReferenceSession(g).run(feeds)
    assert _fuse(g)["multi_head_attention"] == 2
    model = lower(g)
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("MultiHeadAttention") == 2 and kinds.count("DynamicQuantizeMatMul") == 14
    assert "Softmax" not in kinds
    got = OnnxSession(model.SerializeToString(), threads=1, spinning=False).run(feeds)
    for k in want:  # onnxruntime quantizes activations exactly as the reference (u8 per tensor)
        np.testing.assert_allclose(got[k], want[k], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- targets
@pytest.fixture(scope="module")
def fused_tf_bert(tf_bert):
    g = tf_bert.graph()
    _fuse(g)
    feeds = _feeds(g, seq=9)
    return g, feeds, {k: np.asarray(v) for k, v in tf_bert.tf_run(feeds).items()}


@pytest.mark.parametrize("contrib", [True, False])
def test_onnx_with_fusions_matches_tf(fused_tf_bert, contrib):
    from bertc.runtime.onnx_session import OnnxSession
    from bertc.targets.onnx import MS_DOMAIN, lower

    g, feeds, want = fused_tf_bert
    model = lower(g, contrib=contrib)
    kinds = {(n.domain, n.op_type) for n in model.graph.node}
    if contrib:
        assert {(MS_DOMAIN, "SkipLayerNormalization"), (MS_DOMAIN, "BiasGelu"),
                (MS_DOMAIN, "MultiHeadAttention")} <= kinds
        assert [n.op_type for n in model.graph.node].count("Expand") == 1  # one mask, shared by the layers
    else:
        assert all(d != MS_DOMAIN for d, _ in kinds) and ("", "LayerNormalization") in kinds
    got = OnnxSession(model.SerializeToString(), threads=1, spinning=False).run(feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-4, rtol=0)


def test_tflite_lowers_fused_ops_and_matches_tf(fused_tf_bert):
    from bertc.runtime.tflite_session import TFLiteSession
    from bertc.targets.tflite import TARGET

    g, feeds, want = fused_tf_bert
    got = TFLiteSession(TARGET.lower(g), threads=1).run(feeds)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-4, rtol=0)


def test_fast_gelu_is_the_tanh_gelu():
    """FastGelu's constants (0.7978845608, 0.035677 = 0.044715 * 0.7978845608) give our tanh form."""
    from bertc.runtime.onnx_session import OnnxSession
    from bertc.targets.onnx import lower

    g = Graph("fast_gelu")
    x = g.add_input("x", TensorType("f32", ("n", 16)))
    bias = g.const(RNG.normal(size=16).astype(np.float32), "bias")
    g.outputs["y"] = g.add("bias_gelu", [x, bias], {"approximate": "tanh"}).result
    xs = np.linspace(-12, 12, 16 * 64, dtype=np.float32).reshape(64, 16)
    got = OnnxSession(lower(g).SerializeToString(), threads=1).run({"x": xs})["y"]
    want = ReferenceSession(g).run({"x": xs})["y"]
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
