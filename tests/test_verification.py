"""Verification that would catch a wrong answer.

* The exact check scales with the numbers (``Tolerance``): a lowering that is 0.5%
  off fails a compile on either target, even on logits of ~1e-2.
* An int8 pipeline's artifacts are held to their IR op by op (``op_parity``), so the
  same 0.5% error fails there too, although the check against TF is loose.
* Inputs whose dims the graph does not tie get dims of their own, and verification
  feeds them other sizes: a compile that assumed them equal cannot pass.

Errors are injected into a lowering by scaling one weight while the target lowers
it (the IR is left as it was), which is what a wrong lowering rule looks like from
outside.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bertc.cli import main
from bertc.ir.graph import Graph, Value
from bertc.runtime.fidelity import Fidelity, Tolerance, measure

INJECTED = 1.005  # a 0.5% error


def compile_(capsys, *argv) -> tuple[int, str]:
    code = main(["compile", *map(str, argv)])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- the bound
@pytest.mark.parametrize("text,want", [
    ("1e-5", Tolerance(1e-5, 1e-6)),
    ("1e-4,1e-7", Tolerance(1e-4, 1e-7)),
    ("atol=0,rtol=2e-5", Tolerance(2e-5, 0.0)),
    ("atol=1e-3", Tolerance(2e-5, 1e-3)),
])
def test_tolerance_parses(text, want):
    assert Tolerance.parse(text) == want


@pytest.mark.parametrize("text", ["", "-1", "1e-5,1e-6,1", "nan", "inf", "rtol=1,rtol=2", "btol=1", "x"])
def test_bad_tolerance_is_refused(text):
    with pytest.raises(ValueError):
        Tolerance.parse(text)


def test_bad_tolerance_option_exits_2_before_any_work(capsys, tmp_path):
    code = main(["compile", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "--tolerance", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and "--tolerance -1" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


class _Fixed:
    """A session that returns fixed outputs."""

    def __init__(self, outputs: dict[str, np.ndarray]) -> None:
        self.outputs = outputs

    def run(self, feeds):
        return self.outputs


def test_bound_scales_with_the_output():
    """The same relative error passes or fails whatever the logits' scale; absolute 1e-4 did not."""
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1e-2, 1.0, 30.0):
        ref = rng.standard_normal((4, 3)).astype(np.float32) * scale
        ok = measure(_Fixed({"y": ref}), _Fixed({"y": ref * (1 + 2e-6)}), [{}], Fidelity.exact())
        bad = measure(_Fixed({"y": ref}), _Fixed({"y": ref * INJECTED}), [{}], Fidelity.exact())
        assert ok.ok, (scale, ok.failures)
        assert not bad.ok, scale
        assert "differs by" in bad.failures[0]


def test_near_zero_elements_are_held_to_the_outputs_scale():
    """A hidden state's near-zero element may be off by float rounding of its neighbours' size."""
    ref = np.array([[10.0, -8.0, 1e-4, 0.0]], np.float32)
    rms = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
    near = ref.copy()
    near[0, 2] += 1e-5 * rms  # half the rms term's room
    assert measure(_Fixed({"h": ref}), _Fixed({"h": near}), [{}], Fidelity.exact()).ok
    far = ref.copy()
    far[0, 3] += 5e-5 * rms
    assert not measure(_Fixed({"h": ref}), _Fixed({"h": far}), [{}], Fidelity.exact()).ok


def test_nan_fails_the_bound():
    ref = np.ones((2, 3), np.float32)
    got = ref.copy()
    got[1, 1] = np.nan
    assert not measure(_Fixed({"y": ref}), _Fixed({"y": got}), [{}], Fidelity.exact()).ok


# --------------------------------------------------------------------------- injected lowering errors
def _last_weight(graph: Graph) -> Value:
    """The operand that scales the model's last dense layer: a float kernel, or a qmatmul's kernel scale."""
    for op in reversed(graph.ops):
        if op.kind == "qmatmul":
            return op.operands[2]
        if op.kind == "matmul" and op.operands[1].is_const():
            return op.operands[1]
    raise AssertionError("no dense layer")


@contextmanager
def _scaled_while_lowering(graph: Graph):
    """The last dense layer's weight times INJECTED for the duration, restored after."""
    const = _last_weight(graph).producer
    saved = const.attrs["value"]
    const.attrs["value"] = (saved * INJECTED).astype(saved.dtype)
    try:
        yield
    finally:
        const.attrs["value"] = saved


@pytest.fixture
def inject(monkeypatch):
    """``inject("onnx")``: that target's lowering scales the last dense layer's weight by 0.5%."""
    import bertc.targets.onnx as onnx_target
    import bertc.targets.tflite as tflite_target

    def wrap(fn):
        def lowered(graph, *args, **kwargs):
            with _scaled_while_lowering(graph):
                return fn(graph, *args, **kwargs)
        return lowered

    def apply(kind: str) -> None:
        if kind == "onnx":  # the artifact (written piece by piece) and the op-by-op runner
            monkeypatch.setattr(onnx_target, "_lowered", wrap(onnx_target._lowered))  # both lower here
        else:
            target = tflite_target.TARGET
            monkeypatch.setattr(tflite_target, "TARGET", dataclasses.replace(target, lower=wrap(target.lower)))
    return apply


@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_a_lowering_off_by_half_a_percent_fails_compile(tf_bert, capsys, tmp_path, inject, target):
    inject(target)
    code, err = compile_(capsys, tf_bert.path, "--target", target, "-o", tmp_path / "out")
    assert code == 1, err
    assert f"model.{target} does not match the source model" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert f"model.{target} departs from the IR at" in err  # the diagnosis: the lowering, and where


def test_an_import_off_by_half_a_percent_is_located_at_its_tf_node(tf_bert, capsys, tmp_path, monkeypatch):
    """A handler that imports the pooler's Tanh 0.5% off: both lowerings are innocent, and the
    message names the first IR value that departs from TF, with its node."""
    from bertc.frontend import tf_ops  # noqa: F401  (fills HANDLERS)
    from bertc.frontend.tf import HANDLERS

    real = HANDLERS["Tanh"]

    def skewed(ctx, node, ins):
        return ctx.emit("mul", [real(ctx, node, ins), ctx.graph.const(np.float32(INJECTED))])

    monkeypatch.setitem(HANDLERS, "Tanh", skewed)
    code, err = compile_(capsys, tf_bert.path, "--target", "all", "-o", tmp_path / "out")
    assert code == 1, err
    assert "compute what the IR says, op by op" in err
    assert "The IR first departs from TF at" in err and "(TF node 'Tanh')" in err, err


def test_a_failure_of_the_ir_itself_is_told_apart(tf_bert, capsys, tmp_path, monkeypatch):
    """When the IR (not the lowering) is wrong, the op-by-op check says the lowering is innocent."""
    from bertc.runtime import verify

    real = verify.record

    def skewed(reference, graph, *args, **kwargs):
        expected = real(reference, graph, *args, **kwargs)
        for _, outputs in expected.runs:
            for k in outputs:
                outputs[k] = outputs[k] * INJECTED
        return expected

    monkeypatch.setattr(verify, "record", skewed)
    code, err = compile_(capsys, tf_bert.path, "--target", "onnx", "-o", tmp_path / "out")
    assert code == 1
    assert "compute what the IR says, op by op" in err


@pytest.mark.parametrize("passes", ["quant_int8", "calibrate,quant_full"])
def test_int8_artifacts_are_held_to_their_ir_op_by_op(tf_bert, capsys, tmp_path, passes):
    code, err = compile_(capsys, tf_bert.path, "--target", "all", "--passes", passes, "-o", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    for kind, checked in report["verification_op_by_op"].items():
        assert checked["ok"] and checked["ops_checked"] > 50, (kind, checked)
        assert checked["worst_ratio"] < 0.6, (kind, checked)  # rounding uses well under the bound


@pytest.mark.parametrize("passes", ["quant_int8", "calibrate,quant_full"])
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_an_int8_lowering_off_by_half_a_percent_fails_compile(tf_bert, capsys, tmp_path, inject, target, passes):
    inject(target)
    code, err = compile_(capsys, tf_bert.path, "--target", target, "--passes", passes, "-o", tmp_path / "out")
    assert code == 1, err
    assert f"model.{target} does not compute what its IR says" in err, err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- dims the graph does not tie
@pytest.fixture(scope="module")
def two_batches_model(tmp_path_factory):
    """y tiled x's batch times, then split into x's batch rows: [b_x, b_y * 6] for any sizes.
    Were x and y given one batch symbol, the reshape's target would be read as "keep the
    tiled tensor's dim 0" (b_x * b_y rows): right only when b_y is 1."""

    class M(tf.Module):
        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None, 6], tf.float32, name="y")])
        def __call__(self, x, y):
            rows = tf.shape(x)[0]
            tiled = tf.reshape(tf.tile(y, [rows, 1]), [rows, -1])
            return {"out": tf.reduce_sum(tiled, axis=1, keepdims=True) + x}

    path = tmp_path_factory.mktemp("two_batches") / "model"
    m = M()
    tf.saved_model.save(m, str(path), signatures=m.__call__)
    return path


def test_inputs_the_graph_does_not_tie_keep_their_own_batch(two_batches_model, capsys, tmp_path):
    from bertc.frontend.tf import import_model

    graph, _ = import_model(two_batches_model)
    x, y = graph.inputs
    assert x.shape[0] != y.shape[0], (x.type, y.type)
    code, err = compile_(capsys, two_batches_model, "--target", "all", "-o", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(v["ok"] for v in report["verification"].values())


def test_verification_feeds_untied_inputs_other_sizes(two_batches_model):
    from bertc.frontend.tf import import_model
    from bertc.runtime.inputs import random_graph_inputs

    graph, _ = import_model(two_batches_model)
    for batch in (1, 4):
        feeds = random_graph_inputs(graph, batch, 8, independent=True)
        assert feeds["x"].shape[0] == batch and feeds["y"].shape[0] != batch, {k: v.shape for k, v in feeds.items()}
        same = random_graph_inputs(graph, batch, 8)  # as a tokenizer feeds them: one batch
        assert same["x"].shape[0] == same["y"].shape[0] == batch


def test_one_batch_for_all_inputs_was_a_miscompile():
    """The old import's assumption (every input's dim 0 is one 'batch') gives a wrong answer
    here, which the import now avoids: y reshaped to x's batch."""
    from bertc.frontend import tf as frontend
    from bertc.frontend.tf import import_function
    from bertc.ir.interpreter import run_graph

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None, 6])])
    def f(x, y):
        return tf.reshape(y, [tf.shape(x)[0], -1])

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 4)).astype(np.float32), "y": rng.standard_normal((3, 6)).astype(np.float32)}
    want = f(**feeds).numpy()  # [2, 9]
    graph, _ = import_function(f.get_concrete_function())
    assert np.array_equal(run_graph(graph, feeds)["output_0"], want)

    real = frontend.input_dim_symbols
    try:
        frontend.input_dim_symbols = lambda model, nodes, order: {
            (i, j): frontend.DIM_SYMBOLS.get(j, f"d{j}") for i, j in frontend._free_dims(model)}
        tied, _ = import_function(f.get_concrete_function())
    finally:
        frontend.input_dim_symbols = real
    assert run_graph(tied, feeds)["output_0"].shape != want.shape


def _save(tmp_path, fn) -> Path:
    class M(tf.Module):
        @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None, 6], tf.float32, name="y")])
        def __call__(self, x, y):
            return {"out": fn(x, y)}

    m = M()
    tf.saved_model.save(m, str(tmp_path / "model"), signatures=m.__call__)
    return tmp_path / "model"


def test_a_source_that_needs_equal_sizes_is_verified_at_equal_sizes(capsys, tmp_path):
    """Inputs that must agree in a way the graph cannot show (y's rows a multiple of x's): TF
    refuses independent sizes, so verification falls back to one batch for all, and says so."""
    model = _save(tmp_path, lambda x, y: tf.reshape(y, [tf.shape(x)[0], -1]))
    code, err = compile_(capsys, model, "--target", "onnx", "-o", tmp_path / "out")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "every input at one batch and length" in report["verification_data"]


def test_a_source_refusing_every_verification_input_is_a_clear_error(capsys, tmp_path):
    model = _save(tmp_path, lambda x, y: tf.reshape(y, [tf.shape(x)[0] + 7, -1]))  # 6 * b values in b + 7 rows
    code, err = compile_(capsys, model, "--target", "onnx", "-o", tmp_path / "out")
    assert code == 2, err
    assert "--verify-data" in err and "refuses" in err and "Traceback" not in err
    assert "bug in bertc" not in err


def test_bert_inputs_share_batch_and_seq(tf_bert):
    graph = tf_bert.graph()
    assert {v.shape[:2] for v in graph.inputs} == {("batch", "seq")}
