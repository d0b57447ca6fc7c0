"""Every keras-hub 0.32 BERT-family text encoder that builds offline from a config.

Each entry of ``SPECS`` is a keras-hub backbone (with its ``*TextClassifier``
head where keras-hub has one) at a tiny size: 2 layers, hidden 64, vocabulary
100.  The export is a ``tf.function`` with an int32 ``[None, None]`` signature
over the inputs the backbone takes, saved with ``tf.saved_model.save`` (Keras 3
on the TensorFlow backend):

- ``token_ids``, ``padding_mask`` for most,
- plus ``segment_ids`` for BERT, ALBERT and ELECTRA;
- F-Net and RoFormer-V2 take ``token_ids``, ``segment_ids`` (no padding mask),
  ESM and ESM-2 only ``token_ids``.

Classifiers return ``{"logits": [batch, 3]}``.  Backbone-only models
(ELECTRA, ESM, ESM-2) return their ``sequence_output`` and, where there is one,
``pooled_output``.

    python -m examples.corpus.keras_hub_models OUT_DIR [--only kh_bert]   # prints manifest entries as JSON
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from examples.corpus import build_each, builder_main

_SIZE = dict(vocabulary_size=100, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128)
_SEG = ("token_ids", "padding_mask", "segment_ids")
_PAD = ("token_ids", "padding_mask")

# name -> (backbone class, classifier class or None, backbone kwargs, inputs)
SPECS: dict[str, tuple[str, str | None, dict, tuple[str, ...]]] = {
    "kh_albert": ("AlbertBackbone", "AlbertTextClassifier",
                  dict(_SIZE, embedding_dim=32, num_groups=1, num_inner_repetitions=1, max_sequence_length=64), _SEG),
    "kh_bert": ("BertBackbone", "BertTextClassifier", dict(_SIZE, max_sequence_length=64), _SEG),
    "kh_deberta_v3": ("DebertaV3Backbone", "DebertaV3TextClassifier",
                      dict(_SIZE, max_sequence_length=64, bucket_size=16), _PAD),
    "kh_distilbert": ("DistilBertBackbone", "DistilBertTextClassifier", dict(_SIZE, max_sequence_length=64), _PAD),
    "kh_electra": ("ElectraBackbone", None, dict({k: v for k, v in _SIZE.items() if k != "vocabulary_size"}, vocab_size=100,
                         embedding_dim=32, max_sequence_length=64), _SEG),
    "kh_esm": ("ESMBackbone", None, dict(_SIZE, max_sequence_length=64), ("token_ids",)),
    "kh_esm2": ("ESM2Backbone", None, dict(_SIZE, max_sequence_length=64), ("token_ids",)),
    "kh_f_net": ("FNetBackbone", "FNetTextClassifier",
                 {k: v for k, v in dict(_SIZE, max_sequence_length=64).items() if k != "num_heads"}, ("token_ids", "segment_ids")),
    "kh_roberta": ("RobertaBackbone", "RobertaTextClassifier", dict(_SIZE, max_sequence_length=64), _PAD),
    "kh_roformer_v2": ("RoformerV2Backbone", "RoformerV2TextClassifier", dict(_SIZE, head_size=16, max_wavelength=10000),
                       ("token_ids", "segment_ids")),
    "kh_xlm_roberta": ("XLMRobertaBackbone", "XLMRobertaTextClassifier", dict(_SIZE, max_sequence_length=64), _PAD),
}


def _perturb_constant_weights(model, rng: np.random.Generator, std: float = 0.05) -> None:
    """keras-hub starts biases and layer norms constant; noise makes parity checks see them."""
    import keras

    for w in model.weights:
        value = keras.ops.convert_to_numpy(w)
        if value.size and value.dtype.kind == "f" and np.all(value == value.flat[0]):
            w.assign(value + rng.normal(0.0, std, size=value.shape).astype(value.dtype))


def build_one(name: str, out_dir: Path) -> dict:
    """Build, perturb and save one model; returns its manifest entry."""
    import keras
    import keras_hub
    import tensorflow as tf

    backbone_cls, head_cls, kwargs, inputs = SPECS[name]
    keras.utils.set_random_seed(0)
    backbone = getattr(keras_hub.models, backbone_cls)(**kwargs)
    model = (getattr(keras_hub.models, head_cls)(backbone=backbone, num_classes=3, preprocessor=None)
             if head_cls else backbone)
    _perturb_constant_weights(model, np.random.default_rng(0))
    backbone_inputs = set(backbone.input) if isinstance(backbone.input, dict) else None
    if backbone_inputs is not None and set(inputs) != backbone_inputs:
        raise ValueError(f"{backbone_cls} takes {sorted(backbone_inputs)}, the spec says {sorted(inputs)}")
    specs = [tf.TensorSpec([None, None], tf.int32, name=k) for k in inputs]

    @tf.function(input_signature=specs)
    def serve(*args):
        feeds = dict(zip(inputs, args))
        if "padding_mask" in feeds:
            feeds["padding_mask"] = tf.cast(feeds["padding_mask"], tf.bool)
        result = model(feeds, training=False)
        if head_cls:
            return {"logits": result}
        return dict(result) if isinstance(result, dict) else {"sequence_output": result}

    module = tf.Module()
    module.variables_ = [w.value if hasattr(w, "value") else w for w in model.weights]
    module.serve = serve
    path = out_dir / name
    concrete = serve.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures={"serving_default": concrete})
    return {"name": name, "kind": "keras_hub", "path": str(path),
            "source": f"keras_hub.models.{head_cls or backbone_cls}",
            "inputs": {k: {"dtype": "int32", "shape": [None, None]} for k in inputs},
            "outputs": sorted(concrete.structured_outputs)}


def build(out_dir: Path, names: list[str] | None = None) -> list[dict]:
    """Build the named models (all by default); a model that fails to build gets a ``build_error``."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # before keras loads; a SavedModel needs TF
    return build_each(names or list(SPECS), build_one, out_dir, "keras_hub")


def main(argv: list[str] | None = None) -> int:
    return builder_main(argv, SPECS, build, "keras-hub")


if __name__ == "__main__":
    sys.exit(main())
