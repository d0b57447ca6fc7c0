"""The pass manager, pipelines, plugins, and each first pass checked by the numbers."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from bertc.diagnostics import BertcError
from bertc.ir import Graph, Loc, TensorType
from bertc.ir.interpreter import run_graph
from bertc.ir.printer import print_graph
from bertc.ir.serialize import load
from bertc.pass_manager import PassFailed, PassManager, load_plugin, parse_pipeline, split_pipeline
from bertc.runtime.inputs import random_graph_inputs


def test_split_pipeline_honours_braces_and_quotes():
    assert split_pipeline('a,b{x=1,y=2},c') == [("a", ""), ("b", "x=1,y=2"), ("c", "")]
    passes = parse_pipeline("fold_constants, cse ,dce")
    assert [p.name for p in passes] == ["fold_constants", "cse", "dce"]


@pytest.mark.parametrize("text,needle", [
    ("fold_constant", "Did you mean 'fold_constants'"),
    ("cse{x=1}", "has no option 'x'"),
    ("cse{", "unclosed"),
    ("cse}", "unmatched"),
])
def test_bad_pipelines_say_what_exists(text, needle):
    with pytest.raises(BertcError) as e:
        parse_pipeline(text)
    assert needle in str(e.value)


def test_every_pass_preserves_numerics_on_real_models(any_bert):
    """Each canonical pass, re-run on its own, keeps the model's outputs (reference interpreter)."""
    graph = any_bert.graph()
    feeds = random_graph_inputs(graph, 2, 6)
    before = run_graph(graph, feeds)
    for name in ("remove_identity", "fold_constants", "simplify_shapes", "cse", "fuse_layer_norm", "fuse_gelu",
                 "fuse_softmax", "dce"):
        PassManager(parse_pipeline(name)).run(graph)
        after = run_graph(graph, feeds)
        for k in before:
            np.testing.assert_allclose(after[k], before[k], atol=1e-6, err_msg=name)


def test_canonical_pipeline_is_a_fixed_point(tf_bert):
    from bertc.frontend.tf import CANONICALIZE

    graph = tf_bert.graph()
    text = print_graph(graph)
    records = PassManager(parse_pipeline(CANONICALIZE)).run(graph)
    assert print_graph(graph) == text
    assert not any(r.changed for r in records)


def test_dump_ir_writes_numbered_reloadable_files(tf_bert, tmp_path):
    graph = tf_bert.graph()
    pm = PassManager(parse_pipeline("fold_constants,cse,dce"), dump_dir=tmp_path)
    pm.run(graph)
    names = sorted(p.name for p in tmp_path.glob("*.bir"))
    assert names == ["00_import.bir", "01_fold_constants.bir", "02_cse.bir", "03_dce.bir"]
    reloaded = load(tmp_path / "03_dce.bir")
    feeds = random_graph_inputs(graph, 1, 4)
    np.testing.assert_array_equal(run_graph(reloaded, feeds)["logits"], run_graph(graph, feeds)["logits"])
    assert [r.name for r in pm.records] == ["fold_constants", "cse", "dce"]
    assert all(r.seconds >= 0 for r in pm.records)


ELEVEN = ("fold_constants,remove_identity,simplify_shapes,cse,fuse_layer_norm,fuse_gelu,fuse_softmax,dce,"
          "prune_heads{ratio=0.25},quant_int8,dce")


def test_dump_ir_writes_each_weight_once_and_every_dump_reloads(tf_bert, tmp_path):
    """Twelve dumps write less than two copies of the weights (prune_heads' smaller matrices and
    quant_int8's int8 copies once each; the IR text is not counted), and each .bir reloads through
    `bertc opt`'s loader to the outputs of the IR it dumped."""
    from bertc.commands import load_ir

    graph = tf_bert.graph()
    weight_bytes = graph.num_parameters()[1]
    feeds = random_graph_inputs(graph, 2, 8)
    pm = PassManager(parse_pipeline(ELEVEN), dump_dir=tmp_path)
    assert len(pm.passes) == 11
    want: dict[str, dict] = {}
    dump = pm.dump

    def dump_and_run(g, label):
        path = dump(g, label)
        want[path.name] = run_graph(g, feeds)
        return path

    pm.dump = dump_and_run
    pm.run(graph)
    assert len(want) == 12  # the import and each pass
    written = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file() and f.suffix != ".bir")
    assert written < 2 * weight_bytes, (written, weight_bytes)
    for name, outputs in want.items():
        got = run_graph(load_ir(tmp_path / name), feeds)
        for key, value in outputs.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{name}: {key}")


def test_a_dump_without_its_store_says_so(tf_bert, tmp_path):
    import shutil

    from bertc.commands import load_ir

    PassManager(parse_pipeline("cse"), dump_dir=tmp_path).run(tf_bert.graph())
    shutil.rmtree(tmp_path / "weights")
    with pytest.raises(BertcError, match="weights folder beside the dumps"):
        load_ir(tmp_path / "01_cse.bir")


PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass
    from bertc.pass_manager import Pass, register_pass

    @register_pass
    @dataclass(frozen=True)
    class BreakTypes(Pass):
        """Corrupt the first matmul's result type (to test the verifier)."""
        name = "break_types"
        factor: int = 2

        def run(self, graph, ctx):
            from bertc.ir.types import TensorType
            op = graph.ops_of("matmul")[0]
            op.result.type = TensorType("f32", (self.factor,))
            return True
''')


def test_plugin_pass_failure_names_pass_op_location_and_history(tf_bert, tmp_path):
    plugin = tmp_path / "my_passes.py"
    plugin.write_text(PLUGIN)
    assert "break_types" in load_plugin(plugin)
    passes = parse_pipeline("cse,break_types{factor=3}")
    assert passes[1].factor == 3
    with pytest.raises(PassFailed) as e:
        PassManager(passes).run(tf_bert.graph())
    msg = str(e.value)
    assert "pass 'break_types{factor=3}' (#2 of 2; ran before it: cse)" in msg
    assert "at matmul loc(" in msg and "is typed f32[3]" in msg


def test_bad_option_value_is_reported(tmp_path):
    plugin = tmp_path / "p2.py"
    plugin.write_text(PLUGIN.replace("break_types", "break_types2").replace("BreakTypes", "BreakTypes2"))
    load_plugin(plugin)
    with pytest.raises(BertcError, match="should be int"):
        parse_pipeline("break_types2{factor=many}")


def _graph_with_dead_and_duplicate_ops() -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 4)))
    c1 = g.const(np.float32(2.0), "two")
    c2 = g.const(np.float32(2.0), "two_again")
    a = g.add("mul", [x, c1], loc=Loc.of("a")).result
    b = g.add("mul", [x, c2], loc=Loc.of("b")).result
    g.add("exp", [a], loc=Loc.of("dead"))
    g.outputs["y"] = g.add("add", [a, b], loc=Loc.of("sum")).result
    return g


def test_cse_then_dce_on_a_small_graph():
    g = _graph_with_dead_and_duplicate_ops()
    x = np.arange(8, dtype=np.float32).reshape(2, 4) - 3
    before = run_graph(g, {"x": x})["y"]
    PassManager(parse_pipeline("cse,dce")).run(g)
    assert g.histogram() == {"add": 1, "const": 1, "mul": 1}
    np.testing.assert_array_equal(run_graph(g, {"x": x})["y"], before)


def test_fold_constants_keeps_scalars_scalar():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (3,)))
    v = g.const(np.array([2, 3, 4], np.int32), "v")
    p = g.add("reduce_prod", [v], {"axes": [0], "keepdims": False}).result
    f = g.add("cast", [p], {"to": "f32"}).result
    g.outputs["y"] = g.add("mul", [x, f]).result
    PassManager(parse_pipeline("fold_constants")).run(g)
    (c,) = [op for op in g.ops if op.kind == "const"]
    assert c.attrs["value"].shape == () and float(c.attrs["value"]) == 24.0


def test_fold_constants_keeps_large_palettized_weights():
    """A gather of a codebook by u8-derived indices is not folded back when it would grow the model."""
    g = Graph()
    x = g.add_input("x", TensorType("f32", ("batch", 512)))
    idx = g.const(np.random.default_rng(0).integers(0, 16, (512, 512)).astype(np.uint8), "w_idx")
    book = g.const(np.linspace(-1, 1, 16, dtype=np.float32), "w_codebook")
    wide = g.add("cast", [idx], {"to": "i32"}).result
    w = g.add("gather", [book, wide], {"axis": 0}).result
    g.outputs["y"] = g.add("matmul", [x, w]).result
    PassManager(parse_pipeline("fold_constants")).run(g)
    assert g.histogram()["gather"] == 1  # 262,144 i32/f32 would take 4x the bytes of the u8 indices


def test_presets_expand():
    assert [p.name for p in parse_pipeline("ort_fusions,dce")] == ["fuse_skip_layer_norm", "fuse_bias_gelu", "dce"]
