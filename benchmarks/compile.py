"""Compile time and peak memory: bertc against tf2onnx and the TFLite converter, one run.

    python benchmarks/compile.py [--size base|tiny] [--skip-peers] [--work DIR]

Builds a BERT classifier with examples/bert_tf.py (BERT-base by default: 12
layers, hidden 768; new axes by ``tf.expand_dims``, which the TFLite converter converts), then times each converter in its own child process and
reads that child's peak RSS.  Prints JSON: wall seconds and peak RSS (GB) per
tool, and the ratios of bertc's figures to each peer's.  bertc's compile
includes its verification against TF; the peers' runs verify nothing.

``dump_ir`` is what ``bertc compile --dump-ir DIR`` writes for the same model
with ``prune_heads{ratio=0.25},quant_int8``: the bytes in DIR against the size
of the model's weights (each weight is stored once, however many passes dump it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TFLITE_CONVERT = """
import sys, tensorflow as tf
conv = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
open(sys.argv[2], "wb").write(conv.convert())
"""


def run_child(cmd: list[str], timeout: float = 1800) -> dict:
    """Wall time and peak RSS of one child process (wait4's rusage is per child)."""
    t0 = time.perf_counter()
    # stderr goes to a file: a converter that prints more than a pipe holds would block forever
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            raise
        wall = time.perf_counter() - t0
        log.seek(0)
        err = log.read()
    code = os.waitstatus_to_exitcode(status)
    return {"ok": code == 0, "seconds": round(wall, 2), "peak_rss_gb": round(usage.ru_maxrss / 1024 ** 2, 2),
            **({} if code == 0 else {"error": first_error(err) or f"exit {code}"})}


def first_error(stderr: str) -> str:
    """The first line that says what went wrong, without MLIR location noise."""
    import re

    for line in stderr.splitlines():
        if "error:" in line.lower() or "Error" in line:
            line = re.sub(r"loc\(.*?\)\s*:?", "", line).strip()
            return line[:300]
    return stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["base", "tiny"], default="base")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--work", help="working directory (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bertc-bench-compile-"))
    model = work / "saved_model"
    if not model.exists():
        sizes = ["--layers", "12", "--hidden", "768", "--heads", "12", "--ffn", "3072", "--vocab", "30522",
                 "--max-positions", "512"] if args.size == "base" else []
        # new axes by tf.expand_dims: the TFLite converter leaves the [:, None] form to Flex
        subprocess.run([sys.executable, str(ROOT / "examples" / "bert_tf.py"), str(model), *sizes,
                        "--new-axes", "expand_dims"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bertc = [sys.executable, "-m", "bertc.cli", "compile", str(model), "-o"]
    results = {
        "bertc --target onnx": run_child(bertc + [str(work / "onnx"), "--target", "onnx"]),
        "bertc --target tflite": run_child(bertc + [str(work / "tflite"), "--target", "tflite"]),
        "bertc --target all": run_child(bertc + [str(work / "all"), "--target", "all"]),
    }
    dump = work / "dump_ir"
    results["bertc --dump-ir"] = run_child(bertc + [str(work / "dumped"), "--target", "onnx", "--no-verify",
                                                    "--passes", "prune_heads{ratio=0.25},quant_int8",
                                                    "--dump-ir", str(dump)])
    if not args.skip_peers:
        results["tf2onnx 1.17 (opset 17)"] = run_child(
            [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(model), "--opset", "17",
             "--output", str(work / "tf2onnx.onnx")])
        results["TFLiteConverter (builtins)"] = run_child(
            [sys.executable, "-c", TFLITE_CONVERT, str(model), str(work / "converter.tflite")])
    ratios = {}
    for ours, peer in (("bertc --target onnx", "tf2onnx 1.17 (opset 17)"),
                       ("bertc --target tflite", "TFLiteConverter (builtins)")):
        if peer in results and results[peer]["ok"] and results[ours]["ok"]:
            ratios[f"{ours} / {peer}"] = {
                "time": round(results[ours]["seconds"] / results[peer]["seconds"], 2),
                "memory": round(results[ours]["peak_rss_gb"] / results[peer]["peak_rss_gb"], 2)}
    print(json.dumps({"model": args.size, "cpus": os.cpu_count(), "results": results, "ratios": ratios,
                      "dump_ir": dump_size(dump, model)}, indent=2))


def dump_size(dump: Path, model: Path) -> dict:
    """Bytes --dump-ir wrote, the model's weight bytes (its variables), and their ratio."""
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0

    written, weights = size(dump), size(model / "variables")
    return {"files": sum(1 for p in dump.rglob("*") if p.is_file()) if dump.exists() else 0,
            "bytes_written": written, "model_weight_bytes": weights,
            "ratio": round(written / weights, 3) if weights else None}


if __name__ == "__main__":
    main()
