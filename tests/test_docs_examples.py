"""The example plugin that docs/writing-a-pass.md explains really works."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bertc.ir.interpreter import run_graph
from bertc.ir.parser import parse_graph
from bertc.pass_manager import PassManager, load_plugin, parse_pipeline

ROOT = Path(__file__).resolve().parent.parent

GRAPH = """\
func @main(%x: f32[batch,2,3]) -> (y) {
  %a = transpose %x {perm=[0, 2, 1]} : f32[batch,3,2] loc("t1")
  %b = transpose %a {perm=[1, 0, 2]} : f32[3,batch,2] loc("t2")
  %c = transpose %b {perm=[1, 0, 2]} : f32[batch,3,2] loc("t3")
  %d = transpose %c {perm=[0, 2, 1]} : f32[batch,2,3] loc("t4")
  %e = neg %b : f32[3,batch,2] loc("n")
  return y=%e
}
"""


def test_fold_transposes_and_scale_logits():
    load_plugin(ROOT / "examples" / "my_passes.py")
    g = parse_graph(GRAPH)
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    want = run_graph(g, {"x": x})["y"]
    PassManager(parse_pipeline("fold_transposes,dce")).run(g)
    assert g.histogram() == {"neg": 1, "transpose": 1}
    (t,) = g.ops_of("transpose")
    assert t.attrs["perm"] == [2, 0, 1] and t.loc.names == ("t1", "t2")
    np.testing.assert_array_equal(run_graph(g, {"x": x})["y"], want)
    PassManager(parse_pipeline("scale_logits{factor=0.5}")).run(g)
    np.testing.assert_array_equal(run_graph(g, {"x": x})["y"], want * 0.5)


def test_op_reference_is_current():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "gen_op_reference.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "docs" / "op-reference.md").read_text() == gen.render(), \
        "docs/op-reference.md is stale: run python docs/gen_op_reference.py"
