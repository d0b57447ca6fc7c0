"""Pruning a BERT written like Google's original modeling.py (examples/tf1_bert.py), end to end.

That graph style flattens activations to [batch*seq, hidden] for every dense
layer, splits heads with a 4-D reshape whose target is packed from tf.shape
pieces at run time (one target that CSE shares across Q, K, V and layers) and
merges them with a 2-D reshape.  Each pipeline is compiled with the CLI from
the SavedModel and from the frozen .pb, to ONNX and TFLite.  The oracle is
TensorFlow itself: removing heads equals zeroing their rows of the attention
output kernel, removing neurons equals zeroing their intermediate kernel
columns and bias entries (GELU(0) = 0), so each artifact must match the TF1
model rebuilt with those weights zeroed (the kept units are read from the
pass report).  The compile's own check holds each artifact to the final IR.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from bertc.cli import main
from bertc.ir.parser import parse_graph
from bertc.pass_manager import PassContext, PassFailed, PassManager, parse_pipeline
from examples import tf1_bert
from tests.test_compile import run_onnx, run_tflite

HIDDEN, HEADS, WIDTH, LAYERS = 64, 4, 128, 2
SIZE = HIDDEN // HEADS
FP32_TOL = 1e-4  # the compile default: fp32 artifacts vs TF
# quant_int8 against the zeroed TF model: its own declared bound (max error <= 30% of the largest logit)
INT8_REL = 0.3

HEADS_P = "prune_heads{ratio=0.5}"
NEURONS_P = "prune_neurons{ratio=0.5}"
PIPELINES = [HEADS_P, NEURONS_P, f"{HEADS_P},{NEURONS_P}", f"{HEADS_P},{NEURONS_P},quant_int8"]


def _feeds(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int32)
    mask[1:, seq - 3:] = 0  # padding in every row but the first
    return {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int32), "input_mask": mask,
            "segment_ids": (np.arange(seq) >= seq // 2).astype(np.int32)[None].repeat(batch, 0)}


FEEDS = [_feeds(1, 6, 1), _feeds(3, 11, 2)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, list[str]]:
    d = tmp_path_factory.mktemp("tf1_bert")
    sm = tf1_bert.save_saved_model(d / "sm")
    ins, outs = tf1_bert.save_frozen_pb(d / "model.pb")
    return {"saved_model": [sm],
            "pb": [str(d / "model.pb"), "--inputs", ",".join(ins), "--outputs", ",".join(outs)]}


@pytest.fixture(scope="module")
def compiled(sources, tmp_path_factory):
    """(exit code, output dir, report) per (source, pipeline), each compiled once."""
    cache: dict = {}

    def get(source: str, pipeline: str):
        if (source, pipeline) not in cache:
            out = tmp_path_factory.mktemp("out")
            code = main(["compile", *sources[source], "--target", "all", "-o", str(out), "--passes", pipeline])
            report = json.loads((out / "report.json").read_text()) if code == 0 else None
            cache[(source, pipeline)] = (code, out, report)
        return cache[(source, pipeline)]

    return get


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return tf1_bert.initial_weights()


def zeroed_weights(weights: dict, reports: dict) -> dict[str, np.ndarray]:
    """The TF1 weights with every removed head's O rows and removed neuron's up column + bias zeroed."""
    w = {k: v.copy() for k, v in weights.items()}
    for layer, kept in reports.get("prune_heads", {}).get("kept", {}).items():
        o = w[f"bert/encoder/layer_{layer}/attention/output/dense/kernel"]
        for h in set(range(HEADS)) - set(kept):
            o[h * SIZE:(h + 1) * SIZE] = 0.0
    for layer, kept in reports.get("prune_neurons", {}).get("kept", {}).items():
        drop = sorted(set(range(WIDTH)) - set(kept))
        w[f"bert/encoder/layer_{layer}/intermediate/dense/kernel"][:, drop] = 0.0
        w[f"bert/encoder/layer_{layer}/intermediate/dense/bias"][drop] = 0.0
    return w


def _initializer_shapes(path) -> dict[str, list[int]]:
    return {i.name: list(i.dims) for i in onnx.load(str(path)).graph.initializer}


def _kernel_shape(shapes: dict, layer: int, dense: str) -> list[int]:
    """The ONNX initializer of one dense kernel (float, or int8 after quant_int8)."""
    key = f"layer_{layer}/{dense}/kernel"
    found = [s for n, s in shapes.items() if n.endswith(key) or n.endswith(key + "_int8_u8")
             or n.endswith(key + "_int8")]
    assert len(found) == 1, (key, sorted(shapes))
    return found[0]


@pytest.mark.parametrize("source", ["saved_model", "pb"])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_prunes_compiles_and_matches_zeroed_tf(compiled, weights, source, pipeline):
    code, out, report = compiled(source, pipeline)
    assert code == 0
    reports = report["pass_reports"]
    heads = {int(k): len(v) for k, v in reports.get("prune_heads", {}).get("kept", {}).items()}
    neurons = {int(k): len(v) for k, v in reports.get("prune_neurons", {}).get("kept", {}).items()}
    assert sum(heads.values()) == (LAYERS * HEADS // 2 if heads else 0)
    assert sum(neurons.values()) == (LAYERS * WIDTH // 2 if neurons else 0)
    shapes = _initializer_shapes(out / "model.onnx")
    for layer in range(LAYERS):  # the matrices really shrank
        n_q = SIZE * heads.get(layer, HEADS)
        assert _kernel_shape(shapes, layer, "attention/self/query") == [HIDDEN, n_q]
        assert _kernel_shape(shapes, layer, "attention/output/dense") == [n_q, HIDDEN]
        assert _kernel_shape(shapes, layer, "intermediate/dense") == [HIDDEN, neurons.get(layer, WIDTH)]
        assert _kernel_shape(shapes, layer, "output/dense") == [neurons.get(layer, WIDTH), HIDDEN]
    zeroed = zeroed_weights(weights, reports)
    for feeds in FEEDS:
        want = tf1_bert.run_logits(feeds, weights=zeroed)
        for name, got in (("onnx", run_onnx(out / "model.onnx", feeds)),
                          ("tflite", run_tflite(out / "model.tflite", feeds))):
            err = float(np.abs(got["logits"] - want).max())
            if "quant_int8" in pipeline:
                assert err <= INT8_REL * float(np.abs(want).max()), f"{name}: {err}"
                assert (got["logits"].argmax(-1) == want.argmax(-1)).mean() >= 0.5
            else:
                assert err <= FP32_TOL, f"{name} {source} {pipeline}: max abs err {err:.3g} vs zeroed TF"


def test_unpruned_artifacts_match_tf(compiled):
    """The oracle's own footing: with nothing removed, the artifacts match the TF1 session."""
    code, out, _ = compiled("saved_model", "prune_heads{ratio=0}")
    assert code == 0
    for feeds in FEEDS:
        want = tf1_bert.run_logits(feeds)
        assert float(np.abs(run_onnx(out / "model.onnx", feeds)["logits"] - want).max()) <= FP32_TOL


@pytest.mark.parametrize("pipeline", [f"{HEADS_P[:-1]},reconstruct=true}}", f"{NEURONS_P[:-1]},reconstruct=true}}"])
def test_reconstruct_refits_every_sublayer(compiled, pipeline):
    """reconstruct=true finds both sublayers of both layers on the flattened layout and never makes them worse."""
    code, _, report = compiled("saved_model", pipeline)
    assert code == 0
    rep = report["pass_reports"][pipeline.split("{")[0]]["reconstruction"]
    fits = {(f["layer"], f["sublayer"]): f for f in rep["sublayers"]}
    assert set(fits) == {(i, s) for i in range(LAYERS) for s in ("attention", "ffn")}
    assert all(f["error_after"] <= f["error_before"] for f in fits.values())


# ------------------------------------------------------------------ clean errors on graphs the pass cannot prune
def _bir(edit_from: str, edit_to: str) -> str:
    from pathlib import Path

    text = (Path(__file__).parent / "ir" / "prune_tf1.bir").read_text()
    assert edit_from in text
    return text.replace(edit_from, edit_to)


def _prune_error(text: str, pipeline: str) -> str:
    with pytest.raises(PassFailed) as info:
        PassManager(parse_pipeline(pipeline)).run(parse_graph(text, {}), PassContext())
    msg = str(info.value)
    assert "bug in the pass" not in msg and "Traceback" not in msg
    return msg


def test_a_head_count_from_an_unrelated_shape_is_reported_at_its_reshape():
    """[heads, head_size] read at run time off another tensor's shape: pruning cannot change it."""
    text = _bir('func @main(%x: f32[batch,seq,4]) -> (y) {\n  %xs = shape %x {dtype="i32"} : i32[3] loc("l0/Shape")',
                'func @main(%x: f32[batch,seq,4], %z: f32[2,2]) -> (y) {\n'
                '  %xs = shape %x {dtype="i32"} : i32[3] loc("l0/Shape")')
    text = text.replace('%hd = const dense<[2, 2]> : i32[2] loc("l0/Reshape/shape/2")',
                        '%hd = shape %z {dtype="i32"} : i32[2] loc("l0/Reshape/shape/2")')
    msg = _prune_error(text, 'prune_heads{keep="0:1"}')
    assert 'layer 0 (loc("l0/query/MatMul"))' in msg and 'loc("l0/Reshape")' in msg, msg
    assert "where 1 (was 2) is needed" in msg, msg


def test_an_unrecognised_layer_is_named_with_the_reason(tmp_path, capsys):
    """An output projection whose kernel is not a constant: no layer to prune, and the CLI says where and why."""
    text = _bir('%o = matmul %cr, %wo', '%wo2 = add %wo, %wo : f32[4,4] loc("l0/output/kernel_x2")\n'
                '  %o = matmul %cr, %wo2')
    text = text.replace('func @main(%x: f32[batch,seq,4])', 'func @main(%x: f32[batch,seq,4], %wo: f32[4,4])')
    text = text.replace('  %wo = const', '  %wo_unused = const')
    msg = _prune_error(text, "prune_heads{ratio=0.5,criterion=magnitude}")
    assert "no attention layer to prune" in msg and 'softmax loc("l0/Softmax")' in msg, msg
    assert 'matmul at loc("l0/output/MatMul") is not a dense layer' in msg, msg
    assert 'made by add at loc("l0/output/kernel_x2")' in msg, msg
    path = tmp_path / "m.bir"
    path.write_text(text)
    assert main(["opt", str(path), "-p", "prune_heads{ratio=0.5,criterion=magnitude}"]) == 2
    err = capsys.readouterr().err
    assert "l0/Softmax" in err and "bug in the pass" not in err
