"""The command line: happy paths, and one clear paragraph with exit 2 for each kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bertc.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("bertc: error: ")
    for n in needles:
        assert n in err, f"{n!r} not in: {err}"


# ------------------------------------------------------------------ bad input
def test_missing_path(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", tmp_path / "nope")
    assert_clean_error(code, err, str(tmp_path / "nope"), "no such file")


def test_directory_that_is_not_a_saved_model(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", tmp_path)
    assert_clean_error(code, err, "not a SavedModel", "saved_model.pb")


def test_corrupt_saved_model(capsys, tmp_path, tf_bert_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tf_bert_dir, broken)
    data = (broken / "saved_model.pb").read_bytes()
    (broken / "saved_model.pb").write_bytes(data[: len(data) // 3] + b"\x00garbage")
    code, _, err = run(capsys, "import", broken)
    assert_clean_error(code, err, str(broken), "could not load", "export it again")


def test_unknown_signature(capsys, tf_bert_dir):
    code, _, err = run(capsys, "inspect", tf_bert_dir, "--signature", "serving_defualt")
    assert_clean_error(code, err, "no signature 'serving_defualt'", "serving_default")


def _save(tmp_path: Path, fn, spec) -> Path:
    module = tf.Module()
    module.f = tf.function(fn, input_signature=[spec])
    path = tmp_path / "model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return path


def test_unmapped_ops_are_listed_together(capsys, tmp_path):
    path = _save(tmp_path, lambda x: {"y": tf.math.lgamma(x) + tf.math.digamma(x) + tf.math.lgamma(2 * x)},
                 tf.TensorSpec([None, 4], tf.float32, name="x"))
    code, _, err = run(capsys, "import", path)
    assert_clean_error(code, err, "no handler in bertc:", "    Lgamma (2x): 'Lgamma', 'Lgamma_1'",
                       "    Digamma (1x): 'Digamma'")


def test_a_loop_the_inputs_decide_is_refused(capsys, tmp_path):
    def loop(x):
        i, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0), [tf.constant(0), x])
        return {"y": y}

    path = _save(tmp_path, loop, tf.TensorSpec([None], tf.float32, name="x"))
    code, _, err = run(capsys, "import", path)
    assert_clean_error(code, err, "control flow the inputs decide is not supported", "StatelessWhile (1x): 'while'")


def test_string_ops_are_refused(capsys, tmp_path):
    path = _save(tmp_path, lambda s: {"n": tf.strings.length(s)}, tf.TensorSpec([None], tf.string, name="s"))
    code, _, err = run(capsys, "import", path)
    assert_clean_error(code, err, "string ops are not supported")


def test_unknown_pass_and_option(capsys, tmp_path):
    ir = tmp_path / "g.bir"
    ir.write_text("func @main(%x: f32[2]) -> (y) {\n  %n = neg %x : f32[2]\n  return y=%n\n}\n")
    code, _, err = run(capsys, "opt", ir, "-p", "fold_constant")
    assert_clean_error(code, err, "unknown pass 'fold_constant'", "Did you mean 'fold_constants'")
    code, _, err = run(capsys, "opt", ir, "-p", "cse{aggressive=true}")
    assert_clean_error(code, err, "pass 'cse' has no option 'aggressive'")


def test_malformed_ir_names_file_and_line(capsys, tmp_path):
    ir = tmp_path / "bad.bir"
    ir.write_text("func @main(%x: f32[2]) -> (y) {\n  %n = neg %q : f32[2]\n  return y=%n\n}\n")
    code, _, err = run(capsys, "opt", ir, "-p", "dce")
    assert_clean_error(code, err, f"{ir}:2", "undefined value %q")


def test_frozen_graph_def_without_placeholders_asks_for_names(capsys, tmp_path):
    pb = tmp_path / "g.pb"
    pb.write_bytes(tf.compat.v1.GraphDef().SerializeToString())
    code, _, err = run(capsys, "import", pb)
    assert_clean_error(code, err, str(pb), "no Placeholder", "--inputs")


# ------------------------------------------------------------------ happy paths
def test_import_writes_reloadable_ir(capsys, tmp_path, tf_bert_dir):
    out = tmp_path / "model.bir"
    code, _, err = run(capsys, "import", tf_bert_dir, "-o", out)
    assert code == 0, err
    assert out.exists() and out.with_suffix(".npz").exists()
    code, text, err = run(capsys, "opt", out, "-p", "dce")
    assert code == 0, err
    assert text == out.read_text()  # nothing left to remove: the canonical IR is clean


def test_frozen_graph_def_imports(capsys, tmp_path):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    w = tf.Variable(tf.ones([4, 2]))
    fn = tf.function(lambda x: tf.identity(tf.matmul(x, w), name="y")).get_concrete_function(
        tf.TensorSpec([None, 4], tf.float32, name="x"))
    pb = tmp_path / "frozen.pb"
    pb.write_bytes(convert_variables_to_constants_v2(fn).graph.as_graph_def().SerializeToString())
    code, text, err = run(capsys, "import", pb, "--inputs", "x", "--outputs", "y")
    assert code == 0, err
    assert "matmul %x" in text and "f32[batch,2]" in text


def _tf1_frozen_graph(path: Path) -> None:
    """A TF1-style frozen graph: two Placeholders, two results, and sinks that are not
    results (an unused constant, a no-op, a check that reads only a constant)."""
    g = tf.Graph()
    with g.as_default():
        ids = tf.compat.v1.placeholder(tf.int32, [None, None], name="input_ids")
        mask = tf.compat.v1.placeholder(tf.int32, [None, None], name="input_mask")
        table = tf.constant(np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32))
        h = tf.gather(table, ids) * tf.cast(mask, tf.float32)[:, :, None]
        logits = tf.reduce_sum(h, axis=1, name="logits")
        tf.argmax(tf.reduce_max(h, axis=1), axis=-1, name="predictions")
        tf.argmax(logits, axis=-1, name="logits_argmax")  # read by nothing, but computed: a result too
        tf.constant(3, name="global_step")
        tf.no_op(name="init")
    path.write_bytes(g.as_graph_def().SerializeToString())


def test_frozen_graph_def_finds_its_inputs_and_outputs(capsys, tmp_path, caplog):
    pb = tmp_path / "tf1.pb"
    _tf1_frozen_graph(pb)
    with caplog.at_level("WARNING"):
        code, text, err = run(capsys, "import", pb)
    assert code == 0, err
    assert "func @main(%input_ids: i32[batch,seq], %input_mask: i32[batch,seq]) -> (predictions, logits_argmax)" in text
    said = caplog.text
    assert "using its Placeholders: input_ids, input_mask" in said
    assert "using the nodes nothing consumes: predictions, logits_argmax" in said
    code, text, err = run(capsys, "import", pb, "--outputs", "logits")  # a name still overrides
    assert code == 0, err
    assert "-> (logits)" in text
    out = tmp_path / "out"
    code, _, err = run(capsys, "compile", pb, "--target", "all", "-o", out)  # verified against TF
    assert code == 0, err
    assert (out / "model.onnx").exists() and (out / "model.tflite").exists()


def test_inspect_prints_structure(capsys, tf_bert_dir):
    code, out, err = run(capsys, "inspect", tf_bert_dir)
    assert code == 0, err
    assert "i32[batch,seq]" in out
    assert "transformer structure: 2 layers" in out
    assert "4 x 16" in out and "64->128->64" in out
    # the layer's shared scope once, then each projection by where its name differs
    assert "in bert_classifier/layer_0/" in out and "…/query/MatMul" in out and "…/key/MatMul" in out


def table_lines_fit(out: str, width: int) -> None:
    """No line is wider than ``width``, and every line of a table (between its top and bottom
    borders) is a table line: a row that wrapped past its box would start with something else."""
    inside = False
    for line in out.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"
        if line.startswith("┏"):
            inside = True
        elif inside:
            assert line[:1] in "┃┡│└", f"a line inside a table that is not a table row: {line!r}"
            inside = not line.startswith("└")


@pytest.mark.parametrize("width", [80, 120])
def test_inspect_fits_the_terminal(capsys, monkeypatch, tf_bert_dir, width):
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run(capsys, "inspect", tf_bert_dir)
    assert code == 0, err
    assert "transformer structure: 2 layers" in out and "┏" in out
    table_lines_fit(out, width)
    code, out, err = run(capsys, "passes")
    assert code == 0, err
    table_lines_fit(out, width)


def test_table_check_catches_a_wrapped_row():
    with pytest.raises(AssertionError, match="not a table row"):
        table_lines_fit("┏━┓\n┃ a ┃\n┡━┩\n│ b │\nspilled\n└─┘\n", 80)
    with pytest.raises(AssertionError, match="> 10"):
        table_lines_fit("x" * 11, 10)


def test_inspect_json_has_the_same_facts(capsys, tf_bert_dir):
    code, out, err = run(capsys, "inspect", tf_bert_dir, "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert [i["type"] for i in facts["inputs"]] == ["i32[batch,seq]"] * len(facts["inputs"])
    assert len(facts["layers"]) == 2
    layer = facts["layers"][0]
    assert (layer["attention"]["heads"], layer["attention"]["head_size"]) == (4, 16)
    assert (layer["ffn"]["in_features"], layer["ffn"]["intermediate"], layer["ffn"]["out_features"]) == (64, 128, 64)
    assert layer["attention"]["projections"]["q"]["location"].endswith("bert_classifier/layer_0/query/MatMul")
    assert facts["parameters"] > 0 and sum(facts["histogram"].values()) == facts["ops"]


def test_passes_lists_every_pass(capsys):
    code, out, _ = run(capsys, "passes")
    assert code == 0
    for name in ("dce", "cse", "fold_constants", "remove_identity", "fuse_layer_norm", "fuse_gelu"):
        assert name in out
    code, out, _ = run(capsys, "passes", "--json")
    assert code == 0
    passes = {p["name"]: p for p in json.loads(out)}
    assert {"dce", "cse", "fold_constants", "fuse_gelu", "quant_int8"} <= set(passes)
    calibrate = {o["name"]: o for o in passes["calibrate"]["options"]}
    assert calibrate["method"] == {"name": "method", "default": "minmax", "has_default": True}


@pytest.mark.parametrize("argv", [["--version"], []])
def test_version_and_help(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's --version exits
        code = e.code
    out, err = capsys.readouterr()
    assert ("bertc 0.1.0" in out) if argv else ("usage" in out)


def test_check_json_has_the_same_facts(capsys):
    bir = Path(__file__).parent / "ir" / "check_not_legal.bir"  # i64 div (no rewrite) beside erf (rewritten)
    code, text, _ = run(capsys, "check", bir, "--target", "tflite")
    assert code == 2 and "div x1" in text
    code, out, _ = run(capsys, "check", bir, "--target", "tflite", "--json")
    assert code == 2
    facts = json.loads(out)
    tflite = facts["targets"]["tflite"]
    found = {f["kind"]: f for f in tflite["unsupported"]}
    assert found["div"]["rewritten_by"] == [] and found["div"]["locations"] == ["model/positions/floordiv"]
    assert found["erf"]["rewritten_by"] == ["legalize_erf"]
    assert tflite["left_after_legalization"] == {"div": 1} and facts["legal"] is False


def test_compile_progress_stays_off_a_captured_stderr(capsys, tf_bert_artifacts, tmp_path):
    code, _, err = run(capsys, "compile", tf_bert_artifacts["bir"], "--target", "onnx", "-o", tmp_path / "o",
                       "--passes", "quant_int8")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("compiled ") and all(ln.startswith("  ") for ln in lines[1:]), err
    assert "✓" not in err


def test_compile_progress_on_a_terminal_names_each_stage():
    import io

    from rich.console import Console

    from bertc.progress import StageProgress

    buf = io.StringIO()
    with StageProgress(Console(file=buf, force_terminal=True, color_system=None, width=80)) as progress:
        progress.stage("import model")
        for i, name in enumerate(["cse", "dce"]):
            progress.stage("passes", f"{i + 1}/2 {name}")
        progress.stage("lower to onnx")
        progress.stage("verify against the source model")
    text = buf.getvalue()
    for stage in ("✓ import model", "✓ passes", "✓ lower to onnx", "✓ verify against the source model"):
        assert stage in text, text
    assert text.count("✓ passes") == 1  # one line for all the passes
    quiet = io.StringIO()
    with StageProgress(Console(file=quiet)) as progress:  # not a terminal
        progress.stage("import model")
    assert quiet.getvalue() == ""


def test_compile_summary_shows_what_pruning_kept_and_each_bound(capsys, tf_bert_artifacts, tmp_path):
    out = tmp_path / "o"
    code, _, err = run(capsys, "compile", tf_bert_artifacts["bir"], "--target", "onnx", "-o", out, "--passes",
                       "prune_heads{ratio=0.25},prune_neurons{ratio=0.25},quant_int8")
    assert code == 0, err
    reports = json.loads((out / "report.json").read_text())["pass_reports"]
    heads, ffn = reports["prune_heads"], reports["prune_neurons"]
    kept = ", ".join(f"layer {k}: {heads['heads_after'][k]}/{n}" for k, n in heads["heads_before"].items())
    assert f"pruned heads ({heads['removed']} of 8 removed), kept: {kept}" in err
    kept = ", ".join(f"layer {k}: {ffn['neurons_after'][k]}/{n}" for k, n in ffn["neurons_before"].items())
    assert f"pruned FFN neurons ({ffn['removed']} of 256 removed), kept: {kept}" in err
    assert "parity onnx: logits: max|err| " in err and "nothing bounded" in err and "--max-drop" in err


def test_parity_cell_prints_each_figure_beside_its_bound():
    from bertc.driver import _parity_cell

    out = {"max_abs_error": 6e-4, "rel_error": 0.013, "min_cosine": 0.99981, "argmax_agreement": 1.0}
    loose = {"max_abs_error": None, "max_rel_error": 0.3, "min_cosine": 0.95, "min_argmax_agreement": None}
    assert _parity_cell("logits", out, loose) == ("logits: max|err| 6.00e-04, err / max|output| 1.3% <= 30%, "
                                                  "row cosine 0.9998 >= 0.95")
    exact = dict.fromkeys(loose)
    assert _parity_cell("logits", out | {"tolerance_ratio": 0.02}, exact) == "logits: max|err| 6.00e-04 (2% of the bound)"


def test_check_wording_is_consistent_for_a_legal_model(capsys, tf_bert_artifacts):
    code, text, _ = run(capsys, "check", tf_bert_artifacts["bir"], "--target", "all")
    assert code == 0
    assert text.splitlines() == [f"target {t}: legal as it is (every op is supported; nothing to legalize)"
                                 for t in ("onnx", "tflite")]


def test_inspect_draws_the_region_around_an_op(capsys, tf_bert_artifacts, tmp_path):
    png = tmp_path / "region.png"
    code, _, err = run(capsys, "inspect", tf_bert_artifacts["bir"], "--draw", "layer_0/query/MatMul", "--depth", "1",
                       "-o", png)
    assert code == 0, err
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and f"wrote {png}" in err


def test_draw_region_follows_depth_each_way_and_labels_edges_with_types(tf_bert, tmp_path):
    from bertc.draw import draw_region

    graph = tf_bert.graph()
    g = draw_region(graph, "layer_0/query/MatMul", 1, tmp_path / "r.png")
    centre = [n for n, d in g.nodes(data=True) if d.get("centre")]
    assert len(centre) == 1 and g.nodes[centre[0]]["label"].startswith("matmul\n")
    assert {d["layer"] for _, d in g.nodes(data=True)} == {-1, 0, 1}
    into = {g.nodes[n]["label"].split("\n")[0]: g.edges[n, centre[0]]["label"] for n in g.predecessors(centre[0])}
    assert into == {"layer_norm": "f32[batch,seq,64]", "const": "f32[64,64]"}
    assert [g.nodes[n]["label"].split("\n")[0] for n in g.successors(centre[0])] == ["add"]
    deeper = draw_region(graph, "layer_0/query/MatMul", 2, tmp_path / "r2.png")
    assert {d["layer"] for _, d in deeper.nodes(data=True)} == {-2, -1, 0, 1, 2} and len(deeper) > len(g)


def test_draw_names_what_is_wrong(capsys, tf_bert_artifacts, tmp_path):
    code, _, err = run(capsys, "inspect", tf_bert_artifacts["bir"], "--draw", "layer_0/qurey/MatMul", "-o",
                       tmp_path / "r.png")
    assert_clean_error(code, err, "no op's location contains 'layer_0/qurey/MatMul'", "Did you mean",
                       "layer_0/query/MatMul")
    code, _, err = run(capsys, "inspect", tf_bert_artifacts["bir"], "--draw", "layer_0/query/MatMul")
    assert_clean_error(code, err, "--draw LOC and -o FILE.png go together")
    assert not (tmp_path / "r.png").exists()
