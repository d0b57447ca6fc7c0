"""Pruning Hugging Face encoders whose attention or FFN is not BERT's, end to end against TensorFlow.

- MPNet adds a per-head relative-position bias (a gather from one [buckets, heads]
  table that every layer shares) to the scores;
- RoFormer rotates Q and K: ``q*cos + rotate(q)*sin`` with a stack/reshape of the
  negated odd/even halves;
- DeBERTa-v2 masks its softmax with where (XSoftmax) and adds c2p/p2c terms
  computed from per-head position keys (folded to constants) through a
  flattened take_along_axis gather;
- MobileBERT uses NoNorm, bottlenecks, and two stacked FFNs per layer (each its
  own structure layer: 0 attention + FFN, 1 the stacked FFN, …).

The models are tiny random-init SavedModels from ``examples.corpus.build``,
built once in one child process.  Each pipeline is compiled with the CLI to
ONNX and TFLite; an exit code of 0 means the compile verified both artifacts
against the pruned IR.  The oracle is TensorFlow itself: removing heads equals
zeroing their rows of the attention output kernel, removing neurons equals
zeroing their up-kernel columns and bias entries (GELU(0) = ReLU(0) = 0), so
each artifact must match the SavedModel, loaded with ``tf.saved_model.load``
and run with grappler off (its constant folding moves MPNet's relative-position
buckets, see test_legalize_f64), with those variables zeroed (the kept units are read from the pass report; the
variables are found by the structure analysis of the unpruned IR, whose
kernel constants carry their variables' names).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bertc.cli import main
from tests.test_compile import run_onnx, run_tflite

pytestmark = [pytest.mark.slow, pytest.mark.models]

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["hf_mpnet", "hf_roformer", "hf_deberta_v2", "hf_mobilebert"]
PIPELINES = {"heads": "prune_heads{ratio=0.5}", "neurons": "prune_neurons{ratio=0.5}"}
# fp32 artifacts vs the zeroed TF model: 10x below the compile's default (1e-4).  Random-init logits move
# only 1e-5..1e-2 when half the units go, so each artifact must also sit 10x closer to the zeroed model
# than the zeroing moves it (else the check could not tell pruned from unpruned).
FP32_TOL = 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The models (and DeBERTa v1, for its refusal), built in one child process."""
    out = tmp_path_factory.mktemp("foreign")
    subprocess.run([sys.executable, "-m", "examples.corpus.build", str(out), "--only",
                    ",".join(MODELS + ["hf_deberta"])], cwd=ROOT, check=True, capture_output=True)
    entries = {e["name"]: e for e in json.loads((out / "manifest.json").read_text())}
    broken = {n: e["build_error"] for n, e in entries.items() if "build_error" in e}
    assert not broken, broken
    return out


@pytest.fixture(scope="module")
def structures(corpus):
    """Per model: its structure layers (index -> Layer) on the IR the pruning passes see."""
    from bertc.analysis.structure import analyze_structure
    from bertc.frontend.tf import CANONICALIZE, import_model
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline

    cache = {}

    def get(name: str):
        if name not in cache:
            graph, _ = import_model(corpus / name)
            PassManager(parse_pipeline(CANONICALIZE)).run(graph, PassContext())
            cache[name] = {layer.index: layer for layer in analyze_structure(graph).layers}
        return cache[name]

    return get


@pytest.fixture(scope="module")
def compiled(corpus, tmp_path_factory):
    cache: dict = {}

    def get(name: str, pipeline: str):
        if (name, pipeline) not in cache:
            out = tmp_path_factory.mktemp("out")
            code = main(["compile", str(corpus / name), "--target", "all", "-o", str(out), "--passes", pipeline])
            report = json.loads((out / "report.json").read_text()) if code == 0 else None
            cache[(name, pipeline)] = (code, out, report)
        return cache[(name, pipeline)]

    return get


def _feeds(names: list[str], batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int32)
    mask[1:, seq - 3:] = 0  # padding in every row but the first
    feeds = {"input_ids": rng.integers(3, 100, (batch, seq)).astype(np.int32), "attention_mask": mask,
             "token_type_ids": (np.arange(seq) >= seq // 2).astype(np.int32)[None].repeat(batch, 0)}
    return {k: v for k, v in feeds.items() if k in names}


def _var(value) -> str:
    """The TF variable a kernel/bias constant of the imported IR was frozen from."""
    return value.producer.loc.primary


def zeroed_tf_logits(path: Path, layers: dict, reports: dict, feeds_list: list[dict]) -> list[np.ndarray]:
    """The SavedModel's logits with every removed head's O rows and removed neuron's up column + bias zeroed."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    variables = {v.name.split(":")[0]: v for v in loaded.variables_}
    for layer, kept in reports.get("prune_heads", {}).get("kept", {}).items():
        a = layers[int(layer)].attention
        o = variables[_var(a.o.kernel)]
        w = o.numpy()
        for h in set(range(a.heads)) - set(kept):
            w[h * a.head_size:(h + 1) * a.head_size] = 0.0
        o.assign(w)
    for layer, kept in reports.get("prune_neurons", {}).get("kept", {}).items():
        f = layers[int(layer)].ffn
        drop = sorted(set(range(f.intermediate)) - set(kept))
        up, bias = variables[_var(f.up.kernel)], variables[_var(f.up.bias)]
        w, b = up.numpy(), bias.numpy()
        w[:, drop], b[drop] = 0.0, 0.0
        up.assign(w)
        bias.assign(b)
    serve = loaded.signatures["serving_default"]
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # TF's graph as written
    try:
        return [serve(**{k: tf.constant(v) for k, v in feeds.items()})["logits"].numpy() for feeds in feeds_list]
    finally:
        tf.config.optimizer.set_experimental_options(saved)


def _initializer(path: Path, var: str) -> list[int]:
    """The dims of the one ONNX initializer made from variable ``var`` (float, or int8 after quantization)."""
    found = [list(i.dims) for i in onnx.load(str(path)).graph.initializer
             if i.name.split("/", 1)[-1].startswith(var) or i.name.startswith(var)]
    assert len(found) == 1, (var, found)
    return found[0]


def _check_shrunk(out: Path, layers: dict, reports: dict) -> None:
    """Q and O kernels (heads), up and down kernels (neurons) have exactly the kept widths in the artifact."""
    model = out / "model.onnx"
    for layer, kept in reports.get("prune_heads", {}).get("kept", {}).items():
        a = layers[int(layer)].attention
        width = len(kept) * a.head_size
        assert _initializer(model, _var(a.q.kernel))[-1] == width, (layer, "q")
        assert _initializer(model, _var(a.o.kernel))[0] == width, (layer, "o")
    for layer, kept in reports.get("prune_neurons", {}).get("kept", {}).items():
        f = layers[int(layer)].ffn
        assert _initializer(model, _var(f.up.kernel))[-1] == len(kept), (layer, "up")
        assert _initializer(model, _var(f.down.kernel))[0] == len(kept), (layer, "down")


@pytest.mark.parametrize("what", list(PIPELINES))
@pytest.mark.parametrize("name", MODELS)
def test_prunes_compiles_and_matches_zeroed_tf(corpus, structures, compiled, name, what):
    code, out, report = compiled(name, PIPELINES[what])
    assert code == 0, f"{name}: {PIPELINES[what]} did not compile and verify"
    reports = report["pass_reports"]
    kept = reports[f"prune_{what}"]["kept"]
    before = reports[f"prune_{what}"][f"{what}_before"]
    assert kept and sum(map(len, kept.values())) == sum(before.values()) // 2, (kept, before)
    layers = structures(name)
    _check_shrunk(out, layers, reports)
    names = [v.name for v in onnx.load(str(out / "model.onnx")).graph.input]
    feeds_list = [_feeds(names, 1, 6, 1), _feeds(names, 3, 11, 2)]
    unpruned = zeroed_tf_logits(corpus / name, layers, {}, feeds_list)
    for feeds, want, ref in zip(feeds_list, zeroed_tf_logits(corpus / name, layers, reports, feeds_list), unpruned):
        moved = float(np.abs(want - ref).max())  # what zeroing the removed units does to TF's logits
        for target, got in (("onnx", run_onnx(out / "model.onnx", feeds)),
                            ("tflite", run_tflite(out / "model.tflite", feeds))):
            err = float(np.abs(got["logits"] - want).max())
            assert err <= FP32_TOL, f"{name} {what} {target}: max abs err {err:.3g} vs zeroed TF"
            assert 10 * err < moved, f"{name} {what} {target}: err {err:.3g} is not 10x below the " \
                                     f"change the removed units make ({moved:.3g})"


def test_mpnet_bias_table_is_sliced_per_layer(compiled, structures):
    """One shared [buckets, heads] table feeds every layer: each layer gets its own, with its kept heads."""
    code, out, report = compiled("hf_mpnet", PIPELINES["heads"])
    assert code == 0
    kept = report["pass_reports"]["prune_heads"]["kept"]
    tables = sorted(list(i.dims) for i in onnx.load(str(out / "model.onnx")).graph.initializer
                    if "relative_attention_bias" in i.name)
    assert tables == sorted([32, len(k)] for k in kept.values()), tables


def test_mobilebert_stacked_ffns_are_layers_of_their_own(structures):
    """Two FFNs per MobileBERT layer, each prunable; the bottleneck dense layers are not FFNs."""
    layers = structures("hf_mobilebert")
    assert [layer.attention is not None for layer in layers.values()] == [True, False, True, False]
    assert all(layer.ffn is not None and layer.ffn.intermediate == 64 for layer in layers.values())
    assert all(not layer.problems for layer in layers.values())
    assert all("stacked feed-forward" in layers[i].notes[0] for i in (1, 3))


def test_an_unrecognised_layer_is_named_with_the_reason(corpus, capsys):
    """DeBERTa v1's position projections have data-dependent sizes ('?') the head analysis cannot follow:
    the refusal names each layer's softmax and the reshape it stopped at."""
    code = main(["compile", str(corpus / "hf_deberta"), "--target", "onnx", "-o", str(corpus / "deberta_out"),
                 "--passes", "prune_heads{ratio=0.5,criterion=magnitude}"])
    err = capsys.readouterr().err
    assert code == 2 and "bug in the pass" not in err, err
    assert "layer_._0/attention/self/tf_deberta_x_softmax/Softmax" in err and "reshape at" in err, err
