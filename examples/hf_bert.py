"""A tiny, randomly initialised Hugging Face TF BERT classifier as a SavedModel.

Builds ``transformers.TFBertForSequenceClassification`` from a small
``BertConfig`` (no hub download) and saves it the way
``save_pretrained(..., saved_model=True)`` does -- ``model.save`` with the
model's own ``serving`` function as signatures -- but directly at the given
path.  The ``serving_default`` signature has DYNAMIC batch and sequence length:

    inputs : input_ids, attention_mask, token_type_ids   int32 [None, None]
    output : {"logits": float32 [batch, num_labels]}

A second signature, ``int64_serving``, takes the same inputs as int64 (as
Hugging Face's own SavedModel export does); pass int64_signature=False to
leave it out.

Run it as a standalone command (recommended, see below):

    python examples/hf_bert.py OUT_DIR [--num-hidden-layers 2 --hidden-size 64 ...]

IMPORTANT: transformers' TF models need Keras 2 (the ``tf-keras`` package).
The environment variable ``TF_USE_LEGACY_KERAS=1`` selects it for ``tf.keras``
and must be set *before* TensorFlow is imported, so this module sets it at
import time (transformers itself imports ``tf_keras`` directly).  The variable
is process-wide: after importing this module, code in the same process that
uses ``tf.keras`` gets Keras 2.  Tests should therefore run the builder in a
subprocess:  subprocess.run([sys.executable, "examples/hf_bert.py", out_dir]).

Requirements (no torch, no second TensorFlow beside tensorflow-cpu):

    pip install transformers==4.57.6          # base deps only, no [tf] extra
    pip install --no-deps tf-keras==2.21.0    # its metadata wants `tensorflow`
"""

from __future__ import annotations

import os

# Must happen before TensorFlow is imported anywhere in this process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import argparse  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402  (Keras 2, used by transformers' TF models)
from transformers import BertConfig, TFBertForSequenceClassification  # noqa: E402

DEFAULT_CONFIG = dict(
    vocab_size=100,
    num_hidden_layers=2,
    num_attention_heads=4,
    hidden_size=64,
    intermediate_size=128,
    max_position_embeddings=64,
    type_vocab_size=2,
    num_labels=3,
    seed=0,
    perturb=True,
    int64_signature=True,
)
_BUILD_KEYS = ("seed", "perturb", "int64_signature")


def _perturb_constant_weights(model, seed: int, std: float = 0.05):
    """Add small noise to weights initialised to a constant (biases, layer norm).

    Makes numerical comparisons sensitive to those parameters.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = weight.numpy()
        if value.size and np.all(value == value.flat[0]):
            weight.assign(value + rng.normal(0.0, std, size=value.shape).astype(value.dtype))


def build_hf_bert(**config) -> TFBertForSequenceClassification:
    """Build a randomly initialised TFBertForSequenceClassification.

    Accepts the keys of DEFAULT_CONFIG (other keys go to transformers.BertConfig).
    """
    cfg = {**DEFAULT_CONFIG, **config}
    tf_keras.utils.set_random_seed(cfg["seed"])  # python, numpy and TF seeds
    bert_config = BertConfig(**{k: v for k, v in cfg.items() if k not in _BUILD_KEYS})
    model = TFBertForSequenceClassification(bert_config)
    model(model.dummy_inputs, training=False)  # create the weights
    if cfg["perturb"]:
        _perturb_constant_weights(model, cfg["seed"])
    return model


def save_hf_bert(path, **config) -> str:
    """Build the model and save it as a SavedModel at `path`; returns `path`."""
    cfg = {**DEFAULT_CONFIG, **config}
    model = build_hf_bert(**cfg)

    # Same signatures as TFPreTrainedModel.save_pretrained(saved_model=True).
    spec = model.input_signature  # input_ids/attention_mask/token_type_ids: int32 [None, None]
    signatures = {"serving_default": model.serving.get_concrete_function(spec)}
    if cfg["int64_signature"]:
        spec64 = {k: tf.TensorSpec(s.shape, tf.int64, name=s.name) for k, s in spec.items()}
        signatures["int64_serving"] = model.serving.get_concrete_function(spec64)
    model.save(str(path), include_optimizer=False, signatures=signatures)
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Save a random HF TFBertForSequenceClassification.")
    parser.add_argument("out_dir", help="where to write the SavedModel")
    for key, default in DEFAULT_CONFIG.items():
        if key == "perturb":
            parser.add_argument("--no-perturb", dest="perturb", action="store_false",
                                help="keep the constant bias/layer-norm initialisation")
        elif key == "int64_signature":
            parser.add_argument("--no-int64-signature", dest="int64_signature",
                                action="store_false", help="only save serving_default")
        else:
            parser.add_argument("--" + key.replace("_", "-"), type=int, default=default)
    args = parser.parse_args(argv)
    config = {key: getattr(args, key) for key in DEFAULT_CONFIG}
    path = save_hf_bert(args.out_dir, **config)

    # Quick smoke test of the saved signature.
    serve = tf.saved_model.load(path).signatures["serving_default"]
    ids = tf.constant([[1, 5, 7, 2]], tf.int32)
    out = serve(input_ids=ids, attention_mask=tf.ones_like(ids), token_type_ids=tf.zeros_like(ids))
    print(f"saved to {path}; outputs for a 4-token input: "
          f"{ {k: v.numpy() for k, v in out.items()} }")


if __name__ == "__main__":
    main()
