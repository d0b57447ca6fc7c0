"""Run a .tflite model with LiteRT, feeding and fetching tensors by their IR names.

The TFLite target writes a "serving_default" signature that maps the IR's input
and output names to tensors; this session reads it, so callers never see tensor
indices.  Inputs are resized only when a feed's shape differs from the last
run (resizing re-plans memory and re-prepares the XNNPACK delegate, which LiteRT
applies by default).
"""

from __future__ import annotations

import logging
import os
from typing import Mapping

import numpy as np
from ai_edge_litert.interpreter import Interpreter

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"


class TFLiteSession:
    """A LiteRT interpreter over one model: ``run(feeds) -> {output name: array}``."""

    def __init__(self, path_or_bytes: str | os.PathLike | bytes, threads: int | None = None) -> None:
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            self.interpreter = Interpreter(model_content=bytes(path_or_bytes), num_threads=threads)
        else:
            self.interpreter = Interpreter(model_path=os.fspath(path_or_bytes), num_threads=threads)
        inputs, outputs = self._signature()
        order = [d["index"] for d in self.interpreter.get_input_details()]
        self._inputs = sorted(inputs.items(), key=lambda kv: order.index(kv[1]))
        out_order = [d["index"] for d in self.interpreter.get_output_details()]
        self._outputs = sorted(outputs.items(), key=lambda kv: out_order.index(kv[1]))
        details = {d["index"]: d for d in self.interpreter.get_input_details()}
        self._dtypes = {name: np.dtype(details[i]["dtype"]) for name, i in self._inputs}
        self._shapes: dict[str, tuple[int, ...]] = {
            name: tuple(int(d) for d in details[i]["shape"]) for name, i in self._inputs}
        self.interpreter.allocate_tensors()

    def _signature(self) -> tuple[dict[str, int], dict[str, int]]:
        """Input and output name -> tensor index, from the signature when there is one."""
        if SIGNATURE_KEY in self.interpreter.get_signature_list():
            runner = self.interpreter.get_signature_runner(SIGNATURE_KEY)
            ins = {n: d["index"] for n, d in runner.get_input_details().items()}
            outs = {n: d["index"] for n, d in runner.get_output_details().items()}
            del runner  # it must not outlive this call: resizing checks for live references
            return ins, outs
        log.debug("model has no %s signature; using tensor names", SIGNATURE_KEY)
        return ({d["name"]: d["index"] for d in self.interpreter.get_input_details()},
                {d["name"]: d["index"] for d in self.interpreter.get_output_details()})

    @property
    def input_names(self) -> list[str]:
        return [name for name, _ in self._inputs]

    @property
    def input_dtypes(self) -> list[str]:
        """Numpy dtype names of the inputs, in ``input_names`` order ("int32" …)."""
        return [self._dtypes[name].name for name, _ in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self._outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; inputs whose shape changed since the last run are resized first."""
        unknown = set(feeds) - set(self.input_names)
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            raise ValueError(f"feeds do not match the model's inputs {self.input_names}: "
                             f"missing {missing}, unknown {sorted(unknown)}")
        arrays = {name: np.asarray(feeds[name]).astype(self._dtypes[name], copy=False)
                  for name in self.input_names}
        resized = False
        for name, index in self._inputs:
            shape = arrays[name].shape
            if shape != self._shapes[name]:
                self.interpreter.resize_tensor_input(index, list(shape))
                self._shapes[name] = shape
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
        for name, index in self._inputs:
            self.interpreter.set_tensor(index, arrays[name])
        self.interpreter.invoke()
        return {name: self._output(index) for name, index in self._outputs}

    def _output(self, index: int) -> np.ndarray:
        """An output tensor's value; LiteRT's Python binding cannot return an empty one
        (``tf.where`` of an all-false mask), so that one is built from its shape."""
        try:
            return self.interpreter.get_tensor(index)
        except ValueError:
            detail = next(d for d in self.interpreter.get_output_details() if d["index"] == index)
            if 0 not in detail["shape"]:
                raise
            return np.zeros(detail["shape"], detail["dtype"])
