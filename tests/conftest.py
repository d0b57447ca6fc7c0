"""Shared, session-scoped fixtures: tiny models are built once per test run.

Importing TensorFlow and building a model cost seconds, so every model below
is saved once into a session temp dir and imported once; tests get a fresh
copy of the IR (parsed back from its text form, which is cheap).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # so tests can import examples.*

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = ROOT.parent / "shared"


def _have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class ImportedModel:
    """A saved model, its frozen TF callable and its imported IR (copied per use)."""

    def __init__(self, path: Path) -> None:
        from bertc.frontend.tf import import_model
        from bertc.ir.printer import print_graph

        self.path = path
        graph, self.frozen = import_model(path)
        self._text = print_graph(graph)
        self._weights = graph.weights()
        self.input_names = [v.name for v in graph.inputs]

    def graph(self):
        from bertc.ir.parser import parse_graph

        return parse_graph(self._text, self._weights)

    def tf_run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.frozen.function(**feeds)


@pytest.fixture(scope="session")
def tf_bert_dir(tmp_path_factory) -> Path:
    from examples.bert_tf import BertConfig, save_bert

    return Path(save_bert(BertConfig(), str(tmp_path_factory.mktemp("bert_tf") / "model")))


@pytest.fixture(scope="session")
def tf_bert(tf_bert_dir) -> ImportedModel:
    return ImportedModel(tf_bert_dir)


@pytest.fixture(scope="session")
def tf_bert_artifacts(tf_bert_dir, tmp_path_factory) -> dict[str, Path]:
    """The tiny BERT compiled once to both targets and imported to IR text:
    {"onnx", "tflite", "bir", "saved_model", "out"} -> path (treat as read-only)."""
    from bertc.cli import main

    d = tmp_path_factory.mktemp("bert_artifacts")
    assert main(["compile", str(tf_bert_dir), "--target", "all", "-o", str(d / "out")]) == 0
    assert main(["import", str(tf_bert_dir), "-o", str(d / "model.bir")]) == 0
    return {"onnx": d / "out" / "model.onnx", "tflite": d / "out" / "model.tflite", "bir": d / "model.bir",
            "saved_model": tf_bert_dir, "out": d / "out"}


@pytest.fixture(scope="session")
def keras_hub_bert_dir(tmp_path_factory) -> Path:
    if not _have("keras_hub"):
        pytest.skip("keras-hub is not installed (see README: optional model extras)")
    out = tmp_path_factory.mktemp("keras_hub") / "model"
    _run_builder("keras_hub_bert.py", out)
    return out


@pytest.fixture(scope="session")
def hf_bert_dir(tmp_path_factory) -> Path:
    if not (_have("transformers") and _have("tf_keras")):
        pytest.skip("transformers/tf-keras are not installed (see README: optional model extras)")
    out = tmp_path_factory.mktemp("hf") / "model"
    _run_builder("hf_bert.py", out)
    return out


def _run_builder(script: str, out: Path) -> None:
    """Builders run in a child process: HF needs TF_USE_LEGACY_KERAS set before TF loads."""
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), str(out)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{res.stderr[-3000:]}")


@pytest.fixture(scope="session")
def keras_hub_bert(keras_hub_bert_dir) -> ImportedModel:
    return ImportedModel(keras_hub_bert_dir)


@pytest.fixture(scope="session")
def hf_bert(hf_bert_dir) -> ImportedModel:
    return ImportedModel(hf_bert_dir)


@pytest.fixture(params=["tf", "keras_hub", "hf"], scope="session")
def any_bert(request) -> ImportedModel:
    """Each of the three model sources in turn."""
    return request.getfixturevalue({"tf": "tf_bert", "keras_hub": "keras_hub_bert", "hf": "hf_bert"}[request.param])


# ---------------------------------------------------------------- FileCheck tests
# Every tests/ir/*.bir file is a test: its "// RUN:" lines are run through the
# shell with %s replaced by the file's path ("bertc" runs this interpreter's
# copy), and must exit 0.  The runner's summary stays pytest's.
class FileCheckItem(pytest.Item):
    def __init__(self, *, run_lines: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_lines = run_lines

    def runtest(self) -> None:
        bertc = f"{sys.executable} -m bertc.cli"
        for line in self.run_lines:
            cmd = line.replace("%s", str(self.path))
            cmd = " | ".join(bertc + part.strip()[len("bertc"):] if part.strip().startswith("bertc ") else part
                             for part in cmd.split("|"))
            res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                raise FileCheckFailure(f"RUN: {line}\nexit {res.returncode}\n{res.stdout}{res.stderr}")

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, FileCheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"filecheck: {self.path.name}"


class FileCheckFailure(Exception):
    pass


class FileCheckFile(pytest.File):
    def collect(self):
        lines = [ln.split("RUN:", 1)[1].strip() for ln in self.path.read_text().splitlines()
                 if ln.lstrip().startswith("// RUN:")]
        if not lines:
            raise pytest.UsageError(f"{self.path} has no '// RUN:' line")
        yield FileCheckItem.from_parent(self, name=self.path.name, run_lines=lines)


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".bir" and file_path.parent.name == "ir":
        return FileCheckFile.from_parent(parent, path=file_path)
