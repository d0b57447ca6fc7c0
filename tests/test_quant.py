"""Quantization (issue 6, part 1): the quantize/dequantize/qmatmul ops and quant_int8.

Tolerances used below, and why:

* Reference kernels are checked exactly against hand-computed integers.
* IR after quant_int8 vs the float TF model: the logits move by 1-2% of their
  range on the tiny BERT; the test allows 5% (the pass declares 10%, for deep
  models) and 100% argmax agreement.
* One qmatmul, lowered alone and fed the activation the IR computed for it: the
  runtime computes the same integers and scales as the reference kernel, so ONNX
  (act=u8_tensor) is bit-exact and TFLite (act=i8_row) differs by f32 rounding
  order only (1e-5 of the range allowed).  This is where a wrong activation
  scheme, scale layout or zero point would show.
* A whole artifact vs the quantized IR with the same scheme: usually ~1e-7 of the
  range, but quantization is discontinuous: a 1-ulp difference in a float op
  (GELU, layer norm) can move one activation across a rounding boundary, or move
  a tensor's min/max and with it the scale, and that step then propagates
  through the later layers.  Measured on this model over 60 input sets: at most
  0.9% of the range (one flip).  Bound: 2%.
* An artifact vs the IR with the *other* scheme (TFLite runs int8 per row where
  the IR says u8 per tensor, and vice versa): both are within one activation
  quantization step of the float model, so they agree within the sum of their
  errors against it: 5% of the range.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from bertc.diagnostics import BertcError
from bertc.ir import Graph, TensorType
from bertc.ir.interpreter import run_graph
from bertc.ir.parser import parse_graph
from bertc.ir.printer import print_graph
from bertc.ir.verifier import verify
from bertc.ops.quant import dequantize_array, dynamic_quant_params, quantize_array
from bertc.pass_manager import PassContext, PassManager, parse_pipeline
from bertc.passes.quant_int8 import ACT_SCHEMES
from bertc.runtime.fidelity import Fidelity, measure, pipeline_fidelity
from bertc.runtime.session import ReferenceSession, open_session
from bertc.runtime.verify import DEFAULT_CASES, feeds_for
from bertc.targets.onnx import TARGET as ONNX
from bertc.targets.tflite import TARGET as TFLITE
from bertc.targets.tflite_builder import read_model

CASES = [*DEFAULT_CASES, (8, 32)]
SAME_SCHEME = 0.02  # of the logits' range, whole models: see the module docstring
SINGLE_OP = 1e-5
OTHER_SCHEME = 0.05
VS_FLOAT = 0.05


def run1(kind: str, *arrays, **attrs) -> np.ndarray:
    """Run one op on constants through the reference interpreter (and its verifier)."""
    g = Graph()
    ops = [g.const(np.asarray(a), f"c{i}") for i, a in enumerate(arrays)]
    g.outputs["y"] = g.add(kind, ops, attrs).result
    verify(g)
    return run_graph(g, {})["y"]


# ------------------------------------------------------------------ reference kernels
def test_quantize_per_tensor_int8_and_uint8_hand_computed():
    x = np.array([-1.0, -0.5, 0.0, 0.25, 0.75, 1.25, 100.0, -100.0], np.float32)
    # x / 0.5 = [-2, -1, 0, 0.5, 1.5, 2.5, 200, -200]; ties to even: 0.5->0, 1.5->2, 2.5->2
    q = run1("quantize", x, np.float32(0.5), np.int8(1))
    assert q.dtype == np.int8
    assert q.tolist() == [-1, 0, 1, 1, 3, 3, 127, -128]  # +1, then saturated
    q = run1("quantize", x, np.float32(0.5), np.uint8(128))
    assert q.dtype == np.uint8
    assert q.tolist() == [126, 127, 128, 128, 130, 130, 255, 0]


def test_quantize_rounds_ties_to_even_and_saturates():
    ties = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, np.inf, -np.inf, 1e30], np.float32)
    assert quantize_array(ties, np.float32(1), np.int8(0)).tolist() == [-2, -2, 0, 0, 2, 2, 4, 127, -128, 127]
    assert quantize_array(ties, np.float32(1), np.uint8(3)).tolist() == [1, 1, 3, 3, 5, 5, 7, 255, 0, 255]


def test_quantize_per_axis():
    x = np.array([[1.0, 1.0, 1.0], [-3.0, 2.5, 5.0]], np.float32)
    # axis 1: x / [0.5, 1, 2] = [[2, 1, 0.5], [-6, 2.5, 2.5]] -> [[2, 1, 0], [-6, 2, 2]] + [0, -1, 10]
    q = run1("quantize", x, np.array([0.5, 1, 2], np.float32), np.array([0, -1, 10], np.int8), axis=1)
    assert q.tolist() == [[2, 0, 10], [-6, 1, 12]]
    # axis 0 (negative spelling), uint8: rows / [0.25, 0.5] + [0, 250]
    q = run1("quantize", x, np.array([0.25, 0.5], np.float32), np.array([0, 250], np.uint8), axis=-2)
    assert q.tolist() == [[4, 4, 4], [244, 255, 255]]


def test_dequantize_per_tensor_and_per_axis():
    q = np.array([-128, -1, 0, 127], np.int8)
    assert run1("dequantize", q, np.float32(0.5), np.int8(-1)).tolist() == [-63.5, 0.0, 0.5, 64.0]
    u = np.array([[0, 128, 255], [10, 20, 30]], np.uint8)
    d = run1("dequantize", u, np.array([1.0, 0.5], np.float32), np.array([128, 10], np.uint8), axis=0)
    assert d.dtype == np.float32
    assert d.tolist() == [[-128.0, 0.0, 127.0], [0.0, 5.0, 10.0]]


def test_quantize_dequantize_round_trip_is_within_half_a_step():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.4, 2.4, (4, 6)).astype(np.float32)  # inside every column's range
    s = np.array([0.03, 0.05, 0.02, 0.04, 0.1, 0.025], np.float32)
    z = np.array([0, 5, -5, 1, 0, 2], np.int8)
    back = dequantize_array(quantize_array(x, s, z, axis=1), s, z, axis=1)
    assert np.all(np.abs(back - x) <= s / 2 + 1e-7)


def test_dynamic_quant_params_hand_computed():
    # u8 asymmetric per tensor (onnxruntime DynamicQuantizeLinear): range [-1, 3]
    q, s, z = dynamic_quant_params(np.array([-1.0, 0.0, 3.0], np.float32), "u8", False, False)
    assert s == np.float32(4 / 255) and z == 64  # round(0 - (-1) / (4/255)) = round(63.75)
    assert q.tolist() == [0, 64, 255]
    q, s, z = dynamic_quant_params(np.array([0.5, 2.0], np.float32), "u8", False, False)
    assert z == 0 and s == np.float32(2 / 255) and q.tolist() == [64, 255]  # range widened to 0; 63.75
    # int8 symmetric per row: scales max|row| / 127; 63.5 rounds to even
    q, s, z = dynamic_quant_params(np.array([[1.0, -2.0], [0.5, 0.25]], np.float32), "i8", True, True)
    assert s.shape == (2, 1) and np.all(z == 0)
    assert q.tolist() == [[64, -127], [127, 64]]
    # int8 asymmetric per row: each row gets its own zero point
    q, s, z = dynamic_quant_params(np.array([[0.0, 2.55], [-2.55, 0.0]], np.float32), "i8", False, True)
    assert z.ravel().tolist() == [-128, 127] and q.tolist() == [[-128, 127], [-128, 127]]
    # all zeros: scale 1, zero point at 0
    q, s, z = dynamic_quant_params(np.zeros((2, 3), np.float32), "u8", False, False)
    assert s == 1 and z == 0 and not q.any()


def test_qmatmul_kernel_is_the_dequantized_product():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 5, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    s = (np.abs(w).max(0) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / s), -127, 127).astype(np.int8)
    for act, sym, row in (("u8", False, False), ("i8", False, True), ("i8", True, True), ("i8", True, False)):
        y = run1("qmatmul", a, wq, s, np.zeros(3, np.int8), axis=1, act_dtype=act, act_symmetric=sym,
                 act_per_row=row)
        aq, a_s, a_z = dynamic_quant_params(a, act, sym, row)
        explicit = ((aq.astype(np.float64) - a_z) * a_s) @ (wq.astype(np.float64) * s)
        np.testing.assert_allclose(y, explicit, rtol=1e-5, atol=1e-5)
        assert np.abs(y - a @ w).max() <= 0.05 * np.abs(a @ w).max()  # and close to the float product
    per_tensor = run1("qmatmul", a, wq, np.float32(0.01), np.int8(0))
    assert per_tensor.shape == (2, 5, 3) and per_tensor.dtype == np.float32


@pytest.mark.parametrize("kind, arrays, attrs, needle", [
    ("quantize", [np.ones(3, np.float32), np.ones(2, np.float32), np.zeros(2, np.int8)], {"axis": 0},
     "got 2 scales"),
    ("quantize", [np.ones(3, np.float32), np.float32(1), np.int32(0)], {}, "zero_point must be i8 or u8"),
    ("quantize", [np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.int8)], {},
     "takes a scalar scale"),
    ("quantize", [np.ones(3, np.float32), np.float32(1), np.zeros(1, np.int8)], {}, "must have the shape"),
    ("dequantize", [np.ones(3, np.int8), np.float32(1), np.uint8(0)], {}, "must have the input's dtype"),
    ("dequantize", [np.ones(3, np.float32), np.float32(1), np.int8(0)], {}, "takes an i8 or u8 input"),
    ("qmatmul", [np.ones((2, 4), np.float32), np.ones((4, 3), np.int8), np.ones(4, np.float32),
                 np.zeros(4, np.int8)], {"axis": 0}, "output axis"),
    ("qmatmul", [np.ones((2, 4), np.float32), np.ones((4, 3), np.int8), np.float32(1), np.int8(0)],
     {"act_dtype": "u8", "act_symmetric": True}, "symmetric"),
])
def test_verifier_rejects_malformed_quant_ops(kind, arrays, attrs, needle):
    g = Graph()
    with pytest.raises(ValueError, match=needle):  # OpError from the builder, VerifyError from verify
        g.add(kind, [g.const(a, f"c{i}") for i, a in enumerate(arrays)], attrs)
        verify(g)


def test_quant_ops_print_and_parse_back():
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    s = g.const(np.array([0.1, 0.2, 0.3, 0.4], np.float32), "s")
    z = g.const(np.array([0, 1, -1, 3], np.int8), "z")
    q = g.add("quantize", [x, s, z], {"axis": 1}).result
    d = g.add("dequantize", [q, g.const(np.float32(0.5), "s1"), g.const(np.int8(0), "z1")]).result
    big = np.arange(-64, 64, dtype=np.int8).reshape(4, 32)
    y = g.add("qmatmul", [d, g.const(big, "w_int8"), g.const(np.full(32, 0.01, np.float32), "w_scale"),
                          g.const(np.zeros(32, np.int8), "w_zero_point")],
              {"axis": 1, "act_dtype": "i8", "act_per_row": True}).result
    g.outputs["y"] = y
    text = print_graph(g)
    assert "quantize %x, %s, %z {axis=1} : i8[batch,4]" in text
    assert "dequantize %quantize, %s1, %z1 : f32[batch,4]" in text  # per tensor: no axis printed
    assert '{axis=1, act_dtype="i8", act_per_row=true, act_symmetric=false} : f32[batch,32]' in text
    again = parse_graph(text, g.weights())
    verify(again)
    assert print_graph(again) == text
    feeds = {"x": np.array([[0.05, -0.3, 1.0, 2.0]], np.float32)}
    np.testing.assert_array_equal(run_graph(again, feeds)["y"], run_graph(g, feeds)["y"])


# ------------------------------------------------------------------ quant_int8 on the tiny BERT
def quantized(model, spec: str = "quant_int8") -> tuple[Graph, PassContext]:
    graph, ctx = model.graph(), PassContext()
    PassManager(parse_pipeline(spec)).run(graph, ctx)
    return graph, ctx


class _TF:
    """The float source model as a session (what compile verifies against)."""

    def __init__(self, model, graph) -> None:
        self.model, self.input_names = model, [v.name for v in graph.inputs]
        self.input_dtypes = ["int32"] * len(self.input_names)

    def run(self, feeds):
        return {k: np.asarray(v) for k, v in self.model.tf_run(
            {n: np.asarray(feeds[n]).astype(np.int32) for n in self.input_names}).items()}


def _feeds(graph):
    from bertc.runtime.inputs import vocab_size

    vocab = {v.name: vocab_size(graph, v.name) for v in graph.inputs}
    return [f for _, f in feeds_for(ReferenceSession(graph), CASES, vocab)]


@pytest.fixture(scope="module")
def quant_bert(tf_bert):
    """The tiny BERT quantized both ways, lowered, with feeds: built once for this module."""
    out = {}
    for act in ("u8_tensor", "i8_row"):
        graph, ctx = quantized(tf_bert, f"quant_int8{{act={act}}}")
        out[act] = {"graph": graph, "ctx": ctx, "onnx": ONNX.lower(graph), "tflite": TFLITE.lower(graph)}
    out["feeds"] = _feeds(out["u8_tensor"]["graph"])
    return out


def test_ir_after_quant_int8(tf_bert, quant_bert):
    graph, ctx = quant_bert["u8_tensor"]["graph"], quant_bert["u8_tensor"]["ctx"]
    before = tf_bert.graph()
    kernels = [op for op in before.ops_of("matmul") if op.operands[1].is_const()]
    assert len(kernels) == 14  # 2 layers x (q, k, v, o, ffn up, ffn down) + pooler + classifier
    assert len(graph.ops_of("qmatmul")) == 14
    assert all(not op.operands[1].is_const() for op in graph.ops_of("matmul"))  # q@k and p@v stay float
    report = ctx.report["quant_int8"]
    assert report["by_role"] == {"attention.q": 2, "attention.k": 2, "attention.v": 2, "attention.o": 2,
                                 "ffn.up": 2, "ffn.down": 2, "other": 2}
    for op in graph.ops_of("qmatmul"):
        x, w, s, z = op.operands
        assert w.dtype == "i8" and w.is_const() and s.shape == (w.shape[1],) and not z.const_value().any()
        assert op.attrs["axis"] == 1 and op.attrs["act_dtype"] == "u8" and not op.attrs["act_per_row"]
        assert np.abs(w.const_value()).max() == 127  # each column's max maps to 127
    # embeddings=false: the gathers still read float tables
    for op in graph.ops_of("gather"):
        if op.operands[0].is_const():
            assert op.operands[0].dtype == "f32"
    assert not graph.ops_of("dequantize")
    assert report["weight_bytes_after"] < 0.4 * report["weight_bytes_before"]


def test_reference_interpreter_stays_close_to_the_float_model(tf_bert, quant_bert):
    for act in ("u8_tensor", "i8_row"):
        graph = quant_bert[act]["graph"]
        report = measure(_TF(tf_bert, graph), ReferenceSession(graph), quant_bert["feeds"],
                         Fidelity(max_rel_error=VS_FLOAT, min_argmax_agreement=1.0), CASES)
        assert report.ok, report.failures
        assert report.outputs["logits"].max_abs_error > 0  # it did quantize


def test_artifacts_load_run_and_match_the_ir(quant_bert):
    feeds = quant_bert["feeds"]
    exact = Fidelity(max_rel_error=SAME_SCHEME, min_argmax_agreement=1.0)
    other = Fidelity(max_rel_error=OTHER_SCHEME, min_argmax_agreement=1.0)
    for act, same, different in (("u8_tensor", "onnx", "tflite"), ("i8_row", "tflite", "onnx")):
        ir = ReferenceSession(quant_bert[act]["graph"])
        s_same = open_session(quant_bert[act][same], kind=same)
        s_diff = open_session(quant_bert[act][different], kind=different)
        r = measure(ir, s_same, feeds, exact, CASES)
        assert r.ok, (act, same, r.failures)
        r = measure(ir, s_diff, feeds, other, CASES)
        assert r.ok, (act, different, r.failures)
        r = measure(s_same, s_diff, feeds, other, CASES)
        assert r.ok, (act, "onnx vs tflite", r.failures)


def test_each_qmatmul_lowers_exactly(quant_bert):
    """Every qmatmul of the tiny BERT, alone, on the activation the IR computed for it."""
    for act, kind, target in (("u8_tensor", "onnx", ONNX), ("i8_row", "tflite", TFLITE)):
        graph = quant_bert[act]["graph"]
        ops = graph.ops_of("qmatmul")
        wanted = {id(op.operands[0]) for op in ops}
        seen: dict[int, np.ndarray] = {}
        run_graph(graph, quant_bert["feeds"][3],
                  observe=lambda v, a: seen.__setitem__(id(v), a) if id(v) in wanted else None)
        for op in ops:
            x = np.asarray(seen[id(op.operands[0])])
            g = Graph()
            xin = g.add_input("x", TensorType("f32", ("batch",) * (x.ndim - 1) + (x.shape[-1],)))
            consts = [g.const(v.const_value(), v.producer.attrs["name"]) for v in op.operands[1:]]
            g.outputs["y"] = g.add("qmatmul", [xin, *consts], dict(op.attrs)).result
            want = run_graph(g, {"x": x})["y"]
            got = open_session(target.lower(g), kind=kind).run({"x": x})["y"]
            err = float(np.abs(got - want).max() / np.abs(want).max())
            assert err <= (0.0 if kind == "onnx" else SINGLE_OP), (act, op.loc, err)


def test_onnx_artifact_structure_and_sizes(tf_bert, quant_bert):
    model = onnx.load_from_string(quant_bert["u8_tensor"]["onnx"])
    onnx.checker.check_model(model, full_check=True)  # contrib ops: onnx skips their schemas
    assert {(o.domain, o.version) for o in model.opset_import} == {("", 20), ("com.microsoft", 1)}
    kinds = [n.op_type for n in model.graph.node]
    assert kinds.count("DynamicQuantizeMatMul") == 14 and "MatMul" in kinds  # attention stays float
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    floats = tf_bert.graph().weights()
    # int8 kernels are stored shifted into uint8 (q + 128, zero point 128): the same integer
    # product, which onnxruntime computes exactly without VNNI (u8 x s8 saturates there)
    ir_int8 = quant_bert["u8_tensor"]["graph"].weights()
    pairs = [(n, n.removeprefix("bertc/").removesuffix("_u8")) for n in inits if n.endswith("/kernel_int8_u8")]
    assert len(pairs) == 14
    for uname, qname in pairs:
        u, q, f = inits[uname], ir_int8[qname], floats[qname.removesuffix("_int8")]
        assert u.dtype == np.uint8 and u.shape == f.shape and u.nbytes * 4 == f.nbytes
        np.testing.assert_array_equal(u.astype(np.int16) - 128, q)
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeMatMul":
            assert node.domain == "com.microsoft"
            w, scale, zero, bias = (inits[i] for i in node.input[1:])
            assert w.dtype == np.uint8 and scale.shape == zero.shape == (w.shape[1],) and (zero == 128).all()
            # every projection's bias is the kernel's bias input, not a separate Add
            assert bias.dtype == np.float32 and bias.shape == (w.shape[1],)
            bias_name = node.input[4].removeprefix("bertc/")
            if bias_name in floats:  # small literals are named by value (const[...]) instead
                np.testing.assert_array_equal(bias, floats[bias_name])
    qmm_outputs = {o for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul" for o in n.output}
    bias_adds = [n.name for n in model.graph.node if n.op_type == "Add"
                 and set(n.input) & qmm_outputs and set(n.input) & set(inits)]
    assert not bias_adds
    # the embedding tables stay float initializers (embeddings=false)
    assert inits["bert_classifier/word_embeddings"].dtype == np.float32
    float_bytes = len(ONNX.lower(tf_bert.graph()))
    kernel_bytes = sum(floats[q.removesuffix("_int8")].nbytes for _, q in pairs)
    shrink = float_bytes - len(quant_bert["u8_tensor"]["onnx"])
    assert shrink >= 0.7 * kernel_bytes  # 3/4 of every kernel's bytes, less the scales


def test_tflite_artifact_structure_and_sizes(tf_bert, quant_bert):
    from tensorflow.lite.python import schema_py_generated as schema

    data = quant_bert["u8_tensor"]["tflite"]
    model = read_model(data)
    sub = model.subgraphs[0]
    fcs = [op for op in sub.operators
           if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]
    assert len(fcs) == 14
    kernel_bytes = 0
    for op in fcs:
        w = sub.tensors[op.inputs[1]]
        assert w.type == schema.TensorType.INT8
        assert op.builtinOptions.asymmetricQuantizeInputs and op.builtinOptions.keepNumDims
        q = w.quantization
        assert q.quantizedDimension == 0 and len(q.scale) == w.shape[0] and not any(q.zeroPoint)
        assert sub.tensors[op.inputs[0]].type == sub.tensors[op.outputs[0]].type == schema.TensorType.FLOAT32
        kernel_bytes += 4 * int(np.prod(w.shape))
    gathers = [op for op in sub.operators
               if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.GATHER]
    tables = [sub.tensors[op.inputs[0]] for op in gathers if sub.tensors[op.inputs[0]].buffer]
    assert tables and all(t.type == schema.TensorType.FLOAT32 for t in tables)  # embeddings=false
    shrink = len(TFLITE.lower(tf_bert.graph())) - len(data)
    assert shrink >= 0.7 * kernel_bytes


def test_embeddings_true_quantizes_the_gather_tables(tf_bert):
    from tensorflow.lite.python import schema_py_generated as schema

    graph, ctx = quantized(tf_bert, "quant_int8{embeddings=true}")
    assert ctx.report["quant_int8"]["gathers"] == 2  # word and token-type tables (positions are sliced)
    deq = graph.ops_of("dequantize")
    assert len(deq) == 2
    for op in deq:
        rows = op.operands[0].producer
        assert rows.kind == "gather" and rows.operands[0].dtype == "i8" and op.attrs["axis"] == 2
    onnx_model = onnx.load_from_string(ONNX.lower(graph))
    inits = {i.name: i for i in onnx_model.graph.initializer}
    assert inits["bert_classifier/word_embeddings_int8"].data_type == onnx.TensorProto.INT8
    assert "bert_classifier/word_embeddings" not in inits
    data = TFLITE.lower(graph)
    sub = read_model(data).subgraphs[0]
    tables = {sub.tensors[i].name.decode(): sub.tensors[i] for i in range(len(sub.tensors))}
    table = next(t for n, t in tables.items() if n.endswith("word_embeddings_int8"))
    assert table.type == schema.TensorType.INT8
    feeds = _feeds(graph)
    r = measure(_TF(tf_bert, graph), open_session(data, kind="tflite"), feeds,
                Fidelity(max_rel_error=VS_FLOAT, min_argmax_agreement=1.0), CASES)
    assert r.ok, r.failures
    r = measure(ReferenceSession(graph), open_session(ONNX.lower(graph), kind="onnx"), feeds,
                Fidelity(max_rel_error=SAME_SCHEME), CASES)
    assert r.ok, r.failures


def test_per_tensor_and_shared_kernels():
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("n", 8)))
    w = g.const(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "shared/kernel")
    h = g.add("matmul", [x, w]).result
    g.outputs["y"] = g.add("matmul", [h, w]).result  # one kernel, two matmuls: one int8 tensor
    ctx = PassContext()
    PassManager(parse_pipeline("quant_int8{per_channel=false}")).run(g, ctx)
    ops = g.ops_of("qmatmul")
    assert len(ops) == 2 and ops[0].operands[1] is ops[1].operands[1]
    assert ops[0].attrs["axis"] is None and ops[0].operands[2].type.rank == 0
    assert len([op for op in g.ops if op.kind == "const" and op.result.dtype == "i8"]) == 2  # kernel, zero point
    assert not PassManager(parse_pipeline("quant_int8")).run(g)[0].changed  # nothing left to do


def test_weight_bits_7_rounds_kernels_to_63_and_matches_the_ir(tf_bert, quant_bert):
    graph, _ = quantized(tf_bert, "quant_int8{weight_bits=7,embeddings=true}")
    tables = [op.operands[0].const_value() for op in graph.ops_of("gather") if op.operands[0].dtype == "i8"]
    assert tables and all(np.abs(t).max() == 127 for t in tables)  # gathers gain nothing from 7 bits
    eight = {op.loc.primary: op for op in quant_bert["u8_tensor"]["graph"].ops_of("qmatmul")}
    for op in graph.ops_of("qmatmul"):
        q7, s7 = op.operands[1].const_value(), op.operands[2].const_value()
        assert np.abs(q7).max() == 63  # each column's max maps to 63
        s8 = eight[op.loc.primary].operands[2].const_value()
        np.testing.assert_allclose(s7 * 63, s8 * 127, rtol=1e-6)  # the same max|W| per column
    model = onnx.load_from_string(ONNX.lower(graph))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    kernels = [inits[n.input[1]] for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(kernels) == 14 and all(k.dtype == np.int8 for k in kernels)  # s8: the u8 x s8 path
    r = measure(ReferenceSession(graph), open_session(model.SerializeToString(), kind="onnx"),
                quant_bert["feeds"], Fidelity(max_rel_error=SAME_SCHEME, min_argmax_agreement=1.0), CASES)
    assert r.ok, r.failures


@pytest.mark.parametrize("kmax, stored", [(64, np.int8), (65, np.uint8), (127, np.uint8)])
def test_onnx_qmatmul_is_exact_where_u8_x_s8_would_saturate(kmax, stored):
    """Full-range u8 activations (0 and 255) against kernels of +-kmax: u8 x s8 pair sums
    (AVX2 vpmaddubsw, int16) stay exact up to |q| = 64 (255 * 64 * 2 = 32640) and saturate
    from 65, so the lowering keeps s8 only up to 64 and shifts larger kernels into u8.
    Either way onnxruntime must give the reference kernel's result bit for bit."""
    rng = np.random.default_rng(3)
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("n", 64)))
    wq = np.where(rng.random((64, 32)) < 0.5, kmax, -kmax).astype(np.int8)
    wq[:, :8] = kmax  # columns whose pair sums all reach 2 * 255 * kmax
    ops = [g.const(wq, "kernel_int8"), g.const(np.full(32, 0.01, np.float32), "scale"),
           g.const(np.zeros(32, np.int8), "zero_point")]
    g.outputs["y"] = g.add("qmatmul", [x, *ops], {"axis": 1, **ACT_SCHEMES["u8_tensor"]}).result
    feeds = {"x": np.where(rng.random((6, 64)) < 0.8, 1.0, -1.0).astype(np.float32)}  # u8 0 and 255
    model = onnx.load_from_string(ONNX.lower(g))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    (node,) = model.graph.node
    assert inits[node.input[1]].dtype == stored
    want = run_graph(g, feeds)["y"]
    got = open_session(model.SerializeToString(), kind="onnx").run(feeds)["y"]
    np.testing.assert_array_equal(got, want)


def test_pass_options_are_checked():
    with pytest.raises(BertcError, match="quantizes matmul"):
        parse_pipeline("quant_int8{ops=conv}")
    for spec in ("quant_int8{weight_bits=4}", "calibrate,quant_full{weight_bits=9}"):
        with pytest.raises(BertcError, match="weight_bits=.*8 .* or 7"):
            parse_pipeline(spec)
    with pytest.raises(BertcError, match="must be one of"):
        parse_pipeline("quant_int8{act=u4}")
    assert parse_pipeline("quant_int8{ops=[matmul]}")[0].ops == "[matmul]"


def test_tflite_refuses_what_its_hybrid_kernels_cannot_run():
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("n", 4)))
    w = np.ones((4, 3), np.uint8)
    g.outputs["u8"] = g.add("qmatmul", [x, g.const(w, "wu"), g.const(np.float32(0.1), "s"),
                                        g.const(np.uint8(3), "z")]).result
    g.outputs["zp"] = g.add("qmatmul", [x, g.const(w.astype(np.int8), "wi"), g.const(np.float32(0.1), "s2"),
                                        g.const(np.int8(2), "z2")]).result
    g.outputs["i8"] = g.add("add", [g.const(np.ones(3, np.int8), "i"), g.const(np.ones(3, np.int8), "j")]).result
    reasons = " | ".join(u.reason for u in TFLITE.unsupported(g))
    assert "takes int8 kernels only" in reasons and "nonzero kernel zero points" in reasons
    assert "add on i8" in reasons and "const on i8" in reasons
    assert not ONNX.unsupported(g.__class__())  # (an empty graph is legal everywhere)


# ------------------------------------------------------------------ fidelity
def test_pipeline_fidelity():
    exact = pipeline_fidelity(parse_pipeline("fold_constants,cse"), 1e-4)
    assert exact == Fidelity.exact(1e-4)
    quant = pipeline_fidelity(parse_pipeline("fold_constants,quant_int8{per_channel=false}"), 1e-4)
    assert quant.max_abs_error is None and quant.max_rel_error == 0.3 and quant.min_cosine == 0.95
    assert quant.min_argmax_agreement is None  # left to --max-drop: argmax over embedding dims means nothing
    twice = pipeline_fidelity(parse_pipeline("quant_int8,quant_int8"), 1e-4)
    assert twice.max_rel_error == pytest.approx(0.6) and twice.min_cosine == pytest.approx(0.9)
    assert "row cosine >= 0.9" in twice.describe()


def test_declared_fidelity_holds_for_the_artifacts_and_reports_failures(tf_bert, quant_bert):
    """What compile's verification does for a quant_int8 pipeline: artifact vs the float model."""
    graph = quant_bert["u8_tensor"]["graph"]
    fidelity = pipeline_fidelity(parse_pipeline("quant_int8"), 1e-4)
    feeds = quant_bert["feeds"]
    for kind in ("onnx", "tflite"):
        report = measure(_TF(tf_bert, graph), open_session(quant_bert["u8_tensor"][kind], kind=kind), feeds,
                         fidelity, CASES)
        assert report.ok, report.failures
        js = report.to_json()
        assert js["ok"] and js["fidelity"]["max_rel_error"] == 0.3
        assert js["outputs"]["logits"]["argmax_agreement"] == 1.0
        assert js["outputs"]["logits"]["min_cosine"] >= 0.99
    strict = measure(_TF(tf_bert, graph), ReferenceSession(graph), feeds, Fidelity.exact(1e-4), CASES)
    assert not strict.ok and "0.0001 * (" in strict.failures[0]  # the exact check would refuse it


def test_row_cosine_criterion_catches_a_scrambled_row():
    """min_cosine looks at every row: one row pointing elsewhere fails the bound even if errors are small."""
    from bertc.runtime.fidelity import _report

    want = {"emb": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)}
    good = {"emb": want["emb"] + 0.01}
    bad = {"emb": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)}
    bound = Fidelity(min_cosine=0.95)
    assert _report([(want, good)], bound, []).ok
    report = _report([(want, bad)], bound, [])
    assert not report.ok and "cosine similarity to the source is 0.0000" in report.failures[0]


def test_an_unbounded_change_makes_the_pipeline_unbounded():
    """prune_heads declares no bound (an intended change); quant_int8 after it cannot promise its bound."""
    both = pipeline_fidelity(parse_pipeline("prune_heads{ratio=0.25},quant_int8"), 1e-4)
    assert both.unbounded and "prune_heads" in both.reason and "quant_int8" in both.reason
    assert not pipeline_fidelity(parse_pipeline("prune_heads{ratio=0},quant_int8"), 1e-4).unbounded
