"""A tiny, randomly initialised keras-hub BERT classifier exported as a SavedModel.

Builds ``keras_hub.models.BertTextClassifier`` around a small
``keras_hub.models.BertBackbone`` (no preset download, no preprocessor) and
exports it with Keras 3's ``model.export(path)``, which writes a TF SavedModel
whose ``serving_default`` signature has DYNAMIC batch and sequence length:

    inputs : token_ids, padding_mask, segment_ids   int32 [None, None]
    output : {"output_0": float32 [batch, num_classes]}   (the logits)

Run it:

    python examples/keras_hub_bert.py OUT_DIR [--num-layers 2 --hidden-dim 64 ...]

or from Python:

    from examples.keras_hub_bert import save_keras_hub_bert
    save_keras_hub_bert("/tmp/kh_sm", num_layers=2)

Requirements: keras 3.15 with the TensorFlow backend and keras-hub 0.32.
keras-hub's metadata asks for the full ``tensorflow`` wheel (through
``tensorflow-text``) plus kagglehub/sentencepiece, none of which are needed
to build and export a model without a tokenizer.  Install it beside
tensorflow-cpu without pulling a second TensorFlow:

    pip install --no-deps keras-hub==0.32.0

(its other runtime needs -- keras, absl-py, numpy, packaging, regex, rich --
already come with tensorflow-cpu).
"""

from __future__ import annotations

import argparse
import os

# keras-hub runs on Keras 3; make sure Keras uses TensorFlow (needed for a
# SavedModel export).  Must be set before keras is imported.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_CONFIG = dict(
    vocabulary_size=100,
    num_layers=2,
    num_heads=4,
    hidden_dim=64,
    intermediate_dim=128,
    max_sequence_length=64,
    num_classes=3,
    seed=0,
    perturb=True,
)


def _perturb_constant_weights(model, seed: int, std: float = 0.05):
    """Add small noise to weights that were initialised to a constant.

    keras-hub initialises biases to 0 and layer-norm gamma/beta to 1/0, so a
    compiler that ignored them would still match the reference.  Perturbing
    them makes numerical comparisons meaningful.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if value.size and np.all(value == value.flat[0]):
            noise = rng.normal(0.0, std, size=value.shape).astype(value.dtype)
            weight.assign(value + noise)


def build_keras_hub_bert(**config) -> keras.Model:
    """Build a randomly initialised keras_hub BertTextClassifier (no preprocessor).

    Accepts the keys of DEFAULT_CONFIG.  Note: keras.utils.set_random_seed sets
    the global Python, numpy and TensorFlow seeds.
    """
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise TypeError(f"unknown config keys: {sorted(unknown)}")
    cfg = {**DEFAULT_CONFIG, **config}
    keras.utils.set_random_seed(cfg["seed"])
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=cfg["vocabulary_size"],
        num_layers=cfg["num_layers"],
        num_heads=cfg["num_heads"],
        hidden_dim=cfg["hidden_dim"],
        intermediate_dim=cfg["intermediate_dim"],
        max_sequence_length=cfg["max_sequence_length"],
    )
    model = keras_hub.models.BertTextClassifier(
        backbone=backbone,
        num_classes=cfg["num_classes"],
        preprocessor=None,  # the model takes token ids directly
    )
    if cfg["perturb"]:
        _perturb_constant_weights(model, cfg["seed"])
    return model


def save_keras_hub_bert(path, **config) -> str:
    """Build the model and export it as a TF SavedModel at `path`; returns `path`.

    The exported signatures are "serve" and "serving_default" (the same
    function); their input names are token_ids, padding_mask, segment_ids.
    """
    model = build_keras_hub_bert(**config)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export a random keras-hub BERT classifier.")
    parser.add_argument("out_dir", help="where to write the SavedModel")
    for key, default in DEFAULT_CONFIG.items():
        if key == "perturb":
            parser.add_argument("--no-perturb", dest="perturb", action="store_false",
                                help="keep keras' constant bias/layer-norm initialisation")
        else:
            parser.add_argument("--" + key.replace("_", "-"), type=int, default=default)
    args = parser.parse_args(argv)
    config = {key: getattr(args, key) for key in DEFAULT_CONFIG}
    path = save_keras_hub_bert(args.out_dir, **config)

    # Quick smoke test of the exported signature.
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    ids = tf.constant([[1, 5, 7, 2]], tf.int32)
    out = serve(token_ids=ids, padding_mask=tf.ones_like(ids), segment_ids=tf.zeros_like(ids))
    print(f"saved to {path}; outputs for a 4-token input: "
          f"{ {k: v.numpy() for k, v in out.items()} }")


if __name__ == "__main__":
    main()
