"""tf.cond only the data decides, tf.while_loop over constants, and window pooling, end to end.

A tf.cond whose predicate the shapes do not decide becomes a ``cond`` op holding both
branches (ONNX If, TFLite IF); a loop whose inputs are constants is run once at import;
AvgPool/MaxPool are ``avg_pool``/``max_pool``.  Each model is compiled with
``bertc compile --target all``, which verifies both artifacts against TF, and is then run
on inputs that take each branch, against TF.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from bertc.cli import main
from bertc.frontend.tf import import_function
from bertc.ir import Graph
from bertc.ir.interpreter import run_graph
from bertc.ir.parser import copy_graph
from bertc.ir.printer import print_graph
from bertc.ir.types import TensorType
from bertc.ir.verifier import verify
from bertc.runtime.session import open_session

HIDDEN = 8
TOL = dict(rtol=1e-5, atol=1e-6)  # fp32 parity, as compile's default bound


class Tiny(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        r = np.random.default_rng(0)
        self.emb = tf.Variable(r.normal(0, 0.5, (20, HIDDEN)).astype(np.float32))
        self.w = tf.Variable(r.normal(0, 0.5, (HIDDEN, HIDDEN)).astype(np.float32))

    def hidden(self, ids):
        return tf.matmul(tf.gather(self.emb, ids), self.w)


def _mask_cond(m, ids, mask):
    """Same shapes on both branches: mask the states only when some position is padding."""
    h = m.hidden(ids)
    padded = tf.reduce_any(tf.equal(mask, 0))
    h = tf.cond(padded, lambda: h * tf.cast(mask, tf.float32)[:, :, None], lambda: tf.tanh(h))
    return {"logits": tf.reduce_mean(h, axis=1)}


def _shape_cond(m, ids, mask):
    """Different lengths per branch (as Funnel pools only long inputs), and a weight read inside."""
    h = m.hidden(ids)
    long = tf.shape(ids)[1] > 4
    h = tf.cond(long, lambda: tf.nn.avg_pool1d(h, 2, 2, "SAME"), lambda: tf.matmul(h, m.w))
    return {"logits": tf.reduce_max(h, axis=1)}


def _lazy_and(m, ids, mask):
    """Autograph writes ``p and q`` as tf.cond(p, lambda: q, lambda: p): no branch is needed."""
    h = m.hidden(ids)
    p = tf.shape(ids)[1] > 4
    flag = tf.cond(p, lambda: tf.constant(False), lambda: p)  # p and False: always False
    flag2 = tf.cond(p, lambda: tf.constant(True), lambda: p)  # p and True: p itself
    h = tf.where(flag, h * 3.0, h) + tf.cast(flag2, tf.float32)
    return {"logits": tf.reduce_sum(h, axis=1)}


def _const_loop(m, ids, mask):
    """A tf.while_loop over constants (the gcd tf.signal.frame computes): run at import."""
    a, _ = tf.while_loop(lambda a, b: b > 0, lambda a, b: (b, a % b), (tf.constant(12), tf.constant(18)))
    return {"logits": tf.reduce_mean(m.hidden(ids), axis=1) * tf.cast(a, tf.float32)}


def _pools(m, ids, mask):
    """AvgPool and MaxPool, SAME and VALID, 1-D and 2-D windows (odd lengths pad at the end)."""
    h = m.hidden(ids)
    a = tf.nn.avg_pool1d(h, 2, 2, "SAME")
    b = -tf.nn.max_pool1d(-h, 3, 2, "VALID")  # min pooling, as Funnel writes it
    c = tf.nn.avg_pool2d(h[:, :, :, None], (2, 3), (2, 2), "SAME")
    d = tf.nn.max_pool2d(h[:, :, :, None], (3, 2), (1, 2), "SAME")
    return {"a": tf.reduce_sum(a, 1), "b": tf.reduce_sum(b, 1), "c": tf.reduce_mean(c, [1, 3]),
            "d": tf.reduce_mean(d, [1, 3])}


def _data_loop(m, ids, mask):
    """A loop whose trip count is the longest sequence: the data decides, so it is refused."""
    n = tf.reduce_max(tf.reduce_sum(mask, axis=1))
    _, h = tf.while_loop(lambda i, h: i < n, lambda i, h: (i + 1, tf.tanh(h)), (0, m.hidden(ids)))
    return {"logits": tf.reduce_mean(h, axis=1)}


MODELS = {"mask_cond": _mask_cond, "shape_cond": _shape_cond, "lazy_and": _lazy_and, "const_loop": _const_loop,
          "pools": _pools, "data_loop": _data_loop}


def _save(tmp_path_factory, name):
    m = Tiny()
    spec = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask")]
    m.serve = tf.function(lambda ids, mask: MODELS[name](m, ids, mask), input_signature=spec)
    path = tmp_path_factory.mktemp(name) / "model"
    tf.saved_model.save(m, str(path), signatures={"serving_default": m.serve.get_concrete_function()})
    return path, m


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return {name: _save(tmp_path_factory, name) for name in MODELS}


def _feeds(batch, seq, pad):
    r = np.random.default_rng(batch * 100 + seq)
    mask = np.ones((batch, seq), np.int32)
    if pad:
        mask[-1, seq // 2:] = 0
    return {"input_ids": r.integers(0, 20, (batch, seq)).astype(np.int32), "attention_mask": mask}


def _compile(tmp_path, path, *extra):
    out = tmp_path / "out"
    code = main(["compile", str(path), "--target", "all", "-o", str(out), *extra])
    return code, out


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", ["mask_cond", "shape_cond", "lazy_and", "const_loop", "pools"])
def test_compiles_verifies_and_matches_tf_on_every_branch(saved, tmp_path, name):
    path, m = saved[name]
    code, out = _compile(tmp_path, path)
    assert code == 0
    sessions = {k: open_session(out / f"model.{k}") for k in ("onnx", "tflite")}
    # short and long, padded and not: every branch of every model is taken by some feed
    for batch, seq, pad in [(1, 3, False), (2, 3, True), (1, 9, False), (3, 9, True)]:
        feeds = _feeds(batch, seq, pad)
        want = {k: v.numpy() for k, v in m.serve(tf.constant(feeds["input_ids"]),
                                                   tf.constant(feeds["attention_mask"])).items()}
        for kind, session in sessions.items():
            got = session.run(feeds)
            for k, w in want.items():
                np.testing.assert_allclose(got[k], w, err_msg=f"{name} {k} on {kind} at {batch}x{seq}", **TOL)


def test_cond_becomes_one_op_holding_both_branches(saved):
    path, _ = saved["shape_cond"]
    from bertc.frontend.tf import import_model

    graph, _ = import_model(path)
    [cond] = graph.ops_of("cond")
    then, other = cond.attrs["then"], cond.attrs["else"]
    assert then.ops_of("avg_pool") and not other.ops_of("avg_pool")
    assert any(op.kind == "const" and op.attrs["value"].shape == (HIDDEN, HIDDEN) for op in other.ops)
    # the pooled length is only known at run time: a fresh symbol, not the input's seq
    assert cond.result.shape[1] not in ("seq", 4) and isinstance(cond.result.shape[1], str)
    assert graph.weights().keys() >= {op.attrs["name"] for op in other.ops if op.kind == "const"}


def test_lazy_and_needs_no_branch(saved):
    """Inside a branch the predicate is a known constant, so ``p and q`` folds away."""
    from bertc.frontend.tf import import_model

    graph, _ = import_model(saved["lazy_and"][0])
    assert not graph.ops_of("cond")


def test_loop_over_constants_leaves_no_loop(saved):
    from bertc.frontend.tf import import_model

    graph, _ = import_model(saved["const_loop"][0])
    assert not graph.ops_of("cond") and "while" not in print_graph(graph).lower()


def test_a_branch_verification_never_took_is_reported(saved, tmp_path, capsys):
    """The default verification feeds 8 and 19 tokens: the short branch of shape_cond never runs.
    The summary and report.json say so; --verify-data with short inputs takes it."""
    code, out = _compile(tmp_path, saved["shape_cond"][0])
    assert code == 0
    err = capsys.readouterr().err
    assert "never took its else branch" in err and "unchecked" in err
    branches = json.loads((out / "report.json").read_text())["verification_branches"]
    assert list(branches.values()) == [{"then": 4, "else": 0}]

    np.savez(tmp_path / "short.npz", **_feeds(2, 3, True))
    out2 = tmp_path / "out2"
    assert main(["compile", str(saved["shape_cond"][0]), "-o", str(out2),
                 "--verify-data", str(tmp_path / "short.npz")]) == 0
    assert list(json.loads((out2 / "report.json").read_text())["verification_branches"].values()) == \
        [{"then": 0, "else": 1}]


def test_loop_the_data_decides_is_refused(saved, tmp_path, capsys):
    code, out = _compile(tmp_path, saved["data_loop"][0])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "control flow" in err and "StatelessWhile" in err and "tf.while_loop" in err
    assert not out.exists()


def test_branches_of_different_rank_are_refused_by_node(tmp_path, capsys):
    """TF lets a cond return tensors of different ranks and leaves the rank to the run; bertc names it."""
    m = Tiny()

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="input_ids")])
    def serve(ids):
        h = m.hidden(ids)
        return {"logits": tf.cond(tf.reduce_sum(ids) > 3, lambda: h[:, 0], lambda: h)}

    m.serve = serve
    path = tmp_path / "model"
    tf.saved_model.save(m, str(path), signatures={"serving_default": serve.get_concrete_function()})
    code, _ = _compile(tmp_path, path)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "StatelessIf 'cond'" in err and "one dtype and rank per result" in err


# ---------------------------------------------------------------------------- the IR
def _two_branch_graph() -> Graph:
    g = Graph("main")
    x = g.add_input("x", TensorType("f32", ("batch", "seq")))
    p = g.add_input("p", TensorType("bool", ()))
    then = Graph("double")
    tx = then.add_input("x", x.type)
    then.outputs["y"] = then.add("mul", [tx, then.const(np.full((1, 17), 2.0, np.float32), "two")]).result
    other = Graph("negate")
    other.outputs["y"] = other.add("neg", [other.add_input("x", x.type)]).result
    op = g.add("cond", [p, x], {"then": g.adopt(then), "else": g.adopt(other)})
    g.outputs["y"] = op.result
    return g


def test_cond_prints_parses_and_runs_each_branch():
    g = _two_branch_graph()
    verify(g)
    text = print_graph(g)
    assert text.index("func @double(") < text.index("func @negate(") < text.index("func @main(")
    assert "then=@double, else=@negate" in text
    copy = copy_graph(g)
    assert print_graph(copy) == text
    assert copy.weights().keys() == {"two"}  # a branch's weight is a weight of the graph
    x = np.arange(17, dtype=np.float32).reshape(1, 17)
    np.testing.assert_array_equal(run_graph(copy, {"x": x, "p": np.array(True)})["y"], x * 2)
    np.testing.assert_array_equal(run_graph(copy, {"x": x, "p": np.array(False)})["y"], -x)


def test_a_branch_weight_named_like_another_keeps_its_own_values(tmp_path):
    """A branch and the graph around it may both hold a weight called ``w`` (TF names them by
    node, per function); adopting the branch renames its one, so the dump keeps both arrays."""
    from bertc.ir.serialize import load, save

    g = Graph("main")
    x = g.add_input("x", TensorType("f32", ("b", 20)))
    p = g.add_input("p", TensorType("bool", ()))
    outer = g.add("mul", [x, g.const(np.full((20,), 3.0, np.float32), "w")]).result
    then = Graph("scaled")
    tx = then.add_input("x", x.type)
    then.outputs["y"] = then.add("mul", [tx, then.const(np.full((20,), 5.0, np.float32), "w")]).result
    other = Graph("same")
    other.outputs["y"] = other.add("identity", [other.add_input("x", x.type)]).result
    g.outputs["y"] = g.add("cond", [p, outer], {"then": g.adopt(then), "else": g.adopt(other)}).result
    assert g.adopt(then) is then and len(g.weights()) == 2  # adopting twice renames nothing more
    save(g, tmp_path / "g.bir")
    back = load(tmp_path / "g.bir")
    ones = np.ones((1, 20), np.float32)
    np.testing.assert_array_equal(run_graph(back, {"x": ones, "p": np.array(True)})["y"], ones * 15)
    np.testing.assert_array_equal(run_graph(back, {"x": ones, "p": np.array(False)})["y"], ones * 3)


def test_a_broken_branch_is_caught_by_the_verifier():
    g = _two_branch_graph()
    cond = g.ops_of("cond")[0]
    cond.attrs["else"].outputs["y"] = cond.attrs["else"].inputs[0]
    cond.attrs["else"].add_input("extra", TensorType("f32", (2,)))
    with pytest.raises(ValueError, match="else branch takes 2 arguments"):
        verify(g)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("ksize,strides", [((1, 2), (1, 2)), ((3, 2), (2, 1)), ((2, 3), (2, 2))])
def test_pool_kernel_is_tf(kind, padding, ksize, strides):
    x = np.random.default_rng(0).normal(size=(2, 7, 5, 3)).astype(np.float32)
    tf_fn = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d

    @tf.function(input_signature=[tf.TensorSpec([None, None, 5, 3], tf.float32, name="x")])
    def fn(x):
        return {"y": tf_fn(x, ksize, strides, padding)}

    graph, _ = import_function(fn.get_concrete_function())
    assert graph.ops_of(f"{kind}_pool")
    want = tf_fn(x, ksize, strides, padding).numpy()
    np.testing.assert_allclose(run_graph(graph, {"x": x})["y"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("long", [True, False], ids=["then", "else"])
def test_gradients_flow_through_cond_and_pooling_as_in_tf(long):
    """Importance criteria differentiate through a cond (the branch the run took) and through
    avg/max pooling; d loss / d scale of a tapped value equals TF's sum(dL/dv * v)."""
    from bertc.analysis.autodiff import tap_gradients

    w = np.random.default_rng(1).normal(size=(1, HIDDEN)).astype(np.float32)

    def body(x):
        a = x * 1.5
        pooled = tf.cond(tf.shape(x)[1] > 4,
                         lambda: tf.nn.avg_pool1d(a, 2, 2, "SAME") + tf.nn.max_pool1d(a, 3, 2, "SAME"),
                         lambda: tf.tanh(a))
        return a, tf.reduce_sum(pooled, axis=1) * w

    fn = tf.function(lambda x: {"y": body(x)[1]},
                     input_signature=[tf.TensorSpec([None, None, HIDDEN], tf.float32, name="x")])
    graph, _ = import_function(fn.get_concrete_function())
    assert graph.ops_of("cond")
    x = np.random.default_rng(2).normal(size=(2, 7 if long else 3, HIDDEN)).astype(np.float32)
    tap = next(op.result for op in graph.ops if op.kind == "mul" and op.operands[0] is graph.inputs[0])
    _, _, grads = tap_gradients(graph, {"x": x}, {tap: np.ones(())},
                                lambda out: (float(out["y"].sum()), {"y": np.ones_like(out["y"])}))
    # TF: dL/da = dL/dx / 1.5 (a = 1.5 x), and the tap's scale gradient is sum(dL/da * a)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(body(xt)[1])
    da = tape.gradient(loss, xt).numpy() / 1.5
    want = float((da * (x * 1.5)).sum())
    np.testing.assert_allclose(float(np.asarray(grads[tap]).sum()), want, rtol=1e-4, atol=1e-5)
