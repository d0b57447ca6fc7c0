"""How quant_full's static int8 form runs on onnxruntime, on a BERT-base-wide encoder.

The model: examples/bert_tf.py with hidden 768, 12 heads, FFN 3072 (BERT-base's
layer) and ``--layers`` layers (default 2), random weights, imported by bertc
and calibrated on random token ids (``calibrate``, minmax).  Variants, all at
ORT_ENABLE_ALL, batch 1, seq 128, ``--threads`` intra-op threads:

  fp32                          bertc's float ONNX
  quant_int8                    DynamicQuantizeMatMul (the dynamic, weight-only form)
  quant_full … QDQ              QuantizeLinear/DequantizeLinear + MatMul + Add left for
                                onnxruntime's own QDQ fusions
  quant_full … MatMulIntegerToFloat (bertc)
                                what bertc emits: the pattern lowered explicitly to
                                com.microsoft MatMulIntegerToFloat with the bias folded,
                                u8 activations x u8 (shifted) weights: exact
  quant_full … u8 x s8          the same with s8 weights: AVX2's fast path, whose int16
                                pair sums saturate (inexact)

each with outputs=true (the %yq/%yd pair after every dense layer) and outputs=false.
Per variant: median and 25-75% latency in ms (runs interleaved round robin, so
load on a shared machine hits all alike), the optimized graph's op histogram
(which kernels actually run), the logits' error vs fp32 and, for quant_full, vs
the reference interpreter on the same IR (max |diff| / max |IR|).

    python benchmarks/quant_full.py [--layers 2] [--reps 20] [--threads 1] > quant_full.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEQ = 128


def build(layers: int, tmp: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from examples.bert_tf import BertConfig, save_bert

    from bertc.frontend.tf import import_model

    cfg = BertConfig(layers=layers, hidden=768, heads=12, ffn=3072, vocab=1000, max_positions=SEQ)
    graph, _ = import_model(Path(save_bert(cfg, str(tmp / "model"))))
    return graph


def lower_matmul_u8s8(e, op, ins, outs):
    """bertc's MatMulIntegerToFloat lowering with the kernel left s8 (u8 x s8: AVX2's fast
    pmaddubsw path, which saturates int16 pair sums): for the speed/exactness comparison."""
    import bertc.targets.onnx as T

    if not T._static_int8_matmul(op) or not T._u8_activation(op.operands[0].producer.operands[0].producer):
        return T._lower_matmul(e, op, ins, outs)
    xdq, wdq = op.operands[0].producer, op.operands[1].producer
    xq, sx, _ = (e.name_of(v) for v in xdq.operands)
    wq, sw, zw = (e.name_of(v) for v in wdq.operands)
    zx = e.const(T._u8(xdq.operands[2].const_value()), "zero_point_u8")
    add = T._folded_bias(op)
    if add is None:
        e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw], outs, domain=T.MS_DOMAIN)
        return
    b = add.operands[1] if add.operands[0] is op.result else add.operands[0]
    e.node("MatMulIntegerToFloat", [xq, wq, sx, sw, zx, zw, e.name_of(b)], [e.name_of(add.result)],
           domain=T.MS_DOMAIN)


def variants(graph) -> tuple[dict[str, bytes], dict[str, object]]:
    """The ONNX models, and the IR each quantized one was lowered from (for the exactness column)."""
    import bertc.targets.onnx as T
    from bertc.ir.parser import copy_graph
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline

    PassManager(parse_pipeline("calibrate{samples=16}")).run(graph, PassContext())
    out = {"fp32": T.lower_bytes(graph)}
    irs = {}
    g = copy_graph(graph)
    PassManager(parse_pipeline("quant_int8")).run(g)
    out["quant_int8 (DynamicQuantizeMatMul)"] = T.lower_bytes(g)
    explicit = {k: T._LOWERINGS[k] for k in ("matmul", "dequantize", "add", "quantize")}
    plain = {"matmul": T._simple("MatMul"), "dequantize": T._lower_dequantize, "add": T._simple("Add"),
             "quantize": T._lower_quantize}
    for outputs in ("true", "false"):
        g = copy_graph(graph)
        PassManager(parse_pipeline(f"quant_full{{outputs={outputs}}}")).run(g, PassContext())
        out[f"quant_full outputs={outputs} MatMulIntegerToFloat (bertc)"] = T.lower_bytes(g)
        irs[f"quant_full outputs={outputs} MatMulIntegerToFloat (bertc)"] = g
        irs[f"quant_full outputs={outputs} QDQ (ORT fusions)"] = g
        try:
            T._LOWERINGS["matmul"] = lower_matmul_u8s8
            out[f"quant_full outputs={outputs} MatMulIntegerToFloat u8 x s8"] = T.lower_bytes(g)
            irs[f"quant_full outputs={outputs} MatMulIntegerToFloat u8 x s8"] = g
            T._LOWERINGS.update(plain)
            out[f"quant_full outputs={outputs} QDQ (ORT fusions)"] = T.lower_bytes(g)
        finally:
            T._LOWERINGS.update(explicit)
    return out, irs


def sessions(models: dict[str, bytes], threads: int, tmp: Path) -> dict[str, tuple]:
    import onnx
    import onnxruntime as ort

    out = {}
    for i, (name, data) in enumerate(models.items()):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.optimized_model_filepath = str(tmp / f"opt_{i}.onnx")
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        kinds: dict[str, int] = {}
        for node in onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node:
            kinds[node.op_type] = kinds.get(node.op_type, 0) + 1
        out[name] = (sess, {"bytes": len(data), "runtime_graph": dict(sorted(kinds.items()))})
    return out


def measure(runners: dict[str, tuple], feeds: dict, reps: int, warmup: int) -> dict[str, dict]:
    results, ref = {}, None
    for name, (sess, info) in runners.items():
        y = np.asarray(sess.run(None, feeds)[0], np.float64)
        ref = y if ref is None else ref
        err = float(np.abs(y - ref).max())
        results[name] = {**info, "rel_error_vs_fp32": err / float(np.abs(ref).max()), "times": []}
        for _ in range(warmup):
            sess.run(None, feeds)
    for _ in range(reps):
        for name, (sess, _) in runners.items():
            t0 = time.perf_counter()
            sess.run(None, feeds)
            results[name]["times"].append(time.perf_counter() - t0)
    base = None
    for name, r in results.items():
        t = np.array(r.pop("times")) * 1e3
        r["median_ms"] = round(float(np.median(t)), 2)
        r["p25_ms"], r["p75_ms"] = (round(float(v), 2) for v in np.percentile(t, [25, 75]))
        base = base or r["median_ms"]
        r["time_vs_fp32"] = round(r["median_ms"] / base, 3)
    return results


def exactness(results: dict, models: dict[str, bytes], irs: dict, feeds: dict) -> None:
    """Each quant_full artifact vs the reference interpreter on its IR: max |diff| / max |IR|."""
    from bertc.ir.interpreter import run_graph
    from bertc.runtime.session import open_session

    for name, g in irs.items():
        want = np.asarray(next(iter(run_graph(g, feeds).values())), np.float64)
        got = np.asarray(next(iter(open_session(models[name], kind="onnx").run(feeds).values())), np.float64)
        results[name]["rel_error_vs_ir"] = float(np.abs(got - want).max() / np.abs(want).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnxruntime

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        graph = build(args.layers, tmp)
        models, irs = variants(graph)
        names = [v.name for v in graph.inputs]
        feeds = {n: (rng.integers(1, 1000, (1, SEQ)) if "ids" in n and "type" not in n else np.ones((1, SEQ)) if
                     "mask" in n else np.zeros((1, SEQ))).astype(np.int32) for n in names}
        results = measure(sessions(models, args.threads, tmp), feeds, args.reps, args.warmup)
        exactness(results, models, irs, feeds)
    report = {"benchmark": "quant_full lowering on a BERT-base-wide encoder (onnxruntime, ORT_ENABLE_ALL)",
              "model": {"layers": args.layers, "hidden": 768, "heads": 12, "ffn": 3072, "seq": SEQ, "batch": 1},
              "threads": args.threads, "reps": args.reps,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                          "python": platform.python_version(), "onnxruntime": onnxruntime.__version__},
              "results": results}
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
