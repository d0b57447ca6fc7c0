"""legalize_f64: float64 islands for LiteRT, exact or refused.

(a) MPNet/T5-style relative-position buckets computed in f64 (as Hugging Face's
    TF MPNet does: int32 / int is TF truediv, i.e. f64), imported, legalized,
    lowered to TFLite and run on LiteRT at several lengths up to the maximum,
    against TF run eagerly: buckets bit for bit, the bias they gather to 1e-6.
(b) islands that cannot be made exact are refused, naming the op.
(c) the planner picks the pass for --target tflite (`bertc check`).
(d) a tiny HF TFMPNetForSequenceClassification through `bertc compile --target tflite`.

Why TF *eagerly*: in a tf.function, grappler's constant folding rewrites
``x / c`` (c a float constant) into ``x * (1 / c)`` (ReduceDivToReciprocalMul),
which in f64 moves log(64/8)/log(16)*8 from 6.0 to 5.999999999999999 and the
bucket of relative position 64 from 14 to 13.  bertc imports the graph's
``RealDiv`` as written, so eager TF (and TF with the meta optimizer off) is
the computation it reproduces; ``test_grappler_changes_the_tf_graph_answer``
pins that, and the reciprocal form is itself tabulated exactly.
"""

from __future__ import annotations

import math
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
from bertc.ir.printer import print_graph  # noqa: E402
from bertc.ir.serialize import save  # noqa: E402
from bertc.legalize import explain, plan  # noqa: E402
from bertc.pass_manager import PassFailed, PassManager, parse_pipeline  # noqa: E402
from bertc.runtime.session import open_session  # noqa: E402
from bertc.targets.onnx import TARGET as ONNX  # noqa: E402
from bertc.targets.tflite import TARGET as TFLITE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADS = 4
MAX_LENGTH = 512
LENGTHS = (1, 2, 9, 17, 64, 65, 129, 300, MAX_LENGTH)  # 512: every relative position in [-511, 511]
FLOAT_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- the models
def mpnet_bucket(relative_position, num_buckets=32, max_distance=128, reciprocal=False):
    """transformers' TFMPNetEncoder._relative_position_bucket (4.57.6), verbatim but for
    ``reciprocal``, which writes the division by log(...) as grappler rewrites it."""
    ret = 0
    n = -relative_position
    num_buckets //= 2
    ret += tf.cast(tf.math.less(n, 0), dtype=relative_position.dtype) * num_buckets
    n = tf.math.abs(n)
    max_exact = num_buckets // 2
    is_small = tf.math.less(n, max_exact)
    scaled = (tf.math.log(n / max_exact) * (1 / math.log(max_distance / max_exact)) if reciprocal
              else tf.math.log(n / max_exact) / math.log(max_distance / max_exact))
    val_if_large = max_exact + tf.cast(scaled * (num_buckets - max_exact), dtype=relative_position.dtype)
    val_if_large = tf.math.minimum(val_if_large, num_buckets - 1)
    ret += tf.where(is_small, n, val_if_large)
    return ret


def t5_bucket_f64(relative_position, num_buckets=32, max_distance=128):
    """transformers' TFT5Attention._relative_position_bucket with its f32 casts made f64."""
    buckets = 0
    num_buckets //= 2
    buckets += tf.cast(tf.math.greater(relative_position, 0), dtype=relative_position.dtype) * num_buckets
    relative_position = tf.math.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = tf.math.less(relative_position, max_exact)
    if_large = max_exact + tf.cast(
        tf.math.log(tf.cast(relative_position, tf.float64) / tf.cast(max_exact, tf.float64))
        / math.log(max_distance / max_exact) * (num_buckets - max_exact), dtype=relative_position.dtype)
    if_large = tf.math.minimum(if_large, num_buckets - 1)
    return buckets + tf.where(is_small, relative_position, if_large)


def position_bias_fn(bucket, table: np.ndarray):
    """MPNet's compute_position_bias on hidden states x [batch, seq, 8]: buckets of
    range(seq) differences, gathered from a [buckets, heads] embedding, added to scores."""
    def fn(x):
        qlen = tf.shape(x)[1]
        rp = tf.range(qlen)[None, :] - tf.range(qlen)[:, None]
        b = bucket(rp)
        bias = tf.expand_dims(tf.transpose(tf.gather(tf.constant(table), b), [2, 0, 1]), axis=0)
        scores = tf.matmul(x, x, transpose_b=True)[:, None] + bias
        return {"buckets": b, "scores": scores}
    return fn


def deberta_bucket_f64(relative_position, mid=4, max_position=32):
    """DeBERTa-v2's make_log_bucket_position in f64.  Its two comparisons leave the island as
    bools, are and-ed outside it and come back as a where's condition: one island, not a cycle."""
    r = tf.cast(relative_position, tf.float64)
    sign = tf.math.sign(r)
    abs_pos = tf.where((r < mid) & (r > -mid), tf.constant(mid - 1, tf.float64), tf.abs(r))
    log_pos = tf.math.ceil(tf.math.log(abs_pos / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    return tf.cast(tf.where(abs_pos <= mid, r, log_pos * sign), tf.int32) + 16


BUCKETS = {
    "deberta_log_f64": deberta_bucket_f64,
    "mpnet_32_128": lambda rp: mpnet_bucket(rp, 32, 128),
    "mpnet_64_256": lambda rp: mpnet_bucket(rp, 64, 256),
    "mpnet_reciprocal": lambda rp: mpnet_bucket(rp, 32, 128, reciprocal=True),
    "t5_f64": lambda rp: t5_bucket_f64(rp, 32, 128),
}


def compiled(fn, pipeline: str | None = None):
    """(imported graph, legalized graph) of ``fn`` on x: f32[batch, seq, 8]."""
    concrete = tf.function(fn, input_signature=[tf.TensorSpec([None, None, 8], tf.float32)]).get_concrete_function()
    graph, _ = import_function(concrete)
    imported = print_graph(graph)
    passes = parse_pipeline(pipeline) if pipeline else plan(graph, [TFLITE])
    PassManager(passes).run(graph)
    return imported, graph


def f64_values(graph: Graph) -> list:
    return [v for op in graph.ops for v in (*op.operands, *op.results) if v.dtype == "f64"]


# --------------------------------------------------------------------------- (a) exact on LiteRT
@pytest.mark.parametrize("name", list(BUCKETS))
def test_relative_position_buckets_on_litert_match_tf(name):
    table = np.random.default_rng(0).standard_normal((64, HEADS)).astype(np.float32)
    fn = position_bias_fn(BUCKETS[name], table)
    imported, graph = compiled(fn)
    assert " f64" in imported and "log" in imported  # the island was there
    assert not f64_values(graph) and not graph.ops_of("log") and not TFLITE.unsupported(graph)
    session = open_session(TFLITE.lower(graph), kind="tflite")
    rng = np.random.default_rng(1)
    worst = 0.0
    for seq in LENGTHS:
        x = rng.standard_normal((2, seq, 8)).astype(np.float32)
        want = fn(tf.constant(x))  # eager TF: the graph's f64 arithmetic as written
        got = session.run({"x": x})
        assert got["buckets"].dtype == np.int32
        np.testing.assert_array_equal(got["buckets"], want["buckets"].numpy(), err_msg=f"{name} seq={seq}")
        scores = want["scores"].numpy()
        err = float(np.max(np.abs(got["scores"] - scores) / np.maximum(1, np.abs(scores))))
        assert err <= FLOAT_TOLERANCE, (name, seq, err)
        worst = max(worst, err)
    print(f"{name}: buckets bit-exact at seq {LENGTHS}; scores max rel err {worst:.2e}")


def test_the_table_holds_what_f64_computes_and_f32_does_not():
    """Why a table: in f32 the island flips a bucket that f64 gets right.  In the reciprocal
    form (what TF graph mode runs) f32 gives log(8) * f32(1/log 16) * 8 = 6.0 at n = 64,
    where f64 gives 5.999999999999999: bucket 14 instead of 13."""
    from bertc.passes.legalize_f64 import evaluate, find_islands

    def buckets(x):
        positions = tf.range(tf.shape(x)[1])
        return {"b": BUCKETS["mpnet_reciprocal"](positions[None, :] - positions[:, None])}
    graph, _ = import_function(tf.function(buckets, input_signature=[tf.TensorSpec([None, None], tf.float32)])
                               .get_concrete_function())
    (island,) = find_islands(graph)
    n = np.arange(MAX_LENGTH, dtype=np.int32)
    want = tf.cast(tf.math.log(n / 8) * (1 / math.log(16)) * 8, tf.int32).numpy()  # the island, eager TF
    (f64,) = evaluate(island, [n], "f64")
    (f32,) = evaluate(island, [n], "f32")
    np.testing.assert_array_equal(f64[8:], want[8:])  # n < 8 never reaches the result (is_small)
    assert 64 in np.nonzero(f32 != want)[0] + 0 and f64[64] == 5 and f32[64] == 6


def test_grappler_changes_the_tf_graph_answer():
    """TF in graph mode differs from TF eager at relative position 64 (see the module docstring);
    the reciprocal form, which is what grappler runs, is what bertc reproduces for it."""
    fn = position_bias_fn(BUCKETS["mpnet_32_128"], np.zeros((32, HEADS), np.float32))
    x = tf.zeros((1, 66, 8))
    spec = [tf.TensorSpec([None, None, 8], tf.float32)]  # a static shape would fold it all, as written
    graph_mode = tf.function(fn, input_signature=spec)(x)["buckets"].numpy()
    eager = fn(x)["buckets"].numpy()
    i = np.arange(66)
    assert np.array_equal(graph_mode != eager, np.abs(i[None, :] - i[:, None]) == 64)
    assert graph_mode[64, 0] == 8 + 5 and eager[64, 0] == 8 + 6
    _, graph = compiled(position_bias_fn(BUCKETS["mpnet_reciprocal"], np.zeros((32, HEADS), np.float32)))
    got = open_session(TFLITE.lower(graph), kind="tflite").run({"x": x.numpy()})["buckets"]
    np.testing.assert_array_equal(got, graph_mode)


def test_domain_comes_from_the_position_table_or_max_length():
    """max_length=0 reads the rows of a table named like position embeddings; else 512."""
    fn = position_bias_fn(BUCKETS["mpnet_32_128"], np.zeros((32, HEADS), np.float32))
    _, g = compiled(fn, "legalize_f64{targets=tflite,max_length=100},dce")
    (table,) = [op for op in g.ops if op.kind == "const" and op.attrs["name"].endswith("/lookup")]
    assert table.attrs["value"].shape == (100,)  # |relative position| in [0, 99]
    positions = tf.Variable(np.zeros((300, 8), np.float32), name="position_embeddings")

    def with_positions(x):
        out = fn(x)
        out["pos"] = tf.gather(positions, tf.range(tf.shape(x)[1]))
        return out
    _, g = compiled(with_positions, "legalize_f64{targets=tflite},dce")
    (table,) = [op for op in g.ops if op.kind == "const" and op.attrs["name"].endswith("/lookup")]
    assert table.attrs["value"].shape == (300,)


# --------------------------------------------------------------------------- other islands
def one_island(body, dtype="f32", shape=("b", "s")) -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType(dtype, shape))
    g.outputs["y"] = body(g, x)
    return g


def run_pass(g: Graph, options: str = "") -> Graph:
    PassManager(parse_pipeline(f"legalize_f64{{targets=tflite{options}}},dce")).run(g)
    return g


def test_exact_ops_on_f32_are_retyped():
    """max(f64(x), 0.5) -> f32 is exactly max(x, 0.5): retyped, bit for bit against TF."""
    def body(g, x):
        y = g.add("cast", [x], {"to": "f64"}, name="wide").result
        m = g.add("maximum", [y, g.const(np.float64(0.5), "half")]).result
        return g.add("cast", [g.add("neg", [m]).result], {"to": "f32"}).result
    g = run_pass(one_island(body))
    assert not f64_values(g) and [op.kind for op in g.ops if op.kind != "const"] == ["maximum", "neg"]
    x = np.random.default_rng(2).standard_normal((3, 7)).astype(np.float32)
    got = open_session(TFLITE.lower(g), kind="tflite").run({"x": x})["y"]
    want = tf.cast(-tf.maximum(tf.cast(x, tf.float64), 0.5), tf.float32).numpy()
    assert np.array_equal(got.view(np.int32), want.view(np.int32))


def test_two_bounded_inputs_share_one_table():
    """f(a, b) = int(log(1 + a) * b / 3) over a bool and a position: one table, flat index."""
    def build(g, x):
        n = g.add("range", [g.const(np.int32(0)), g.const(np.int32(40)), g.const(np.int32(1))]).result
        flag = g.add("less", [x, g.const(np.float32(0))]).result  # bool[b, s]
        a = g.add("cast", [n], {"to": "f64"}).result
        b = g.add("cast", [flag], {"to": "f64"}).result
        v = g.add("mul", [g.add("log", [g.add("add", [a, g.const(np.float64(1.0))]).result]).result,
                          g.add("add", [b, g.const(np.float64(2.0))]).result]).result
        return g.add("cast", [g.add("div", [v, g.const(np.float64(3.0))]).result], {"to": "i32"}).result
    g = run_pass(one_island(build, shape=("b", 40)))
    assert not f64_values(g) and len(g.ops_of("gather")) == 1
    x = np.random.default_rng(3).standard_normal((2, 40)).astype(np.float32)
    n = np.arange(40, dtype=np.int32)
    want = tf.cast((tf.math.log(tf.cast(n, tf.float64) + 1.0) * (tf.cast(x < 0, tf.float64) + 2.0)) / 3.0,
                   tf.int32).numpy()
    np.testing.assert_array_equal(open_session(TFLITE.lower(g), kind="tflite").run({"x": x})["y"], want)


def test_float_result_needs_allow_float_and_meets_its_tolerance():
    def body(g, x):
        y = g.add("exp", [g.add("cast", [x], {"to": "f64"}).result]).result
        return g.add("cast", [y], {"to": "f32"}, loc=_loc("model/Exp_f32")).result
    with pytest.raises(PassFailed, match=r"float result .*model/Exp_f32.* allow_float=true"):
        run_pass(one_island(body))
    g = run_pass(one_island(body), ",allow_float=true,float_tolerance=1e-6")
    assert not f64_values(g)
    x = np.random.default_rng(4).uniform(-20, 20, (3, 50)).astype(np.float32)
    got = open_session(TFLITE.lower(g), kind="tflite").run({"x": x})["y"]
    want = tf.cast(tf.exp(tf.cast(x, tf.float64)), tf.float32).numpy()
    err = np.max(np.abs(got - want) / np.maximum(1, np.abs(want)))
    assert err <= FLOAT_TOLERANCE, err
    with pytest.raises(PassFailed, match="float_tolerance=1e-09"):
        run_pass(one_island(body), ",allow_float=true,float_tolerance=1e-9")


def _loc(name):
    from bertc.ir.graph import Loc
    return Loc.of(name)


# --------------------------------------------------------------------------- (b) refused
REFUSALS = {
    # an integer result from an f32 input: no finite domain, and log rounds differently in f32
    "f32_entry": (lambda g, x: g.add("cast", [g.add("log", [g.add("cast", [x], {"to": "f64"}).result],
                                                    loc=_loc("model/Log")).result], {"to": "i32"}).result,
                  "f32", r"log at loc\(\"model/Log\"\) rounds differently in f32.*%x \(f32\), an f32 value"),
    # token ids are a graph input: unbounded
    "unbounded_ids": (lambda g, x: g.add("cast", [g.add("sqrt", [g.add("cast", [x], {"to": "f64"}).result],
                                                        loc=_loc("model/Sqrt")).result], {"to": "i32"}).result,
                      "i32", r"sqrt at loc\(\"model/Sqrt\"\).*%x \(i32\), an unbounded integer"),
    # f64 leaves the graph: the caller would have to change
    "f64_output": (lambda g, x: g.add("log", [g.add("cast", [x], {"to": "f64"}).result]).result,
                   "i32", r"graph output 'y' is f64"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_islands_that_cannot_be_exact_are_refused_naming_the_op(case):
    body, dtype, message = REFUSALS[case]
    with pytest.raises(PassFailed, match=message) as info:
        run_pass(one_island(body, dtype))
    assert "legalize_f64" in str(info.value)


def test_a_table_larger_than_max_table_is_refused():
    fn = position_bias_fn(BUCKETS["mpnet_32_128"], np.zeros((32, HEADS), np.float32))
    with pytest.raises(PassFailed, match=r"512 combinations, more than max_table=100"):
        compiled(fn, "legalize_f64{targets=tflite,max_table=100}")


def test_onnx_runs_f64_so_nothing_changes():
    fn = position_bias_fn(BUCKETS["mpnet_32_128"], np.zeros((32, HEADS), np.float32))
    imported, g = compiled(fn, "legalize_f64{targets=onnx}")
    assert print_graph(g) == imported and not ONNX.unsupported(g)


# --------------------------------------------------------------------------- (c) the planner
def test_planner_picks_legalize_f64_before_kind_passes():
    """An f64 erf needs both: legalize_f64 runs first (it removes or retypes the f64)."""
    g = one_island(lambda g, x: g.add("cast", [g.add("erf", [g.add("cast", [x], {"to": "f64"}).result]).result],
                                      {"to": "f32"}).result)
    names = [p.name for p in plan(g, [TFLITE])]
    assert names[:2] == ["legalize_f64", "legalize_erf"], names
    assert explain(g.ops_of("erf")[0]) == "pass legalize_f64, then legalize_erf rewrites it"
    def log_body(g, x):
        wide = g.add("cast", [x], {"to": "f64"}).result
        return g.add("cast", [g.add("log", [wide]).result], {"to": "f32"}).result
    log_island = one_island(log_body)
    assert plan(log_island, [ONNX]) == [] and plan(log_island, [TFLITE])[0].name == "legalize_f64"


def test_bertc_check_names_legalize_f64_for_tflite(tmp_path, capsys):
    fn = position_bias_fn(BUCKETS["mpnet_32_128"], np.zeros((32, HEADS), np.float32))
    _, graph = compiled(fn, "dce")
    path = tmp_path / "buckets.bir"
    save(graph, path)
    code = main(["check", str(path), "--target", "all"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "target onnx: legal as it is (every op is supported; nothing to legalize)" in text
    assert "after legalization, onnx" not in text
    assert ("log x1 (log on f64: tflite lowers bool/f32/i32/i64 tensors only) at Log\n"
            "    -> rewritten by legalize_f64") in text
    assert "after legalization, tflite is legal" in text


def test_bertc_check_reports_a_refusal(tmp_path, capsys):
    path = tmp_path / "refused.bir"
    path.write_text(textwrap.dedent("""\
        func @main(%x: f32[b,s]) -> (y) {
          %w = cast %x {to="f64"} : f64[b,s] loc("model/Cast")
          %l = log %w : f64[b,s] loc("model/Log")
          %y = cast %l {to="i32"} : i32[b,s] loc("model/Cast_1")
          return y=%y
        }
        """))
    code = main(["check", str(path), "--target", "tflite"])
    text = capsys.readouterr().out
    assert code == 2 and "-> rewritten by legalize_f64" in text
    assert "legalization failed" in text and 'log at loc("model/Log") rounds differently in f32' in text


# --------------------------------------------------------------------------- (d) a HF MPNet
MPNET_BUILDER = textwrap.dedent("""\
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np, tensorflow as tf
    from transformers import MPNetConfig, TFMPNetForSequenceClassification
    cfg = MPNetConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=514, num_labels=3)
    tf.random.set_seed(0)
    model = TFMPNetForSequenceClassification(cfg)
    model(model.dummy_inputs)
    rng = np.random.default_rng(0)
    for w in model.weights:  # the relative bias starts near zero; make every weight count
        w.assign(w.numpy() + rng.normal(0, 0.05, w.shape).astype(w.dtype.as_numpy_dtype))
    sig = {"input_ids": tf.TensorSpec([None, None], tf.int32, name="input_ids"),
           "attention_mask": tf.TensorSpec([None, None], tf.int32, name="attention_mask")}
    @tf.function(input_signature=[sig])
    def serving(inputs):
        return {"logits": model(inputs, training=False).logits}
    model.save(sys.argv[1], signatures={"serving_default": serving}, include_optimizer=False)
    rng, cases = np.random.default_rng(5), {}
    for seq in (3, 40, 130, 200):  # 130, 200: relative positions past max_distance (128) and at 64
        ids = rng.integers(3, 100, (2, seq)).astype(np.int32)
        mask = np.ones_like(ids)
        mask[1, seq // 2:] = 0
        logits = model({"input_ids": ids, "attention_mask": mask}, training=False).logits.numpy()  # eager
        cases.update({f"ids_{seq}": ids, f"mask_{seq}": mask, f"eager_{seq}": logits})
    np.savez(sys.argv[1] + ".eager.npz", **cases)
    """)


@pytest.fixture(scope="module")
def mpnet_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("mpnet") / "saved"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([sys.executable, "-c", MPNET_BUILDER, str(out)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_hf_mpnet_compiles_for_tflite_and_matches_tf(mpnet_dir, tmp_path):
    """`bertc compile --target tflite` (which verifies against the SavedModel itself), then
    LiteRT against the Keras model run eagerly (the f64 arithmetic as written) to 1e-5,
    and against the SavedModel to 1e-4: in graph mode grappler's x * (1/c) moves the
    bucket of relative position +-64, so past 64 tokens the two TF answers differ."""
    out = tmp_path / "out"
    assert main(["compile", str(mpnet_dir), "--target", "tflite", "-o", str(out)]) == 0
    assert "legalize_f64" in (out / "report.json").read_text()
    session, saved = open_session(out / "model.tflite"), open_session(mpnet_dir)
    cases = np.load(str(mpnet_dir) + ".eager.npz")
    for seq in (3, 40, 130, 200):
        feeds = {"input_ids": cases[f"ids_{seq}"], "attention_mask": cases[f"mask_{seq}"]}
        got = session.run(feeds)["logits"]
        eager = float(np.max(np.abs(got - cases[f"eager_{seq}"])))
        graph = float(np.max(np.abs(got - saved.run(feeds)["logits"])))
        print(f"mpnet seq={seq}: max|logit err| vs eager TF {eager:.2e}, vs the SavedModel {graph:.2e}")
        assert eager <= 1e-5 and graph <= 1e-4, (seq, eager, graph)
