"""One way to run anything bertc reads or writes: ``open_session(path)``.

Every session has ``input_names``, ``input_dtypes`` (numpy names),
``output_names`` and ``run(feeds) -> {name: array}``, and casts feeds to its
own input dtypes, so verification and benchmarks give all backends the same
arrays.  Backends: ONNX (onnxruntime), TFLite (LiteRT), IR text (the reference
interpreter) and a TF SavedModel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..diagnostics import BertcError
from ..ir.graph import Graph


class ReferenceSession:
    """The reference interpreter over an IR graph."""

    def __init__(self, graph: Graph) -> None:
        from ..ir.types import np_dtype

        self.graph = graph
        self.input_names = [v.name for v in graph.inputs]
        self.input_dtypes = [np_dtype(v.dtype).name for v in graph.inputs]
        self.output_names = list(graph.outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..ir.interpreter import run_graph

        cast = {n: np.asarray(feeds[n]).astype(d, copy=False) for n, d in zip(self.input_names, self.input_dtypes)}
        return run_graph(self.graph, cast)


class TFSession:
    """A TF SavedModel signature (the source model verification compares against)."""

    def __init__(self, frozen) -> None:
        self.frozen = frozen
        self.input_names = [i.name for i in frozen.inputs]
        self.input_dtypes = [i.dtype for i in frozen.inputs]
        self.output_names = [o.name for o in frozen.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cast = {n: np.asarray(feeds[n]).astype(d, copy=False) for n, d in zip(self.input_names, self.input_dtypes)}
        return {k: np.asarray(v) for k, v in self.frozen.function(**cast).items()}


def open_session(path: str | os.PathLike | bytes, kind: str | None = None, threads: int | None = None):
    """A session for a file: .onnx, .tflite, .bir, or a SavedModel directory."""
    if isinstance(path, bytes):
        if kind is None:
            raise ValueError("give kind= for in-memory models")
        suffix = "." + kind
    else:
        p = Path(path)
        if not p.exists():
            raise BertcError(f"{p}: no such file or directory.")
        suffix = p.suffix if p.is_file() else ""
        if p.is_dir():
            _refuse_artifact_dir(p)
            from ..frontend.tf_loader import load_model

            return TFSession(load_model(p))
    if suffix in (".onnx", ".tflite"):
        return _open_artifact(path, suffix, threads)
    if suffix == ".bir":
        from ..commands import load_ir

        return ReferenceSession(load_ir(Path(path)))
    raise BertcError(f"{path}: bertc runs .onnx, .tflite, .bir files and SavedModel directories.")


def _open_artifact(path, suffix: str, threads: int | None):
    """An onnxruntime or LiteRT session; a file its runtime cannot parse is the user's to fix."""
    if suffix == ".onnx":
        from .onnx_session import OnnxSession as cls
    else:
        from .tflite_session import TFLiteSession as cls
    try:
        return cls(path, threads)
    except Exception as e:
        if isinstance(path, bytes):
            raise
        raise corrupt_artifact(path, e) from None


def corrupt_artifact(path, error: Exception) -> BertcError:
    """The error for an .onnx or .tflite file its runtime (or parser) cannot read."""
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    what = "an ONNX model" if Path(path).suffix == ".onnx" else "a TFLite model"
    size = Path(path).stat().st_size
    return BertcError(f"{path}: not {what} its runtime can load ({size} bytes; {first}); the file is "
                      "corrupt or truncated.",
                      "Compile it again (bertc compile MODEL -o DIR), or copy it again in full.")


def _refuse_artifact_dir(p: Path) -> None:
    """A directory that holds artifacts (a ``bertc compile`` output) rather than a SavedModel:
    say which files to pass instead of "not a SavedModel"."""
    if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
        return
    found = sorted(f.name for f in p.iterdir() if f.suffix in (".onnx", ".tflite", ".bir") and f.is_file())
    if found:
        listed = ", ".join(str(p / f) for f in found)
        raise BertcError(f"{p}: a directory of artifacts (a bertc compile output?), not a SavedModel; "
                         f"pass one of its files: {listed}.",
                         f"e.g. bertc run {p / found[0]} --ids \"101 2023 102\"")
