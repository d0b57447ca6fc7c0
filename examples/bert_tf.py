"""A small, config-driven BERT sequence classifier written in plain TensorFlow.

This builds a randomly initialised BERT classifier from raw TensorFlow ops
(``tf.Module`` + ``tf.function``; no Keras, keras-hub or Hugging Face) and
saves it as a SavedModel whose ``serving_default`` signature has DYNAMIC batch
and sequence length:

    inputs : input_ids, attention_mask, token_type_ids   int32 [None, None]
    output : {"logits": float32 [batch, labels]}

The architecture is standard BERT: word + position + token-type embeddings,
layer norm, N post-norm encoder layers (multi-head self-attention with an
additive padding mask, GELU feed-forward), a tanh pooler on the [CLS] token
and a dense classifier.  Weights come from numpy with a fixed seed, so the
same config always gives the same model -- or, with ``weights=``, from a dict
of numpy arrays keyed by variable path (``"bert_classifier/layer_0/query/kernel"``,
kernels laid out (in, out) for ``x @ kernel``); examples/minilm.py loads a
pretrained checkpoint this way.

Run it (defaults build a tiny 2-layer model in well under a second):

    python examples/bert_tf.py OUT_DIR
    python examples/bert_tf.py OUT_DIR --layers 12 --hidden 768 --heads 12 \\
        --ffn 3072 --vocab 30522 --max-positions 512     # BERT-base sized

or from Python:

    from examples.bert_tf import BertConfig, save_bert
    save_bert(BertConfig(layers=2, gelu="tanh"), "/tmp/bert_sm")
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

LAYER_NORM_EPS = 1e-12
INIT_STD = 0.02  # BERT's initializer_range
MASK_VALUE = -10000.0  # added to attention scores of padding positions


@dataclass(frozen=True)
class BertConfig:
    layers: int = 2  # number of encoder layers
    hidden: int = 64  # hidden size
    heads: int = 4  # attention heads (hidden must be divisible by heads)
    ffn: int = 128  # feed-forward (intermediate) size
    vocab: int = 100  # word-piece vocabulary size
    labels: int = 3  # number of classifier outputs
    max_positions: int = 64  # longest supported sequence
    type_vocab: int = 2  # number of token types (segments)
    seed: int = 0  # numpy seed for the random weights
    gelu: str = "erf"  # "erf" (exact GELU) or "tanh" (approximation)
    hidden_output: bool = False  # also return the last layer's hidden states ("last_hidden_state")
    # How new axes are added: "newaxis" (x[:, tf.newaxis], a StridedSlice the TFLite converter leaves
    # to Flex) or "expand_dims" (tf.expand_dims, a builtin it converts).  Same numbers either way.
    new_axes: str = "newaxis"

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.gelu not in ("erf", "tanh"):
            raise ValueError(f"gelu must be 'erf' or 'tanh', not {self.gelu!r}")
        if self.new_axes not in ("newaxis", "expand_dims"):
            raise ValueError(f"new_axes must be 'newaxis' or 'expand_dims', not {self.new_axes!r}")


class _Init:
    """Deterministic numpy initialiser: every call draws the next weights.

    With ``weights``, every variable is instead taken from that dict under its
    full path (the enclosing module scopes plus its name, as in
    ``"bert_classifier/layer_0/query/kernel"``); a missing key or a wrong
    shape is an error, and ``unused()`` lists keys no variable asked for.
    """

    def __init__(self, seed: int, weights: dict[str, np.ndarray] | None = None):
        self.rng = np.random.default_rng(seed)
        self.weights = weights
        self.used: set[str] = set()

    def normal(self, shape, name, std=INIT_STD):
        if self.weights is not None:
            return self._given(shape, name)
        value = self.rng.normal(0.0, std, size=shape).astype(np.float32)
        return tf.Variable(value, name=name)

    def ones_ish(self, shape, name):
        if self.weights is not None:
            return self._given(shape, name)
        # Layer-norm gamma: 1 plus a small perturbation, so that a compiler
        # that silently drops gamma produces visibly different outputs.
        value = (1.0 + self.rng.normal(0.0, 0.05, size=shape)).astype(np.float32)
        return tf.Variable(value, name=name)

    def _given(self, shape, name):
        key = f"{tf.get_current_name_scope()}/{name}"
        if key not in self.weights:
            raise KeyError(f"no weight {key!r} of shape {tuple(shape)} in the given weights")
        value = np.asarray(self.weights[key], dtype=np.float32)
        if value.shape != tuple(shape):
            raise ValueError(f"weight {key!r} has shape {value.shape}, the model needs {tuple(shape)}")
        self.used.add(key)
        return tf.Variable(value, name=name)

    def unused(self) -> list[str]:
        return sorted(set(self.weights or ()) - self.used)


class Dense(tf.Module):
    """y = x @ kernel + bias, for inputs of any rank >= 2."""

    def __init__(self, init: _Init, n_in: int, n_out: int, name: str):
        super().__init__(name=name)
        with self.name_scope:  # variables are named by their module path: "encoder/layer_0/query/kernel"
            self.kernel = init.normal((n_in, n_out), "kernel")
            self.bias = init.normal((n_out,), "bias")  # non-zero on purpose

    @tf.Module.with_name_scope  # ops are named by module path too: "layer_0/query/MatMul"
    def __call__(self, x):
        # tf.matmul broadcasts the rank-2 kernel over leading (batch) dims.
        return tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias)


class LayerNorm(tf.Module):
    """Layer normalisation over the last axis, written with tf.nn.moments."""

    def __init__(self, init: _Init, size: int, name: str):
        super().__init__(name=name)
        with self.name_scope:
            self.gamma = init.ones_ish((size,), "gamma")
            self.beta = init.normal((size,), "beta", std=0.05)

    @tf.Module.with_name_scope
    def __call__(self, x):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        normed = (x - mean) * tf.math.rsqrt(variance + LAYER_NORM_EPS)
        return normed * self.gamma + self.beta


def gelu(x, kind: str):
    if kind == "erf":  # exact: 0.5 x (1 + erf(x / sqrt 2))
        return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))
    # tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3))
    return 0.5 * x * (1.0 + tf.tanh(inner))


class EncoderLayer(tf.Module):
    """One post-norm transformer encoder layer (as in the original BERT)."""

    def __init__(self, init: _Init, config: BertConfig, name: str):
        super().__init__(name=name)
        h = config.hidden
        self.heads, self.head_dim, self.gelu = config.heads, h // config.heads, config.gelu
        with self.name_scope:
            self.query = Dense(init, h, h, "query")
            self.key = Dense(init, h, h, "key")
            self.value = Dense(init, h, h, "value")
            self.attention_output = Dense(init, h, h, "attention_output")
            self.attention_norm = LayerNorm(init, h, "attention_norm")
            self.intermediate = Dense(init, h, config.ffn, "intermediate")
            self.output = Dense(init, config.ffn, h, "output")
            self.output_norm = LayerNorm(init, h, "output_norm")

    def _split_heads(self, x, batch, seq):
        # [batch, seq, hidden] -> [batch, heads, seq, head_dim]
        x = tf.reshape(x, [batch, seq, self.heads, self.head_dim])
        return tf.transpose(x, [0, 2, 1, 3])

    @tf.Module.with_name_scope
    def __call__(self, x, mask_bias):
        batch, seq = tf.shape(x)[0], tf.shape(x)[1]
        q = self._split_heads(self.query(x), batch, seq)
        k = self._split_heads(self.key(x), batch, seq)
        v = self._split_heads(self.value(x), batch, seq)

        # Scaled dot-product attention with the additive padding mask.
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(self.head_dim))
        probs = tf.nn.softmax(scores + mask_bias, axis=-1)
        context = tf.matmul(probs, v)  # [batch, heads, seq, head_dim]
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, seq, -1])

        x = self.attention_norm(x + self.attention_output(context))
        ffn = self.output(gelu(self.intermediate(x), self.gelu))
        return self.output_norm(x + ffn)


class BertClassifier(tf.Module):
    def __init__(self, config: BertConfig, ids_dtype=tf.int32, weights: dict[str, np.ndarray] | None = None):
        super().__init__(name="bert_classifier")
        self.config = config
        init = _Init(config.seed, weights)
        h = config.hidden
        with self.name_scope:
            self.word_embeddings = init.normal((config.vocab, h), "word_embeddings")
            self.position_embeddings = init.normal((config.max_positions, h), "position_embeddings")
            self.token_type_embeddings = init.normal((config.type_vocab, h), "token_type_embeddings")
            self.embedding_norm = LayerNorm(init, h, "embedding_norm")
            self.encoder = [EncoderLayer(init, config, f"layer_{i}") for i in range(config.layers)]
            self.pooler = Dense(init, h, h, "pooler")
            self.classifier = Dense(init, h, config.labels, "classifier")
        if init.unused():
            raise ValueError(f"weights the model has no variable for: {init.unused()}")

        # The serving function: all three inputs are [batch, seq] with both
        # dimensions unknown, so one SavedModel serves any batch/length.
        spec = lambda name: tf.TensorSpec([None, None], ids_dtype, name=name)  # noqa: E731
        self.serve = tf.function(
            self._serve,
            input_signature=[spec("input_ids"), spec("attention_mask"), spec("token_type_ids")],
        )

    def logits(self, input_ids, attention_mask, token_type_ids):
        return self.classify(self.encode(input_ids, attention_mask, token_type_ids))

    def classify(self, x):
        pooled = tf.tanh(self.pooler(x[:, 0, :]))  # [CLS] token
        return self.classifier(pooled)

    def encode(self, input_ids, attention_mask, token_type_ids):
        """The last layer's hidden states, [batch, seq, hidden]."""
        seq = tf.shape(input_ids)[1]

        # Embeddings: word + position (first `seq` rows) + token type.
        positions = tf.slice(self.position_embeddings, [0, 0], [seq, -1])
        expand = self.config.new_axes == "expand_dims"
        x = (
            tf.gather(self.word_embeddings, input_ids)
            + (tf.expand_dims(positions, 0) if expand else positions[tf.newaxis])
            + tf.gather(self.token_type_embeddings, token_type_ids)
        )
        x = self.embedding_norm(x)

        # attention_mask is 1 for real tokens and 0 for padding; turn it into
        # a [batch, 1, 1, seq] bias broadcast over heads and query positions.
        mask = tf.cast(attention_mask, tf.float32)
        mask = tf.expand_dims(tf.expand_dims(mask, 1), 1) if expand else mask[:, tf.newaxis, tf.newaxis, :]
        mask_bias = (1.0 - mask) * MASK_VALUE

        for layer in self.encoder:
            x = layer(x, mask_bias)
        return x

    def _serve(self, input_ids, attention_mask, token_type_ids):
        x = self.encode(input_ids, attention_mask, token_type_ids)
        outputs = {"logits": self.classify(x)}
        if self.config.hidden_output:
            outputs["last_hidden_state"] = x
        return outputs


def build_bert(config: BertConfig = BertConfig(), ids_dtype=tf.int32,
               weights: dict[str, np.ndarray] | None = None) -> BertClassifier:
    """Build a BERT classifier (a tf.Module): random, or from `weights` (see _Init)."""
    return BertClassifier(config, ids_dtype=ids_dtype, weights=weights)


def save_bert(config: BertConfig = BertConfig(), path: str = "bert_sm", ids_dtype=tf.int32,
              weights: dict[str, np.ndarray] | None = None) -> str:
    """Build the model and save it as a SavedModel at `path`; returns `path`.

    `ids_dtype` (tf.int32 or tf.int64) is the dtype of all three inputs;
    `weights` (optional) replaces the random initialisation, see _Init.
    """
    ids_dtype = tf.as_dtype(ids_dtype)
    if ids_dtype not in (tf.int32, tf.int64):
        raise ValueError(f"ids_dtype must be int32 or int64, not {ids_dtype.name}")
    model = build_bert(config, ids_dtype=ids_dtype, weights=weights)
    signature = model.serve.get_concrete_function()
    tf.saved_model.save(model, str(path), signatures={"serving_default": signature})
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Save a random plain-TF BERT classifier.")
    parser.add_argument("out_dir", help="where to write the SavedModel")
    for field in dataclasses.fields(BertConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "gelu":
            parser.add_argument(flag, default=field.default, choices=["erf", "tanh"])
        elif field.name == "new_axes":
            parser.add_argument(flag, default=field.default, choices=["newaxis", "expand_dims"])
        else:
            parser.add_argument(flag, type=int, default=field.default)
    parser.add_argument("--ids-dtype", default="int32", choices=["int32", "int64"])
    args = parser.parse_args(argv)

    config = BertConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BertConfig)})
    path = save_bert(config, args.out_dir, ids_dtype=getattr(tf, args.ids_dtype))

    # Quick smoke test of the saved signature.
    serve = tf.saved_model.load(path).signatures["serving_default"]
    dtype = getattr(tf, args.ids_dtype)
    ids = tf.constant([[1, 5, 7, 2]], dtype) % config.vocab
    out = serve(input_ids=ids, attention_mask=tf.ones_like(ids), token_type_ids=tf.zeros_like(ids))
    print(f"saved {config} to {path}; logits for a 4-token input: {out['logits'].numpy()}")


if __name__ == "__main__":
    main()
