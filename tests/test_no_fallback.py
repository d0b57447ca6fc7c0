"""The int8 pipelines lower to their fast kernels on both targets, with no silent slow path.

A change to quant_int8's or quant_full's output form that a target no longer recognises would
still compile and verify (the op-by-op fallback is exact), only slower.  So each pipeline's
quantized ops are counted in the IR and the same count of fast kernels is required in the files:

* ONNX: every qmatmul is a DynamicQuantizeMatMul; every matmul of two dequantized operands
  (quant_full's static form) is a MatMulIntegerToFloat, and no DequantizeLinear feeds a MatMul;
* TFLite: every qmatmul is a hybrid FULLY_CONNECTED (float input, int8 kernel); every
  quant_full layer whose result is re-quantized is an int8 FULLY_CONNECTED.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from ai_edge_litert.interpreter import Interpreter

from bertc.pass_manager import PassContext, PassManager, parse_pipeline
from bertc.targets.onnx import TARGET as ONNX
from bertc.targets.tflite import TARGET as TFLITE

PIPELINES = ["quant_int8", "quant_int8{weight_bits=7}", "calibrate,quant_full", "calibrate,quant_full{outputs=none}",
             "calibrate,quant_full{outputs=all}", "quant_int8,ort_fusions", "calibrate,quant_full,ort_fusions"]


def _static_matmuls(graph) -> list:
    return [op for op in graph.ops_of("matmul")
            if all(v.producer is not None and v.producer.kind == "dequantize" for v in op.operands)]


def _requantized(graph) -> int:
    """Matmuls whose result (or result + bias) is quantized again: quant_full's int8-output layers."""
    n = 0
    for op in _static_matmuls(graph):
        v = op.result
        if len(v.users) == 1 and v.users[0].kind == "add":
            v = v.users[0].result
        n += any(u.kind == "quantize" for u in v.users)
    return n


@pytest.fixture(scope="module", params=PIPELINES)
def quantized(request, tf_bert):
    graph = tf_bert.graph()
    PassManager(parse_pipeline(request.param)).run(graph, PassContext())
    return request.param, graph


def test_onnx_has_no_fallback(quantized):
    spec, graph = quantized
    model = onnx.load_from_string(ONNX.lower(graph))
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("DynamicQuantizeMatMul") == len(graph.ops_of("qmatmul")), spec
    assert kinds.count("MatMulIntegerToFloat") == len(_static_matmuls(graph)), spec
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert not [n.name for n in model.graph.node if n.op_type == "MatMul" and set(n.input) & dequantized], spec
    assert kinds.count("DynamicQuantizeMatMul") + kinds.count("MatMulIntegerToFloat") > 0, spec


def test_tflite_has_no_fallback(quantized):
    spec, graph = quantized
    it = Interpreter(model_content=TFLITE.lower(graph))
    it.allocate_tensors()
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    fcs = [o for o in it._get_ops_details() if o["op_name"] == "FULLY_CONNECTED"]
    hybrid = [o for o in fcs if tensors[o["inputs"][0]]["dtype"] == np.float32
              and tensors[o["inputs"][1]]["dtype"] == np.int8]
    int8 = [o for o in fcs if tensors[o["inputs"][0]]["dtype"] == np.int8]
    assert len(hybrid) == len(graph.ops_of("qmatmul")), spec
    assert len(int8) == _requantized(graph), spec
    assert len(hybrid) + len(int8) > 0 or spec.endswith("{outputs=none}"), spec
