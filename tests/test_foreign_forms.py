"""Graph forms foreign exporters produce around an otherwise ordinary model, end to end.

Each test saves a tiny masked-attention encoder the way some exporter does
(a fixed [1, 16] signature, ``tf.function(jit_compile=True)`` …) and runs
``bertc compile --target all`` on it, which verifies both artifacts against TF
(max abs error 1e-4).  The model is the same in every test; only the form
around it changes, so a failure names the form.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from bertc.cli import main

HIDDEN, VOCAB = 16, 50


class Encoder(tf.Module):
    """Embeddings, one masked self-attention, a [CLS] classifier: seeded weights."""

    def __init__(self) -> None:
        super().__init__()
        r = np.random.default_rng(0)
        self.word = tf.Variable(r.normal(0, 0.5, (VOCAB, HIDDEN)).astype(np.float32))
        self.pos = tf.Variable(r.normal(0, 0.5, (32, HIDDEN)).astype(np.float32), name="position_embeddings")
        self.qkv = tf.Variable(r.normal(0, 0.3, (3, HIDDEN, HIDDEN)).astype(np.float32))
        self.cls = tf.Variable(r.normal(0, 0.3, (HIDDEN, 3)).astype(np.float32))

    head_dtype = tf.float32  # mixed precision: the classifier computes in this dtype

    def logits(self, ids, mask):
        seq = tf.shape(ids)[1]
        h = tf.gather(self.word, ids) + self.pos[None, :seq]
        q, k, v = (tf.matmul(h, self.qkv[i]) for i in range(3))
        bias = (1.0 - tf.cast(mask, tf.float32))[:, None, :] * -1e4
        att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / 4.0 + bias)
        pooled = tf.cast(tf.matmul(att, v)[:, 0], self.head_dtype)
        return {"logits": tf.cast(tf.matmul(pooled, tf.cast(self.cls, self.head_dtype)), tf.float32)}


def _save(tmp_path, shape, *, jit: bool = False, signatures=("serving_default",), head_dtype=tf.float32):
    m = Encoder()
    m.head_dtype = head_dtype
    spec = [tf.TensorSpec(shape, tf.int32, name="input_ids"), tf.TensorSpec(shape, tf.int32, name="attention_mask")]
    m.serve = tf.function(m.logits, input_signature=spec, jit_compile=jit)
    path = tmp_path / "model"
    fn = m.serve.get_concrete_function()
    tf.saved_model.save(m, str(path), signatures={name: fn for name in signatures})
    return path


def _compile(tmp_path, path, *extra) -> dict:
    out = tmp_path / "out"
    assert main(["compile", str(path), "--target", "all", "-o", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("shape,cases", [([1, 16], [[1, 16]]), ([None, 12], [[1, 12], [4, 12]])],
                         ids=["batch_and_seq", "seq_only"])
def test_fixed_signature_shapes_are_verified_at_those_shapes(tmp_path, shape, cases):
    """A model exported at a fixed size (phones: [1, 128]) accepts only that size, in TF and in
    the artifacts; verification feeds it that size instead of its default 8 and 19 tokens."""
    report = _compile(tmp_path, _save(tmp_path, shape))
    for target in ("onnx", "tflite"):
        assert report["verification"][target]["cases"] == cases


def test_xla_compiled_function_is_inlined(tmp_path):
    """tf.function(jit_compile=True) leaves a call grappler does not inline (it is marked for
    XLA); bertc removes the mark and imports the body like any other function."""
    _compile(tmp_path, _save(tmp_path, [None, None], jit=True))


def test_bfloat16_is_refused_by_op_and_node(tmp_path, capsys):
    """No target here runs bfloat16: one import error naming the ops, their nodes and the fix."""
    path = _save(tmp_path, [None, None], head_dtype=tf.bfloat16)
    assert main(["compile", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bfloat16 tensors are not supported" in err and "MatMul (1x): 'MatMul" in err
    assert "set_global_policy('float32')" in err and "Traceback" not in err


def test_float16_head_says_what_to_do(tmp_path, capsys):
    """A float16 island: TFLite is refused with the mixed-precision hint; ONNX runs it in float16,
    within 1e-3 of TF's float16 (not 1e-4: the two round differently), and says so when held to 1e-4."""
    path = _save(tmp_path, [None, None], head_dtype=tf.float16)
    assert main(["compile", str(path), "--target", "tflite", "-o", str(tmp_path / "t")]) == 2
    assert "computes in float16" in capsys.readouterr().err
    code = main(["compile", str(path), "--target", "onnx", "-o", str(tmp_path / "o"), "--tolerance", "1e-7"])
    assert code == 1 and "--target onnx and a --tolerance float16 can meet" in capsys.readouterr().err
    assert main(["compile", str(path), "--target", "onnx", "-o", str(tmp_path / "o"), "--tolerance", "1e-3"]) == 0


def _save_lengths_model(tmp_path):
    """The encoder behind a signature that takes each row's length and builds the mask itself."""
    m = Encoder()
    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"), tf.TensorSpec([None], tf.int32, name="lengths")]
    m.serve = tf.function(lambda input_ids, lengths: m.logits(
        input_ids, tf.sequence_mask(lengths, tf.shape(input_ids)[1], tf.int32)), input_signature=spec)
    path = tmp_path / "lengths_model"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve.get_concrete_function()})
    return path


def test_lengths_input_is_fed_valid_lengths(tmp_path):
    """A [batch] integer input is each row's valid length (tf.sequence_mask(lengths)): verification
    feeds lengths that match the padded ids, not a [batch, seq] array TF rejects."""
    report = _compile(tmp_path, _save_lengths_model(tmp_path))
    assert report["verification"]["onnx"]["cases"] == [[1, 8], [4, 8], [1, 19], [4, 19]]


def test_calibration_batches_feed_lengths(tmp_path):
    """Pruning and calibration batches give a lengths input the row sums of their own mask."""
    from bertc.frontend.tf import import_model
    from bertc.runtime.calib import random_calibration

    graph, _ = import_model(_save_lengths_model(tmp_path))
    batch = next(random_calibration(graph, n=6, seq=10).batches(6))
    assert batch["lengths"].shape == (6,)
    np.testing.assert_array_equal(batch["lengths"], (batch["input_ids"] != 0).sum(axis=1))


def test_packed_inputs_cannot_be_calibrated_and_say_why(tmp_path):
    """ids and mask packed in one [batch, 2, seq] tensor compile (verified on the user's data), but
    pruning and calibration have no token ids to make batches of: one message, not a KeyError."""
    from bertc.diagnostics import BertcError
    from bertc.frontend.tf import import_model
    from bertc.runtime.calib import random_calibration

    m = Encoder()
    m.serve = tf.function(lambda features: m.logits(features[:, 0], features[:, 1]),
                          input_signature=[tf.TensorSpec([None, 2, None], tf.int32, name="features")])
    path = tmp_path / "packed"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve.get_concrete_function()})
    ids = np.array([[5, 6, 7, 0], [8, 9, 3, 2]], np.int32)
    np.savez(tmp_path / "v.npz", features=np.stack([ids, (ids > 0).astype(np.int32)], 1))
    assert main(["compile", str(path), "-o", str(tmp_path / "o"), "--verify-data", str(tmp_path / "v.npz")]) == 0
    graph, _ = import_model(path)
    with pytest.raises(BertcError, match=r"none of the model's inputs \(features\) is \[batch, seq\] token ids"):
        random_calibration(graph)


def test_calibration_batches_keep_fixed_signature_shapes(tmp_path):
    """Batches that score heads or calibrate ranges take the shape a fixed signature demands:
    [1, 16] here, whatever batch size the pass asks for and however long the sequences are."""
    from bertc.frontend.tf import import_model
    from bertc.runtime.calib import random_calibration

    graph, _ = import_model(_save(tmp_path, [1, 16]))
    calib = random_calibration(graph, n=5)
    batches = list(calib.batches(8))
    assert len(batches) == calib.num_batches(8) == 5
    assert {b["input_ids"].shape for b in batches} == {(1, 16)}


def test_float_embeddings_input_is_fed_floats(tmp_path):
    """inputs_embeds [batch, seq, hidden] (float) instead of ids: verification feeds it random floats of
    that shape, not a [batch, seq] array of token ids TF rejects."""
    m = Encoder()
    spec = [tf.TensorSpec([None, None, HIDDEN], tf.float32, name="inputs_embeds"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    m.serve = tf.function(lambda inputs_embeds, attention_mask: {"logits": tf.matmul(
        tf.reduce_sum(inputs_embeds * tf.cast(attention_mask, tf.float32)[..., None], 1), m.cls)},
        input_signature=spec)
    path = tmp_path / "embeds"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve.get_concrete_function()})
    report = _compile(tmp_path, path)
    assert report["verification"]["onnx"]["cases"] == [[1, 8], [4, 8], [1, 19], [4, 19]]


def _tf1_cond_pb(tmp_path, flag: str) -> str:
    """A TF1 graph-mode model whose dropout is switched by tf.cond(is_training, ...), frozen to .pb.

    ``flag``: "default_false" (placeholder_with_default(False): nobody feeds it) or "fed" (a placeholder,
    an input of the graph).  Built with control flow v1 (Switch/Merge), as TF1 code runs.
    """
    from tensorflow.python.ops import control_flow_util

    v1 = tf.compat.v1
    was_v2 = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        with tf.Graph().as_default() as g:
            ids = v1.placeholder(tf.int32, [None, None], name="input_ids")
            training = (v1.placeholder_with_default(False, [], name="is_training") if flag == "default_false"
                        else v1.placeholder(tf.bool, [], name="is_training"))
            emb = tf.Variable(np.random.default_rng(0).normal(size=(VOCAB, HIDDEN)).astype(np.float32))
            h = tf.gather(emb, ids)
            h = v1.cond(training, lambda: tf.nn.dropout(h, rate=0.1), lambda: h)
            tf.identity(tf.reduce_sum(h, axis=1), name="pooled")
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                frozen = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["pooled"])
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = was_v2
    assert {"Switch", "Merge"} <= {n.op for n in frozen.node}
    path = tmp_path / f"{flag}.pb"
    path.write_bytes(frozen.SerializeToString())
    return str(path)


def test_tf1_cond_on_an_unfed_default_takes_its_branch(tmp_path):
    """Switch/Merge on placeholder_with_default(False): the inference branch is imported, the dropout
    branch (RandomUniform and all) dropped, and both artifacts match TF run with the default."""
    _compile(tmp_path, _tf1_cond_pb(tmp_path, "default_false"), "--inputs", "input_ids", "--outputs", "pooled")


def test_tf1_cond_on_a_fed_flag_is_refused(tmp_path, capsys):
    """A flag that is an input of the graph decides the branch at run time: refused as control flow."""
    path = _tf1_cond_pb(tmp_path, "fed")
    argv = ["compile", path, "-o", str(tmp_path / "o"), "--inputs", "input_ids,is_training", "--outputs", "pooled"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "control flow" in err and "Switch" in err and "Traceback" not in err


def test_position_ids_input_is_fed_positions(tmp_path):
    """An input named position_ids indexes a position table, not the vocabulary: verification and
    calibration feed it 0, 1, ..., seq - 1 (fed token ids, it read past the table's rows)."""
    from bertc.frontend.tf import import_model
    from bertc.runtime.calib import random_calibration
    from bertc.runtime.inputs import random_graph_inputs

    m = Encoder()
    spec = [tf.TensorSpec([None, None], tf.int32, name=n) for n in ("input_ids", "position_ids", "attention_mask")]
    m.serve = tf.function(lambda input_ids, position_ids, attention_mask: {"logits": tf.matmul(
        tf.reduce_sum(tf.gather(m.word, input_ids) + tf.gather(m.pos, position_ids), 1), m.cls)}, input_signature=spec)
    path = tmp_path / "positions"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve.get_concrete_function()})
    _compile(tmp_path, path)
    graph, _ = import_model(path)
    want = np.broadcast_to(np.arange(19), (4, 19))
    np.testing.assert_array_equal(random_graph_inputs(graph, 4, 19)["position_ids"], want)
    batch = next(random_calibration(graph, n=3, seq=10).batches(3))
    np.testing.assert_array_equal(batch["position_ids"], np.broadcast_to(np.arange(batch["input_ids"].shape[1]),
                                                                          batch["input_ids"].shape))


def test_legacy_keras_h5_says_how_to_export(tmp_path, capsys):
    """A tf-keras .h5 file: one message saying to export a SavedModel, not "not a model"."""
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n")
    assert main(["compile", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "legacy Keras HDF5 file" in err and "model.export(DIR)" in err
