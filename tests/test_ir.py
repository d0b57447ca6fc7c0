"""The IR itself: symbolic dims, edits and use lists, verifier, interpreter, text form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bertc.ir import Graph, Loc, OpError, TensorType
from bertc.ir.interpreter import InterpreterError, run_graph
from bertc.ir.parser import ParseError, parse_graph
from bertc.ir.printer import print_graph
from bertc.ir.types import UNKNOWN, broadcast_shapes, dim_div, dim_mul, dim_prod
from bertc.ir.verifier import VerifyError, verify


# ------------------------------------------------------------------ dims
def test_symbolic_dim_algebra():
    assert dim_mul("seq", "batch") == "batch*seq"
    assert dim_mul(12, "seq") == "12*seq"
    assert dim_prod(["batch", "seq", 64]) == "64*batch*seq"
    assert dim_div("64*batch*seq", 64) == "batch*seq"
    assert dim_div("batch*seq", "batch") == "seq"
    assert dim_div("batch", "seq") == UNKNOWN
    assert dim_div(10, 4) == UNKNOWN
    assert broadcast_shapes(("batch", 1, 1, "seq"), (4, "seq", "seq")) == ("batch", 4, "seq", "seq")
    with pytest.raises(ValueError):
        broadcast_shapes((3,), (4,))


def test_reshape_infers_symbolic_shapes():
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", "seq", 64)))
    heads = g.add("reshape", [x], {"shape": [0, 0, 4, -1]}).result
    flat = g.add("reshape", [x], {"shape": [-1, 64]}).result
    assert heads.shape == ("batch", "seq", 4, 16)
    assert flat.shape == ("batch*seq", 64)
    back = g.add("reshape", [flat, g.add("shape", [x]).result]).result  # dynamic target, known symbolically
    assert back.shape == ("batch", "seq", 64)


# ------------------------------------------------------------------ edits
def test_use_lists_follow_edits():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (2,)))
    a = g.add("neg", [x]).result
    b = g.add("exp", [a]).result
    g.outputs["y"] = b
    c = g.add("abs", [x], before=b.producer).result
    a.replace_all_uses_with(c)
    assert a.uses == [] and c.uses == [(b.producer, 0)]
    g.erase(a.producer)
    verify(g)
    with pytest.raises(ValueError, match="still used"):
        g.erase(c.producer)


def test_verifier_names_the_op():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (2, 3)))
    w = g.const(np.ones((4, 5), np.float32), "w")
    with pytest.raises(OpError, match="inner dims 3 and 4"):
        g.add("matmul", [x, w], loc=Loc.of("dense/MatMul"))
    op = g.add("matmul", [x, g.const(np.ones((3, 5), np.float32), "w2")], loc=Loc.of("dense/MatMul"))
    g.outputs["y"] = op.result
    op.result.type = TensorType("f32", (2, 6))
    with pytest.raises(VerifyError, match=r'at matmul loc\("dense/MatMul"\)'):
        verify(g)


def test_interpreter_reports_the_failing_op():
    g = Graph()
    x = g.add_input("x", TensorType("i32", (3,)))
    table = g.const(np.zeros((5, 2), np.float32), "table")
    g.outputs["y"] = g.add("gather", [table, x], loc=Loc.of("embeddings/Gather")).result
    with pytest.raises(InterpreterError, match=r'while executing .*gather.*loc\("embeddings/Gather"\)'):
        run_graph(g, {"x": np.array([0, 9, 1], np.int32)})
    with pytest.raises(InterpreterError, match="missing input 'x'"):
        run_graph(g, {})


# ------------------------------------------------------------------ text form
TEXT = """\
#calibration = {"h": [-1.5, 2.25]}
func @main(%x: f32[batch,seq,4], %m: i32[batch,seq]) -> (y, "odd name") {
  %w = const dense<[[1.0, -0.5], [0.25, 2.0], [0.0, 1e-07], [3.5, -inf]]> : f32[4,2] loc("dense/kernel")
  %h = matmul %x, %w : f32[batch,seq,2] loc("dense/MatMul")
  %f = cast %m {to="f32"} : f32[batch,seq] loc(fused["Cast", "mask/Cast_1"])
  %e = unsqueeze %f {axes=[-1]} : f32[batch,seq,1]
  %y = mul %h, %e : f32[batch,seq,2] loc("mul")
  %s = softmax %y {axis=-1} : f32[batch,seq,2] loc("Softmax")
  return y=%y, "odd name"=%s
}
"""


def test_text_form_round_trips_exactly():
    g = parse_graph(TEXT)
    verify(g)
    assert print_graph(g) == TEXT
    assert g.analyses == {"calibration": {"h": [-1.5, 2.25]}}
    assert list(g.outputs) == ["y", "odd name"]


@pytest.mark.parametrize("bad,needle", [
    ("  %h = matmul %x, %nope : f32[batch,seq,2]", "undefined value %nope"),
    ("  %h = matmull %x, %w : f32[batch,seq,2]", "unknown op 'matmull' (did you mean matmul"),
    ("  %h = matmul %x, %w : f33[batch,seq,2]", "unknown dtype 'f33'"),
    ("  %h = matmul %x, %w {axis=1} : f32[batch,seq,2]", "has no attribute 'axis'"),
    ("  %h = const @missing : f32[4,2]", "weight @missing is not in the weights"),
])
def test_parse_errors_name_the_line(bad, needle):
    lines = TEXT.splitlines()
    lines[4] = bad
    with pytest.raises(ParseError) as e:
        parse_graph("\n".join(lines))
    assert e.value.line_no == 5
    assert needle in str(e.value)


floats = hnp.arrays(np.float32, st.integers(1, 6), elements=st.floats(width=32, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(floats, st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_constants_and_float_attrs_round_trip_bit_exactly(arr, eps):
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", arr.size)))
    scale = g.const(arr, "scale")
    ln = g.add("layer_norm", [x, scale, scale], {"epsilon": eps}).result
    g.outputs["y"] = ln
    text = print_graph(g)
    again = parse_graph(text)
    assert print_graph(again) == text
    got = [op for op in again.ops if op.kind == "const"][0].attrs["value"]
    np.testing.assert_array_equal(got.view(np.uint32), arr.view(np.uint32))
    assert [op for op in again.ops if op.kind == "layer_norm"][0].attrs["epsilon"] == eps


def test_long_fused_location_prints_its_scope_once_and_parses_back():
    """A fused layer norm names a dozen nodes of one scope: the scope is printed once, losslessly."""
    from bertc.ir.graph import LONG_LOC, Loc

    scope = "bert_classifier/layer_0/attention/output/LayerNorm/"
    loc = Loc(tuple(scope + n for n in ("moments/mean", "moments/variance", "batchnorm/add", "batchnorm/Rsqrt",
                                        "batchnorm/mul", "batchnorm/sub", "batchnorm/add_1")))
    text = f'func @main(%x: f32[2]) -> (y) {{\n  %y = neg %x : f32[2] {loc}\n  return y=%y\n}}\n'
    assert str(loc).count(scope) == 1 and len(str(loc)) < len(", ".join(loc.names))
    graph = parse_graph(text)
    assert graph.ops[-1].loc == loc and print_graph(graph) == text
    short = Loc(("a/x", "a/y"))
    assert str(short) == 'loc(fused["a/x", "a/y"])' and len(str(short)) < LONG_LOC


def test_cse_names_equal_weights_of_several_layers_as_shared():
    """Two layers' equal gammas merge into one constant that names neither layer."""
    import numpy as np

    from bertc.ir.graph import Graph
    from bertc.ir.types import TensorType
    from bertc.pass_manager import PassManager, parse_pipeline

    g = Graph("main")
    x = g.add_input("x", TensorType("f32", (2,)))
    a = g.add("mul", [x, g.const(np.ones(2, np.float32), "layer_0/norm/gamma")]).result
    b = g.add("mul", [a, g.const(np.ones(2, np.float32), "layer_1/norm/gamma")]).result
    g.outputs["y"] = b
    PassManager(parse_pipeline("cse")).run(g)
    names = [op.attrs["name"] for op in g.ops if op.kind == "const"]
    assert names == ["shared/gamma"], names
    assert "%shared_gamma" in print_graph(g)
