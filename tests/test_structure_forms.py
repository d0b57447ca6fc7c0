"""Attention and FFN written out op by op, as foreign code does: still found, still pruned.

The structure analysis starts from each ``softmax`` op and takes the op after
the FFN's up projection as its activation.  Foreign graphs spell softmax as
``exp / reduce_sum`` or ``exp(x - reduce_logsumexp(x))`` (``fuse_softmax``
makes them one op), and activations as ``x * sigmoid(x)`` (SiLU),
``x * sigmoid(1.702 x)`` (quick GELU) or ``tf.clip_by_value(x, 0, 6)``
(``activation_of`` accepts any elementwise composition with scalar constants
that joins back into one value).  Each model is the corpus' one-layer ``Tiny``
(hidden 32, 2 heads, FFN 64) with one piece swapped; imports are checked
against TF on the reference interpreter (max abs error 1e-5), and one model
with both kinds of swap is pruned and compiled to both targets, each verified
by ``bertc compile`` itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from bertc.analysis.structure import analyze_structure
from bertc.cli import main
from bertc.frontend.tf import import_function
from bertc.ir.interpreter import run_graph
from examples.corpus.op_families import FFN, HEAD, HIDDEN, Tiny

SOFTMAX = {
    "exp_over_sum": lambda s: (lambda e: e / tf.reduce_sum(e, -1, keepdims=True))(
        tf.exp(s - tf.reduce_max(s, -1, keepdims=True))),
    "exp_over_sum_unshifted": lambda s: tf.exp(s) / tf.reduce_sum(tf.exp(s), axis=-1, keepdims=True),
    "exp_minus_logsumexp": lambda s: tf.exp(s - tf.reduce_logsumexp(s, axis=-1, keepdims=True)),
}
ACTIVATION = {
    "silu": tf.nn.silu,
    "quick_gelu": lambda x: x * tf.sigmoid(1.702 * x),
    "clip_relu6": lambda x: tf.clip_by_value(x, 0.0, 6.0),
    "tanh_gelu_by_hand": lambda x: 0.5 * x * (1.0 + tf.tanh(0.7978845608 * (x + 0.044715 * x * x * x))),
}


def _model(softmax=tf.nn.softmax, activation=tf.nn.gelu, norm=None) -> tuple[tf.Module,
                                                                             tf.types.experimental.ConcreteFunction]:
    """Tiny with its softmax, FFN activation and (given ``norm(m, x, i)``) its norms replaced."""
    m = Tiny()
    if norm is not None:
        m.norm = lambda x, i: norm(m, x, i)

    def serve(input_ids, attention_mask):
        h = m.embed(input_ids)
        q, k, v = m.qkv(h)
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD) + m.mask_bias(attention_mask)
        ctx = tf.transpose(tf.matmul(softmax(scores), v), [0, 2, 1, 3])
        h = m.norm(h + m.lin(tf.reshape(ctx, tf.shape(h)), "o"), 1)
        h = m.norm(h + m.lin(activation(m.lin(h, "up")), "down"), 2)
        return m.classify(h[:, 0])

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    m.serve = tf.function(serve, input_signature=spec)
    return m, m.serve.get_concrete_function()


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    mask = (np.arange(9)[None] < np.array([[9], [5], [1]])).astype(np.int32)
    return {"input_ids": np.where(mask > 0, rng.integers(1, 100, (3, 9)), 0).astype(np.int32),
            "attention_mask": mask}


def _imported_matches_tf(fn):
    graph, frozen = import_function(fn)
    feeds = _feeds()
    want, got = frozen.function(**feeds), run_graph(graph, feeds)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-5, rtol=1e-5)
    return graph


@pytest.mark.parametrize("form", list(SOFTMAX))
def test_written_out_softmax_is_one_op_and_its_attention_is_found(form):
    _, fn = _model(softmax=SOFTMAX[form])
    graph = _imported_matches_tf(fn)
    assert graph.histogram().get("softmax") == 1 and "exp" not in graph.histogram()
    layer, = analyze_structure(graph).layers
    assert not layer.problems, layer.problems
    assert (layer.attention.heads, layer.attention.head_size) == (HIDDEN // HEAD, HEAD)


def test_softmax_over_another_axis_is_left_alone():
    """exp / sum over axis 1 is not the attention softmax (axis -1): nothing is fused."""
    fn = tf.function(lambda x: {"y": tf.exp(x) / tf.reduce_sum(tf.exp(x), axis=1, keepdims=True)},
                     input_signature=[tf.TensorSpec([None, 4, 5], tf.float32, name="x")]).get_concrete_function()
    graph, _ = import_function(fn)
    assert "softmax" not in graph.histogram()


@pytest.mark.parametrize("form", list(ACTIVATION))
def test_written_out_activation_is_found(form):
    _, fn = _model(activation=ACTIVATION[form])
    graph = _imported_matches_tf(fn)
    layer, = analyze_structure(graph).layers
    assert not layer.problems, layer.problems
    assert layer.ffn is not None and layer.ffn.intermediate == FFN


def test_residual_mixed_into_activation_is_not_one():
    """up(x) * x is not an activation of up(x): it reads the FFN input too, so no FFN is claimed."""
    m = Tiny()
    fn = tf.function(lambda input_ids, attention_mask: m.classify(
        m.norm(m.embed(input_ids) + m.lin(m.lin(m.embed(input_ids), "up") * tf.sigmoid(m.lin(m.embed(input_ids), "up"))
                                          * tf.reduce_mean(m.embed(input_ids)), "down"), 2)[:, 0]),
        input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids"),
                         tf.TensorSpec([None, None], tf.int32, name="attention_mask")]).get_concrete_function()
    graph, _ = import_function(fn)
    from bertc.analysis.written_out import activation_of

    ups = [op for op in graph.ops if op.kind == "matmul" and op.result.shape[-1] == FFN]
    assert ups and all(activation_of(op.result) is None for op in ups)


def test_written_out_forms_prune_on_both_targets(tmp_path):
    """exp(x - logsumexp) attention and a SiLU FFN: heads and neurons pruned, int8, both targets verified."""
    m, fn = _model(softmax=SOFTMAX["exp_minus_logsumexp"], activation=ACTIVATION["silu"])
    tf.saved_model.save(m, str(tmp_path / "model"), signatures={"serving_default": fn})
    argv = ["compile", str(tmp_path / "model"), "--target", "all", "-o", str(tmp_path / "out"),
            "--passes", "prune_heads{ratio=0.5},prune_neurons{ratio=0.5},quant_int8"]
    assert main(argv) == 0


def test_pre_norm_layer_finds_its_ffn():
    """Pre-norm (x + attn(norm(x)), then x + ffn(norm(x))): the residual sum feeds the FFN's norm
    and the next residual add; the FFN is found from the norm, whichever the graph lists first."""
    m = Tiny()

    def serve(input_ids, attention_mask):
        h = m.embed(input_ids)
        q, k, v = m.qkv(m.norm(h, 1))
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD) + m.mask_bias(attention_mask)
        ctx = tf.transpose(tf.matmul(tf.nn.softmax(scores), v), [0, 2, 1, 3])
        h = h + m.lin(tf.reshape(ctx, tf.shape(h)), "o")
        h = h + m.lin(tf.nn.gelu(m.lin(m.norm(h, 2), "up")), "down")
        return m.classify(h[:, 0])

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    graph = _imported_matches_tf(tf.function(serve, input_signature=spec).get_concrete_function())
    layer, = analyze_structure(graph).layers
    assert not layer.problems, layer.problems
    assert layer.ffn is not None and layer.ffn.intermediate == FFN


NORMS = {  # norms that are not a layer_norm op: no fusion applies, the FFN is found past them
    "std_plus_eps": lambda m, x, i: m.ln[i][0] * (x - tf.reduce_mean(x, -1, keepdims=True))
    / (tf.math.reduce_std(x, -1, keepdims=True) + 1e-6) + m.ln[i][1],
    "rms": lambda m, x, i: x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), -1, keepdims=True) + 1e-6) * m.ln[i][0],
}


@pytest.mark.parametrize("form", list(NORMS))
def test_ffn_is_found_past_a_written_out_norm(form):
    """(x - mean) / (std + eps) (the annotated Transformer) and RMSNorm are not layer norms, so the
    attention has no norm op: the FFN is the dense layer the first value past them feeds."""
    _, fn = _model(norm=NORMS[form])
    graph = _imported_matches_tf(fn)
    assert "layer_norm" not in graph.histogram()
    layer, = analyze_structure(graph).layers
    assert not layer.problems, layer.problems
    assert layer.ffn is not None and layer.ffn.intermediate == FFN


def test_mask_applied_after_softmax_prunes(tmp_path):
    """Masking after the softmax: probs * mask / (sum(probs * mask) + eps).  The context matmul is
    found through the mul and div, the heads followed through the renormalizing sum, and
    prune_heads compiles to both targets, verified."""
    m = Tiny()

    def serve(input_ids, attention_mask):
        h = m.embed(input_ids)
        q, k, v = m.qkv(h)
        keep = tf.cast(attention_mask, tf.float32)[:, None, None, :]
        p = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD)) * keep
        p = p / (tf.reduce_sum(p, axis=-1, keepdims=True) + 1e-9)
        ctx = tf.transpose(tf.matmul(p, v), [0, 2, 1, 3])
        h = m.norm(h + m.lin(tf.reshape(ctx, tf.shape(h)), "o"), 1)
        return m.classify(m.ffn(h)[:, 0])

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    m.serve = tf.function(serve, input_signature=spec)
    fn = m.serve.get_concrete_function()
    layer, = analyze_structure(_imported_matches_tf(fn)).layers
    assert not layer.problems, layer.problems
    assert layer.attention.heads == HIDDEN // HEAD
    tf.saved_model.save(m, str(tmp_path / "model"), signatures={"serving_default": fn})
    assert main(["compile", str(tmp_path / "model"), "-o", str(tmp_path / "out"),
                 "--passes", "prune_heads{ratio=0.5}"]) == 0
