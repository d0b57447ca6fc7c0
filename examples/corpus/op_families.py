"""Small plain-TF classifiers, each exercising one family of TF ops, each family more than one way.

Every model is a one-layer BERT-like classifier (hidden 32, 2 heads, FFN 64,
vocabulary 100, 128 positions) with seeded random weights, written with
``tf.Module`` + ``tf.function`` and no Keras.  The serving signature is

    inputs : input_ids, attention_mask   int32 [None, None]
    output : {"logits": float32 [batch, 3]}

``Tiny`` holds the standard pieces (embeddings, one encoder layer, [CLS]
pooling, classifier); each model function in ``MODELS`` replaces one piece
with the op family it is about, spelled the way some real model spells it.
Its docstring says what it exercises.  ``while_loop_refusal`` is the one model
that cannot be supported (a loop whose trip count depends on the data): bertc
must refuse it with one clear message, which ``EXPECT_REFUSAL`` holds.

    python -m examples.corpus.op_families OUT_DIR [--only where_3arg_mask]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from examples.corpus import build_each, builder_main

HIDDEN, HEADS, FFN, VOCAB, POSITIONS, LABELS = 32, 2, 64, 100, 128, 3  # positions: room for seq + offsets
HEAD = HIDDEN // HEADS
NEG = -10000.0
EXPECT_REFUSAL = {"while_loop_refusal": "control flow"}


class Tiny(tf.Module):
    """Seeded weights plus the standard BERT pieces the model functions reuse."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(name="tiny")
        rng = np.random.default_rng(seed)

        def var(name: str, *shape: int, std: float = 0.2, mean: float = 0.0) -> tf.Variable:
            return tf.Variable(rng.normal(mean, std, shape).astype(np.float32), name=name)

        self.word = var("word", VOCAB, HIDDEN)
        self.pos = var("pos", POSITIONS, HIDDEN)
        self.rel = var("rel_bias", 32, HEADS)
        self.ln = [(var(f"ln{i}_g", HIDDEN, std=0.05, mean=1.0), var(f"ln{i}_b", HIDDEN, std=0.05))
                   for i in range(3)]
        names = ("q", "k", "v", "o", "up", "down", "cls")
        dims = ((HIDDEN, HIDDEN),) * 4 + ((HIDDEN, FFN), (FFN, HIDDEN), (HIDDEN, LABELS))
        self.dense = {n: (var(n + "_w", *d), var(n + "_b", d[1], std=0.05)) for n, d in zip(names, dims)}

    # ------------------------------------------------------------------ pieces
    def lin(self, x: tf.Tensor, name: str) -> tf.Tensor:
        w, b = self.dense[name]
        return tf.matmul(x, w) + b

    def norm(self, x: tf.Tensor, i: int) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        g, b = self.ln[i]
        return (x - mean) * tf.math.rsqrt(var + 1e-12) * g + b

    def embed(self, ids: tf.Tensor, positions: tf.Tensor | None = None) -> tf.Tensor:
        """Word + position embeddings (positions 0..seq-1 unless given), layer-normed."""
        if positions is None:
            positions = tf.range(tf.shape(ids)[1])[tf.newaxis, :]
        return self.norm(tf.gather(self.word, ids) + tf.gather(self.pos, positions), 0)

    @staticmethod
    def mask_bias(mask: tf.Tensor) -> tf.Tensor:
        """The additive padding mask [batch, 1, 1, seq] that BERT adds to the scores."""
        return (1.0 - tf.cast(mask, tf.float32))[:, tf.newaxis, tf.newaxis, :] * NEG

    @staticmethod
    def heads(x: tf.Tensor) -> tf.Tensor:
        b, s = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, [b, s, HEADS, HEAD]), [0, 2, 1, 3])

    def qkv(self, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return tuple(self.heads(self.lin(h, n)) for n in "qkv")

    def layer(self, h: tf.Tensor, bias: tf.Tensor, qkv=None) -> tf.Tensor:
        """One post-norm encoder layer; ``qkv`` replaces the three projections when given."""
        q, k, v = (qkv or self.qkv)(h)
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD) + bias
        ctx = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        b, s = tf.shape(h)[0], tf.shape(h)[1]
        ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, s, HIDDEN])
        return self.ffn(self.norm(h + self.lin(ctx, "o"), 1))

    def ffn(self, h: tf.Tensor) -> tf.Tensor:
        """The feed-forward block with its residual and layer norm."""
        return self.norm(h + self.lin(tf.nn.gelu(self.lin(h, "up"), approximate=True), "down"), 2)

    def classify(self, pooled: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.lin(tf.tanh(pooled), "cls")}

    def fused_qkv_weights(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The three projections as one [hidden, 3*hidden] kernel, as fused-QKV models store them."""
        return (tf.concat([self.dense[n][0] for n in "qkv"], axis=1),
                tf.concat([self.dense[n][1] for n in "qkv"], axis=0))


def _valid_lengths(mask: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


# ====================================================================== the models
# Each takes (Tiny, input_ids, attention_mask) and returns {"logits": ...}.

def where_3arg_mask(m, ids, mask):
    """tf.where(cond, x, y) (3-arg, SelectV2) builds the additive mask from a boolean padding test."""
    bias = tf.where(mask[:, None, None, :] > 0, tf.zeros([], tf.float32), tf.fill([], NEG))
    return m.classify(m.layer(m.embed(ids), bias)[:, 0])


def where_3arg_scores(m, ids, mask):
    """tf.where on the scores themselves: padded keys get -inf-like logits before the softmax."""
    keep = tf.cast(mask, tf.bool)[:, None, None, :]
    h = m.embed(ids)
    q, k, v = m.qkv(h)
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD)
    scores = tf.where(keep, scores, tf.ones_like(scores) * NEG)
    ctx = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(scores), v), [0, 2, 1, 3]), tf.shape(h))
    return m.classify(m.ffn(m.norm(h + m.lin(ctx, "o"), 1))[:, 0])


def where_1arg_positions(m, ids, mask):
    """tf.where(mask) (1-arg, Where: data-dependent row count) + tf.scatter_nd writes position ids."""
    idx = tf.where(mask > 0)  # int64 [n, 2]
    pos = tf.scatter_nd(idx, tf.cast(idx[:, 1], tf.int32) + 2, tf.shape(ids, out_type=tf.int64))
    return m.classify(m.layer(m.embed(ids, pos), m.mask_bias(mask))[:, 0])


def tensor_scatter_update_mask(m, ids, mask):
    """tf.tensor_scatter_nd_update at the indices tf.where(mask) gives: zeros into a NEG-filled bias."""
    idx = tf.where(tf.cast(mask, tf.bool))
    full = tf.fill(tf.shape(ids), NEG)
    bias = tf.tensor_scatter_nd_update(full, idx, tf.zeros(tf.shape(idx)[:1], tf.float32))
    return m.classify(m.layer(m.embed(ids), bias[:, None, None, :])[:, 0])


def tensor_scatter_add_cls(m, ids, mask):
    """tf.tensor_scatter_nd_add at computed [b, 0] indices: a learned bias on each [CLS] row."""
    b = tf.shape(ids)[0]
    idx = tf.stack([tf.range(b), tf.zeros([b], tf.int32)], axis=1)
    h = m.embed(ids)
    h = tf.tensor_scatter_nd_add(h, idx, tf.tile(m.dense["o"][1][None, :], [b, 1]))
    return m.classify(m.layer(h, m.mask_bias(mask))[:, 0])


def gather_last_token(m, ids, mask):
    """tf.gather(batch_dims=1) at the computed index of each row's last real token (GPT-style pooling)."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    last = _valid_lengths(mask) - 1
    return m.classify(tf.gather(h, last, batch_dims=1))


def gather_nd_last_token(m, ids, mask):
    """tf.gather_nd at stacked [row, last] indices: the same pooling the other way."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    idx = tf.stack([tf.range(tf.shape(ids)[0]), _valid_lengths(mask) - 1], axis=-1)
    return m.classify(tf.gather_nd(h, idx))


def one_hot_prefix_lm(m, ids, mask):
    """tf.one_hot(depth=tf.shape(x)[1]) of the prefix length, then tf.math.cumprod: a prefix-LM mask."""
    seq = tf.shape(ids)[1]
    prefix = tf.maximum(_valid_lengths(mask) // 2, 1)
    in_prefix = tf.math.cumprod(1.0 - tf.one_hot(prefix, depth=seq), axis=1)  # 1 before `prefix`
    causal = tf.linalg.band_part(tf.ones([seq, seq]), -1, 0)
    allowed = tf.maximum(causal[None], in_prefix[:, None, :]) * tf.cast(mask, tf.float32)[:, None, :]
    return m.classify(m.layer(m.embed(ids), (1.0 - allowed)[:, None] * NEG)[:, 0])


def one_hot_embedding(m, ids, mask):
    """tf.one_hot(ids, depth=vocab) @ table: the TPU way of an embedding lookup (BERT's use_one_hot_embeddings)."""
    h = tf.einsum("bsv,vh->bsh", tf.one_hot(ids, depth=VOCAB), m.word)
    h = m.norm(h + m.pos[tf.newaxis, :tf.shape(ids)[1]], 0)
    return m.classify(m.layer(h, m.mask_bias(mask))[:, 0])


def cumsum_positions(m, ids, mask):
    """RoBERTa's position ids: tf.cumsum of the padding mask, times the mask, plus the padding index."""
    pos = tf.cumsum(mask, axis=1) * mask + 1
    return m.classify(m.layer(m.embed(ids, pos), m.mask_bias(mask))[:, 0])


def cumsum_reverse_exclusive(m, ids, mask):
    """tf.cumsum(exclusive=True, reverse=True): positions counted from the end of each sequence."""
    pos = tf.cumsum(mask, axis=1, exclusive=True, reverse=True) * mask
    return m.classify(m.layer(m.embed(ids, pos), m.mask_bias(mask))[:, 0])


def cumprod_causal(m, ids, mask):
    """A causal mask from tf.math.cumprod over a reversed one-hot diagonal (T5-decoder style)."""
    seq = tf.shape(ids)[1]
    eye = tf.eye(seq)
    allowed = tf.math.cumprod(1.0 - eye, axis=1, exclusive=True, reverse=True)  # j <= i
    allowed = tf.minimum(tf.maximum(allowed, eye), 1.0)
    bias = (1.0 - allowed)[None, None] * NEG + m.mask_bias(mask)
    return m.classify(m.layer(m.embed(ids), bias)[:, 0])


def unsorted_segment_mean_pool(m, ids, mask):
    """tf.math.unsorted_segment_sum: mean pooling per row, padding sent to an extra dropped segment."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    b, s = tf.shape(ids)[0], tf.shape(ids)[1]
    rows = tf.tile(tf.range(b)[:, None], [1, s])
    seg = tf.where(mask > 0, rows, tf.fill([b, s], b))
    sums = tf.math.unsorted_segment_sum(h, seg, b + 1)[:b]
    counts = tf.math.unsorted_segment_sum(tf.cast(mask, tf.float32), seg, b + 1)[:b]
    return m.classify(sums / counts[:, None])


def segment_sum_pool(m, ids, mask):
    """tf.math.segment_sum over the flattened [batch*seq] tokens with sorted row ids: masked sum pooling."""
    h = m.layer(m.embed(ids), m.mask_bias(mask)) * tf.cast(mask, tf.float32)[..., None]
    b, s = tf.shape(ids)[0], tf.shape(ids)[1]
    seg = tf.repeat(tf.range(b), s)
    pooled = tf.math.segment_sum(tf.reshape(h, [-1, HIDDEN]), seg)
    return m.classify(pooled / tf.cast(_valid_lengths(mask), tf.float32)[:, None])


def pad_to_multiple(m, ids, mask, multiple: int = 4):
    """tf.pad with paddings computed from tf.shape (to a multiple of 4, as Longformer/Funnel do), then slice back."""
    seq = tf.shape(ids)[1]
    extra = (multiple - seq % multiple) % multiple
    paddings = tf.stack([tf.zeros([2], tf.int32), tf.stack([0, extra])])
    ids_p, mask_p = tf.pad(ids, paddings), tf.pad(mask, paddings)
    h = m.layer(m.embed(ids_p), m.mask_bias(mask_p))[:, :seq]
    return m.classify(h[:, 0])


def concat_pad_to_multiple(m, ids, mask, multiple: int = 4):
    """Padding by tf.concat with tf.zeros of a computed width (the other spelling of pad-to-multiple)."""
    b, seq = tf.shape(ids)[0], tf.shape(ids)[1]
    extra = tf.math.floormod(-seq, multiple)
    zeros = tf.zeros(tf.stack([b, extra]), tf.int32)
    ids_p, mask_p = tf.concat([ids, zeros], 1), tf.concat([mask, zeros], 1)
    return m.classify(m.layer(m.embed(ids_p), m.mask_bias(mask_p))[:, 0])


def fill_tile_broadcast(m, ids, mask):
    """tf.fill, tf.tile and tf.broadcast_to with dims from tf.shape: the mask and positions built out wide."""
    b, s = tf.shape(ids)[0], tf.shape(ids)[1]
    ones = tf.fill(tf.stack([b, s]), 1.0)
    pos = tf.tile(tf.range(s)[None, :], tf.stack([b, 1]))
    bias = tf.broadcast_to(((ones - tf.cast(mask, tf.float32)) * NEG)[:, None, None, :], tf.stack([b, HEADS, s, s]))
    return m.classify(m.layer(m.embed(ids, pos), bias)[:, 0])


def split_fused_qkv(m, ids, mask):
    """One fused [hidden, 3*hidden] QKV projection cut with tf.split (GPT-2/DistilBERT-export style)."""
    w, bias = m.fused_qkv_weights()

    def qkv(h):
        q, k, v = tf.split(tf.matmul(h, w) + bias, 3, axis=-1)
        return m.heads(q), m.heads(k), m.heads(v)

    return m.classify(m.layer(m.embed(ids), m.mask_bias(mask), qkv)[:, 0])


def unstack_fused_qkv(m, ids, mask):
    """A fused QKV projection reshaped to [b, s, 3, heads, d] and cut with tf.unstack (ESM/MPNet-export style)."""
    w, bias = m.fused_qkv_weights()

    def qkv(h):
        b, s = tf.shape(h)[0], tf.shape(h)[1]
        x = tf.reshape(tf.matmul(h, w) + bias, [b, s, 3, HEADS, HEAD])
        return tuple(tf.transpose(t, [0, 2, 1, 3]) for t in tf.unstack(x, axis=2))

    return m.classify(m.layer(m.embed(ids), m.mask_bias(mask), qkv)[:, 0])


def rounding_positions(m, ids, mask):
    """tf.math.ceil / floor / round / sign on float positions: a coarse 'half-position' embedding."""
    s = tf.cast(tf.range(tf.shape(ids)[1]), tf.float32)
    pos = tf.math.floor(s / 2.0) + tf.math.ceil(s / 4.0) + tf.math.round(s / 3.0) + tf.math.sign(s)
    return m.classify(m.layer(m.embed(ids, tf.cast(pos, tf.int32)[None]), m.mask_bias(mask))[:, 0])


def floormod_local_positions(m, ids, mask):
    """tf.math.floormod and floordiv: local positions within windows of 8 plus the window index."""
    s = tf.range(tf.shape(ids)[1])
    pos = tf.math.floormod(s, 8) + tf.math.floordiv(s, 8) * 3
    return m.classify(m.layer(m.embed(ids, pos[None]), m.mask_bias(mask))[:, 0])


def cond_same_length(m, ids, mask):
    """tf.cond(tf.shape(a)[1] == tf.shape(b)[1], ...): a predicate that holds for every input of the signature."""
    bias = tf.cond(tf.shape(ids)[1] == tf.shape(mask)[1],
                   lambda: m.mask_bias(mask), lambda: tf.zeros_like(m.mask_bias(mask)))
    return m.classify(m.layer(m.embed(ids), bias)[:, 0])


def cond_static_hidden(m, ids, mask):
    """tf.cond on a static dim (hidden == 32, as HF checks head sizes): decidable at compile time."""
    h = m.embed(ids)
    h = tf.cond(tf.equal(tf.shape(h)[2], HIDDEN), lambda: h, lambda: h * 0.0)
    return m.classify(m.layer(h, m.mask_bias(mask))[:, 0])


def _t5_bucket(rel: tf.Tensor, buckets: int = 32, max_distance: int = 64) -> tf.Tensor:
    """T5's bidirectional relative-position bucket, with the log in float64."""
    half = buckets // 2
    ret = tf.cast(rel > 0, tf.int32) * half
    n = tf.abs(rel)
    exact = half // 2
    large = exact + tf.cast(tf.math.log(tf.cast(tf.maximum(n, 1), tf.float64) / exact)
                            / math.log(max_distance / exact) * (half - exact), tf.int32)
    return ret + tf.where(n < exact, n, tf.minimum(large, half - 1))


def _rel_bias(m, seq, bucket_fn) -> tf.Tensor:
    pos = tf.range(seq)
    buckets = bucket_fn(pos[None, :] - pos[:, None])
    return tf.transpose(tf.gather(m.rel, buckets), [2, 0, 1])[None]  # [1, heads, seq, seq]


def relpos_t5_f64(m, ids, mask):
    """T5/MPNet relative-position buckets: log in float64, cast back to int32, gathered as a per-head bias."""
    bias = _rel_bias(m, tf.shape(ids)[1], _t5_bucket) + m.mask_bias(mask)
    return m.classify(m.layer(m.embed(ids), bias)[:, 0])


def relpos_deberta_f64(m, ids, mask):
    """DeBERTa-v2's log buckets in float64: sign, abs, ceil of a log ratio and a 3-arg tf.where."""
    def bucket(rel):
        mid, max_pos = 4, 32
        r = tf.cast(rel, tf.float64)
        sign = tf.math.sign(r)
        abs_pos = tf.where((r < mid) & (r > -mid), tf.constant(mid - 1, tf.float64), tf.abs(r))
        log_pos = tf.math.ceil(tf.math.log(abs_pos / mid) / math.log((max_pos - 1) / mid) * (mid - 1)) + mid
        out = tf.where(abs_pos <= mid, r, log_pos * sign)
        return tf.cast(out, tf.int32) + 16  # buckets -16..15 -> 0..31

    bias = _rel_bias(m, tf.shape(ids)[1], bucket) + m.mask_bias(mask)
    return m.classify(m.layer(m.embed(ids), bias)[:, 0])


def cond_on_padding(m, ids, mask):
    """tf.cond on the data (is any position padding?), same shapes either way: kept as a cond op."""
    h = m.embed(ids)
    padded = tf.reduce_any(tf.equal(mask, 0))
    bias = tf.cond(padded, lambda: m.mask_bias(mask), lambda: tf.zeros_like(m.mask_bias(mask)))
    return m.classify(m.layer(h, bias)[:, 0])


def cond_pool_long_inputs(m, ids, mask):
    """Funnel's form: average-pool the sequence by two, only when it is longer than 4 tokens (a
    tf.cond on a length, with a different length out of each branch), then attend."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    pooled = tf.cond(tf.shape(h)[1] > 4, lambda: tf.nn.avg_pool1d(h, 2, 2, "SAME"), lambda: h)
    return m.classify(tf.reduce_max(pooled, axis=1))


def while_over_constants(m, ids, mask):
    """A tf.while_loop over constants (the gcd tf.signal.frame computes): run once at import."""
    gcd, _ = tf.while_loop(lambda a, b: b > 0, lambda a, b: (b, a % b), (tf.constant(12), tf.constant(18)))
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    return m.classify(h[:, 0] / tf.cast(gcd, tf.float32))


def while_loop_refusal(m, ids, mask):
    """A tf.while_loop whose trip count is the longest sequence: data-dependent, so bertc must refuse it."""
    h = m.layer(m.embed(ids), m.mask_bias(mask))
    steps = tf.reduce_max(_valid_lengths(mask))
    _, acc = tf.while_loop(lambda i, a: i < steps, lambda i, a: (i + 1, a + h[:, i]),
                           (tf.constant(0), tf.zeros_like(h[:, 0])))
    return m.classify(acc)


MODELS: dict[str, Callable] = {fn.__name__: fn for fn in (
    where_3arg_mask, where_3arg_scores, where_1arg_positions, tensor_scatter_update_mask, tensor_scatter_add_cls,
    gather_last_token, gather_nd_last_token, one_hot_prefix_lm, one_hot_embedding, cumsum_positions,
    cumsum_reverse_exclusive, cumprod_causal, unsorted_segment_mean_pool, segment_sum_pool, pad_to_multiple,
    concat_pad_to_multiple, fill_tile_broadcast, split_fused_qkv, unstack_fused_qkv, rounding_positions,
    floormod_local_positions, cond_same_length, cond_static_hidden, cond_on_padding, cond_pool_long_inputs,
    while_over_constants, relpos_t5_f64, relpos_deberta_f64, while_loop_refusal)}


def build_one(name: str, out_dir: Path) -> dict:
    """Save one model as a SavedModel; returns its manifest entry."""
    fn = MODELS[name]
    module = Tiny()
    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    module.serve = tf.function(lambda input_ids, attention_mask: fn(module, input_ids, attention_mask),
                               input_signature=spec)
    path = out_dir / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve.get_concrete_function()})
    entry = {"name": name, "kind": "op_family", "path": str(path), "source": f"examples.corpus.op_families.{name}",
             "doc": " ".join(fn.__doc__.split()),
             "inputs": {s.name: {"dtype": "int32", "shape": [None, None]} for s in spec}, "outputs": ["logits"]}
    if name in EXPECT_REFUSAL:
        entry["expect_refusal"] = EXPECT_REFUSAL[name]
    return entry


def build(out_dir: Path, names: list[str] | None = None) -> list[dict]:
    """Build the named models (all by default); a model that fails to build gets a ``build_error``."""
    return build_each(names or list(MODELS), build_one, out_dir, "op_family")


def main(argv: list[str] | None = None) -> int:
    return builder_main(argv, MODELS, build, "op-family")


if __name__ == "__main__":
    sys.exit(main())
