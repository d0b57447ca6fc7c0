"""Run an ONNX model on onnxruntime's CPU provider, behind the same small API as the
other sessions: input names and dtypes, output names, and ``run(feeds) -> dict``.

Feeds are cast to the model's input dtypes, so every backend can be given the same
arrays (``bertc.runtime.inputs`` makes int64 ids; a model may take int32).
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import numpy as np
import onnxruntime as ort

from ..cpu import METADATA_KEY as CPU_METADATA_KEY, mismatch_warning

logger = logging.getLogger(__name__)

# onnxruntime's type strings ("tensor(int32)") -> numpy dtype names.
_ORT_TO_NUMPY = {
    "tensor(float16)": "float16", "tensor(float)": "float32", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16",
    "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(uint32)": "uint32",
    "tensor(int64)": "int64", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
}


def _numpy_dtype(ort_type: str) -> str:
    try:
        return _ORT_TO_NUMPY[ort_type]
    except KeyError:
        raise TypeError(f"ONNX input type {ort_type} has no numpy equivalent here") from None


class OnnxSession:
    """An onnxruntime CPU session with full graph optimizations."""

    def __init__(self, path_or_bytes: str | os.PathLike | bytes, threads: int | None = None,
                 spinning: bool | None = None) -> None:
        """``threads``: intra-op threads (None: onnxruntime's default, one per core).
        ``spinning``: whether idle intra-op threads busy-wait for work (onnxruntime's
        ``session.intra_op.allow_spinning``, on by default); off frees the cores between
        runs on a shared machine at some latency cost (docs/performance.md)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # BERT is one chain of ops: run them in order and parallelize inside each one.
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        if spinning is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        model = path_or_bytes if isinstance(path_or_bytes, bytes) else os.fspath(path_or_bytes)
        self.source: str | None = None if isinstance(model, bytes) else model  # the file, for model_limits
        self._session = ort.InferenceSession(model, sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        self.input_names: list[str] = [i.name for i in inputs]
        self.input_dtypes: list[str] = [_numpy_dtype(i.type) for i in inputs]
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        # The CPU kind bertc stored the int8 kernels for (bertc.cpu); say so if this CPU is not one.
        self.built_for_cpu: str | None = self._session.get_modelmeta().custom_metadata_map.get(CPU_METADATA_KEY)
        warning = mismatch_warning(self.built_for_cpu)
        if warning:
            logger.warning("%s: %s", self.source or "ONNX model", warning)
        logger.debug("onnx session: inputs %s, outputs %s, threads %s", self.input_names,
                     self.output_names, threads)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (input name -> array, cast to the model's dtype); outputs by name."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise KeyError(f"missing inputs {missing} (the model takes {self.input_names})")
        cast = {name: np.asarray(feeds[name]).astype(dtype, copy=False)
                for name, dtype in zip(self.input_names, self.input_dtypes)}
        outs = self._session.run(self.output_names, cast)
        return dict(zip(self.output_names, outs))
