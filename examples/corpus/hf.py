"""Every BERT-family TF encoder in transformers 4.57.6, tiny and random, as SavedModels.

Each entry of ``SPECS`` is one Hugging Face TF model class with a small config
(2 layers, hidden 64, vocabulary 100-ish, 64-130 positions) and the inputs its
``serving_default`` signature takes.  All inputs are int32 with dynamic batch
and sequence dims; the outputs are the model's logits (``start_logits`` and
``end_logits`` for question answering, ``last_hidden_state`` and
``pooler_output`` for the base model).

Inputs per model (``inputs`` in each spec):

- most models: ``input_ids``, ``attention_mask`` (plus ``token_type_ids`` where
  the model has a token-type embedding: BERT, ALBERT, ConvBERT, ELECTRA,
  LayoutLM, MobileBERT, RemBERT, RoFormer, Funnel, MPNet has none);
- LayoutLM: also ``bbox`` int32 [batch, seq, 4] (x0, y0, x1, y1 in [0, 128));
- TAPAS: ``token_type_ids`` is int32 [batch, seq, 7], one column per type
  vocabulary (segment, column, row, prev_label, column_rank, inv_col_rank,
  numeric_relations).

Models whose inputs the default random verification inputs cannot describe
(bbox, 7-column token types) also get ``verify.npz`` beside the SavedModel,
with valid values, and the manifest names it.

Longformer runs with ``attention_window=4``: its sliding-window attention pads
the sequence to a multiple of the window inside the graph (tf.pad with paddings
computed from tf.shape), then slices the padding off again.

transformers' TF models need Keras 2, which ``TF_USE_LEGACY_KERAS=1`` selects
only when set before TensorFlow is imported, so this module must run in a
process of its own (``main`` sets it; importing this module only reads ``SPECS``):

    python -m examples.corpus.hf OUT_DIR [--only bert,albert]   # prints the manifest entries as JSON

The export wraps the model's variables and one ``tf.function`` in a
``tf.Module`` and saves that with ``tf.saved_model.save``: Keras 2's own
``model.save`` traces every layer's call functions and takes many times longer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from examples.corpus import build_each, builder_main

# Sizes shared by every model; each spec adds its own names for them.
_COMMON = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=64, num_labels=3)
_IDS = ("input_ids", "attention_mask")
_IDS_TT = ("input_ids", "attention_mask", "token_type_ids")
# RoBERTa-style position ids start at padding_idx + 1, so the table needs seq + 2 rows.
_ROBERTA = dict(_COMMON, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2)

# name -> (transformers class, config class, config kwargs, signature inputs, outputs)
SPECS: dict[str, tuple[str, str, dict, tuple[str, ...], tuple[str, ...]]] = {
    "hf_albert": ("TFAlbertForSequenceClassification", "AlbertConfig",
                  dict(_COMMON, embedding_size=32), _IDS_TT, ("logits",)),
    "hf_bert": ("TFBertForSequenceClassification", "BertConfig", _COMMON, _IDS_TT, ("logits",)),
    "hf_bert_base": ("TFBertModel", "BertConfig", _COMMON, _IDS_TT, ("last_hidden_state", "pooler_output")),
    "hf_bert_token_cls": ("TFBertForTokenClassification", "BertConfig", _COMMON, _IDS_TT, ("logits",)),
    "hf_bert_qa": ("TFBertForQuestionAnswering", "BertConfig", dict(_COMMON, num_labels=2), _IDS_TT,
                   ("start_logits", "end_logits")),
    "hf_camembert": ("TFCamembertForSequenceClassification", "CamembertConfig", _ROBERTA, _IDS, ("logits",)),
    "hf_convbert": ("TFConvBertForSequenceClassification", "ConvBertConfig",
                    dict(_COMMON, embedding_size=64, head_ratio=2, conv_kernel_size=5), _IDS_TT, ("logits",)),
    "hf_deberta": ("TFDebertaForSequenceClassification", "DebertaConfig",
                   dict(_COMMON, type_vocab_size=0, relative_attention=True, max_relative_positions=64,
                        pos_att_type=["c2p", "p2c"]), _IDS, ("logits",)),
    "hf_deberta_v2": ("TFDebertaV2ForSequenceClassification", "DebertaV2Config",
                      dict(_COMMON, type_vocab_size=0, relative_attention=True, position_buckets=16,
                           max_relative_positions=-1, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
                           share_att_key=True, position_biased_input=False), _IDS, ("logits",)),
    "hf_distilbert": ("TFDistilBertForSequenceClassification", "DistilBertConfig",
                      dict(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                           max_position_embeddings=64, num_labels=3), _IDS, ("logits",)),
    "hf_electra": ("TFElectraForSequenceClassification", "ElectraConfig",
                   dict(_COMMON, embedding_size=32), _IDS_TT, ("logits",)),
    "hf_esm": ("TFEsmForSequenceClassification", "EsmConfig",
               dict(_COMMON, vocab_size=33, pad_token_id=1, mask_token_id=32, position_embedding_type="rotary",
                    emb_layer_norm_before=False, token_dropout=True), _IDS, ("logits",)),
    "hf_flaubert": ("TFFlaubertForSequenceClassification", "FlaubertConfig",
                    dict(vocab_size=100, emb_dim=64, n_layers=2, n_heads=4, max_position_embeddings=64,
                         num_labels=3), _IDS, ("logits",)),
    "hf_funnel": ("TFFunnelForSequenceClassification", "FunnelConfig",
                  dict(vocab_size=100, block_sizes=[1, 1], num_decoder_layers=1, d_model=64, n_head=4, d_head=16,
                       d_inner=128, max_position_embeddings=64, num_labels=3), _IDS_TT, ("logits",)),
    "hf_layoutlm": ("TFLayoutLMForSequenceClassification", "LayoutLMConfig",
                    dict(_COMMON, max_2d_position_embeddings=128), _IDS_TT + ("bbox",), ("logits",)),
    "hf_longformer": ("TFLongformerForSequenceClassification", "LongformerConfig",
                      dict(_ROBERTA, attention_window=4), _IDS, ("logits",)),
    "hf_mpnet": ("TFMPNetForSequenceClassification", "MPNetConfig",
                 dict(_ROBERTA, relative_attention_num_buckets=32), _IDS, ("logits",)),
    "hf_mobilebert": ("TFMobileBertForSequenceClassification", "MobileBertConfig",
                      dict(_COMMON, embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32,
                           intermediate_size=64, num_feedforward_networks=2), _IDS_TT, ("logits",)),
    "hf_rembert": ("TFRemBertForSequenceClassification", "RemBertConfig",
                   dict(_COMMON, input_embedding_size=32, output_embedding_size=64), _IDS_TT, ("logits",)),
    "hf_roformer": ("TFRoFormerForSequenceClassification", "RoFormerConfig",
                    dict(_COMMON, embedding_size=64), _IDS_TT, ("logits",)),
    "hf_roberta": ("TFRobertaForSequenceClassification", "RobertaConfig", _ROBERTA, _IDS, ("logits",)),
    "hf_roberta_prelayernorm": ("TFRobertaPreLayerNormForSequenceClassification", "RobertaPreLayerNormConfig",
                                _ROBERTA, _IDS, ("logits",)),
    "hf_tapas": ("TFTapasForSequenceClassification", "TapasConfig",
                 dict(_COMMON, type_vocab_sizes=[3, 16, 16, 2, 16, 16, 10]), _IDS_TT, ("logits",)),
    "hf_xlm": ("TFXLMForSequenceClassification", "XLMConfig",
               dict(vocab_size=100, emb_dim=64, n_layers=2, n_heads=4, max_position_embeddings=64, n_langs=1,
                    use_lang_emb=False, num_labels=3), _IDS, ("logits",)),
    "hf_xlm_roberta": ("TFXLMRobertaForSequenceClassification", "XLMRobertaConfig", _ROBERTA, _IDS, ("logits",)),
}


def _perturb_constant_weights(weights, rng: np.random.Generator, std: float = 0.05) -> None:
    """Biases and layer-norm scales start constant; noise makes parity checks see them."""
    for w in weights:
        value = w.numpy()
        if value.size and value.dtype.kind == "f" and np.all(value == value.flat[0]):
            w.assign(value + rng.normal(0.0, std, size=value.shape).astype(value.dtype))


def _input_spec(tf, name: str, spec_name: str):
    """int32 [None, None] for ids and masks; bbox is [..., 4] and TAPAS token types [..., 7]."""
    if name == "bbox":
        return tf.TensorSpec([None, None, 4], tf.int32, name=name)
    if name == "token_type_ids" and spec_name == "hf_tapas":
        return tf.TensorSpec([None, None, 7], tf.int32, name=name)
    return tf.TensorSpec([None, None], tf.int32, name=name)


def _verify_feeds(name: str, inputs: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Valid inputs for models whose extra inputs random ids cannot stand for."""
    if name not in ("hf_layoutlm", "hf_tapas"):
        return None
    rng = np.random.default_rng(0)
    batch, seq = 2, 11
    lengths = np.array([seq, seq - 4])
    valid = np.arange(seq)[None, :] < lengths[:, None]
    feeds = {"input_ids": np.where(valid, rng.integers(3, 100, (batch, seq)), 0).astype(np.int32),
             "attention_mask": valid.astype(np.int32)}
    if name == "hf_layoutlm":
        feeds["token_type_ids"] = np.zeros((batch, seq), np.int32)
        x0 = rng.integers(0, 60, (batch, seq, 2))
        feeds["bbox"] = np.concatenate([x0, x0 + rng.integers(0, 60, (batch, seq, 2))], -1).astype(np.int32)
    else:
        sizes = [3, 16, 16, 2, 16, 16, 10]
        feeds["token_type_ids"] = np.stack([rng.integers(0, s, (batch, seq)) for s in sizes], -1).astype(np.int32)
    return {k: v for k, v in feeds.items() if k in inputs}


def build_one(name: str, out_dir: Path) -> dict:
    """Build, perturb and save one model; returns its manifest entry."""
    import tensorflow as tf
    import tf_keras
    import transformers

    cls_name, cfg_name, cfg_kwargs, inputs, outputs = SPECS[name]
    tf_keras.utils.set_random_seed(0)
    config = getattr(transformers, cfg_name)(**cfg_kwargs)
    model = getattr(transformers, cls_name)(config)
    specs = [_input_spec(tf, k, name) for k in inputs]
    model({s.name: tf.zeros([1, 8] + s.shape[2:], tf.int32) for s in specs}, training=False)  # build weights
    _perturb_constant_weights(model.weights, np.random.default_rng(0))

    @tf.function(input_signature=specs)
    def serve(*args):
        result = model(dict(zip(inputs, args)), training=False)
        return {k: result[k] for k in outputs}

    module = tf.Module()
    module.variables_ = list(model.variables)  # tracked, so the SavedModel holds the weights
    module.serve = serve
    path = out_dir / name
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve.get_concrete_function()})
    entry = {"name": name, "kind": "hf", "path": str(path), "source": f"transformers.{cls_name}",
             "inputs": {s.name: {"dtype": "int32", "shape": [None if d is None else d for d in s.shape]}
                        for s in specs},
             "outputs": list(outputs)}
    feeds = _verify_feeds(name, inputs)
    if feeds is not None:
        np.savez(path / "verify.npz", **feeds)
        entry["verify_data"] = str(path / "verify.npz")
    return entry


def build(out_dir: Path, names: list[str] | None = None) -> list[dict]:
    """Build the named models (all by default); a model that fails to build gets a ``build_error``."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("set TF_USE_LEGACY_KERAS=1 before TensorFlow is imported (run `python -m examples.corpus.hf`)")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return build_each(names or list(SPECS), build_one, out_dir, "hf")


def _legacy_keras() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow loads (see the module docstring)


def main(argv: list[str] | None = None) -> int:
    return builder_main(argv, SPECS, build, "Hugging Face", before=_legacy_keras)


if __name__ == "__main__":
    sys.exit(main())
