"""Small plain-TF classifiers whose pieces are written the way other people write them.

Where ``op_families.py`` exercises one TF op family per model, these models keep
the ops ordinary and change the *form*: softmax and activations spelled out op
by op, a pre-norm layer, tf-keras' fused layer norm, an XLA-compiled serving
function, a signature fixed at [1, 16], a lengths input instead of a mask,
sorted-segment and divide_no_nan pooling, and a TF1 graph-mode model whose
dropout a ``tf.cond`` on ``placeholder_with_default(False)`` switches (frozen
to a .pb, with control flow v1's Switch/Merge); and a Keras 3 functional model
saved as a ``.keras`` file, its MultiHeadAttention causal (``use_causal_mask``).  Each is the op-family corpus' one-layer
``Tiny`` (hidden 32, 2 heads, FFN 64, vocabulary 100) with seeded weights; the
serving signature is

    inputs : input_ids, attention_mask   int32 [None, None]   (unless the docstring says otherwise)
    output : {"logits": float32 [batch, 3]}

    python -m examples.corpus.graph_forms OUT_DIR [--only pre_norm_layer]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import tensorflow as tf

from examples.corpus import build_each, builder_main
from examples.corpus.op_families import HEAD, HIDDEN, Tiny


def _attend(m: Tiny, h: tf.Tensor, bias: tf.Tensor, softmax=tf.nn.softmax) -> tf.Tensor:
    """Multi-head attention with ``softmax`` in place of tf.nn.softmax; returns the O projection."""
    q, k, v = m.qkv(h)
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD) + bias
    ctx = tf.transpose(tf.matmul(softmax(scores), v), [0, 2, 1, 3])
    return m.lin(tf.reshape(ctx, tf.shape(h)), "o")


def _ffn(m: Tiny, h: tf.Tensor, act) -> tf.Tensor:
    return m.norm(h + m.lin(act(m.lin(h, "up")), "down"), 2)


# ====================================================================== the models
# Each takes (Tiny, input_ids, attention_mask) and returns {"logits": ...}.

def softmax_exp_over_sum(m, ids, mask):
    """Attention softmax written exp(s - max) / reduce_sum(exp(s - max)), FFN GELU as x*0.5*(1+erf(x/√2))."""
    def softmax(s):
        e = tf.exp(s - tf.reduce_max(s, axis=-1, keepdims=True))
        return e / tf.reduce_sum(e, axis=-1, keepdims=True)

    h = m.embed(ids)
    h = m.norm(h + _attend(m, h, m.mask_bias(mask), softmax), 1)
    h = _ffn(m, h, lambda x: x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0))))
    return m.classify(h[:, 0])


def softmax_logsumexp_silu(m, ids, mask):
    """Softmax as exp(s - tf.reduce_logsumexp(s)) and a SiLU FFN (x * sigmoid(x), two readers of one value)."""
    h = m.embed(ids)
    h = m.norm(h + _attend(m, h, m.mask_bias(mask), lambda s: tf.exp(s - tf.reduce_logsumexp(s, -1, keepdims=True))), 1)
    return m.classify(_ffn(m, h, tf.nn.silu)[:, 0])


def quick_gelu_relu6_ffn(m, ids, mask):
    """FFN activation quick GELU x * sigmoid(1.702 x), then tf.clip_by_value(.., -6, 6): elementwise, no gelu op."""
    h = m.embed(ids)
    h = m.norm(h + _attend(m, h, m.mask_bias(mask)), 1)
    return m.classify(_ffn(m, h, lambda x: tf.clip_by_value(x * tf.sigmoid(1.702 * x), -6.0, 6.0))[:, 0])


def pre_norm_layer(m, ids, mask):
    """A pre-norm block: x + attn(norm(x)), then x + ffn(norm(x)), then a final norm (GPT-2/ViT order)."""
    h = m.embed(ids)
    h = h + _attend(m, m.norm(h, 1), m.mask_bias(mask))
    h = h + m.lin(tf.nn.gelu(m.lin(m.norm(h, 2), "up")), "down")
    return m.classify(m.norm(h, 0)[:, 0])


def tf_keras_fused_layer_norm(m, ids, mask):
    """Every norm written as tf-keras' LayerNormalization runs it: FusedBatchNormV3 over [1, rows, 32, 1]."""
    def norm(x, i):
        s = tf.shape(x)
        rows = s[0] * s[1]
        y = tf.compat.v1.nn.fused_batch_norm(tf.reshape(x, [1, rows, HIDDEN, 1]), tf.ones([rows]), tf.zeros([rows]),
                                             epsilon=1e-3, data_format="NCHW")[0]
        g, b = m.ln[i]
        return tf.reshape(y, s) * g + b

    m.norm = norm
    return m.classify(m.layer(m.embed(ids), m.mask_bias(mask))[:, 0])


def xla_jit_compile(m, ids, mask):
    """The encoder inside a tf.function(jit_compile=True): a call grappler leaves in place (XLA-marked)."""
    encode = tf.function(lambda i, k: m.layer(m.embed(i), m.mask_bias(k)), jit_compile=True)
    return m.classify(encode(ids, mask)[:, 0])


def segment_max_divide_no_nan_pool(m, ids, mask):
    """Pooling by tf.math.segment_max over flattened rows plus a tf.math.divide_no_nan masked mean."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    keep = tf.cast(mask, tf.float32)[..., None]
    b, s = tf.shape(ids)[0], tf.shape(ids)[1]
    flat = tf.reshape(h * keep - (1.0 - keep) * 1e4, [-1, HIDDEN])
    peak = tf.math.segment_max(flat, tf.repeat(tf.range(b), s))
    mean = tf.math.divide_no_nan(tf.reduce_sum(h * keep, 1), tf.reduce_sum(keep, 1))
    return m.classify(peak + mean)


def lengths_input(m, ids, lengths):
    """Signature (input_ids [None, None], lengths [None]): the mask is tf.sequence_mask(lengths, seq)."""
    mask = tf.sequence_mask(lengths, tf.shape(ids)[1], dtype=tf.int32)
    return m.classify(m.layer(m.embed(ids), m.mask_bias(mask))[:, 0])


def fixed_shape_1x16(m, ids, mask):
    """A signature fixed at [1, 16] (as exported for phones): verification and calibration must use that size."""
    return m.classify(m.layer(m.embed(ids), m.mask_bias(mask))[:, 0])


def tf1_cond_is_training_pb(m, ids, mask):
    """TF1 graph mode: dropout under tf.cond(placeholder_with_default(False)) (Switch/Merge), frozen .pb."""
    training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
    h = tf.compat.v1.cond(training, lambda: tf.nn.dropout(m.embed(ids), rate=0.1), lambda: m.embed(ids))
    return m.classify(m.layer(h, m.mask_bias(mask))[:, 0])


def keras3_causal_mha_keras(m, ids, mask):
    """Keras 3 functional: Embedding x2 (positions from an input), MultiHeadAttention(use_causal_mask=True)
    and a padding mask, GlobalMaxPooling1D; saved as a .keras file (built by ``build_keras``, not from Tiny)."""
    raise NotImplementedError("built by build_keras")


MODELS: dict[str, Callable] = {fn.__name__: fn for fn in (
    softmax_exp_over_sum, softmax_logsumexp_silu, quick_gelu_relu6_ffn, pre_norm_layer, tf_keras_fused_layer_norm,
    xla_jit_compile, segment_max_divide_no_nan_pool, lengths_input, fixed_shape_1x16, tf1_cond_is_training_pb,
    keras3_causal_mha_keras)}

# Signatures other than the default (input_ids, attention_mask: int32 [None, None]).
SIGNATURES = {
    "lengths_input": {"input_ids": [None, None], "lengths": [None]},
    "fixed_shape_1x16": {"input_ids": [1, 16], "attention_mask": [1, 16]},
}


def build_frozen(name: str, out_dir: Path) -> dict:
    """Build one model in TF1 graph mode (control flow v1) and freeze it to ``name``.pb."""
    from tensorflow.python.ops import control_flow_util

    v1 = tf.compat.v1
    was_v2, control_flow_util.ENABLE_CONTROL_FLOW_V2 = control_flow_util.ENABLE_CONTROL_FLOW_V2, False
    try:
        with tf.Graph().as_default() as g:
            ids = v1.placeholder(tf.int32, [None, None], name="input_ids")
            mask = v1.placeholder(tf.int32, [None, None], name="attention_mask")
            tf.identity(MODELS[name](Tiny(), ids, mask)["logits"], name="logits")
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                frozen = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["logits"])
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = was_v2
    path = out_dir / f"{name}.pb"
    path.write_bytes(frozen.SerializeToString())
    return {"name": name, "kind": "graph_form", "path": str(path), "source": f"examples.corpus.graph_forms.{name}",
            "doc": " ".join(MODELS[name].__doc__.split()),
            "inputs": {k: {"dtype": "int32", "shape": [None, None]} for k in ("input_ids", "attention_mask")},
            "outputs": ["logits"], "compile_args": ["--inputs", "input_ids,attention_mask", "--outputs", "logits"]}


def build_keras(name: str, out_dir: Path) -> dict:
    """The Keras 3 model of ``keras3_causal_mha_keras``, saved as ``name``.keras."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(0)
    ids, pos, mask = (keras.Input((None,), dtype="int32", name=n) for n in ("input_ids", "position_ids",
                                                                             "attention_mask"))
    x = layers.LayerNormalization()(layers.Embedding(100, HIDDEN)(ids) + layers.Embedding(128, HIDDEN)(pos))
    keep = ops.cast(mask, "bool")[:, None, :]
    x = layers.LayerNormalization()(x + layers.MultiHeadAttention(2, HEAD)(x, x, attention_mask=keep,
                                                                            use_causal_mask=True))
    x = layers.LayerNormalization()(x + layers.Dense(HIDDEN)(layers.Dense(64, activation="gelu")(x)))
    model = keras.Model([ids, pos, mask], layers.Dense(3)(layers.GlobalMaxPooling1D()(x)))
    path = out_dir / f"{name}.keras"
    model.save(str(path))
    return {"name": name, "kind": "graph_form", "path": str(path), "source": f"examples.corpus.graph_forms.{name}",
            "doc": " ".join(MODELS[name].__doc__.split()),
            "inputs": {k: {"dtype": "int32", "shape": [None, None]} for k in ("input_ids", "position_ids",
                                                                               "attention_mask")},
            "outputs": ["output_0"]}


def build_one(name: str, out_dir: Path) -> dict:
    """Save one model as a SavedModel (a frozen .pb or a .keras file where the name says so); returns its
    manifest entry."""
    if name.endswith("_pb"):
        return build_frozen(name, out_dir)
    if name.endswith("_keras"):
        return build_keras(name, out_dir)
    fn = MODELS[name]
    module = Tiny()
    shapes = SIGNATURES.get(name, {"input_ids": [None, None], "attention_mask": [None, None]})
    spec = [tf.TensorSpec(shape, tf.int32, name=key) for key, shape in shapes.items()]
    module.serve = tf.function(lambda a, b: fn(module, a, b), input_signature=spec)
    path = out_dir / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})
    return {"name": name, "kind": "graph_form", "path": str(path), "source": f"examples.corpus.graph_forms.{name}",
            "doc": " ".join(fn.__doc__.split()),
            "inputs": {k: {"dtype": "int32", "shape": v} for k, v in shapes.items()}, "outputs": ["logits"]}


def build(out_dir: Path, names: list[str] | None = None) -> list[dict]:
    """Build the named models (all by default); a model that fails to build gets a ``build_error``."""
    return build_each(names or list(MODELS), build_one, out_dir, "graph_form")


def main(argv: list[str] | None = None) -> int:
    return builder_main(argv, MODELS, build, "graph-form")


if __name__ == "__main__":
    sys.exit(main())
