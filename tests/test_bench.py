"""`bertc bench`: every backend side by side, well-formed reports, and clean errors for bad input."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from bertc.cli import main
from bertc.runtime import bench

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compiled(tf_bert_dir, tmp_path_factory):
    """The tiny model's ONNX and TFLite artifacts (a `bertc compile` output directory)."""
    out = tmp_path_factory.mktemp("compiled")
    assert main(["compile", str(tf_bert_dir), "--target", "all", "--no-verify", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def benched(tf_bert_dir, compiled, tmp_path_factory):
    """One bench run over the SavedModel and its compile output: (exit code, out dir, stdout)."""
    out = tmp_path_factory.mktemp("bench")
    accuracy = out / "accuracy.json"
    accuracy.write_text(json.dumps({"model.onnx": 0.75, f"{compiled.name}/model.tflite": {"macro_f1": 0.5}}))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bench", str(tf_bert_dir), str(compiled), "--seq", "8", "--batch", "1,2", "--runs", "3",
                     "--warmup", "1", "--threads", "1", "-o", str(out), "--accuracy", str(accuracy)])
    return code, out, stdout.getvalue()


def test_bench_reports_every_backend(benched, compiled, tf_bert_dir):
    code, out, _ = benched
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    arts = {a["backend"]: a for a in report["artifacts"]}
    assert set(arts) == {"tf", "onnx", "tflite"}
    assert report["settings"]["seq"] == [8] and report["settings"]["batch"] == [1, 2]
    assert arts["onnx"]["size_bytes"] == (compiled / "model.onnx").stat().st_size
    assert arts["tflite"]["size_bytes"] == (compiled / "model.tflite").stat().st_size
    assert arts["tf"]["size_bytes"] > (tf_bert_dir / "saved_model.pb").stat().st_size  # the variables count too
    for a in arts.values():
        results = {r["batch"]: r for r in a["results"]}
        assert set(results) == {1, 2}, a["results"]
        for r in results.values():
            assert r["runs"] == 3
            assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] < 10_000
            assert r["throughput_seq_s"] == pytest.approx(r["batch"] * 1e3 / r["p50_ms"], rel=1e-3)
        m = a["memory"]
        assert "error" not in m, m
        assert 0 < m["runtime_rss_mb"] <= m["peak_rss_mb"] < 64_000
        assert 0 < m["load_s"] < 120


def test_bench_shows_accuracy_and_cpu(benched):
    _, out, stdout = benched
    report = json.loads((out / "bench.json").read_text())
    by_backend = {a["backend"]: a["accuracy"] for a in report["artifacts"]}
    assert by_backend == {"tf": None, "onnx": 0.75, "tflite": 0.5}
    cpu = report["cpu"]
    assert isinstance(cpu["avx512_vnni"], bool) and isinstance(cpu["avx_vnni"], bool)
    md = (out / "bench.md").read_text()
    assert md == stdout
    assert "AVX-512 VNNI" in md and "| artifact | backend |" in md
    assert "## Latency at batch 1" in md and "seq 8 × 2" in md
    for a in report["artifacts"]:
        assert f"| {a['label']} |" in md
    assert "0.7500" in md


def test_bench_png_is_a_readable_image(benched):
    _, out, _ = benched
    data = (out / "bench.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE
    import matplotlib.image

    image = matplotlib.image.imread(out / "bench.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.parametrize("argv, message", [
    (["does/not/exist.onnx"], "no such file or directory"),
    (["{tmp}/weights.bin"], "bench runs .onnx and .tflite files"),
    (["{tmp}"], "has no saved_model.pb, model.onnx or model.tflite"),
    (["{tmp}/weights.bin", "--seq", "8,x"], "--seq '8,x'"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, message):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    code = main(["bench", *[a.replace("{tmp}", str(tmp_path)) for a in argv], "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


class FakeSession:
    """Records the order it is run in; fails on sequences longer than ``max_seq``."""

    input_names = ["input_ids", "attention_mask"]
    input_dtypes = ["int32", "int32"]
    output_names = ["logits"]

    def __init__(self, name: str, log: list[str], max_seq: int = 1 << 30) -> None:
        self.name, self.log, self.max_seq = name, log, max_seq

    def run(self, feeds):
        if feeds["input_ids"].shape[1] > self.max_seq:
            raise ValueError("Graph execution error:\n\nindices[0,9] = 9 is not in [0, 8)")
        self.log.append(self.name)
        return {"logits": np.zeros((feeds["input_ids"].shape[0], 2), np.float32)}


def test_runs_are_interleaved_round_robin_and_failures_kept_apart(tmp_path):
    calls: list[str] = []
    arts = [bench.Artifact(n, tmp_path / n, "onnx", 1) for n in "abc"]
    sessions = [FakeSession("a", calls), FakeSession("b", calls, max_seq=8), FakeSession("c", calls)]
    bench.time_case(arts, sessions, seq=16, batch=1, runs=3, warmup=0, vocab=100, advance=lambda: None)
    timed = calls[2:]  # one warm-up run each for a and c
    assert timed == ["a", "c", "c", "a", "a", "c"]
    assert arts[1].results == [{"seq": 16, "batch": 1,
                                "error": "Graph execution error: indices[0,9] = 9 is not in [0, 8)"}]
    assert arts[0].results[0]["runs"] == 3 and arts[2].results[0]["runs"] == 3


def test_brief_keeps_the_head_and_the_tail_of_long_errors():
    text = bench.brief(RuntimeError("head " + "x" * 1000 + " the reason"))
    assert text.startswith("head ") and text.endswith(" the reason") and len(text) < 260


def test_cpu_info_and_markdown_warn_without_vnni():
    cpu = {"model": "Test CPU", "cores": 2, "avx512_vnni": False, "avx_vnni": False, "int8_dot": False,
           "note": "no VNNI: int8 artifacts are unlikely to beat float32"}
    report = {"cpu": cpu, "settings": {"seq": [8], "batch": [1], "runs": 1, "warmup": 0, "threads": 1, "vocab": 100},
              "artifacts": []}
    from bertc.runtime.bench_report import markdown

    md = markdown(report)
    assert "AVX-512 VNNI: no, AVX-VNNI: no" in md and "**Warning:** no VNNI" in md
    real = bench.cpu_info()
    assert real["cores"] >= 1 and {"avx512_vnni", "avx_vnni", "int8_dot"} <= set(real)
