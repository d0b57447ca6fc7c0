"""benchmarks/speed.py: its verdicts (best peer, bertc against it, static against dynamic) on
results made up to test each rule, and one real ``--quick`` run on a tiny model.

Nothing here times anything to a bound: the quick run only checks that every peer
converted, loaded and was timed, and that the report says what it compares."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", ROOT / "benchmarks" / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(runtime: str, ms16: float, ms128: float, pipeline: str | None = None, bound: bool = True) -> dict:
    r = {"runtime": runtime, "ms_seq16": ms16, "ms_seq128": ms128, "within_bound_seq16": bound,
         "within_bound_seq128": bound}
    if pipeline is not None:
        r["pipeline"] = pipeline
    return r


def made_up_results() -> dict:
    return {
        "tf": row("tf", 50, 150),
        "tf2onnx_int8": row("onnx", 10, 30),
        "tf2onnx_fp32": row("onnx", 25, 80),
        "tflite_converter_int8": row("tflite", 5, 19),
        "bertc_onnx_int8": row("onnx", 12, 28, "quant_int8"),
        "bertc_onnx_full_int8": row("onnx", 11, 27, "calibrate,quant_full"),
        "bertc_tflite_int8": row("tflite", 4.5, 18, "quant_int8"),
        "bertc_tflite_full_int8": row("tflite", 6, 20, "calibrate,quant_full"),
        # the fastest of all, but outside its declared bound at 128 tokens: never "best"
        "bertc_onnx_int8_w7": {**row("onnx", 3, 9, "quant_int8{weight_bits=7}"), "within_bound_seq128": False},
    }


def test_best_peer_per_length_and_runtime(speed):
    best = speed.best_peers(made_up_results(), [16, 128])
    assert best["seq16"] == {"variant": "tflite_converter_int8", "ms": 5}
    assert best["seq128_onnx"] == {"variant": "tf2onnx_int8", "ms": 30}
    assert best["seq128_tflite"]["variant"] == "tflite_converter_int8"


def test_verdicts(speed):
    results = made_up_results()
    checks = speed.checks(results, [16, 128], speed.best_peers(results, [16, 128]))
    d = checks["default_int8_vs_best_peer"]
    assert d["onnx_seq16"] == {"peer": "tf2onnx_int8", "speedup": round(10 / 12, 3), "met": False}
    assert d["onnx_seq128"]["met"] and d["tflite_seq16"]["met"] and d["tflite_seq128"]["met"]
    b = checks["best_bertc_vs_best_peer"]
    assert b["seq16"]["variant"] == "bertc_tflite_int8" and not b["seq16"]["met"]  # w7 is out of its bound
    assert b["seq16"]["speedup"] == round(5 / 4.5, 3)
    assert checks["not_within_bound"] == ["bertc_onnx_int8_w7"]
    s = checks["static_vs_dynamic"]
    assert s["onnx_seq16"]["static_faster"] and not s["tflite_seq16"]["static_faster"]
    assert checks["shorter_is_faster"]["tf"]


def test_a_bound_is_checked_per_length(speed):
    """check_accuracy holds each bertc variant to its pipeline's declared bound: an fp32 artifact
    0.5% off fails the exact check; an int8 one within 30% of the range and cosine 0.95 passes."""
    import numpy as np

    class Session:
        def __init__(self, scale: float) -> None:
            self.scale, self.input_names = scale, ["input_ids", "attention_mask", "token_type_ids"]

        def run(self, feeds):
            ids = feeds["input_ids"].astype(np.float32)
            return {"logits": np.stack([ids.mean(1), ids.std(1)], 1) * self.scale}

    sessions = {"tf": Session(1.0), "bertc_onnx_fp32": Session(1.005), "bertc_onnx_int8": Session(1.01)}
    results = {"tf": {}, "bertc_onnx_fp32": {"pipeline": ""}, "bertc_onnx_int8": {"pipeline": "quant_int8"}}
    speed.check_accuracy(sessions, results, 16, vocab=100)
    assert results["bertc_onnx_fp32"]["within_bound_seq16"] is False
    assert results["bertc_onnx_int8"]["within_bound_seq16"] is True
    assert results["bertc_onnx_fp32"]["max_abs_err_seq16"] > 0


@pytest.mark.slow
def test_quick_run_has_every_peer(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--cache", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["unexpected_peer_failures"] == {} and report["machine"]["kind"] in ("avx2", "vnni", "amx", "other")
    for peer in ("tf2onnx_fp32", "tf2onnx_int8", "tf2onnx_static_int8", "tflite_converter_fp32",
                 "tflite_converter_int8"):
        assert "ms_seq16" in report["results"][peer], (peer, report["results"][peer])
    assert set(report["checks"]) >= {"default_int8_vs_best_peer", "best_bertc_vs_best_peer", "static_vs_dynamic"}
    assert all(r["within_bound_seq16"] for n, r in report["results"].items() if n.startswith("bertc_"))
