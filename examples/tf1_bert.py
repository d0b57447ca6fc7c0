"""A tiny BERT classifier written the way Google's original BERT release wrote it (TF1 graph mode).

The original ``modeling.py`` / ``run_classifier.py`` (google-research/bert,
2018) produce graphs whose *shapes* differ from Keras, keras-hub or Hugging
Face BERTs, and many exported BERTs still come from that code.  This module
rebuilds that graph style with ``tf.compat.v1`` (a ``tf.Graph``, variables from
``tf.compat.v1.get_variable``, a ``Session``), so a compiler can be tested on it
without the original checkpoint:

- every dense layer is a 2-D ``tf.matmul`` + ``bias_add`` on activations
  flattened to ``[batch*seq, hidden]`` (``reshape_to_matrix``); the encoder
  runs entirely on that 2-D layout and is reshaped back to 3-D at the end;
- heads are split by a 4-D reshape ``[batch, seq, heads, head_size]`` +
  transpose ``[0, 2, 1, 3]`` and merged back by the inverse transpose + a 2-D
  reshape ``[batch*seq, heads*head_size]``;
- dynamic dims come from ``get_shape_list``: ``tf.shape(x)[i]`` scalars packed
  into the reshape targets at run time (``batch * seq`` is a multiply of two
  such scalars), static dims stay Python ints;
- token types are embedded with ``tf.one_hot`` + ``tf.matmul`` (the TPU-friendly
  form), positions with ``tf.slice`` of the table; layer norm is
  ``tf.nn.moments`` + ``tf.nn.batch_normalization`` (what
  ``tf.contrib.layers.layer_norm`` emitted); GELU is the tanh approximation of
  the release (``gelu="erf"`` for the exact one);
- the mask becomes ``(1 - mask) * -10000`` added to the scores; the pooler is a
  tanh dense layer on the first token; the classifier is
  ``matmul(pooled, output_weights, transpose_b=True) + output_bias``.

Variable names follow the release (``bert/encoder/layer_0/attention/self/query/kernel``
…), weights are seeded random (or given by ``weights=``, a dict keyed by those
names), and dropout is left out (inference).

    save_saved_model(path, **config)   SavedModel, serving_default:
                                       input_ids, input_mask, segment_ids int32 [None, None] -> {"logits"}
    save_frozen_pb(path, **config)     frozen GraphDef with Placeholders of those names and "logits"
                                       as the only sink; returns (input names, output names)
    initial_weights(**config)          the variables by name, to edit and pass back as weights=
    run_logits(feeds, **config)        the logits in a TF1 session

Config keys (DEFAULT_CONFIG): layers, hidden, heads, intermediate, vocab,
max_positions, type_vocab, labels, seed, gelu ("tanh" or "erf") and init_std
(0.1: larger than BERT's 0.02, so that a tiny model's logits, and what pruning
changes in them, stand well above float round-off).

    python examples/tf1_bert.py OUT_DIR [--pb] [--layers 2 --hidden 64 ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1

DEFAULT_CONFIG: dict[str, Any] = dict(
    layers=2, hidden=64, heads=4, intermediate=128, vocab=100, max_positions=64, type_vocab=2, labels=3,
    seed=0, gelu="tanh", init_std=0.1,
)
INPUT_NAMES = ["input_ids", "input_mask", "segment_ids"]
OUTPUT_NAMES = ["logits"]


def _config(**config) -> dict[str, Any]:
    unknown = set(config) - set(DEFAULT_CONFIG) - {"weights"}
    if unknown:
        raise TypeError(f"unknown config keys {sorted(unknown)}; valid: {sorted(DEFAULT_CONFIG)} and weights")
    cfg = {**DEFAULT_CONFIG, **config}
    if cfg["hidden"] % cfg["heads"]:
        raise ValueError(f"hidden={cfg['hidden']} is not divisible by heads={cfg['heads']}")
    if cfg["gelu"] not in ("tanh", "erf"):
        raise ValueError(f"gelu must be 'tanh' or 'erf', not {cfg['gelu']!r}")
    return cfg


class _Weights:
    """Seeded numpy initial values for ``get_variable`` (or the given ``weights`` by variable name).

    Biases and layer-norm parameters are non-trivial on purpose, so that a
    compiler that drops one gives visibly different outputs.
    """

    def __init__(self, seed: int, std: float, given: dict[str, np.ndarray] | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.std = std
        self.given = given

    def get(self, name: str, shape: list[int], kind: str = "normal") -> tf.Tensor:
        full = f"{v1.get_variable_scope().name}/{name}".lstrip("/")
        if self.given is not None:
            value = np.asarray(self.given[full], dtype=np.float32)
            if value.shape != tuple(shape):
                raise ValueError(f"weight {full!r} has shape {value.shape}, the model needs {tuple(shape)}")
        elif kind == "gamma":
            value = (1.0 + self.rng.normal(0.0, 0.05, size=shape)).astype(np.float32)
        else:
            value = self.rng.normal(0.0, self.std if kind == "normal" else 0.05, size=shape).astype(np.float32)
        return v1.get_variable(name, shape=shape, dtype=tf.float32, initializer=v1.constant_initializer(value))


# ------------------------------------------------------------------ modeling.py's helpers
def get_shape_list(tensor: tf.Tensor) -> list:
    """Static dims as ints, dynamic ones as ``tf.shape(tensor)[i]`` scalars (modeling.get_shape_list)."""
    shape = tensor.shape.as_list()
    dynamic = tf.shape(tensor)
    return [dynamic[i] if d is None else d for i, d in enumerate(shape)]


def reshape_to_matrix(x: tf.Tensor) -> tf.Tensor:
    """[..., width] -> [N, width]: every dense layer of the encoder runs on this 2-D layout."""
    if x.shape.ndims == 2:
        return x
    return tf.reshape(x, [-1, x.shape[-1]])


def reshape_from_matrix(x: tf.Tensor, orig_shape: list) -> tf.Tensor:
    if len(orig_shape) == 2:
        return x
    return tf.reshape(x, orig_shape[0:-1] + [get_shape_list(x)[-1]])


def dense(w: _Weights, x: tf.Tensor, units: int, name: str, activation=None) -> tf.Tensor:
    """tf.layers.dense on a 2-D input: MatMul + BiasAdd (+ activation)."""
    with v1.variable_scope(name):
        kernel = w.get("kernel", [int(x.shape[-1]), units])
        bias = w.get("bias", [units], "small")
        y = tf.nn.bias_add(tf.matmul(x, kernel), bias)
    return activation(y) if activation is not None else y


def layer_norm(w: _Weights, x: tf.Tensor, name: str = "LayerNorm") -> tf.Tensor:
    """tf.contrib.layers.layer_norm over the last axis: moments + batch_normalization, epsilon 1e-12."""
    with v1.variable_scope(name):
        beta = w.get("beta", [int(x.shape[-1])], "small")
        gamma = w.get("gamma", [int(x.shape[-1])], "gamma")
        mean, variance = tf.nn.moments(x, [x.shape.ndims - 1], keepdims=True)
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, variance_epsilon=1e-12)


def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    """modeling.gelu: the tanh approximation."""
    cdf = 0.5 * (1.0 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * tf.pow(x, 3))))
    return x * cdf


def gelu_erf(x: tf.Tensor) -> tf.Tensor:
    return x * 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


# ------------------------------------------------------------------ the model
def embeddings(w: _Weights, cfg: dict, input_ids, segment_ids) -> tf.Tensor:
    """embedding_lookup (gather on flattened ids) + one-hot token types + sliced positions, then layer norm."""
    hidden = cfg["hidden"]
    with v1.variable_scope("embeddings"):
        ids = tf.expand_dims(input_ids, axis=[-1])
        table = w.get("word_embeddings", [cfg["vocab"], hidden])
        output = tf.gather(table, tf.reshape(ids, [-1]))
        input_shape = get_shape_list(ids)
        output = tf.reshape(output, input_shape[0:-1] + [input_shape[-1] * hidden])
        batch, seq, width = get_shape_list(output)
        type_table = w.get("token_type_embeddings", [cfg["type_vocab"], hidden])
        one_hot = tf.one_hot(tf.reshape(segment_ids, [-1]), depth=cfg["type_vocab"])
        output += tf.reshape(tf.matmul(one_hot, type_table), [batch, seq, width])
        positions = w.get("position_embeddings", [cfg["max_positions"], hidden])
        output += tf.reshape(tf.slice(positions, [0, 0], [seq, -1]), [1, seq, width])
        return layer_norm(w, output)


def attention_mask(input_ids, input_mask) -> tf.Tensor:
    """create_attention_mask_from_input_mask: [batch, from_seq, to_seq] of 0/1."""
    batch, from_seq = get_shape_list(input_ids)
    to_seq = get_shape_list(input_mask)[1]
    to_mask = tf.cast(tf.reshape(input_mask, [batch, 1, to_seq]), tf.float32)
    return tf.ones([batch, from_seq, 1], tf.float32) * to_mask


def attention_layer(w: _Weights, cfg: dict, x2d, mask, batch, seq) -> tf.Tensor:
    """Self-attention on the 2-D layout: Q/K/V dense, 4-D head split, scores, 2-D merge."""
    heads, size = cfg["heads"], cfg["hidden"] // cfg["heads"]

    def for_scores(t):
        return tf.transpose(tf.reshape(t, [batch, seq, heads, size]), [0, 2, 1, 3])

    q = for_scores(dense(w, x2d, heads * size, "query"))
    k = for_scores(dense(w, x2d, heads * size, "key"))
    scores = tf.multiply(tf.matmul(q, k, transpose_b=True), 1.0 / math.sqrt(float(size)))
    adder = (1.0 - tf.cast(tf.expand_dims(mask, axis=[1]), tf.float32)) * -10000.0
    probs = tf.nn.softmax(scores + adder)
    v = for_scores(dense(w, x2d, heads * size, "value"))
    context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
    return tf.reshape(context, [batch * seq, heads * size])


def encoder_layer(w: _Weights, cfg: dict, x2d, mask, batch, seq) -> tf.Tensor:
    act = gelu_tanh if cfg["gelu"] == "tanh" else gelu_erf
    with v1.variable_scope("attention"):
        with v1.variable_scope("self"):
            heads_out = attention_layer(w, cfg, x2d, mask, batch, seq)
        with v1.variable_scope("output"):
            attention_out = layer_norm(w, dense(w, heads_out, cfg["hidden"], "dense") + x2d)
    with v1.variable_scope("intermediate"):
        inner = dense(w, attention_out, cfg["intermediate"], "dense", activation=act)
    with v1.variable_scope("output"):
        return layer_norm(w, dense(w, inner, cfg["hidden"], "dense") + attention_out)


def classifier_logits(w: _Weights, cfg: dict, input_ids, input_mask, segment_ids) -> tf.Tensor:
    """BertModel (embeddings, transformer_model, pooler) + run_classifier's output layer."""
    with v1.variable_scope("bert"):
        emb = embeddings(w, cfg, input_ids, segment_ids)
        with v1.variable_scope("encoder"):
            mask = attention_mask(input_ids, input_mask)
            input_shape = get_shape_list(emb)
            batch, seq = input_shape[0], input_shape[1]
            x = reshape_to_matrix(emb)
            for i in range(cfg["layers"]):
                with v1.variable_scope(f"layer_{i}"):
                    x = encoder_layer(w, cfg, x, mask, batch, seq)
            sequence_output = reshape_from_matrix(x, input_shape)
        with v1.variable_scope("pooler"):
            first = tf.squeeze(sequence_output[:, 0:1, :], axis=1)
            pooled = dense(w, first, cfg["hidden"], "dense", activation=tf.tanh)
    out_w = w.get("output_weights", [cfg["labels"], cfg["hidden"]])
    out_b = w.get("output_bias", [cfg["labels"]], "small")
    return tf.identity(tf.nn.bias_add(tf.matmul(pooled, out_w, transpose_b=True), out_b), name="logits")


def _build(cfg: dict) -> tuple[tf.Graph, v1.Session, dict[str, tf.Tensor], tf.Tensor]:
    """The graph with its three int32 [None, None] placeholders, in a session with variables initialised."""
    graph = tf.Graph()
    with graph.as_default():
        inputs = {n: v1.placeholder(tf.int32, [None, None], name=n) for n in INPUT_NAMES}
        w = _Weights(cfg["seed"], cfg["init_std"], cfg.get("weights"))
        logits = classifier_logits(w, cfg, inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"])
        sess = v1.Session(graph=graph)
        sess.run(v1.global_variables_initializer())
    return graph, sess, inputs, logits


def save_saved_model(path, **config) -> str:
    """A TF1 SavedModel whose serving_default maps input_ids, input_mask, segment_ids to {"logits"}."""
    cfg = _config(**config)
    graph, sess, inputs, logits = _build(cfg)
    with graph.as_default(), sess:
        builder = v1.saved_model.Builder(str(path))
        sig = v1.saved_model.predict_signature_def(inputs=inputs, outputs={"logits": logits})
        builder.add_meta_graph_and_variables(sess, [v1.saved_model.tag_constants.SERVING],
                                             signature_def_map={"serving_default": sig})
        builder.save()
    return str(path)


def save_frozen_pb(path, **config) -> tuple[list[str], list[str]]:
    """A frozen GraphDef (variables folded into Const nodes) with "logits" as its only sink.

    Returns the input and output node names, for ``--inputs``/``--outputs``.
    """
    cfg = _config(**config)
    graph, sess, _, _ = _build(cfg)
    with graph.as_default(), sess:
        frozen = v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), OUTPUT_NAMES)
    frozen = v1.graph_util.extract_sub_graph(frozen, OUTPUT_NAMES)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(frozen.SerializeToString())
    return list(INPUT_NAMES), list(OUTPUT_NAMES)


def initial_weights(**config) -> dict[str, np.ndarray]:
    """Every variable of the model by name (``bert/encoder/layer_0/attention/output/dense/kernel`` …)."""
    graph, sess, _, _ = _build(_config(**config))
    with graph.as_default(), sess:
        return {v.op.name: value for v, value in zip(v1.global_variables(), sess.run(v1.global_variables()))}


def run_logits(feeds: dict[str, np.ndarray], **config) -> np.ndarray:
    """The model's logits in a TF1 session (the reference the compiled artifacts are checked against)."""
    graph, sess, inputs, logits = _build(_config(**config))
    with graph.as_default(), sess:
        return sess.run(logits, {inputs[n]: np.asarray(feeds[n], np.int32) for n in INPUT_NAMES})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="SavedModel directory, or the .pb file with --pb")
    ap.add_argument("--pb", action="store_true", help="write a frozen GraphDef instead of a SavedModel")
    for key, default in DEFAULT_CONFIG.items():
        ap.add_argument(f"--{key.replace('_', '-')}", type=type(default), default=default)
    args = vars(ap.parse_args(argv))
    out, pb = args.pop("out"), args.pop("pb")
    if pb:
        print(save_frozen_pb(out, **args))
    else:
        print(save_saved_model(out, **args))


if __name__ == "__main__":
    main()
