"""The onnxruntime graph runner (bertc.runtime.ort_runner) and calibrate's engines.

Everything is checked against the reference interpreter (``run_graph``) on the
tiny test BERT.  Tolerances, and why:

* FLOAT_TOL = 1e-5 of each tensor's largest magnitude, whole graph: onnxruntime
  sums matmuls in another order and approximates exp/erf/tanh differently; the
  drift through 2 layers measured ~5e-7, and 1e-5 still catches any wrong op
  (a wrong op is off by a large fraction of its range).  Integer and bool
  values (shapes, masks, quantized activations) must be equal.
* Quantized graphs compare per op: a 1-ulp difference upstream can move a
  run-time-quantized activation across a rounding boundary (quant_int8's
  docstring), so whole-graph drift there is the quantization step, not float
  rounding.  Instead every op's onnxruntime result is compared with its
  reference kernel run on onnxruntime's own operands: equal within FLOAT_TOL.
* Calibrated ranges: minmax within 1e-5 relative (the issue's bound);
  percentile / entropy / mse thresholds within one histogram bin (top / BINS).
"""

from __future__ import annotations

import numpy as np
import pytest

from bertc.analysis.ranges import BINS, RangeObserver, choose_range, real_token_selector
from bertc.diagnostics import BertcError
from bertc.ir import Graph, TensorType
from bertc.ir.interpreter import run_graph
from bertc.runtime.ort_runner import OrtGraphRunner, run_graph_ort
from bertc.ir.registry import get_op_def
from bertc.pass_manager import PassContext, PassManager, parse_pipeline
from bertc.runtime.calib import random_calibration
from bertc.runtime.inputs import random_graph_inputs

FLOAT_TOL = 1e-5


def piped(model, spec: str) -> Graph:
    graph = model.graph()
    if spec:
        PassManager(parse_pipeline(spec)).run(graph, PassContext())
    return graph


def observed(run, graph: Graph, feeds) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """id(value) -> array for every observe call (each value once), and the outputs."""
    seen: dict[int, np.ndarray] = {}

    def observe(v, a):
        assert id(v) not in seen, f"{v.name} observed twice"
        seen[id(v)] = np.array(a)

    return seen, run(feeds, observe)


def rel_error(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(want.astype(np.float64) - got).max() / max(np.abs(want).max(), 1e-30)) if want.size else 0.0


def assert_same_values(graph: Graph, want: dict[int, np.ndarray], got: dict[int, np.ndarray]) -> None:
    assert want.keys() == got.keys()
    for op in graph.ops:
        for r in op.results:
            a, b = want[id(r)], got[id(r)]
            assert a.shape == b.shape and a.dtype == b.dtype, (op.kind, op.loc, a.shape, b.shape, a.dtype, b.dtype)
            if a.dtype.kind == "f":
                assert rel_error(a, b) <= FLOAT_TOL, (op.kind, op.loc, rel_error(a, b))
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{op.kind} at {op.loc}")


def assert_each_op_exact(graph: Graph, got: dict[int, np.ndarray], feeds) -> None:
    """Every op's result equals its reference kernel on the operands the runner produced."""
    inputs = {id(v): np.asarray(feeds[v.name]) for v in graph.inputs}
    for op in graph.ops:
        if op.kind == "const":
            continue
        args = [got[id(v)] if id(v) in got else inputs[id(v)] for v in op.operands]
        for r, want in zip(op.results, get_op_def(op.kind).run(op, args)):
            want = np.asarray(want)
            if want.dtype.kind == "f":
                assert rel_error(want, got[id(r)]) <= FLOAT_TOL, (op.kind, op.loc, rel_error(want, got[id(r)]))
            else:
                np.testing.assert_array_equal(want, got[id(r)], err_msg=f"{op.kind} at {op.loc}")


# ------------------------------------------------------------------ the runner
@pytest.mark.parametrize("spec, fused", [("", None), ("fuse_skip_layer_norm,fuse_bias_gelu", "skip_layer_norm")])
def test_every_value_matches_the_reference(tf_bert, spec, fused):
    graph = piped(tf_bert, spec)
    if fused:
        assert graph.ops_of(fused)  # the fusion did apply: its contrib kernel is what runs
    runner = OrtGraphRunner(graph, outputs_per_session=8)
    assert runner.engine == "onnxruntime", runner.reason
    assert len(runner._plan.sessions) > 3  # several sessions: values cross session boundaries
    for seed, (batch, seq) in enumerate([(4, 24), (1, 7), (3, 64)]):  # one runner, any batch shape
        feeds = random_graph_inputs(graph, batch, seq, seed=seed)
        want, want_out = observed(lambda f, o: run_graph(graph, f, observe=o), graph, feeds)
        got, got_out = observed(runner.run, graph, feeds)
        assert_same_values(graph, want, got)  # every op result, constants included, as run_graph
        assert want_out.keys() == got_out.keys()
        for name in want_out:
            assert rel_error(want_out[name], got_out[name]) <= FLOAT_TOL


def test_one_session_and_basic_optimizations_give_the_same_values(tf_bert):
    graph = piped(tf_bert, "")
    feeds = random_graph_inputs(graph, 2, 16, seed=3)
    want, _ = observed(lambda f, o: run_graph(graph, f, observe=o), graph, feeds)
    for options in ({"outputs_per_session": 10_000}, {"optimization": "basic"}):
        got, _ = observed(lambda f, o: run_graph_ort(graph, f, o, **options), graph, feeds)
        assert_same_values(graph, want, got)


def test_only_the_wanted_values_are_observed(tf_bert):
    graph = piped(tf_bert, "")
    wanted = [op.result for op in graph.ops if op.kind == "softmax"]
    runner = OrtGraphRunner(graph, wanted)
    feeds = random_graph_inputs(graph, 2, 16, seed=4)
    got, _ = observed(runner.run, graph, feeds)
    want, _ = observed(lambda f, o: run_graph(graph, f, observe=o), graph, feeds)
    assert got.keys() == {id(v) for v in wanted}
    for v in wanted:
        assert rel_error(want[id(v)], got[id(v)]) <= FLOAT_TOL


def test_quant_int8_graph_is_exact_op_by_op(tf_bert):
    graph = piped(tf_bert, "quant_int8")
    runner = OrtGraphRunner(graph, outputs_per_session=8)
    assert runner.engine == "onnxruntime", runner.reason
    feeds = random_graph_inputs(graph, 4, 24, seed=0)
    got, _ = observed(runner.run, graph, feeds)
    assert len(got) == sum(len(op.results) for op in graph.ops)
    assert_each_op_exact(graph, got, feeds)


def test_folded_ops_run_on_reference_kernels(tf_bert):
    """quant_full's dequantize + matmul (+ bias) lower into one MatMulIntegerToFloat, and its
    activations are emitted u8-shifted: those values have no tensor of their own in ONNX."""
    graph = piped(tf_bert, "calibrate,quant_full")
    runner = OrtGraphRunner(graph, outputs_per_session=8)
    assert runner.engine == "onnxruntime", runner.reason
    kinds = {op.kind for op in graph.ops if id(op) in runner._plan.host_ops}
    assert {"dequantize", "matmul"} <= kinds
    feeds = random_graph_inputs(graph, 4, 24, seed=1)
    got, _ = observed(runner.run, graph, feeds)
    assert len(got) == sum(len(op.results) for op in graph.ops)
    assert_each_op_exact(graph, got, feeds)


def test_inexact_and_unlowerable_graphs_run_on_the_reference(tf_bert):
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    g.outputs["y"] = g.add("cumprod", [g.add("exp", [x]).result], {"axis": 1}).result  # no ONNX lowering
    quantized = piped(tf_bert, "quant_int8{act=i8_row}")  # onnxruntime would quantize u8 per tensor
    for graph, needle in ((g, "cumprod"), (quantized, "qmatmul")):
        runner = OrtGraphRunner(graph)
        assert runner.engine == "reference" and needle in runner.reason
        feeds = random_graph_inputs(graph, 2, 8, seed=0) if graph is quantized else \
            {"x": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)}
        want, want_out = observed(lambda f, o: run_graph(graph, f, observe=o), graph, feeds)
        got, got_out = observed(runner.run, graph, feeds)
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_array_equal(want[k], got[k])  # the same interpreter: bit-equal


# ------------------------------------------------------------------ calibrate's engines
def _ranges(graph: Graph, runner: OrtGraphRunner, data) -> RangeObserver:
    observer = RangeObserver(graph)
    for i, feeds in enumerate(data.batches(8)):
        lengths = [len(s["ids"]) for s in data.sequences[i * 8:(i + 1) * 8]]
        observer.select = real_token_selector(lengths, max(lengths))
        runner.run(feeds, observe=observer)
    return observer


def test_histogram_thresholds_agree_within_a_bin(tf_bert):
    graph = piped(tf_bert, "")
    data = random_calibration(graph, n=24, seq=40)
    ref = _ranges(graph, OrtGraphRunner.reference(graph), data)
    ort = _ranges(graph, OrtGraphRunner(graph), data)
    assert ref.stats.keys() == ort.stats.keys()
    for key, s in ref.stats.items():
        o = ort.stats[key]
        assert abs(o.count - s.count) == 0, key
        bin_width = s.top / BINS
        for method in ("percentile", "entropy", "mse"):
            want, got = choose_range(s, method), choose_range(o, method)
            assert np.allclose(want, got, rtol=0, atol=bin_width * 1.001 + 1e-12), (key, method, want, got)


def test_calibrate_engines_agree_and_report_which_ran(tf_bert):
    ranges, reports = {}, {}
    for engine in ("reference", "onnxruntime", "auto"):
        graph, ctx = piped(tf_bert, ""), PassContext()
        PassManager(parse_pipeline(f"calibrate{{engine={engine},samples=16}}")).run(graph, ctx)
        ranges[engine], reports[engine] = graph.analyses["calibration"]["ranges"], ctx.report["calibrate"]
    assert reports["reference"]["engine"] == "reference"
    assert reports["onnxruntime"]["engine"] == reports["auto"]["engine"] == "onnxruntime"
    assert "session" in reports["auto"]["engine_reason"]
    assert ranges["reference"].keys() == ranges["onnxruntime"].keys()
    for key, (lo, hi) in ranges["reference"].items():
        scale = max(abs(lo), abs(hi), 1e-30)
        got = ranges["onnxruntime"][key]
        assert abs(got[0] - lo) <= 1e-5 * scale and abs(got[1] - hi) <= 1e-5 * scale, (key, (lo, hi), got)


def test_calibrate_engine_option_errors(tf_bert):
    from bertc.passes.calibrate import Calibrate

    with pytest.raises(BertcError, match="engine='gpu'"):
        parse_pipeline("calibrate{engine=gpu}")
    with pytest.raises(ValueError, match="engine='gpu'"):
        Calibrate(engine="gpu")
    graph = piped(tf_bert, "quant_int8{act=i8_row}")
    with pytest.raises(BertcError, match="engine=onnxruntime.*qmatmul"):
        PassManager(parse_pipeline("calibrate{engine=onnxruntime,samples=4}")).run(graph, PassContext())
    ctx = PassContext()
    PassManager(parse_pipeline("calibrate{samples=4}")).run(graph, ctx)  # auto: falls back, says why
    assert ctx.report["calibrate"]["engine"] == "reference" and "qmatmul" in ctx.report["calibrate"]["engine_reason"]
