"""Where an artifact's time goes, by op type: onnxruntime's profiler for .onnx; for .tflite
(LiteRT's Python API has no op profiler) the wall time and the op mix.  Batch 1.

    python benchmarks/profile_ops.py ARTIFACT [ARTIFACT ...] [--seq 16,128] [--runs 20] [--threads 2]

Prints JSON: per artifact and length, the median wall time of a run and each op type's share
of the summed op time (onnxruntime: kernel time of each node; LiteRT: per-op invoke time), with
for ONNX the int8 matmul kernels' time and what they reach of this CPU's int8 peak estimate
(benchmarks/speed.py's roofline).  Feeds are random ids of the given length, as in speed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import encoder_flops, machine_info, make_feeds  # noqa: E402

INT8_MATMULS = {"DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "QLinearMatMul"}


def profile_onnx(path: Path, seq: int, runs: int, threads: int, vocab: int) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = make_feeds(seq, vocab)
    names = {i.name: i for i in sess.get_inputs()}
    dtype = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}
    f = {n: next(v for k, v in feeds.items() if k in n).astype(dtype.get(i.type, np.int32)) for n, i in names.items()}
    for _ in range(3):
        sess.run(None, f)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, f)
        walls.append(time.perf_counter() - t0)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    by_type: dict[str, float] = defaultdict(float)
    for ev in trace:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            by_type[ev["args"]["op_name"]] += ev["dur"]
    return _summary(by_type, walls, runs + 3)


def profile_tflite(path: Path, seq: int, runs: int, threads: int, vocab: int) -> dict:
    """The median wall time and the count of each op type (LiteRT's Python API times no single op)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    feeds = make_feeds(seq, vocab)
    for d in interp.get_input_details():
        interp.resize_tensor_input(d["index"], [1, seq])
    interp.allocate_tensors()
    for d in interp.get_input_details():
        key = next(k for k in feeds if k in d["name"])
        interp.set_tensor(d["index"], feeds[key].astype(d["dtype"]))
    for _ in range(3):
        interp.invoke()
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        walls.append(time.perf_counter() - t0)
    counts: dict[str, int] = defaultdict(int)
    for op in interp._get_ops_details():
        counts[op["op_name"]] += 1
    return {"ms": round(float(np.median(walls)) * 1e3, 3), "op_counts": dict(sorted(counts.items()))}


def _summary(by_type: dict[str, float], walls: list[float], calls: int) -> dict:
    total = sum(by_type.values()) or 1.0
    shares = {k: round(v / total, 4) for k, v in sorted(by_type.items(), key=lambda kv: -kv[1])}
    int8_us = sum(v for k, v in by_type.items() if k in INT8_MATMULS) / calls
    return {"ms": round(float(np.median(walls)) * 1e3, 3), "op_ms_per_run": round(total / calls / 1e3, 3),
            "share": shares, "int8_matmul_ms_per_run": round(int8_us / 1e3, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--seq", default="16,128")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--quick-model", action="store_true", help="FLOPs of the tiny --quick model, not BERT-base")
    args = ap.parse_args(argv)
    machine = machine_info(args.threads)
    peak = machine["roofline"].get("int8_peak_gops")
    out: dict = {"machine": machine, "threads": args.threads, "runs": args.runs, "artifacts": {}}
    for a in args.artifacts:
        path = Path(a)
        for seq in (int(s) for s in args.seq.split(",")):
            fn = profile_onnx if path.suffix == ".onnx" else profile_tflite
            r = fn(path, seq, args.runs, args.threads, args.vocab)
            # the encoder's dense layers (not attention's two activation matmuls) are the int8 work
            dense = encoder_flops(seq, args.quick_model) - _attention_flops(seq, args.quick_model)
            if r.get("int8_matmul_ms_per_run"):
                gops = dense / (r["int8_matmul_ms_per_run"] * 1e-3) / 1e9
                r["int8_matmul_gops"] = round(gops, 1)
                if peak:
                    r["int8_matmul_fraction_of_peak"] = round(gops / peak, 4)
            out["artifacts"].setdefault(str(path), {})[f"seq{seq}"] = r
    print(json.dumps(out, indent=2))
    return 0


def _attention_flops(seq: int, quick: bool) -> int:
    layers, hidden = (2, 64) if quick else (12, 768)
    return layers * 2 * 2 * seq * seq * hidden


if __name__ == "__main__":
    sys.exit(main())
