"""Post-pruning least-squares reconstruction (``reconstruct=true`` on prune_heads / prune_neurons).

The oracle is the unpruned model itself: each sublayer's residual sum (attention
output projection or FFN down projection, bias included, plus the residual:
what the layer norm then reads, and what the refit aims at) of the pruned model
is compared with the unpruned model's over the real tokens of the calibration
data, with and without reconstruction, on the three model sources (the einsum
kernels of keras-hub are refit through their own layout).
"""

from __future__ import annotations

import numpy as np
import pytest

from bertc.analysis.reconstruct import _Sums, fit_projection
from bertc.analysis.structure import analyze_structure
from bertc.ir import Graph
from bertc.ir.interpreter import run_graph
from bertc.ir.verifier import verify
from bertc.pass_manager import PassContext, PassManager, parse_pipeline
from bertc.runtime.calib import random_calibration
from bertc.runtime.inputs import input_role, random_graph_inputs

DROP_HEADS = {0: [1, 3], 1: [0, 2, 3]}  # keep 2 and 1 of the tiny models' 4 heads
HEADS = 4
KEEP_NEURONS = "0:" + ",".join(map(str, range(0, 128, 3))) + ";1:" + ",".join(map(str, range(64, 128)))


def keep_heads() -> str:
    return ";".join(f"{layer}:{','.join(str(h) for h in range(HEADS) if h not in hs)}" for layer, hs in DROP_HEADS.items())


def pipeline(reconstruct: bool) -> str:
    rc = ",reconstruct=true" if reconstruct else ""
    return f'prune_heads{{keep="{keep_heads()}"{rc}}},prune_neurons{{keep="{KEEP_NEURONS}"{rc}}}'


def run_pipeline(graph: Graph, text: str, calib) -> dict:
    ctx = PassContext(calib=calib)
    PassManager(parse_pipeline(text)).run(graph, ctx)  # verifies the graph after each pass
    return ctx.report


def sublayer_outputs(graph: Graph, calib) -> dict[tuple[int, str], np.ndarray]:
    """Every sublayer's residual sum (projection output + residual) over real tokens, stacked over batches."""
    values = {}
    for layer in analyze_structure(graph).layers:
        for kind, proj in (("attention", layer.attention.o), ("ffn", layer.ffn.down)):
            [add] = proj.out.users
            assert add.kind == "add"
            values[(layer.index, kind)] = add.result
    by_id = {id(v): k for k, v in values.items()}
    out: dict[tuple[int, str], list[np.ndarray]] = {k: [] for k in values}
    mask_name = next(v.name for v in graph.inputs if input_role(v.name) == "mask")
    for feeds in calib.batches(8):
        mask = (feeds[mask_name] > 0).reshape(-1)

        def observe(v, a, mask=mask):
            if id(v) in by_id:  # [batch, seq, hidden] or [batch*seq, hidden]
                out[by_id[id(v)]].append(a.reshape(len(mask), -1)[mask])

        run_graph(graph, feeds, observe=observe)
    return {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}


def errors(pruned: Graph, reference: dict, calib) -> dict[tuple[int, str], float]:
    got = sublayer_outputs(pruned, calib)
    return {k: float(((got[k] - reference[k]) ** 2).sum()) for k in reference}


def test_reconstruction_reduces_sublayer_errors(any_bert):
    """Each sublayer where units were removed ends closer to the unpruned model, and so do the logits.

    Measured, not assumed: the later sublayers' inputs differ between the two pruned
    models, so nothing guarantees it but the fit working.  The logits are also compared
    on fresh random inputs the fit never saw.
    """
    calib = random_calibration(any_bert.graph(), n=40, seq=12)
    original = any_bert.graph()
    reference = sublayer_outputs(original, calib)
    plain, fitted = any_bert.graph(), any_bert.graph()
    run_pipeline(plain, pipeline(False), calib)
    report = run_pipeline(fitted, pipeline(True), calib)
    before, after = errors(plain, reference, calib), errors(fitted, reference, calib)
    for key in reference:  # heads were removed in both attention sublayers, neurons in both FFNs
        assert after[key] < 0.9 * before[key], (key, before[key], after[key])
    for name in ("prune_heads", "prune_neurons"):
        fits = report[name]["reconstruction"]["sublayers"]
        assert len(fits) == 4 and any(f["applied"] for f in fits)
        for f in fits:  # the held-out error never grows: a fit that does not help is dropped
            assert f["error_after"] <= f["error_before"]
            assert f["applied"] == (f["error_after"] < f["error_before"])
    feeds = random_graph_inputs(original, 16, 12, seed=7)
    name = next(iter(original.outputs))
    want = run_graph(original, feeds)[name]
    drift_plain = np.abs(run_graph(plain, feeds)[name] - want).mean()
    drift_fitted = np.abs(run_graph(fitted, feeds)[name] - want).mean()
    assert drift_fitted < drift_plain, (drift_plain, drift_fitted)


def test_reconstructed_model_verifies_and_runs_on_onnx(any_bert):
    from bertc.runtime.onnx_session import OnnxSession
    from bertc.targets.base import get_target

    graph = any_bert.graph()
    report = run_pipeline(graph, pipeline(True), random_calibration(graph, n=16, seq=10))
    assert any(f["applied"] for f in report["prune_heads"]["reconstruction"]["sublayers"])
    verify(graph)
    target = get_target("onnx")
    assert not target.unsupported(graph)
    session = OnnxSession(target.lower(graph))
    for batch, seq in ((1, 6), (3, 11)):
        feeds = random_graph_inputs(graph, batch, seq, seed=batch + seq)
        want, got = run_graph(graph, feeds), session.run(feeds)
        for name in want:  # fp32 on both sides, only the summation order differs: 1e-4 on outputs of order 1
            assert np.abs(got[name] - want[name]).max() <= 1e-4, name


def test_fit_recovers_a_linear_map_and_falls_back_when_it_cannot_help():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6))
    w_true, b_true = rng.standard_normal((6, 3)), rng.standard_normal(3)
    y = x @ w_true + b_true
    held = np.arange(500) % 5 == 4
    sums = _Sums(6, 3, bias=True)
    sums.add(x, y, held)
    w0 = np.zeros((7, 3))
    w, before, after, _ = fit_projection(sums, w0, 6)
    # the smallest ridge (1e-4 of the mean diagonal, ~1) shrinks towards w0 by ~1e-4 relative
    assert np.allclose(w[:6], w_true, atol=1e-3) and np.allclose(w[6], b_true, atol=1e-3)
    assert after < 1e-6 < before
    exact = np.concatenate([w_true, b_true[None]])
    w, before, after, _ = fit_projection(sums, exact, 6)  # already optimal: nothing to gain
    assert w is None and after == before
