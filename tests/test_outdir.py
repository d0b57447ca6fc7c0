"""The output directory of `bertc compile`: one compile at a time, and it describes exactly
the last compile (the files an earlier compile wrote and this one did not are removed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertc.cli import main
from bertc.outdir import LOCK_NAME, locked_output


def _compile(capsys, model: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = main(["compile", str(model), "-o", str(out), *extra])
    return code, capsys.readouterr().err


@pytest.fixture
def ir_model(tf_bert_artifacts) -> Path:
    return tf_bert_artifacts["bir"]  # verified on the reference interpreter: no TF load per compile


def test_second_compile_into_a_locked_directory_is_refused(capsys, tmp_path, ir_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with locked_output(out):  # as a first compile holds it
        code, err = _compile(capsys, ir_model, out, "--target", "onnx")
        assert code == 2 and "Traceback" not in err
        assert f"-o {out}: another bertc compile" in err and "different -o" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME, "notes.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # the lock file goes with the lock
    code, err = _compile(capsys, ir_model, out, "--target", "onnx")
    assert code == 0, err


def test_a_failed_compile_removes_the_directory_it_created(capsys, tmp_path, ir_model):
    out = tmp_path / "fresh"
    code, err = _compile(capsys, ir_model, out, "--target", "onnx", "--passes", "no_such_pass")
    assert code == 2 and not out.exists()
    code, err = _compile(capsys, tmp_path / "missing.bir", out, "--target", "onnx")
    assert code == 2 and "no such file" in err and not out.exists()


def test_a_later_compile_replaces_the_earlier_ones_artifacts(capsys, tmp_path, ir_model):
    out = tmp_path / "out"
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    code, err = _compile(capsys, ir_model, out, "--target", "all", "--labels", str(labels))
    assert code == 0, err
    (out / "notes.txt").write_text("mine")  # not bertc's: never touched
    assert sorted(p.name for p in out.iterdir()) == ["labels.txt", "model.onnx", "model.tflite", "notes.txt",
                                                     "report.json"]
    code, err = _compile(capsys, ir_model, out, "--target", "onnx")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "notes.txt", "report.json"]
    assert list(json.loads((out / "report.json").read_text())["artifacts"]) == ["model.onnx"]


def test_only_names_bertc_writes_are_ever_removed(capsys, tmp_path, ir_model):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("x")
    (out / "data.npz").write_text("x")
    (out / "report.json").write_text(json.dumps({"artifacts": {"../precious.txt": {}, "data.npz": {},
                                                               "model.tflite": {}}}))
    (out / "model.tflite").write_text("old")
    code, err = _compile(capsys, ir_model, out, "--target", "onnx")
    assert code == 0, err
    assert (tmp_path / "precious.txt").exists() and (out / "data.npz").exists()
    assert not (out / "model.tflite").exists()
