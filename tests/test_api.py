"""The library API (bertc.compile, load, run_passes, lower): the same compile as the command line,
returned as values, and the README's example run as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import bertc
from bertc.runtime.session import ReferenceSession, open_session

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_compile_returns_what_it_wrote(tf_bert_dir, tmp_path):
    out = tmp_path / "out"
    result = bertc.compile(tf_bert_dir, out, passes="quant_int8", targets=["onnx"])
    assert result.artifacts == {"onnx": out / "model.onnx"} and result.artifacts["onnx"].is_file()
    assert result.report == json.loads((out / "report.json").read_text())
    assert result.parity["onnx"]["ok"] and result.report["pipeline"][-1] == "quant_int8"
    assert not (out / "model.tflite").exists()


@pytest.mark.slow
def test_compile_errors_are_bertc_errors(tf_bert_dir, tmp_path):
    with pytest.raises(bertc.BertcError, match="--cpu avx9: unknown CPU kind"):
        bertc.compile(tf_bert_dir, tmp_path / "out", cpu="avx9")
    with pytest.raises(bertc.BertcError, match="unknown pass"):
        bertc.compile(tf_bert_dir, tmp_path / "out", passes="no_such_pass")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_load_run_passes_lower_match_the_reference(tf_bert_dir):
    graph = bertc.load(tf_bert_dir)
    before = ReferenceSession(graph)
    ids = {"input_ids": np.array([[1, 5, 7, 2]], np.int32), "attention_mask": np.ones((1, 4), np.int32),
           "token_type_ids": np.zeros((1, 4), np.int32)}
    want = before.run(ids)
    reports = bertc.run_passes(graph, "fuse_skip_layer_norm,fuse_bias_gelu")
    assert isinstance(reports, dict)
    data = bertc.lower(graph, "onnx")
    assert onnx.load_from_string(data).graph.node
    got = open_session(data, kind="onnx").run(ids)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_readme_library_example_runs(tf_bert_dir, tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "bertc.compile(" in b]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "model").symlink_to(tf_bert_dir, target_is_directory=True)
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert capsys.readouterr().out.split() == ["out/model.onnx", "True"]
    assert (tmp_path / "out" / "model.tflite").is_file()
