"""prune_heads on attention written in graph forms other than BERT's, end to end against TensorFlow.

Each model is one post-norm encoder layer in plain TF (hidden 32, 4 heads of 8),
saved as a SavedModel, compiled with ``prune_heads`` to ONNX and TFLite (exit
code 0: both artifacts verified against the pruned IR), and checked against TF
itself: removing heads equals zeroing their rows of the output projection, so
each artifact must match the tf.function run with those rows zeroed (the kept
heads are read from the pass report) within 1e-5, and sit 10x closer to it than
the zeroing moves the logits.  The forms:

- ``fused_split``: one [hidden, 3*hidden] QKV kernel cut by tf.split (each third
  holds every head: the pass slices each third's head columns and rescales the
  split bounds);
- ``fused_unstack``: the fused output reshaped to [b, s, 3, heads, d] and cut by
  tf.unstack (the reshape target's head count is rewritten);
- ``broadcast_mask``: the mask broadcast to [b, heads, s, s] by tf.broadcast_to
  with a tf.stack target holding the head count as a constant;
- ``where_ones_like``: Keras' masked softmax, where(logical_and(ones_like(scores),
  mask), scores, -1e9) (the condition varies along the heads; its shape follows);
- ``one_projection``: Q, K and V are one dense layer (what CSE leaves of equal
  Q/K/V kernels, as in keras-hub's seeded ESM): heads counted from O;
- ``padded``: the sequence padded to a multiple of 4 with paddings computed from
  tf.shape, so every dim but the heads' is unknown in the IR.

And keras-hub's ALBERT (EinsumDense kernels [hidden, heads, head_size], one set
of weights shared by both layers, a logical_and mask; pruned with the same heads
in both layers, which is what zeroing the one shared O kernel's rows can check),
and DeBERTa-v3, built by the corpus builder in a child process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bertc.cli import main
from tests.test_compile import run_onnx, run_tflite

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, HEADS, HEAD, FFN, VOCAB, LABELS = 32, 4, 8, 64, 100, 3
NEG = -10000.0
FP32_TOL = 1e-5


def _model(form: str):
    """A tf.Module with one encoder layer whose attention is written in ``form``."""
    import tensorflow as tf

    rng = np.random.default_rng(7)

    def var(name, *shape, std=0.3):
        return tf.Variable(rng.normal(0, std, shape).astype(np.float32), name=name)

    m = tf.Module()
    m.emb, m.pos = var("emb", VOCAB, HIDDEN, std=1.0), var("pos", 40, HIDDEN, std=1.0)
    fused = form.startswith("fused")
    if form == "one_projection":
        m.w = {"q": (var("q", HIDDEN, HIDDEN), var("q_b", HIDDEN, std=0.1))}
    elif fused:
        m.qkv, m.qkv_b = var("qkv", HIDDEN, 3 * HIDDEN), var("qkv_b", 3 * HIDDEN, std=0.1)
    else:
        m.w = {n: (var(n, HIDDEN, HIDDEN), var(n + "_b", HIDDEN, std=0.1)) for n in "qkv"}
    m.o, m.o_b = var("o", HIDDEN, HIDDEN), var("o_b", HIDDEN, std=0.1)
    m.up, m.up_b, m.down = var("up", HIDDEN, FFN), var("up_b", FFN, std=0.1), var("down", FFN, HIDDEN)
    m.cls = var("cls", HIDDEN, LABELS)

    def norm(x):
        mean, v = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(v + 1e-6)

    def heads(x, b, s):
        return tf.transpose(tf.reshape(x, [b, s, HEADS, HEAD]), [0, 2, 1, 3])

    def forward(ids, mask):
        if form == "padded":
            seq0 = tf.shape(ids)[1]
            extra = (4 - seq0 % 4) % 4
            pads = tf.stack([tf.zeros([2], tf.int32), tf.stack([0, extra])])
            ids, mask = tf.pad(ids, pads), tf.pad(mask, pads)
        b, s = tf.shape(ids)[0], tf.shape(ids)[1]
        h = norm(tf.gather(m.emb, ids) + m.pos[None, :s])
        if fused:
            x = tf.matmul(h, m.qkv) + m.qkv_b
            if form == "fused_split":
                q, k, v = (heads(t, b, s) for t in tf.split(x, 3, axis=-1))
            else:
                x = tf.reshape(x, [b, s, 3, HEADS, HEAD])
                q, k, v = (tf.transpose(t, [0, 2, 1, 3]) for t in tf.unstack(x, axis=2))
        elif form == "one_projection":
            q = k = v = heads(tf.matmul(h, m.w["q"][0]) + m.w["q"][1], b, s)
        else:
            q, k, v = (heads(tf.matmul(h, m.w[n][0]) + m.w[n][1], b, s) for n in "qkv")
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(HEAD)
        pad = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * NEG
        if form == "broadcast_mask":
            scores = scores + tf.broadcast_to(pad, tf.stack([b, HEADS, s, s]))
        elif form == "where_ones_like":
            keep = tf.logical_and(tf.ones_like(scores, dtype=tf.bool), tf.cast(mask, tf.bool)[:, None, None, :])
            scores = tf.where(keep, scores, -1e9)
        else:
            scores = scores + pad
        ctx = tf.reshape(tf.transpose(tf.matmul(tf.nn.softmax(scores), v), [0, 2, 1, 3]), [b, s, HIDDEN])
        h = norm(h + tf.matmul(ctx, m.o) + m.o_b)
        h = norm(h + tf.matmul(tf.nn.gelu(tf.matmul(h, m.up) + m.up_b), m.down))
        return {"logits": tf.matmul(h[:, 0], m.cls)}

    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    m.serve = tf.function(lambda input_ids, attention_mask: forward(input_ids, attention_mask),
                          input_signature=spec)
    return m


def _feeds(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int32)
    mask[1:, seq - 3:] = 0
    return {"input_ids": rng.integers(1, VOCAB, (batch, seq)).astype(np.int32), "attention_mask": mask}


def _tf_logits(m, feeds: dict) -> np.ndarray:
    import tensorflow as tf

    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # TF's graph as written
    try:
        return m.serve(**{k: tf.constant(v) for k, v in feeds.items()})["logits"].numpy()
    finally:
        tf.config.optimizer.set_experimental_options(saved)


def _dims(model: Path) -> list[list[int]]:
    return [list(i.dims) for i in onnx.load(str(model)).graph.initializer]


def _check_artifacts(out: Path, want_ref: list[tuple[dict, np.ndarray, np.ndarray]], what: str) -> None:
    """Both artifacts match the zeroed TF model within FP32_TOL, 10x below what the zeroing moves."""
    for feeds, want, ref in want_ref:
        moved = float(np.abs(want - ref).max())
        for target, got in (("onnx", run_onnx(out / "model.onnx", feeds)),
                            ("tflite", run_tflite(out / "model.tflite", feeds))):
            err = float(np.abs(got["logits"] - want).max())
            assert err <= FP32_TOL, f"{what} {target}: max abs err {err:.3g} vs zeroed TF"
            assert 10 * err < moved, f"{what} {target}: err {err:.3g} not 10x below the zeroing's {moved:.3g}"


FORMS = ["fused_split", "fused_unstack", "one_projection", "broadcast_mask", "where_ones_like", "padded"]


@pytest.mark.parametrize("form", FORMS)
def test_form_prunes_and_matches_zeroed_tf(tmp_path, form):
    import tensorflow as tf

    m = _model(form)
    tf.saved_model.save(m, str(tmp_path / "sm"), signatures={"serving_default": m.serve.get_concrete_function()})
    out = tmp_path / "out"
    code = main(["compile", str(tmp_path / "sm"), "--target", "all", "-o", str(out),
                 "--passes", "prune_heads{ratio=0.5,criterion=magnitude}"])
    assert code == 0, f"{form}: prune_heads did not compile and verify"
    kept = json.loads((out / "report.json").read_text())["pass_reports"]["prune_heads"]["kept"]
    assert list(kept) == ["0"] and len(kept["0"]) == HEADS // 2, kept
    width = len(kept["0"]) * HEAD
    dims = _dims(out / "model.onnx")
    assert dims.count([width, HIDDEN]) == 1 and [HIDDEN, HIDDEN] not in dims, dims  # O shrank (and Q/K/V)
    assert dims.count([HIDDEN, 3 * width] if form.startswith("fused") else [HIDDEN, width]) == \
        (3 if form in ("broadcast_mask", "where_ones_like", "padded") else 1), dims
    if form.startswith("fused"):
        assert [HIDDEN, 3 * HIDDEN] not in dims, dims
    feeds_list = [_feeds(1, 6, 1), _feeds(3, 11, 2)]
    ref = [_tf_logits(m, f) for f in feeds_list]
    w = m.o.numpy()
    for hd in set(range(HEADS)) - set(kept["0"]):
        w[hd * HEAD:(hd + 1) * HEAD] = 0.0
    m.o.assign(w)
    _check_artifacts(out, list(zip(feeds_list, [_tf_logits(m, f) for f in feeds_list], ref)), form)


KERAS_HUB = {  # model -> pipeline: ALBERT's layers share their weights, so both keep the same heads
    "kh_albert": 'prune_heads{keep="0:0,2;1:0,2"}',
    "kh_deberta_v3": "prune_heads{ratio=0.5,criterion=magnitude}",
}  # kh_esm prunes too, but its Q, K, V and O kernels are equal (one seed), so no variable names its O


@pytest.fixture(scope="module")
def keras_hub(tmp_path_factory) -> dict:
    """The keras-hub models, built by the corpus builder in one child process (Keras 3)."""
    out = tmp_path_factory.mktemp("kh")
    subprocess.run([sys.executable, "-m", "examples.corpus.build", str(out), "--only", ",".join(KERAS_HUB)],
                   cwd=ROOT, check=True, capture_output=True)
    entries = {e["name"]: e for e in json.loads((out / "manifest.json").read_text())}
    broken = {n: e["build_error"] for n, e in entries.items() if "build_error" in e}
    assert not broken, broken
    return entries


def _o_kernels(path: str) -> dict[int, tuple[str, str, int]]:
    """Per structure layer of the unpruned IR: the O and Q kernels' variable names, and the head size."""
    from bertc.analysis.structure import analyze_structure
    from bertc.frontend.tf import CANONICALIZE, import_model
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline

    graph, _ = import_model(path)
    PassManager(parse_pipeline(CANONICALIZE)).run(graph, PassContext())
    return {layer.index: (layer.attention.o.kernel.producer.loc.primary, layer.attention.q.kernel.producer.loc.primary,
                          layer.attention.head_size) for layer in analyze_structure(graph).layers if layer.attention}


@pytest.mark.parametrize("name", list(KERAS_HUB))
def test_keras_hub_prunes_and_matches_zeroed_tf(tmp_path, keras_hub, name):
    """keras-hub encoders (Keras 3): ALBERT (EinsumDense kernels [hidden, heads, head_size] shared by both
    layers, a logical_and mask), DeBERTa-v3 (c2p/p2c positions broadcast to [batch, heads, q, k] through a
    flattened gather)."""
    import tensorflow as tf

    entry = keras_hub[name]
    out = tmp_path / "out"
    code = main(["compile", entry["path"], "--target", "all", "-o", str(out), "--passes", KERAS_HUB[name]])
    assert code == 0, f"{name}: prune_heads did not compile and verify"
    report = json.loads((out / "report.json").read_text())["pass_reports"]["prune_heads"]
    assert report["heads_before"] == {"0": 4, "1": 4} and report["removed"] == 4, report
    layers = _o_kernels(entry["path"])
    assert sorted(layers) == [0, 1], layers
    inits = [(i.name, int(np.prod(i.dims))) for i in onnx.load(str(out / "model.onnx")).graph.initializer]
    loaded = tf.saved_model.load(entry["path"])
    variables = {v.name.split(":")[0]: v for v in loaded.variables_}
    for layer, kept in report["kept"].items():
        o_var, q_var, size = layers[int(layer)]
        hidden = int(np.prod(variables[o_var].shape)) // (4 * size)
        for var in (o_var, q_var):  # einsum kernels are flattened for export
            sizes = [n for init, n in inits if var in init]
            assert sizes and all(n == len(kept) * size * hidden for n in sizes), (var, sizes)
    rng = np.random.default_rng(3)
    names = [i.name for i in onnx.load(str(out / "model.onnx")).graph.input]
    feeds_list = []
    for batch, seq in ((1, 6), (2, 9)):
        mask = np.ones((batch, seq), np.int32)
        mask[1:, seq - 2:] = 0
        feeds = {"token_ids": rng.integers(1, 100, (batch, seq)).astype(np.int32), "padding_mask": mask,
                 "segment_ids": np.zeros((batch, seq), np.int32)}
        feeds_list.append({k: v for k, v in feeds.items() if k in names})
    serve = loaded.signatures["serving_default"]

    def run():
        return [{k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in f.items()}).items()}
                for f in feeds_list]

    ref = run()
    for layer, kept in report["kept"].items():
        o_var, _, size = layers[int(layer)]
        w = variables[o_var].numpy()
        for hd in set(range(4)) - set(kept):
            if w.ndim == 3:
                w[hd] = 0.0
            else:
                w[hd * size:(hd + 1) * size] = 0.0
        variables[o_var].assign(w)
    want = run()
    for feeds, wt, rf in zip(feeds_list, want, ref):
        moved = max(float(np.abs(wt[k] - rf[k]).max()) for k in wt)
        for target, got in (("onnx", run_onnx(out / "model.onnx", feeds)),
                            ("tflite", run_tflite(out / "model.tflite", feeds))):
            err = max(float(np.abs(got[k] - wt[k]).max()) for k in wt)
            assert err <= FP32_TOL and 10 * err < moved, (name, target, err, moved)
