"""The ONNX target: whole models against TensorFlow, every op against the reference
interpreter, deterministic bytes, and the capability table's refusals.

Every lowered model passes ``onnx.checker`` (full check, strict shape inference)
and runs on onnxruntime's CPU provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bertc.ir.graph import Graph
from bertc.ir.interpreter import run_graph
from bertc.ir.types import TensorType
from bertc.runtime.inputs import random_graph_inputs
from bertc.runtime.onnx_session import OnnxSession
from bertc.targets.base import LoweringError
from bertc.targets.onnx import CAPABILITIES, OPSET, TARGET, lower, lower_bytes

INT_MAX = 2**63 - 1


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


# --------------------------------------------------------------------------- whole models
MODELS = ["tf_bert", "keras_hub_bert", "hf_bert"]


@pytest.mark.parametrize("fixture", MODELS)
def test_model_matches_tensorflow(fixture: str, request) -> None:
    model = request.getfixturevalue(fixture)
    graph = model.graph()
    proto = lower(graph)
    onnx.checker.check_model(proto, full_check=True)
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "seq"], inp
    assert {o.name for o in proto.graph.output} == set(graph.outputs)
    sess = ort_session(proto)
    names = [o.name for o in sess.get_outputs()]
    for batch in (1, 4):
        for seq in (5, 11):
            feeds = random_graph_inputs(graph, batch, seq)
            got = dict(zip(names, sess.run(names, feeds)))
            want = model.tf_run(feeds)
            for name in graph.outputs:
                ref = np.asarray(want[name])
                assert got[name].shape == ref.shape
                err = float(np.max(np.abs(got[name] - ref)))
                assert err <= 1e-4, f"{fixture} {name} at batch={batch} seq={seq}: max abs error {err}"


def test_model_bytes_are_deterministic(tf_bert) -> None:
    graph = tf_bert.graph()
    first = lower_bytes(graph)
    assert lower_bytes(graph) == first  # the same graph twice
    assert lower_bytes(tf_bert.graph()) == first  # and a fresh copy of it
    proto = onnx.load_from_string(first)
    assert proto.producer_name == "bertc"
    assert proto.opset_import[0].version == OPSET
    names = [i.name for i in proto.graph.initializer]
    assert len(names) == len(set(names))


def test_onnx_session_casts_feeds(tf_bert, tmp_path) -> None:
    graph = tf_bert.graph()
    data = lower_bytes(graph)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    feeds = random_graph_inputs(graph, 2, 7)
    want = run_onnx(onnx.load_from_string(data), feeds)
    for source in (data, path, str(path)):
        sess = OnnxSession(source, threads=1)
        assert sess.input_names == [v.name for v in graph.inputs]
        assert sess.input_dtypes == ["int32"] * len(graph.inputs)
        assert sess.output_names == list(graph.outputs)
        got = sess.run({k: v.astype(np.int64) for k, v in feeds.items()})
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    with pytest.raises(KeyError, match="missing inputs"):
        OnnxSession(data).run({})


# --------------------------------------------------------------------------- one op at a time
@dataclass(frozen=True)
class C:
    """A constant operand (anything else given to ``op_graph`` is a graph input)."""

    value: Any


def op_graph(kind: str, *args, **attrs) -> tuple[Graph, dict[str, np.ndarray]]:
    """A graph holding one ``kind`` op; arrays become graph inputs, ``C(...)`` constants."""
    g = Graph("single_op")
    feeds: dict[str, np.ndarray] = {}
    operands = []
    for i, a in enumerate(args):
        if isinstance(a, C):
            operands.append(g.const(np.asarray(a.value), f"w/const {i}"))
            continue
        a = np.asarray(a)
        feeds[f"x{i}"] = a
        operands.append(g.add_input(f"x{i}", TensorType.of(a)))
    op = g.add(kind, operands, attrs)
    g.outputs["y"] = op.result
    return g, feeds


def check_against_reference(g: Graph, feeds: dict[str, np.ndarray], atol: float, rtol: float) -> None:
    proto = lower(g)
    onnx.checker.check_model(proto, full_check=True)
    got, want = run_onnx(proto, feeds), run_graph(g, feeds)
    assert set(got) == set(want)
    for name, ref in want.items():
        ref = np.asarray(ref)
        assert got[name].dtype == ref.dtype, name
        assert got[name].shape == ref.shape, name
        if ref.dtype.kind in "biu":
            np.testing.assert_array_equal(got[name], ref)
        else:
            np.testing.assert_allclose(got[name], ref, atol=atol, rtol=rtol)


RNG = np.random.default_rng(0)
# zeros, negatives, tiny and large magnitudes
EDGE = np.array([[0.0, -0.0, 1.0, -1.0, 3.5, -3.5], [1e-6, -1e-6, 30.0, -30.0, 1e4, -1e4]], np.float32)
MILD = np.clip(EDGE, -60, 60)  # where exp would overflow in the reference
POS = np.abs(EDGE) + np.float32(1e-3)
NONZERO = np.where(EDGE == 0, np.float32(0.5), EDGE)
X = RNG.normal(size=(2, 3, 4)).astype(np.float32)
Y = RNG.normal(size=(2, 3, 4)).astype(np.float32)
I = np.array([[-7, -1, 0, 1, 7, 100000]], np.int32)
J = np.array([[2, -2, 3, -3, 2, 7]], np.int32)
B1 = np.array([True, False, True, False])
B2 = np.array([True, True, False, False])


def f16(a: np.ndarray) -> np.ndarray:
    return np.clip(a, -100, 100).astype(np.float16)


# id -> (graph builder, atol, rtol).  Integer and bool results are compared exactly.
CASES: dict[str, tuple[Callable[[], tuple[Graph, dict]], float, float]] = {}


def case(name: str, kind: str, *args, atol: float = 1e-6, rtol: float = 1e-5, **attrs) -> None:
    CASES[name] = (lambda: op_graph(kind, *args, **attrs), atol, rtol)


for _k in ("neg", "abs", "relu", "tanh", "erf", "identity"):
    case(f"{_k}_f32", _k, EDGE)
case("exp_f32", "exp", MILD)
case("sigmoid_f32", "sigmoid", MILD)
case("sqrt_f32", "sqrt", np.abs(EDGE))
case("rsqrt_f32", "rsqrt", POS)
case("log_f32", "log", POS)
case("reciprocal_f32", "reciprocal", NONZERO)
case("neg_i32", "neg", I)
case("abs_i64", "abs", I.astype(np.int64))
case("relu_i32", "relu", I)
case("tanh_f16", "tanh", f16(EDGE), atol=1e-3, rtol=1e-3)
case("erf_f16", "erf", f16(EDGE), atol=1e-3, rtol=1e-3)
case("gelu_exact", "gelu", EDGE, approximate="none")
case("gelu_tanh", "gelu", EDGE, approximate="tanh")
case("gelu_tanh_f64", "gelu", EDGE.astype(np.float64), approximate="tanh")
case("logical_not", "logical_not", B1)
R = np.array([[0.0, -0.0, 0.5, -0.5, 1.5, -2.5], [2.5, 3.49, -3.51, 1e7 + 0.5, 7.0, -7.0]], np.float32)
for _k in ("floor", "ceil", "round", "sign"):
    case(f"{_k}_f32", _k, R)
case("sign_i64", "sign", I.astype(np.int64))
case("sin_f32", "sin", np.clip(R, -8, 8) * 3, atol=2e-6)
case("cos_f32", "cos", np.clip(R, -8, 8) * 3, atol=2e-6)
case("mod_i32", "mod", I, J)
case("mod_f32", "mod", EDGE, NONZERO[::-1])
case("pad_attr", "pad", X, pads=[0, 0, 1, 2, 0, 1], value=-1.0)
case("pad_operand", "pad", I, np.array([[1, 0], [0, 2]], np.int64), value=3.0)
case("nonzero", "nonzero", np.array([[True, False, True], [False, False, True]]))
case("gather_nd", "gather_nd", X, C(np.array([[1, 2], [0, 0], [1, 2]], np.int32)))
case("argmax_keepdims", "argmax", EDGE, axis=1, keepdims=True)
case("argmin_i32", "argmin", I, axis=-1, dtype="i32")
case("one_hot_depth_operand", "one_hot", np.array([0, 3, -1, 2], np.int64), np.array(3, np.int64))
for _k in ("add", "sub", "mul", "div", "maximum", "minimum"):
    case(f"{_k}_f32", _k, EDGE, NONZERO[::-1])
    case(f"{_k}_i32", _k, I, J)
case("add_broadcast_const", "add", X, C(np.arange(4, dtype=np.float32)))
case("add_f16", "add", f16(EDGE), f16(NONZERO), atol=1e-2, rtol=1e-3)
case("div_i64_floor", "div", I.astype(np.int64), J.astype(np.int64))
case("div_i8_floor", "div", np.array([-7, 7, -8, 5], np.int8), np.array([2, -2, 3, 3], np.int8))
case("div_u8", "div", np.array([7, 200, 9], np.uint8), np.array([2, 3, 10], np.uint8))
case("pow_f32", "pow", POS, C(np.float32(1.5)))
case("pow_i32", "pow", J, C(np.int32(3)))
for _k in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
    case(f"{_k}_f32", _k, EDGE, C(np.array([0, 0, 1, 0, -3.5, 3.5], np.float32)))
    case(f"{_k}_i32", _k, I, C(np.array([-7, 0, 0, 1, 8, 99999], np.int32)))
case("equal_bool", "equal", B1, B2)
case("logical_and", "logical_and", B1, B2)
case("logical_or", "logical_or", B1, B2)
case("where_f32", "where", X > 0, X, C(np.float32(-1e4)))
case("where_i32", "where", B1, np.arange(4, dtype=np.int32), C(np.int32(-5)))
case("cast_f32_i32", "cast", EDGE, to="i32")  # truncates toward zero
case("cast_f32_bool", "cast", EDGE, to="bool")
case("cast_bool_f32", "cast", B1, to="f32")
case("cast_i64_i32", "cast", I.astype(np.int64), to="i32")
case("cast_i32_f16", "cast", J, to="f16")
case("matmul", "matmul", X, C(RNG.normal(size=(4, 5)).astype(np.float32)), atol=1e-5)
case("matmul_batched", "matmul", X, np.swapaxes(Y, 1, 2).copy(), atol=1e-5)
case("matmul_i32", "matmul", np.arange(6, dtype=np.int32).reshape(2, 3), C(J.reshape(3, 2)))
case("einsum_project", "einsum", X, C(RNG.normal(size=(4, 2, 3)).astype(np.float32)),
     equation="abc,cde->abde", atol=1e-5)
case("einsum_merge", "einsum", RNG.normal(size=(2, 3, 2, 3)).astype(np.float32),
     C(RNG.normal(size=(2, 3, 4)).astype(np.float32)), equation="abcd,cde->abe", atol=1e-5)
case("transpose", "transpose", X, perm=[2, 0, 1])
case("softmax_last", "softmax", X * 50, axis=-1)
case("softmax_axis1_large", "softmax", np.concatenate([EDGE, EDGE * 0.5]), axis=1)
case("layer_norm", "layer_norm", X * 100 + 3, C(RNG.normal(size=4).astype(np.float32)),
     C(RNG.normal(size=4).astype(np.float32)), axis=-1, epsilon=1e-12, atol=1e-5)
case("layer_norm_two_axes", "layer_norm", X, C(np.ones((3, 4), np.float32)),
     C(np.zeros((3, 4), np.float32)), axis=1, epsilon=1e-5, atol=1e-5)
case("layer_norm_f16", "layer_norm", f16(X), C(np.ones(4, np.float16)), C(np.zeros(4, np.float16)),
     epsilon=1e-5, atol=1e-2, rtol=1e-2)
for _k in ("reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod"):
    case(f"{_k}_f32", _k, X, axes=[1, -1], atol=1e-5)
    case(f"{_k}_keepdims", _k, X, axes=[0], keepdims=True, atol=1e-5)
    case(f"{_k}_i32", _k, np.concatenate([I, J]), axes=[0])
case("reduce_sum_no_axes", "reduce_sum", X, axes=[])
case("reduce_mean_i32_negative", "reduce_mean", np.array([[-3, -4], [3, 4]], np.int32), axes=[1])
for _ex in (False, True):
    for _rev in (False, True):
        case(f"cumsum_f32_ex{_ex:d}_rev{_rev:d}", "cumsum", X, axis=1, exclusive=_ex, reverse=_rev, atol=1e-5)
        case(f"cumsum_i32_ex{_ex:d}_rev{_rev:d}", "cumsum", I, axis=-1, exclusive=_ex, reverse=_rev)
case("reshape_attr", "reshape", X, shape=[0, -1, 2])
case("reshape_operand", "reshape", X, C(np.array([6, 4], np.int32)))
case("reshape_runtime_shape", "reshape", X, np.array([4, -1], np.int64))
case("shape_i64", "shape", X)
case("shape_i32", "shape", X, dtype="i32")
case("slice_attr", "slice", X, starts=[1, -1], ends=[INT_MAX, -INT_MAX], axes=[1, 2], steps=[1, -2])
case("slice_clamped", "slice", X, starts=[-100], ends=[2**64], axes=[0])
case("slice_operands", "slice", X, C(np.array([1], np.int64)), C(np.array([3], np.int32)), axes=[2])
case("slice_runtime", "slice", X, np.array([0, 1], np.int32), np.array([1, 3], np.int32), axes=[0, 1],
     steps=[1, 1])
case("squeeze", "squeeze", X[:1], axes=[0])
case("squeeze_no_axes", "squeeze", X[:1], axes=[])
case("unsqueeze", "unsqueeze", X, axes=[0, -1])
case("concat", "concat", X, Y, C(np.zeros((2, 1, 4), np.float32)), axis=1)
case("concat_i32", "concat", I, J, axis=0)
# Indices fed from a graph input are a caller's ids: negative ones are refused on onnxruntime
# (tests/test_token_ids.py); constant indices keep the IR's wrapping.
case("gather_rows", "gather", C(RNG.normal(size=(10, 4)).astype(np.float32)),
     np.array([[0, 9, 1], [3, 3, 0]], np.int32), axis=0)
case("gather_rows_const_negative", "gather", RNG.normal(size=(10, 4)).astype(np.float32),
     C(np.array([[0, 9, -1], [3, 3, -10]], np.int32)), axis=0)
case("gather_axis1_i64", "gather", X, np.array([2, 0], np.int64), axis=1)
case("gather_axis1_i64_const_negative", "gather", X, C(np.array([-1, 0], np.int64)), axis=1)
case("gather_scalar", "gather", I.ravel(), C(np.int64(2)), axis=0)
case("tile_attr", "tile", X, repeats=[1, 2, 3])
case("tile_operand", "tile", I, np.array([2, 1], np.int32))
case("expand_attr", "expand", X[:, :1], shape=[3, 1])
case("expand_operand", "expand", X[:, :1], C(np.array([2, 1, 2, 4], np.int32)))
case("range_i32", "range", np.int32(2), np.int32(11), np.int32(3))
case("range_i64_negative_step", "range", C(np.int64(5)), C(np.int64(-4)), C(np.int64(-2)))
case("range_f32", "range", C(np.float32(0.5)), C(np.float32(3.0)), C(np.float32(0.75)))
_HOT = np.array([[0, 2, -1], [5, 1, -4]], np.int32)  # negative and out-of-range: all off
case("one_hot_f32", "one_hot", _HOT, depth=4)
case("one_hot_axis0_i64", "one_hot", _HOT.astype(np.int64), depth=4, axis=0, on_value=3.0,
     off_value=-1.0, dtype="i64")
case("one_hot_i32_truncates", "one_hot", _HOT, depth=3, on_value=2.9, off_value=-0.5, dtype="i32")
case("one_hot_bool", "one_hot", _HOT, depth=4, on_value=0.5, dtype="bool")
case("one_hot_f64", "one_hot", _HOT, depth=4, on_value=0.1, off_value=1e-300, dtype="f64", atol=0, rtol=0)
case("one_hot_f16", "one_hot", _HOT, depth=4, dtype="f16", atol=0)
_IDX = np.array([[1], [3], [1], [-1]], np.int32)  # a duplicate and a negative index
_UPD = RNG.normal(size=(4, 2)).astype(np.float32)
case("scatter_nd_attr", "scatter_nd", _IDX, _UPD, shape=[5, 2])
case("scatter_nd_operand", "scatter_nd", C(_IDX.astype(np.int64)), _UPD, C(np.array([5, 2], np.int32)))
case("scatter_nd_i32", "scatter_nd", np.array([[0, 1], [0, 1], [2, 0]], np.int64),
     np.array([5, -7, 9], np.int32), shape=[3, 2])
case("scatter_nd_add", "scatter_nd_add", X[0], np.array([[0], [2], [0]], np.int64), Y[0])
case("scatter_nd_update", "scatter_nd_update", X[0], np.array([[2], [0]], np.int32), Y[0, :2])
# quantization (issue 6; tests/test_quant.py checks these in depth)
_QW = RNG.integers(-127, 128, (4, 5)).astype(np.int8)
case("quantize_axis_i8", "quantize", X * 3, C(np.array([0.05, 0.1, 0.2, 0.4], np.float32)),
     C(np.array([0, 3, -3, 7], np.int8)), axis=2)
case("dequantize_u8", "dequantize", np.arange(0, 240, 10, dtype=np.uint8).reshape(2, 3, 4),
     C(np.float32(0.02)), C(np.uint8(128)))
case("qmatmul_per_channel", "qmatmul", X, C(_QW), C(np.linspace(0.01, 0.05, 5).astype(np.float32)),
     C(np.zeros(5, np.int8)), axis=1, atol=1e-6)

# fusions (issue 7; tests/test_fusions.py checks these in depth): com.microsoft kernels
_H = np.linspace(-1, 1, 4).astype(np.float32)
case("skip_layer_norm_bias", "skip_layer_norm", X, Y, C(_H + 1), C(_H), C(_H * 0.3), epsilon=1e-12, atol=1e-5)
case("bias_gelu_erf", "bias_gelu", X * 3, C(_H), atol=1e-5)
case("bias_gelu_tanh", "bias_gelu", X * 3, C(_H), approximate="tanh", atol=1e-5)
# MultiHeadAttention: BERT's [batch, 1, 1, kv] mask is expanded along the query axis for onnxruntime
_Q, _K, _V = (RNG.normal(size=(2, 5, 8)).astype(np.float32) for _ in range(3))
_PAD = np.where(RNG.random((2, 1, 1, 5)) < 0.3, -10000.0, 0.0).astype(np.float32)
case("attention_bert_mask", "multi_head_attention", _Q, _K, _V, _PAD, num_heads=2, scale=0.5, atol=1e-5)
case("attention_full_mask", "multi_head_attention", _Q, _K, _V, RNG.normal(size=(2, 2, 5, 5)).astype(np.float32),
     num_heads=2, scale=0.35, atol=1e-5)
case("attention_no_mask", "multi_head_attention", _Q, _K, _V, num_heads=4, atol=1e-5)

# pooling (NHWC, as TF): SAME pads the odd element at the end; an average counts no padding
_P = RNG.normal(size=(2, 5, 3, 4)).astype(np.float32)
case("avg_pool_same", "avg_pool", _P, ksize=[2, 2], strides=[2, 1], padding="SAME")
case("max_pool_valid", "max_pool", _P, ksize=[3, 1], strides=[2, 1], padding="VALID")


def _cond_case(taken: bool) -> tuple[Graph, dict[str, np.ndarray]]:
    """A cond whose branches return different lengths and read a weight of their own."""
    g = Graph("single_op")
    x = g.add_input("x", TensorType("f32", ("b", "s", 4)))
    p = g.add_input("p", TensorType("bool", ()))
    then = Graph("first_two")
    tx = then.add_input("x", x.type)
    then.outputs["y"] = then.add("slice", [tx], {"starts": [0], "ends": [2], "axes": [1]}).result
    other = Graph("scaled")
    ox = other.add_input("x", x.type)
    other.outputs["y"] = other.add("mul", [ox, other.const(np.linspace(1, 2, 20, dtype=np.float32)[:4], "w")]).result
    g.outputs["y"] = g.add("cond", [p, x], {"then": g.adopt(then), "else": g.adopt(other)}).result
    return g, {"x": X, "p": np.array(taken)}


CASES["cond_then"] = (lambda: _cond_case(True), 1e-6, 1e-5)
CASES["cond_else"] = (lambda: _cond_case(False), 1e-6, 1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_reference(name: str) -> None:
    build, atol, rtol = CASES[name]
    g, feeds = build()
    assert not TARGET.unsupported(g), TARGET.unsupported(g)
    check_against_reference(g, feeds, atol, rtol)


def test_every_capability_has_a_case() -> None:
    covered = set()
    for build, _, _ in CASES.values():
        g, _ = build()
        covered.update(op.kind for op in g.ops)
    assert set(CAPABILITIES) - covered == set()


def test_op_chain_with_symbolic_dims() -> None:
    """rsqrt, reshape by 0/-1 and a shape-fed expand over batch/seq dims, one graph."""
    g = Graph("chain")
    x = g.add_input("x", TensorType("f32", ("batch", "seq", 4)))
    r = g.add("rsqrt", [g.add("abs", [x]).result]).result
    flat = g.add("reshape", [r], {"shape": [-1, 4]}).result
    back = g.add("reshape", [flat, g.add("shape", [x]).result]).result
    g.outputs["flat"] = flat
    g.outputs["back"] = back
    proto = lower(g)
    onnx.checker.check_model(proto, full_check=True)
    out = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
           for o in proto.graph.output}
    assert out["flat"] == ["batch*seq", 4]
    for shape in ((1, 3, 4), (5, 2, 4)):
        feeds = {"x": RNG.normal(size=shape).astype(np.float32) + 3}
        got, want = run_onnx(proto, feeds), run_graph(g, feeds)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_output_naming_edge_cases() -> None:
    """Odd input names kept verbatim, a constant output, an input passed through, and one
    value under two names."""
    g = Graph("names")
    x = g.add_input("input ids (x)", TensorType("f32", (2,)))
    y = g.add("neg", [x]).result
    g.outputs["c"] = g.const(np.array([1.0, 2.0], np.float32), "y")  # weight name clashes with an output
    g.outputs["y"] = y
    g.outputs["y2"] = y
    g.outputs["x_again"] = x
    proto = lower(g)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input ids (x)"]
    feeds = {"input ids (x)": np.array([1.0, -2.0], np.float32)}
    got, want = run_onnx(proto, feeds), run_graph(g, feeds)
    assert list(got) == list(want) == ["c", "y", "y2", "x_again"]
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_output_clashing_with_an_input_is_refused() -> None:
    g = Graph("clash")
    x = g.add_input("x", TensorType("f32", (2,)))
    g.outputs["x"] = g.add("neg", [x]).result
    with pytest.raises(ValueError, match="also an input name"):
        lower(g)


def test_initializers_keep_weight_names() -> None:
    g = Graph("w")
    x = g.add_input("x", TensorType("f32", (1, 5)))
    w = g.const(np.ones((5, 5), np.float32), "bert/layer_0/query/kernel")
    w2 = g.const(np.ones((5, 5), np.float32), "bert/layer_0/query/kernel")  # made unique: kernel.1
    g.outputs["y"] = g.add("matmul", [g.add("matmul", [x, w]).result, w2]).result
    g.const(np.zeros(3, np.float32), "unused")
    names = [i.name for i in lower(g).graph.initializer]
    assert names == ["bert/layer_0/query/kernel", "bert/layer_0/query/kernel.1"]


def test_small_literals_are_named_by_value_and_shared() -> None:
    """Literals print inline (their weight names don't survive the text form): name them by value."""
    g = Graph("lit")
    x = g.add_input("x", TensorType("f32", (2,)))
    a = g.const(np.float32(2.0), "layer_0/scale")
    b = g.const(np.float32(2.0), "layer_1/scale")
    g.outputs["y"] = g.add("mul", [g.add("mul", [x, a]).result, b]).result
    names = [i.name for i in lower(g).graph.initializer]
    assert names == ["bertc/const=2.0"]


# --------------------------------------------------------------------------- refusals
def test_cumprod_is_reported_unsupported() -> None:
    g, _ = op_graph("cumprod", X, axis=1)
    problems = TARGET.unsupported(g)
    assert [p.op.kind for p in problems] == ["cumprod"]
    assert "no onnx equivalent" in problems[0].reason
    with pytest.raises(LoweringError, match="cumprod"):
        lower(g)


@pytest.mark.parametrize("kind,args,attrs,needle", [
    ("erf", (EDGE.astype(np.float64),), {}, "erf on f64"),
    ("gelu", (EDGE.astype(np.float64),), {"approximate": "none"}, "gelu"),
    ("scatter_nd_add", (f16(X[0]), np.array([[0]], np.int64), f16(Y[0, :1])), {}, "f16"),
    ("matmul", (np.ones((2, 2), np.int8), np.ones((2, 2), np.int8)), {}, "matmul on i8"),
    ("logical_and", (I, J), {}, "logical_and on i32"),
    ("one_hot", (B1,), {"depth": 2}, "indices must be integers"),
])
def test_dtype_limits_are_reported(kind: str, args, attrs, needle: str) -> None:
    g, _ = op_graph(kind, *args, **attrs)
    problems = TARGET.unsupported(g)
    assert len(problems) == 1 and needle in problems[0].reason, problems
    with pytest.raises(LoweringError, match=needle):
        lower(g)


def test_the_file_written_in_pieces_is_the_whole_model(tf_bert, tmp_path):
    """compile writes model.onnx piece by piece (the model without weights, then each initializer in its own
    ModelProto, which protobuf merges back): it parses to exactly the model ``lower`` builds in one piece."""
    from bertc.targets.onnx import serialized

    graph = tf_bert.graph()
    pieces = list(serialized(graph))
    assert len(pieces) > 10  # one per initializer after the head
    TARGET.lower_to(graph, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").read_bytes() == b"".join(pieces) == lower_bytes(graph)
    assert onnx.load(str(tmp_path / "model.onnx")) == lower(graph)
