"""Whole models from the three sources: import, reference interpreter vs TF, text round trip."""

from __future__ import annotations

import numpy as np
import pytest

from bertc.ir.interpreter import run_graph
from bertc.ir.parser import parse_graph
from bertc.ir.printer import print_graph
from bertc.ir.verifier import verify
from bertc.runtime.inputs import random_graph_inputs

TOLERANCE = 1e-4  # max abs difference of logits, float32 end to end


@pytest.mark.parametrize("batch,seq", [(1, 5), (3, 9), (1, 17), (3, 2)])
def test_reference_interpreter_matches_tf(any_bert, batch, seq):
    graph = any_bert.graph()
    feeds = random_graph_inputs(graph, batch, seq, seed=batch * 100 + seq)
    want = any_bert.tf_run(feeds)
    got = run_graph(graph, feeds)
    assert set(got) == set(want)
    for name in want:
        assert got[name].shape == want[name].shape
        err = float(np.abs(got[name] - want[name]).max())
        assert err <= TOLERANCE, f"{name}: max abs error {err}"


def test_dims_stay_symbolic(any_bert):
    graph = any_bert.graph()
    for v in graph.inputs:
        assert v.shape == ("batch", "seq"), v
    (out,) = graph.outputs.values()
    assert out.shape[0] == "batch" and isinstance(out.shape[1], int)


def test_canonical_ir_is_fused_and_free_of_tf_idioms(any_bert):
    hist = any_bert.graph().histogram()
    assert hist["layer_norm"] == 5  # embeddings + 2 per layer
    assert hist["gelu"] == 2
    assert hist["softmax"] == 2
    for gone in ("identity", "rsqrt", "erf", "reduce_mean", "reduce_prod"):
        assert gone not in hist, f"{gone} survived canonicalization: {hist}"
    assert hist.get("shape", 0) <= 1  # only the position-id length is computed at run time


def test_text_round_trip(any_bert):
    graph = any_bert.graph()
    text = print_graph(graph)
    again = parse_graph(text, graph.weights())
    verify(again)
    assert print_graph(again) == text


def test_round_tripped_graph_computes_the_same(any_bert):
    graph = any_bert.graph()
    again = parse_graph(print_graph(graph), graph.weights())
    feeds = random_graph_inputs(graph, 2, 7)
    a, b = run_graph(graph, feeds), run_graph(again, feeds)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_int64_ids_import(tmp_path):
    """The SavedModel's input dtypes are kept as they are: int64 ids work too."""
    import tensorflow as tf

    from bertc.frontend.tf import import_model
    from examples.bert_tf import BertConfig, save_bert

    path = save_bert(BertConfig(layers=1), str(tmp_path / "m"), ids_dtype=tf.int64)
    graph, frozen = import_model(path)
    assert [v.dtype for v in graph.inputs] == ["i64"] * 3
    feeds = random_graph_inputs(graph, 2, 6)
    np.testing.assert_allclose(run_graph(graph, feeds)["logits"], frozen.function(**feeds)["logits"], atol=TOLERANCE)


def test_keras_file_imports(tmp_path):
    """A Keras 3 `.keras` file is traced with dynamic batch and sequence and imported."""
    import keras

    from bertc.frontend.tf import import_model

    inp = keras.Input((None,), dtype="int32", name="input_ids")
    x = keras.layers.Embedding(50, 16)(inp)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Dense(16, activation="gelu")(x)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inp, out)
    model.save(tmp_path / "m.keras")
    graph, _ = import_model(tmp_path / "m.keras")
    assert graph.inputs[0].shape == ("batch", "seq")
    assert graph.histogram()["layer_norm"] == 1 and graph.histogram()["gelu"] == 1
    ids = np.random.default_rng(0).integers(0, 50, (2, 7)).astype(np.int32)
    np.testing.assert_allclose(run_graph(graph, {"input_ids": ids})["output_0"], model(ids).numpy(), atol=TOLERANCE)
