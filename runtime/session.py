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
            from ..frontend.tf_loader import load_model

            return TFSession(load_model(p))
    if suffix == ".onnx":
        from .onnx_session import OnnxSession

        return OnnxSession(path, threads)
    if suffix == ".tflite":
        from .tflite_session import TFLiteSession

        return TFLiteSession(path, threads)
    if suffix == ".bir":
        from ..commands import load_ir

        return ReferenceSession(load_ir(Path(path)))
    raise BertcError(f"{path}: bertc runs .onnx, .tflite, .bir files and SavedModel directories.")
