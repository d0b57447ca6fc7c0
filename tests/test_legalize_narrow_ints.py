"""legalize_narrow_ints: u8/i8/i16 islands held in i32 for LiteRT, exact or refused.

(a) tf.functions that cast a bool mask to uint8 / int8 / int16 and back, with
    where, max/min, comparisons and data movement on the narrow values: imported,
    legalized by the planner, lowered to TFLite and run on LiteRT, bit for bit
    against TF (the masked softmax, whose float kernels round differently, to
    1e-6 with its masked zeros exact); the same graphs lowered to ONNX untouched (ONNX runs narrow ints).
(b) casts of an unbounded int32 (and int64) into a narrow type followed by
    arithmetic that overflows it: the wrap is emulated with a floor mod, checked
    against TF at values across the whole int32 range; forms that cannot be made
    exact (float casts that may leave the range, divisions, sums over symbolic
    dims, narrow graph inputs/outputs) are refused naming the op.
(c) the planner picks the pass for --target tflite (`bertc check`, `bertc compile`).
(d) Hugging Face TFDebertaV2 / TFDeberta (uint8 attention masks) from the corpus
    builder through `bertc compile --target all`, and LiteRT against the
    SavedModel with masks whose products wrap in uint8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

import tensorflow as tf  # noqa: E402

from bertc.cli import main  # noqa: E402
from bertc.frontend.tf import import_function  # noqa: E402
from bertc.ir import Graph, TensorType  # noqa: E402
from bertc.ir.graph import Loc  # noqa: E402
from bertc.ir.interpreter import run_graph  # noqa: E402
from bertc.ir.printer import print_graph  # noqa: E402
from bertc.legalize import explain, plan  # noqa: E402
from bertc.pass_manager import PassFailed, PassManager, parse_pipeline  # noqa: E402
from bertc.passes.legalize_narrow_ints import value_ranges  # noqa: E402
from bertc.runtime.session import open_session  # noqa: E402
from bertc.targets.onnx import TARGET as ONNX  # noqa: E402
from bertc.targets.tflite import TARGET as TFLITE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NARROW = {"u8": tf.uint8, "i8": tf.int8, "i16": tf.int16}
I32 = np.iinfo(np.int32)


# --------------------------------------------------------------------------- helpers
def narrow_values(graph: Graph) -> list:
    return [v for op in graph.ops for v in (*op.operands, *op.results) if v.dtype in NARROW]


def imported(fn, specs):
    concrete = tf.function(fn, input_signature=specs).get_concrete_function()
    graph, _ = import_function(concrete)
    return concrete, graph


def legalized_for_tflite(graph: Graph) -> Graph:
    """What `bertc compile --target tflite` runs: the planner's passes."""
    passes = plan(graph, [TFLITE])
    assert "legalize_narrow_ints" in [p.name for p in passes]
    PassManager(passes).run(graph)
    return graph


ROUNDED = {"probs"}  # matmul + softmax: kernels round differently; the mask pattern itself is exact
FLOAT_TOLERANCE = 1e-6


def assert_bit_exact(got: dict, want: dict, what: str) -> None:
    """Every output bit for bit, except ROUNDED ones: those to FLOAT_TOLERANCE, their zeros exact."""
    assert set(want) <= set(got), (what, sorted(got), sorted(want))
    for k, w in want.items():
        w = np.asarray(w)
        g = np.asarray(got[k])
        assert g.dtype == w.dtype and g.shape == w.shape, (what, k, g.dtype, w.dtype, g.shape, w.shape)
        if k in ROUNDED:
            np.testing.assert_array_equal(g == 0, w == 0, err_msg=f"{what} {k}: the masked entries")
            np.testing.assert_allclose(g, w, rtol=0, atol=FLOAT_TOLERANCE, err_msg=f"{what} {k}")
        elif w.dtype.kind == "f":  # bit patterns: -0.0, inf and NaN must match too
            assert np.array_equal(g.view(np.int32), w.view(np.int32)), (what, k)
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{what} {k}")


def ran_narrow_ints(out: Path) -> bool:
    """Did `bertc compile` (its report.json in ``out``) run the pass?"""
    pipeline = json.loads((out / "report.json").read_text())["pipeline"]
    return any(p.split("{")[0] == "legalize_narrow_ints" for p in pipeline)


def tf_outputs(concrete, feeds: dict) -> dict:
    return {k: v.numpy() for k, v in concrete(**{k: tf.constant(a) for k, a in feeds.items()}).items()}


# --------------------------------------------------------------------------- (a) bool masks
def mask_program(dt):
    """A DeBERTa-like mask built in ``dt`` from a bool, with selections and data movement."""
    def fn(x, lengths):
        seq = tf.shape(x)[1]
        valid = tf.range(seq)[None, :] < lengths[:, None]  # bool[b, s]
        m = tf.cast(valid, dt)
        ext = tf.expand_dims(tf.expand_dims(m, 1), 2) * tf.expand_dims(tf.expand_dims(m, 1), 3)  # {0,1}: no wrap
        both = tf.maximum(ext, tf.transpose(ext, [0, 1, 3, 2]))
        low = tf.minimum(both, tf.constant(1, dt))
        picked = tf.where(tf.reshape(x[:, 0, :1] > 0, [-1, 1, 1, 1]), both, low)
        wide = tf.concat([picked, tf.reverse(picked, [3])[..., :1]], axis=3)
        rmask = tf.logical_not(tf.cast(picked, tf.bool))  # TFDebertaXSoftmax
        scores = tf.matmul(x, x, transpose_b=True)[:, None]
        probs = tf.nn.softmax(tf.where(rmask, tf.constant(float("-inf")), scores), axis=-1)
        return {"probs": tf.where(rmask, 0.0, probs), "wide": tf.cast(wide, tf.int32),
                "eq": tf.equal(tf.squeeze(wide[:, :1], 1), tf.constant(1, dt)),
                "f": tf.cast(tf.gather(tf.reshape(wide, [-1]), tf.range(3)), tf.float32),
                "long": tf.cast(tf.reduce_max(wide, axis=-1), tf.int64)}
    specs = [tf.TensorSpec([None, None, 4], tf.float32, name="x"), tf.TensorSpec([None], tf.int32, name="lengths")]
    return fn, specs


def mask_feeds(seed: int, batch: int, seq: int) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, seq, 4)).astype(np.float32)
    x[0, 0, 0] = abs(x[0, 0, 0]) + 0.1  # both branches of the where
    if batch > 1:
        x[1, 0, 0] = -abs(x[1, 0, 0]) - 0.1
    return {"x": x, "lengths": rng.integers(1, seq + 1, batch).astype(np.int32)}


@pytest.mark.parametrize("dtype", list(NARROW))
def test_bool_mask_through_narrow_ints_is_bit_exact_on_litert(dtype):
    fn, specs = mask_program(NARROW[dtype])
    concrete, graph = imported(fn, specs)
    assert narrow_values(graph) and TFLITE.unsupported(graph)  # the island was there
    before = print_graph(graph)
    legalized_for_tflite(graph)
    assert not narrow_values(graph) and not TFLITE.unsupported(graph)
    assert not graph.ops_of("mod"), "a {0,1} mask never wraps: no emulation expected"
    session = open_session(TFLITE.lower(graph), kind="tflite")
    for seed, (batch, seq) in enumerate([(2, 1), (2, 5), (3, 17)]):
        feeds = mask_feeds(seed, batch, seq)
        assert_bit_exact(session.run(feeds), tf_outputs(concrete, feeds), f"{dtype} litert b={batch} s={seq}")
    assert before != print_graph(graph)


@pytest.mark.parametrize("dtype", ["u8", "i8"])
def test_onnx_graphs_are_untouched_and_match_tf(dtype):
    """ONNX runs these u8/i8 ops: the planner picks nothing, the pass for onnx changes nothing."""
    fn, specs = mask_program(NARROW[dtype])
    concrete, graph = imported(fn, specs)
    before = print_graph(graph)
    assert not ONNX.unsupported(graph) and plan(graph, [ONNX]) == []
    PassManager(parse_pipeline("legalize_narrow_ints{targets=onnx}")).run(graph)
    assert print_graph(graph) == before and narrow_values(graph)
    session = open_session(ONNX.lower(graph), kind="onnx")
    feeds = mask_feeds(7, 3, 9)
    assert_bit_exact(session.run(feeds), tf_outputs(concrete, feeds), f"{dtype} onnx")


def test_onnx_lacks_i16_max_so_the_planner_legalizes_for_it_too():
    """onnxruntime has no i16 Max, Min, Where or ReduceMax kernel: the same pass makes the graph legal there."""
    fn, specs = mask_program(tf.int16)
    concrete, graph = imported(fn, specs)
    assert {u.op.kind for u in ONNX.unsupported(graph)} == {"maximum", "minimum", "where", "reduce_max"}
    passes = plan(graph, [ONNX])
    assert passes[0].name == "legalize_narrow_ints" and passes[0].targets == "onnx"
    PassManager(passes).run(graph)
    assert not narrow_values(graph) and not ONNX.unsupported(graph)
    feeds = mask_feeds(7, 3, 9)
    assert_bit_exact(open_session(ONNX.lower(graph), kind="onnx").run(feeds), tf_outputs(concrete, feeds), "i16 onnx")


# --------------------------------------------------------------------------- (b) wraps, emulated
def edge_ints(seed: int, shape=(4, 64)) -> np.ndarray:
    """int32 values across the whole range, with every wrap boundary of u8/i8/i16 and both ends."""
    rng = np.random.default_rng(seed)
    x = rng.integers(I32.min, I32.max, shape, endpoint=True, dtype=np.int64)
    edges = [I32.min, I32.min + 1, I32.max, I32.max - 1, 0, 1, -1, 127, 128, -128, -129, 255, 256, 257,
             -256, -255, 32767, 32768, -32768, -32769, 65535, 65536, 65537, 300, -300, 511, 512]
    x.reshape(-1)[:len(edges)] = edges
    x.reshape(-1)[len(edges):len(edges) + 16] = rng.integers(-600, 600, 16)
    return x.astype(np.int32)


def wrap_program(dt):
    """Cast an unbounded int32 into ``dt``, then arithmetic that overflows it, and back out."""
    def fn(ids):
        n = tf.cast(ids, dt)  # wraps mod 2^bits
        if dt.is_unsigned:  # TF has no uint8 Abs or Neg
            s = n * n + tf.constant(100, dt) - tf.minimum(n, tf.constant(7, dt))  # overflows dt
            t = tf.constant(3, dt) - tf.maximum(s, n)
        else:
            s = n * n + tf.constant(100, dt) - tf.abs(n)  # abs(-128) wraps to -128 in i8
            t = -tf.maximum(s, n)
        return {"n": tf.cast(n, tf.int32), "t": tf.cast(t, tf.int32), "nonzero": tf.cast(n, tf.bool),
                "big": tf.cast(t, tf.float32) > 10.0, "sum": tf.cast(tf.reduce_sum(n, axis=1), tf.int64)}
    return fn, [tf.TensorSpec([None, 64], tf.int32, name="ids")]


@pytest.mark.parametrize("dtype", list(NARROW))
def test_casts_of_unbounded_ints_and_overflowing_arithmetic_are_emulated_exactly(dtype):
    fn, specs = wrap_program(NARROW[dtype])
    concrete, graph = imported(fn, specs)
    legalized_for_tflite(graph)
    assert not narrow_values(graph) and not TFLITE.unsupported(graph)
    assert graph.ops_of("mod"), "an unbounded cast and an overflowing product need the wrap"
    session = open_session(TFLITE.lower(graph), kind="tflite")
    for seed in range(3):
        feeds = {"ids": edge_ints(seed)}
        want = tf_outputs(concrete, feeds)
        assert_bit_exact(session.run(feeds), want, f"{dtype} litert")
        assert_bit_exact(run_graph(graph, feeds), want, f"{dtype} reference")


def test_a_bounded_cast_and_arithmetic_inside_the_range_need_no_wrap():
    """Interval analysis: clip(ids, 0, 100) fits u8, and so does 2 * it + 3 (<= 203)."""
    def fn(ids):
        n = tf.cast(tf.clip_by_value(ids, 0, 100), tf.uint8)
        return {"y": tf.cast(n * tf.constant(2, tf.uint8) + tf.constant(3, tf.uint8), tf.int32)}
    concrete, graph = imported(fn, [tf.TensorSpec([None, 64], tf.int32, name="ids")])
    legalized_for_tflite(graph)
    assert not narrow_values(graph) and not graph.ops_of("mod") and not graph.ops_of("cast")
    feeds = {"ids": edge_ints(4)}
    assert_bit_exact(open_session(TFLITE.lower(graph), kind="tflite").run(feeds), tf_outputs(concrete, feeds), "u8")


def test_int64_sources_wrap_in_int64_then_narrow():
    def fn(ids):
        return {"y": tf.cast(tf.cast(ids, tf.int8), tf.int32) + tf.cast(tf.cast(ids, tf.uint8), tf.int32)}
    concrete, graph = imported(fn, [tf.TensorSpec([None, 64], tf.int64, name="ids")])
    legalized_for_tflite(graph)
    assert not narrow_values(graph) and not TFLITE.unsupported(graph)
    rng = np.random.default_rng(8)
    ids = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, (3, 64), endpoint=True, dtype=np.int64)
    ids[0, :6] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max, 255, 256, -129, 2 ** 40 + 200]
    feeds = {"ids": ids}
    assert_bit_exact(open_session(TFLITE.lower(graph), kind="tflite").run(feeds), tf_outputs(concrete, feeds), "i64")


def test_a_float_cast_inside_the_range_is_kept_as_a_cast_to_i32():
    """f32 values in [-0.75, 255.9] (selected constants) truncate into u8 exactly as into i32.
    (A clip of an f32 input would not do: the input may be NaN, which clip keeps.)"""
    table = np.array([-0.75, -0.5, 0.0, 0.99, 3.5, 199.99, 200.5, 255.9], np.float32)

    def fn(x):
        y = tf.cast(tf.where(x > 0, tf.constant(table), tf.constant(table[::-1] * 0.5)), tf.uint8)
        return {"y": tf.cast(tf.maximum(y, tf.constant(3, tf.uint8)), tf.int32), "z": tf.cast(y, tf.float32)}
    concrete, graph = imported(fn, [tf.TensorSpec([None, 8], tf.float32, name="x")])
    legalized_for_tflite(graph)
    assert not narrow_values(graph) and [op.attrs["to"] for op in graph.ops_of("cast")] == ["i32", "f32"]
    feeds = {"x": np.random.default_rng(9).standard_normal((5, 8)).astype(np.float32)}
    assert_bit_exact(open_session(TFLITE.lower(graph), kind="tflite").run(feeds), tf_outputs(concrete, feeds), "f32")


# --------------------------------------------------------------------------- (b) refused
def one_graph(body, dtype="f32", shape=("b", 8)) -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType(dtype, shape))
    g.outputs["y"] = body(g, x)
    return g


def run_pass(g: Graph) -> Graph:
    PassManager(parse_pipeline("legalize_narrow_ints{targets=tflite},dce")).run(g)
    return g


def _cast(g, x, to, name="model/Cast"):
    return g.add("cast", [x], {"to": to}, loc=Loc.of(name)).result


REFUSALS = {
    # an unbounded f32 into u8: out of range TF's cast is implementation-defined
    "float_out_of_range": (lambda g, x: _cast(g, _cast(g, x, "u8", "model/ToU8"), "i32"), "f32",
                           r"cast at loc\(\"model/ToU8\"\) truncates f32 values unbounded to u8.*"
                           r"implementation-defined"),
    # floor division on u8 has no exact i32 form here
    "division": (lambda g, x: _cast(g, g.add("div", [_cast(g, x, "u8"), g.const(np.uint8(3), "three")],
                                             loc=Loc.of("model/FloorDiv")).result, "i32"), "i32",
                 r"div on u8 at loc\(\"model/FloorDiv\"\) has no exact i32 form"),
    # a sum over a symbolic dim may leave i32 before the wrap
    "symbolic_sum": (lambda g, x: _cast(g, g.add("reduce_sum", [_cast(g, x, "i16")], {"axes": [0]},
                                                 loc=Loc.of("model/Sum")).result, "i32"), "i32",
                     r"reduce_sum at loc\(\"model/Sum\"\) may leave i32 .*not known statically"),
    # the caller feeds u8: the signature is not ours to change
    "narrow_input": (lambda g, x: _cast(g, x, "bool", "model/ToBool"), "u8",
                     r"graph input 'x' is u8, read by cast at loc\(\"model/ToBool\"\)"),
    "narrow_output": (lambda g, x: _cast(g, x, "i8", "model/ToI8"), "bool",
                      r"graph output 'y' is i8 \(cast at loc\(\"model/ToI8\"\)\)"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_forms_that_cannot_be_exact_are_refused_naming_the_op(case):
    body, dtype, message = REFUSALS[case]
    with pytest.raises(PassFailed, match=message) as info:
        run_pass(one_graph(body, dtype))
    assert "legalize_narrow_ints" in str(info.value)


def test_a_static_sum_is_emulated_and_matches_tf():
    """reduce_sum over 8 u8 values lies in [0, 2040]: summed in i32, then wrapped mod 256."""
    g = one_graph(lambda g, x: _cast(g, g.add("reduce_sum", [_cast(g, x, "u8")], {"axes": [1]}).result, "i32"), "i32")
    run_pass(g)
    assert not narrow_values(g) and g.ops_of("mod")
    x = edge_ints(10, (6, 8))
    want = tf.cast(tf.reduce_sum(tf.cast(x, tf.uint8), axis=1), tf.int32).numpy()
    np.testing.assert_array_equal(open_session(TFLITE.lower(g), kind="tflite").run({"x": x})["y"], want)


def test_quantized_tensors_are_left_alone():
    """quantize/dequantize's i8 belongs to the quantization passes: not an island to retype."""
    def body(g, x):
        q = g.add("quantize", [x, g.const(np.float32(0.05), "s"), g.const(np.int8(3), "z")]).result
        return g.add("dequantize", [q, g.const(np.float32(0.05), "s2"), g.const(np.int8(3), "z2")]).result
    g = one_graph(body)
    before = print_graph(g)
    assert not TFLITE.unsupported(g)
    assert plan(g, [TFLITE]) == []
    run_pass(g)
    assert print_graph(g) == before


# --------------------------------------------------------------------------- interval analysis
def test_value_ranges_follow_the_narrow_dtype_and_its_wrap():
    g = Graph()
    x = g.add_input("x", TensorType("i32", ("b", 8)))
    flag = g.add("less", [x, g.const(np.int32(0))]).result
    m = _cast(g, flag, "u8")  # {0, 1}
    c = g.const(np.array([3, 200], np.uint8), "c")
    big = g.add("add", [g.add("mul", [m, g.const(np.uint8(100))]).result, g.const(np.uint8(50))]).result  # [50, 150]
    over = g.add("add", [big, big]).result  # [100, 300] wraps: all of u8
    wrapped = _cast(g, x, "i8")
    r = value_ranges(g)
    assert r[id(flag)] == (0, 1) and r[id(m)] == (0, 1) and r[id(c)] == (3, 200)
    assert r[id(big)] == (50, 150) and r[id(over)] == (0, 255) and r[id(wrapped)] == (-128, 127)
    assert r[id(x)] == (I32.min, I32.max)


# --------------------------------------------------------------------------- (c) the planner
def test_planner_picks_it_for_tflite_only_and_explain_names_it():
    fn, specs = mask_program(tf.uint8)
    _, graph = imported(fn, specs)
    cast = next(op for op in graph.ops_of("cast") if op.attrs["to"] == "u8")
    assert explain(cast) == "pass legalize_narrow_ints rewrites it"
    assert [p.name for p in plan(graph, [TFLITE])][0] == "legalize_narrow_ints"
    assert plan(graph, [ONNX]) == []


def deberta_like(input_ids, attention_mask):
    """TFDebertaV2Encoder.get_attention_mask and TFDebertaV2XSoftmax on a tiny embedding."""
    x = tf.gather(tf.constant(np.random.default_rng(13).standard_normal((100, 8)).astype(np.float32)), input_ids)
    ext = tf.expand_dims(tf.expand_dims(attention_mask, 1), 2)
    mask = tf.cast(ext * tf.expand_dims(tf.squeeze(ext, -2), -1), tf.uint8)
    rmask = tf.logical_not(tf.cast(mask, tf.bool))
    scores = tf.where(rmask, float("-inf"), tf.matmul(x, x, transpose_b=True)[:, None])
    probs = tf.where(rmask, 0.0, tf.nn.softmax(scores, axis=-1))
    return {"logits": tf.reduce_sum(tf.matmul(probs[:, 0], x), axis=1)}


def test_bertc_check_and_compile_use_it_for_tflite(tmp_path, capsys):
    specs = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
             tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    module = tf.Module()
    module.f = tf.function(deberta_like, input_signature=specs)
    model = tmp_path / "saved"
    tf.saved_model.save(module, str(model), signatures={"serving_default": module.f.get_concrete_function()})
    assert main(["check", str(model), "--target", "all"]) == 0
    text = capsys.readouterr().out
    assert "target onnx: legal as it is (every op is supported; nothing to legalize)" in text
    assert "after legalization, onnx" not in text
    assert "cast on u8: tflite lowers bool/f32/i32/i64 tensors only" in text
    assert "-> rewritten by legalize_narrow_ints" in text and "after legalization, tflite is legal" in text
    out = tmp_path / "out"
    assert main(["compile", str(model), "--target", "tflite", "-o", str(out)]) == 0
    assert ran_narrow_ints(out)
    lite = open_session(out / "model.tflite")
    rng = np.random.default_rng(14)
    for values in ([0, 1], [0, 1, 16, 256, -1, 2 ** 20 + 3]):  # 16 * 16 and 256 * 256 wrap to 0 in uint8
        feeds = {"input_ids": rng.integers(0, 100, (2, 9)).astype(np.int32),
                 "attention_mask": rng.choice(np.array(values, np.int32), (2, 9))}
        feeds["attention_mask"][:, 0] = 1
        want = module.f(**{k: tf.constant(v) for k, v in feeds.items()})["logits"].numpy()
        got = lite.run(feeds)["logits"]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=str(values))


def test_bertc_check_reports_a_refusal(tmp_path, capsys):
    path = tmp_path / "refused.bir"
    path.write_text(textwrap.dedent("""\
        func @main(%x: f32[b,s]) -> (y) {
          %n = cast %x {to="u8"} : u8[b,s] loc("model/Cast")
          %y = cast %n {to="i32"} : i32[b,s] loc("model/Cast_1")
          return y=%y
        }
        """))
    code = main(["check", str(path), "--target", "tflite"])
    text = capsys.readouterr().out
    assert code == 2 and "-> rewritten by legalize_narrow_ints" in text
    assert 'cast at loc("model/Cast") truncates f32 values unbounded to u8' in text


# --------------------------------------------------------------------------- (d) HF DeBERTa
@pytest.fixture(scope="module")
def deberta_corpus(tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("deberta")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    argv = [sys.executable, "-m", "examples.corpus.build", str(out), "--only", "hf_deberta_v2,hf_deberta"]
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", ["hf_deberta_v2", "hf_deberta"])
def test_hf_deberta_compiles_for_all_targets_and_matches_tf(deberta_corpus, tmp_path, name):
    """`bertc compile --target all` verifies both files against the SavedModel; then LiteRT
    against TF with masks whose products wrap in uint8 (2*2 = 4, 16*16 = 256 -> 0)."""
    out = tmp_path / "out"
    assert main(["compile", str(deberta_corpus / name), "--target", "all", "-o", str(out)]) == 0
    assert ran_narrow_ints(out)
    saved = open_session(deberta_corpus / name)
    lite = open_session(out / "model.tflite")
    rng = np.random.default_rng(12)
    for seq, values in ((5, [0, 1]), (12, [0, 1, 2, 16]), (20, [0, 1, 16, 256])):
        ids = rng.integers(3, 100, (2, seq)).astype(np.int32)
        mask = rng.choice(np.array(values, np.int32), (2, seq))
        mask[:, 0] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        want, got = saved.run(feeds)["logits"], lite.run(feeds)["logits"]
        err = float(np.max(np.abs(got - want)))
        print(f"{name} seq={seq} mask values {values}: max|logit err| {err:.2e}")
        assert np.all(np.isfinite(want)) == np.all(np.isfinite(got))
        assert err <= 1e-4, (seq, values, err)


def test_a_narrow_op_that_a_kind_pass_rewrites_is_left_to_it():
    """ONNX lacks only cumsum on u8, which legalize_cumsum widens itself: the planner's
    pipeline runs this pass first, and it must not refuse the u8 graph input there."""
    g = one_graph(lambda g, x: g.add("cumsum", [x], {"axis": 1}).result, "u8", ("b", "s"))
    before = print_graph(g)
    passes = plan(g, [ONNX])
    assert [p.name for p in passes][:2] == ["legalize_narrow_ints", "legalize_cumsum"]
    PassManager(passes[:1]).run(g)
    assert print_graph(g) == before
    PassManager(passes[1:]).run(g)
    assert not ONNX.unsupported(g)


def test_a_narrow_cumsum_inside_an_island_is_summed_in_i32_and_wrapped():
    """For TFLite the casts need this pass too, so it takes the cumsum: over a static extent
    of 6 (|sum| <= 6 * 255) exact in i32, then wrapped; over a symbolic one, refused."""
    def body(g, x):
        return _cast(g, g.add("cumsum", [_cast(g, x, "u8")], {"axis": 1}, loc=Loc.of("model/Cumsum")).result, "i32")
    g = run_pass(one_graph(body, "i32", ("b", 6)))
    assert not narrow_values(g) and g.ops_of("mod") and not TFLITE.unsupported(g)
    x = edge_ints(15, (8, 6))
    want = tf.cast(tf.cumsum(tf.cast(x, tf.uint8), axis=1), tf.int32).numpy()
    np.testing.assert_array_equal(open_session(TFLITE.lower(g), kind="tflite").run({"x": x})["y"], want)
    with pytest.raises(PassFailed, match=r"cumsum at loc\(\"model/Cumsum\"\) may leave i32"):
        run_pass(one_graph(body, "i32", ("b", "s")))
