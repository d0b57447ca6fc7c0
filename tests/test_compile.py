"""`bertc compile`: artifacts that load, match TF, round-trip through the text form,
and fail cleanly (nothing half-written) on bad requests and broken parity."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from bertc.cli import main
from bertc.runtime.inputs import random_graph_inputs

TOLERANCE = 1e-4


def compile_(capsys, *argv) -> tuple[int, str]:
    code = main(["compile", *map(str, argv)])
    return code, capsys.readouterr().err


def run_onnx(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = {i.name: i.type for i in sess.get_inputs()}
    cast = {k: v.astype(np.int64 if "int64" in want[k] else np.int32) for k, v in feeds.items() if k in want}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, cast)))


def run_tflite(path, feeds):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    runner = interp.get_signature_runner()
    details = runner.get_input_details()
    return runner(**{k: v.astype(details[k]["dtype"]) for k, v in feeds.items() if k in details})


@pytest.fixture(scope="module")
def compiled_all(tmp_path_factory, request):
    """Each model source compiled once with --target all (module scope: the CLI is the slow part)."""
    cache = {}

    def get(model):
        key = str(model.path)
        if key not in cache:
            out = tmp_path_factory.mktemp("out")
            code = main(["compile", str(model.path), "--target", "all", "-o", str(out)])
            cache[key] = (code, out)
        return cache[key]

    return get


def test_compile_all_targets_and_read_back_directly(any_bert, compiled_all):
    code, out = compiled_all(any_bert)
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.tflite", "report.json"}
    graph = any_bert.graph()
    for batch, seq in [(1, 6), (4, 13)]:
        feeds = random_graph_inputs(graph, batch, seq, seed=seq)
        want = any_bert.tf_run(feeds)
        for name, got in (("onnx", run_onnx(out / "model.onnx", feeds)),
                          ("tflite", run_tflite(out / "model.tflite", feeds))):
            for k in want:
                err = float(np.abs(got[k] - want[k]).max())
                assert err <= TOLERANCE, f"{name} {k} at {batch}x{seq}: {err}"


def test_report_has_what_was_promised(tf_bert, compiled_all):
    code, out = compiled_all(tf_bert)
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"][0] == "fold_constants"
    assert all({"name", "seconds", "ops_before", "ops_after"} <= set(p) for p in report["passes"])
    assert report["ops"]["imported"]["matmul"] == report["ops"]["final"]["matmul"]
    assert report["parameters"]["after"] > 0
    assert report["artifacts"]["model.onnx"]["bytes"] == (out / "model.onnx").stat().st_size
    for kind in ("onnx", "tflite"):
        v = report["verification"][kind]
        assert v["ok"] and len(v["cases"]) == 4
        assert {tuple(c) for c in v["cases"]} >= {(1, 8), (4, 8)}
        assert v["outputs"]["logits"]["max_abs_error"] <= TOLERANCE
        assert v["outputs"]["logits"]["argmax_agreement"] == 1.0


def test_dumped_ir_lowers_to_identical_bytes(capsys, tf_bert_dir, tmp_path):
    """IR dumped after the last pass, reloaded and compiled again, gives byte-identical artifacts."""
    code, err = compile_(capsys, tf_bert_dir, "--target", "all", "-o", tmp_path / "a", "--dump-ir", tmp_path / "ir")
    assert code == 0, err
    last = sorted((tmp_path / "ir").glob("*.bir"))[-1]
    code, err = compile_(capsys, last, "--target", "all", "-o", tmp_path / "b")
    assert code == 0, err
    for name in ("model.onnx", "model.tflite"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_int64_ids_model_compiles(capsys, tmp_path):
    import tensorflow as tf

    from examples.bert_tf import BertConfig, save_bert

    path = save_bert(BertConfig(layers=1), str(tmp_path / "m64"), ids_dtype=tf.int64)
    code, err = compile_(capsys, path, "--target", "all", "-o", tmp_path / "out")
    assert code == 0, err
    sess = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert {i.type for i in sess.get_inputs()} == {"tensor(int64)"}


# ------------------------------------------------------------------ failures leave nothing behind
def assert_untouched(out, before=()):
    assert sorted(p.name for p in out.iterdir()) == sorted(before) if out.exists() else True


def test_output_is_a_file(capsys, tf_bert_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    code, err = compile_(capsys, tf_bert_dir, "-o", f)
    assert code == 2 and "exists and is a file" in err and "Traceback" not in err
    assert f.read_text() == "keep me"


def test_unwritable_output(capsys, tf_bert_dir, tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root); permissions can't be tested")
        code, err = compile_(capsys, tf_bert_dir, "-o", locked / "out")
        assert code == 2 and "not writable" in err
    finally:
        locked.chmod(0o700)


def test_unwritable_output_under_root(capsys, tf_bert_dir, tmp_path):
    """Root ignores permissions; a path through a file is unwritable for everyone."""
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code, err = compile_(capsys, tf_bert_dir, "-o", blocker / "sub" / "out")
    assert code == 2 and "Traceback" not in err
    assert blocker.read_text() == "x"


def test_unknown_target(capsys, tf_bert_dir, tmp_path):
    code, err = compile_(capsys, tf_bert_dir, "--target", "onxx", "-o", tmp_path / "out")
    assert code == 2 and "unknown target 'onxx'" in err and "Did you mean 'onnx'" in err
    assert not (tmp_path / "out").exists()


WRONG_REWRITE = textwrap.dedent('''
    """A plugin pass with a deliberately wrong rewrite: it perturbs the classifier bias."""
    from dataclasses import dataclass
    import numpy as np
    from bertc.pass_manager import Pass, register_pass

    @register_pass
    @dataclass(frozen=True)
    class NudgeBias(Pass):
        """Add 0.01 to the last bias (wrong on purpose)."""
        name = "nudge_bias"

        def run(self, graph, ctx):
            bias = [op for op in graph.ops if op.kind == "const" and op.attrs["name"].endswith("classifier/bias")][0]
            bias.attrs["value"] = bias.attrs["value"] + np.float32(0.01)
            return True
''')


def test_broken_parity_exits_1_names_the_output_and_writes_nothing(capsys, tf_bert_dir, tmp_path):
    plugin = tmp_path / "nudge.py"
    plugin.write_text(WRONG_REWRITE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    code, err = compile_(capsys, tf_bert_dir, "--plugin", plugin, "--passes", "nudge_bias", "--target", "onnx",
                         "-o", out)
    assert code == 1, err
    assert "output 'logits' differs by 0.01" in err and "Nothing was written" in err
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    code, err = compile_(capsys, tf_bert_dir, "--plugin", plugin, "--passes", "nudge_bias", "--target", "onnx",
                         "-o", out, "--no-verify")
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verification"].startswith("skipped")


def test_verify_data_uses_real_inputs(capsys, tf_bert, tmp_path):
    feeds = random_graph_inputs(tf_bert.graph(), 3, 10, seed=7)
    data = tmp_path / "real.npz"
    np.savez(data, **feeds)
    code, err = compile_(capsys, tf_bert.path, "--target", "onnx", "-o", tmp_path / "out", "--verify-data", data)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verification"]["onnx"]["cases"] == [[3, 10]]
    np.savez(tmp_path / "bad.npz", nothing=np.zeros(3))
    code, err = compile_(capsys, tf_bert.path, "--target", "onnx", "-o", tmp_path / "o2", "--verify-data",
                         tmp_path / "bad.npz")
    assert code == 2 and "no array for input(s)" in err


def test_run_pokes_at_every_artifact(capsys, tf_bert, compiled_all):
    _, out = compiled_all(tf_bert)
    outputs = []
    for artifact in ("model.onnx", "model.tflite"):
        assert main(["run", str(out / artifact), "--ids", "5 17 42 9"]) == 0
        text = capsys.readouterr().out
        assert "logits [1, 3]" in text and "argmax" in text
        outputs.append(text)
    assert main(["run", str(tf_bert.path), "--ids", "5 17 42 9"]) == 0
    tf_text = capsys.readouterr().out
    assert tf_text.splitlines()[-1] == outputs[0].splitlines()[-1] == outputs[1].splitlines()[-1]  # same argmax
    assert main(["run", str(out / "model.onnx"), "--ids", "five"]) == 2


def test_labels_are_stored_in_every_artifact(capsys, tf_bert_dir, tmp_path):
    from bertc.runtime.metadata import read_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("greet\ndeny\naffirm\n")
    code, err = compile_(capsys, tf_bert_dir, "--target", "all", "-o", tmp_path / "out", "--labels", labels)
    assert code == 0, err
    for name in ("model.onnx", "model.tflite"):
        assert read_labels(tmp_path / "out" / name) == ["greet", "deny", "affirm"]
    assert (tmp_path / "out" / "labels.txt").read_text() == "greet\ndeny\naffirm\n"
    labels.write_text("only\ntwo\n")
    code, err = compile_(capsys, tf_bert_dir, "--target", "onnx", "-o", tmp_path / "out2", "--labels", labels)
    assert code == 2 and "2 labels, but the model has 3 logits" in err
    assert not (tmp_path / "out2").exists()


def test_pruning_is_reported_and_checked_against_the_final_ir(capsys, tf_bert_dir, tmp_path):
    """Pruning changes the numbers on purpose: compile reports it and checks artifacts against the
    pruned IR exactly, so a lowering bug cannot hide behind the intended change."""
    passes = "prune_heads{ratio=0.5,criterion=magnitude},prune_neurons{ratio=0.75,criterion=magnitude}"
    code, err = compile_(capsys, tf_bert_dir, "--passes", passes, "-o", tmp_path / "ok")
    assert code == 0, err
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert set(report["pass_reports"]) == {"prune_heads", "prune_neurons"}
    for kind in ("onnx", "tflite"):
        assert report["verification_against_final_ir"][kind]["ok"]
        assert report["verification_against_final_ir"][kind]["outputs"]["logits"]["max_abs_error"] <= TOLERANCE


SWAP_LOGITS = textwrap.dedent('''
    """A lossy-by-design plugin pass: it swaps the first two classes (declares no bound, like pruning)."""
    from dataclasses import dataclass
    import numpy as np
    from bertc.pass_manager import Pass, register_pass
    from bertc.runtime.fidelity import Fidelity

    @register_pass
    @dataclass(frozen=True)
    class SwapClasses(Pass):
        """Swap logits 0 and 1 (a stand-in for a pass that moves predictions)."""
        name = "swap_classes"

        @property
        def fidelity(self):
            return Fidelity(reason="swaps two classes on purpose")

        def run(self, graph, ctx):
            for op in graph.ops:
                if op.kind == "const" and op.attrs["name"].endswith(("classifier/kernel", "classifier/bias")):
                    op.attrs["value"] = op.attrs["value"][..., [1, 0, 2]].copy()
            return True
''')


def test_max_drop_bounds_intended_changes(capsys, tf_bert_dir, tmp_path):
    plugin = tmp_path / "swap.py"
    plugin.write_text(SWAP_LOGITS)
    args = ["--plugin", plugin, "--passes", "swap_classes", "--target", "onnx"]
    code, err = compile_(capsys, tf_bert_dir, *args, "-o", tmp_path / "free")
    assert code == 0, err  # no bound declared, no --max-drop: reported, not failed
    report = json.loads((tmp_path / "free" / "report.json").read_text())
    assert report["verification"]["onnx"]["outputs"]["logits"]["argmax_agreement"] < 0.5
    code, err = compile_(capsys, tf_bert_dir, *args, "-o", tmp_path / "strict", "--max-drop", "0.1")
    assert code == 1 and "argmax" in err and "--max-drop 0.1" in err
    assert not (tmp_path / "strict").exists()
