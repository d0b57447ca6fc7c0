"""The foreign-model corpus (examples/corpus/) through ``bertc compile --target all``.

Each model is compiled to ONNX and TFLite and verified against TF; a second
test compiles it again with ``prune_heads{ratio=0.5}, prune_neurons{ratio=0.5},
quant_int8`` (verified to the passes' declared bound and, exactly, to the
final IR).  Models that bertc does not handle yet are listed below with the
first line of their current error: the marks are strict, so fixing one makes
its test XPASS and fail, which is the signal to delete its line here.

The corpus is built once per session (one child process per model source, run
side by side) into a pytest temp dir.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.corpus import PASSES, compile_argv, summarize_error  # noqa: E402
from examples.corpus import build as corpus_build  # noqa: E402

# ------------------------------------------------------------------ what fails today
# model name -> the first error line of `bertc compile MODEL --target all` (edit as you fix).
XFAIL: dict[str, str] = {
}

# model name -> the first error line with --passes PASSES (models in XFAIL fail here too).
XFAIL_PASSES: dict[str, str] = {
    "hf_convbert": "prune_heads found no attention layer to prune: …: no scores matmul before softmax "
                   "(self-attention heads mixed with span-based convolution heads)",
    "hf_deberta": "prune_heads found no attention layer to prune: … following the heads: reshaping ['batch', "
                  "'seq', 192] to ['batch', 'seq', 4, 48] splits the 4 groups of axis 2 across axes (and as thirds "
                  "of a fused QKV projection) (relative embeddings sliced to a length computed at run time)",
    "hf_funnel": "prune_heads found no attention layer to prune: … following the heads: the dims after axis 1 "
                 "are not known (the relative-shift gather); … a slice that varies along the heads",
}

# Models with no attention to prune: their pipeline prunes neurons only.
NO_HEADS = {"kh_f_net": "F-Net mixes tokens with a Fourier transform: it has no attention heads"}

# What bertc must refuse, with one clear message: model name -> a fragment of it.
REFUSALS = {
    "while_loop_refusal": "control flow",
    # tf.signal.frame takes the gcd of a window and a step computed from the sequence length,
    # in a tf.while_loop the length decides
    "hf_longformer": "control flow the inputs decide",
}
# ----------------------------------------------------------------------------------

TOLERANCE = 1e-4
NAMES = {**corpus_build.all_names(), **corpus_build.plain_tf_names()}


def _marks(name: str, table: dict[str, str]) -> list:
    marks = [pytest.mark.slow]
    if NAMES[name] in ("hf", "keras_hub"):
        marks.append(pytest.mark.models)
    if name in table:
        marks.append(pytest.mark.xfail(strict=True, reason=table[name]))
    return marks


def _params(table: dict[str, str]) -> list:
    return [pytest.param(n, marks=_marks(n, table), id=n) for n in NAMES if n not in REFUSALS]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, dict]:
    result = corpus_build.build_corpus(tmp_path_factory.mktemp("corpus"))
    return {e["name"]: e for e in result["models"]}


def _entry(corpus: dict[str, dict], name: str) -> dict:
    if name not in corpus:
        pytest.skip(f"{name} was not built (its library is not installed, or examples/tf1_bert.py is missing)")
    entry = corpus[name]
    assert "build_error" not in entry, f"the builder failed: {entry['build_error']}"
    return entry


def _compile(capsys, entry: dict, out: Path, passes: str | None = None) -> tuple[int, str]:
    from bertc.cli import main

    code = main(compile_argv(entry, str(out), passes=passes))
    return code, capsys.readouterr().err


def _assert_compiled(code: int, err: str, out: Path, entry: dict) -> dict:
    assert code == 0, summarize_error(err)
    report = json.loads((out / "report.json").read_text())
    assert set(report["verification"]) == {"onnx", "tflite"}
    for kind, parity in report["verification"].items():
        assert parity["ok"], f"{kind}: {parity['failures']}"
        assert set(parity["outputs"]) == set(entry["outputs"]), kind
    return report


@pytest.mark.parametrize("name", _params(XFAIL))
def test_compiles_and_matches_tf(name, corpus, capsys, tmp_path):
    """Both artifacts are written and each output is within 1e-4 of TF on every verified input."""
    entry = _entry(corpus, name)
    code, err = _compile(capsys, entry, tmp_path)
    report = _assert_compiled(code, err, tmp_path, entry)
    for kind, parity in report["verification"].items():
        for out_name, o in parity["outputs"].items():
            assert o["max_abs_error"] <= TOLERANCE, f"{kind} {out_name}: {o['max_abs_error']}"


@pytest.mark.parametrize("name", _params({**XFAIL, **XFAIL_PASSES}))
def test_prune_and_quantize(name, corpus, capsys, tmp_path):
    """Heads and neurons are really removed, kernels become int8, and both artifacts verify."""
    entry = _entry(corpus, name)
    passes = "prune_neurons{ratio=0.5},quant_int8" if name in NO_HEADS else PASSES
    code, err = _compile(capsys, entry, tmp_path, passes=passes)
    report = _assert_compiled(code, err, tmp_path, entry)
    assert report["parameters"]["after"] < report["parameters"]["before"], report["parameters"]
    assert report["ops"]["final"].get("qmatmul", 0) > 0, report["ops"]["final"]
    assert report["verification_against_final_ir"], "artifacts were not held to the final IR"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refuses_with_one_clear_message(name, corpus, capsys, tmp_path):
    """A data-dependent loop or tf.cond cannot be compiled: exit 2, the reason, no traceback, nothing written."""
    entry = _entry(corpus, name)
    code, err = _compile(capsys, entry, tmp_path / "out")
    assert code == 2, err
    assert REFUSALS[name] in err
    assert "Traceback" not in err and "internal error" not in err
    assert err.count("bertc: error:") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_manifest_describes_every_model(corpus):
    """Every built model has a path that exists, its inputs and outputs; the manifest lists them all."""
    for name, entry in corpus.items():
        if "build_error" in entry:
            continue
        assert Path(entry["path"]).exists(), name
        assert entry["inputs"] and entry["outputs"], name
        assert all(spec["dtype"] == "int32" for spec in entry["inputs"].values()), name
    listed = json.loads((Path(next(iter(corpus.values()))["path"]).parent / "manifest.json").read_text())
    assert {e["name"] for e in listed} == set(corpus)
