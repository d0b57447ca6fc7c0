"""Gradient rules of the indexing ops (compiler/analysis/autodiff_index.py) against finite differences.

Each case is -x -> op -> sum(op * W) with -x tapped (scaled elementwise), in
float64; the rule's gradient of the tap's scale must match a central
difference to 1e-6, and must not be vacuous.
"""

from __future__ import annotations

import numpy as np
import pytest

from bertc.analysis.autodiff import forward, tap_gradients
from bertc.ir import Graph, TensorType

RNG = np.random.default_rng(5)
X = RNG.standard_normal((3, 4))
ROWS = np.array([[2, 1], [0, 3], [2, 1]], np.int64)  # a repeat: gradients add up
CELLS = np.array([[1], [0], [1]], np.int64)


def _case(kind: str, operands, attrs) -> tuple[Graph, object]:
    g = Graph()
    x = g.add("neg", [g.add_input("x", TensorType("f64", X.shape))]).result  # taps scale op results
    args = [x if a is None else g.const(np.asarray(a), f"c{i}") for i, a in enumerate(operands)]
    y = g.add(kind, args, attrs).result
    w = g.const(RNG.standard_normal(tuple(int(d) for d in y.shape)), "w")
    g.outputs["loss"] = g.add("reduce_sum", [g.add("mul", [y, w]).result], {"axes": list(range(y.type.rank))}).result
    return g, x


CASES = {
    "gather_nd": ("gather_nd", [None, ROWS], {}),
    "scatter_nd": ("scatter_nd", [CELLS, None], {"shape": [2, 4]}),
    "scatter_nd_add": ("scatter_nd_add", [None, CELLS, X[:3] * 0 + 1.5], {}),
    "scatter_nd_update": ("scatter_nd_update", [None, np.array([[1]], np.int64), np.ones((1, 4))], {}),
    "pad": ("pad", [None], {"pads": [1, 0, 2, 1]}),
    "tile": ("tile", [None], {"repeats": [2, 3]}),
    "reduce_max": ("reduce_max", [None], {"axes": [1], "keepdims": False}),
    "reduce_min": ("reduce_min", [None], {"axes": [0], "keepdims": True}),
    "floor": ("floor", [None], {}),
    "mod": ("mod", [None, np.array(0.7)], {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule_matches_finite_differences(name):
    kind, operands, attrs = CASES[name]
    g, x = _case(kind, operands, attrs)
    feeds = {"x": X}
    scale = np.ones(X.shape)

    def loss(outputs):
        return float(outputs["loss"]), {"loss": np.float64(1.0)}

    _, _, grads = tap_gradients(g, feeds, {x: scale}, loss)
    eps = 1e-6
    fd = np.zeros(X.shape)
    for idx in np.ndindex(X.shape):
        hi, lo = scale.copy(), scale.copy()
        hi[idx] += eps
        lo[idx] -= eps
        f = [float(forward(g, feeds, {x: s}, keep=False).outputs["loss"]) for s in (hi, lo)]
        fd[idx] = (f[0] - f[1]) / (2 * eps)
    np.testing.assert_allclose(grads[x], fd, rtol=1e-6, atol=1e-7)
    if kind != "floor":  # floor's gradient is zero almost everywhere: the rule must say so
        assert np.abs(fd).max() > 1e-3
