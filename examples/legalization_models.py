"""Four tiny BERT-family models that the stock converters stumble on (issue 4).

Each is a 2-layer, hidden-64 encoder classifier in plain TensorFlow, built from
the pieces of ``examples/bert_tf.py`` (Dense, LayerNorm, the seeded
initialiser), with the same serving signature: ``input_ids``,
``attention_mask`` and ``token_type_ids``, int32 ``[batch, seq]`` with both
dims dynamic, returning ``{"logits": [batch, labels]}``.

    cumprod_prefix_lm  a prefix-LM attention mask built with tf.math.cumprod along
                       the sequence (forward and reverse); exact GELU (tf.nn.gelu,
                       which TF 2.21 writes with Erfc)
    scatter_ids        token-type ids fixed up with tf.tensor_scatter_nd_update and
                       position ids written with tf.scatter_nd (int64 indices), and
                       a learned [CLS] bias added with tf.tensor_scatter_nd_add
    roberta_cumsum     RoBERTa-style position ids: cumsum of the padding mask
    einsum_attention   projections and attention written with tf.einsum (as Keras'
                       MultiHeadAttention writes them)

``workarounds=True`` builds the same model (same weights, same outputs) the way
users rewrite BERT code by hand to get it through the stock converters: GELU
as 0.5·x·(1 + erf(x/√2)) instead of tf.nn.gelu (whose Erfc tf2onnx cannot
express), and tf.expand_dims instead of ``x[:, tf.newaxis, …]`` (a StridedSlice
with new_axis_mask that the TFLite converter leaves to Flex).  What is then left
to fail is the op each model is about.

    python examples/legalization_models.py OUT_DIR [--model NAME]   # one SavedModel per model

or from Python: ``save_model("cumprod_prefix_lm", "/tmp/m")``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.bert_tf import MASK_VALUE, BertConfig, Dense, LayerNorm, _Init  # noqa: E402

MODELS = ("cumprod_prefix_lm", "scatter_ids", "roberta_cumsum", "einsum_attention")
CONFIG = BertConfig(layers=2, hidden=64, heads=4, ffn=128, vocab=100, max_positions=64)
PAD_ID = 0  # the id tokenizers write at padded positions (RoBERTa's padding_idx)
_ALL = slice(None)


class EinsumDense(tf.Module):
    """y = einsum(equation, x, kernel) + bias, as Keras' EinsumDense writes a projection."""

    def __init__(self, init: _Init, equation: str, kernel_shape, bias_shape, name: str):
        super().__init__(name=name)
        self.equation = equation
        with self.name_scope:
            self.kernel = init.normal(kernel_shape, "kernel")
            self.bias = init.normal(bias_shape, "bias")

    @tf.Module.with_name_scope
    def __call__(self, x):
        return tf.einsum(self.equation, x, self.kernel) + self.bias


class Layer(tf.Module):
    """A post-norm encoder layer; attention written with matmul or with einsum."""

    def __init__(self, init: _Init, config: BertConfig, einsum: bool, name: str, workarounds: bool = False):
        super().__init__(name=name)
        h, n = config.hidden, config.heads
        self.heads, self.head_dim, self.einsum, self.workarounds = n, h // n, einsum, workarounds
        d = self.head_dim
        with self.name_scope:
            if einsum:
                self.query = EinsumDense(init, "bsh,hnd->bsnd", (h, n, d), (n, d), "query")
                self.key = EinsumDense(init, "bsh,hnd->bsnd", (h, n, d), (n, d), "key")
                self.value = EinsumDense(init, "bsh,hnd->bsnd", (h, n, d), (n, d), "value")
                self.attention_output = EinsumDense(init, "bsnd,ndh->bsh", (n, d, h), (h,), "attention_output")
            else:
                self.query = Dense(init, h, h, "query")
                self.key = Dense(init, h, h, "key")
                self.value = Dense(init, h, h, "value")
                self.attention_output = Dense(init, h, h, "attention_output")
            self.attention_norm = LayerNorm(init, h, "attention_norm")
            self.intermediate = Dense(init, h, config.ffn, "intermediate")
            self.output = Dense(init, config.ffn, h, "output")
            self.output_norm = LayerNorm(init, h, "output_norm")

    def _attention(self, x, mask_bias):
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.einsum:  # [batch, seq, heads, head_dim] throughout
            q, k, v = self.query(x), self.key(x), self.value(x)
            scores = tf.einsum("bqnd,bknd->bnqk", q, k) * scale
            probs = tf.nn.softmax(scores + mask_bias, axis=-1)
            return self.attention_output(tf.einsum("bnqk,bknd->bqnd", probs, v))
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]

        def split(t):
            return tf.transpose(tf.reshape(t, [batch, seq, self.heads, self.head_dim]), [0, 2, 1, 3])

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale + mask_bias, axis=-1)
        context = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [batch, seq, -1])
        return self.attention_output(context)

    @tf.Module.with_name_scope
    def __call__(self, x, mask_bias):
        x = self.attention_norm(x + self._attention(x, mask_bias))
        h = self.intermediate(x)
        if self.workarounds:  # the same exact GELU, spelled with Erf instead of TF 2.21's Erfc
            h = 0.5 * h * (1.0 + tf.math.erf(h * (1.0 / math.sqrt(2.0))))
        else:
            h = tf.nn.gelu(h, approximate=False)
        return self.output_norm(x + self.output(h))


class LegalizationBert(tf.Module):
    """One of MODELS: a BERT classifier whose ids, mask or attention need legalization."""

    def __init__(self, kind: str, config: BertConfig = CONFIG, ids_dtype=tf.int32, workarounds: bool = False):
        if kind not in MODELS:
            raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")
        super().__init__(name=kind)
        self.kind, self.config, self.workarounds = kind, config, workarounds
        init = _Init(config.seed)
        h = config.hidden
        with self.name_scope:
            self.word_embeddings = init.normal((config.vocab, h), "word_embeddings")
            self.position_embeddings = init.normal((config.max_positions, h), "position_embeddings")
            self.token_type_embeddings = init.normal((config.type_vocab, h), "token_type_embeddings")
            self.cls_bias = init.normal((h,), "cls_bias", std=0.5)
            self.embedding_norm = LayerNorm(init, h, "embedding_norm")
            self.encoder = [Layer(init, config, kind == "einsum_attention", f"layer_{i}", workarounds)
                            for i in range(config.layers)]
            self.pooler = Dense(init, h, h, "pooler")
            self.classifier = Dense(init, h, config.labels, "classifier")
        spec = lambda name: tf.TensorSpec([None, None], ids_dtype, name=name)  # noqa: E731
        self.serve = tf.function(self._serve, input_signature=[
            spec("input_ids"), spec("attention_mask"), spec("token_type_ids")])

    # ------------------------------------------------------------ ids
    def _ids(self, input_ids, attention_mask, token_type_ids):
        """(position ids, token-type ids, embedding fix-up or None) for this model kind."""
        batch, seq = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        if self.kind == "roberta_cumsum":
            # fairseq/HF create_position_ids_from_input_ids: padding keeps padding_idx.
            real = tf.cast(tf.not_equal(input_ids, PAD_ID), tf.int32)
            return tf.cumsum(real, axis=1) * real + PAD_ID, token_type_ids, None
        if self.kind == "scatter_ids":
            rows = tf.range(batch, dtype=tf.int64)
            cls = tf.stack([rows, tf.zeros_like(rows)], axis=1)  # [batch, 2] int64: each row's [CLS]
            types = tf.tensor_scatter_nd_update(token_type_ids, cls, tf.zeros([batch], token_type_ids.dtype))
            where = tf.range(seq, dtype=tf.int64)[:, tf.newaxis]
            positions = tf.scatter_nd(where, tf.range(seq), tf.shape(input_ids, out_type=tf.int64)[1:2])
            return positions[tf.newaxis], types, cls
        return tf.range(seq)[tf.newaxis], token_type_ids, None

    def _mask_bias(self, attention_mask, token_type_ids):
        mask = tf.cast(attention_mask, tf.float32)
        if self.kind != "cumprod_prefix_lm":
            return (1.0 - self._new_axes(mask, (_ALL, tf.newaxis, tf.newaxis, _ALL), [1, 1])) * MASK_VALUE
        # Prefix-LM: the leading run of segment-0 tokens is seen by every query;
        # the rest is causal.  Keys are real tokens: not in the trailing padding.
        seg0 = mask * (1.0 - tf.cast(token_type_ids, tf.float32))
        prefix = tf.math.cumprod(seg0, axis=1)  # 1 until the first non-prefix token
        trailing_pad = tf.math.cumprod(1.0 - mask, axis=1, reverse=True)
        pos = tf.range(tf.shape(mask)[1])
        causal = tf.cast(pos[:, tf.newaxis] >= pos[tf.newaxis, :], tf.float32)  # [q, k]
        keys = self._new_axes(1.0 - trailing_pad, (_ALL, tf.newaxis, _ALL), [1])
        allowed = tf.maximum(self._new_axes(prefix, (_ALL, tf.newaxis, _ALL), [1]), causal[tf.newaxis]) * keys
        return (1.0 - self._new_axes(allowed, (_ALL, tf.newaxis), [1])) * MASK_VALUE  # [batch, 1, q, k]

    def _new_axes(self, x, index: tuple, axes: list[int]):
        """``x[index]`` with tf.newaxis, as BERT code writes it; with workarounds, tf.expand_dims."""
        if not self.workarounds:
            return x[index]
        for axis in axes:
            x = tf.expand_dims(x, axis)
        return x

    def logits(self, input_ids, attention_mask, token_type_ids):
        positions, types, cls = self._ids(input_ids, attention_mask, token_type_ids)
        x = (tf.gather(self.word_embeddings, input_ids) + tf.gather(self.position_embeddings, positions)
             + tf.gather(self.token_type_embeddings, types))
        if cls is not None:  # a learned bias on each row's [CLS] embedding
            x = tf.tensor_scatter_nd_add(x, cls, tf.tile(self.cls_bias[tf.newaxis], [tf.shape(x)[0], 1]))
        x = self.embedding_norm(x)
        mask_bias = self._mask_bias(attention_mask, token_type_ids)
        for layer in self.encoder:
            x = layer(x, mask_bias)
        return self.classifier(tf.tanh(self.pooler(x[:, 0, :])))

    def _serve(self, input_ids, attention_mask, token_type_ids):
        return {"logits": self.logits(input_ids, attention_mask, token_type_ids)}


def build_model(kind: str, config: BertConfig = CONFIG, workarounds: bool = False) -> LegalizationBert:
    return LegalizationBert(kind, config, workarounds=workarounds)


def save_model(kind: str, path: str, config: BertConfig = CONFIG, workarounds: bool = False) -> str:
    """Build model ``kind`` and save it as a SavedModel at ``path``; returns ``path``."""
    model = build_model(kind, config, workarounds)
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve.get_concrete_function()})
    return str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Save the issue-4 legalization test models.")
    parser.add_argument("out_dir")
    parser.add_argument("--model", choices=MODELS, action="append", help="default: all four")
    parser.add_argument("--workarounds", action="store_true", help="the hand-patched variants (see above)")
    args = parser.parse_args(argv)
    for kind in args.model or MODELS:
        path = save_model(kind, os.path.join(args.out_dir, kind), workarounds=args.workarounds)
        print(f"saved {kind} to {path}")


if __name__ == "__main__":
    main()
