"""Which lowering of quant_int8's ``qmatmul`` runs fastest, on a BERT-base-sized matmul stack.

The model: x f32[1, 128, 768] through per layer four [768, 768] projections
(Q, K, V, O sized), then [768, 3072] and [3072, 768] (the FFN), as one chain
with weights ~ N(0, 1/K), so activations stay O(1).  It is built as bertc IR,
quantized with ``quant_int8`` and lowered by bertc; the ONNX lowering of
``qmatmul`` is swapped for each candidate:

  DynamicQuantizeMatMul   com.microsoft, one node (what bertc emits)
  MatMulIntegerToFloat    DynamicQuantizeLinear + com.microsoft MatMulIntegerToFloat
  MatMulInteger           DynamicQuantizeLinear + MatMulInteger + Cast + Mul (standard ops)
  QDQ                     DynamicQuantizeLinear -> DequantizeLinear, DequantizeLinear(W) -> MatMul

each at three onnxruntime graph optimization levels (the fusions ORT applies
decide the kernel that finally runs, so the optimized graph's op histogram is
recorded too).  Peers in the same run: bertc's fp32 ONNX, and
``onnxruntime.quantization.quantize_dynamic`` (QInt8, per channel) applied to
that same fp32 ONNX.  TFLite: bertc's fp32 FULLY_CONNECTED against hybrid
FULLY_CONNECTED with asymmetric_quantize_inputs on and off, with LiteRT's
default XNNPACK delegate and with builtin kernels only.

Every variant runs interleaved with the others (round robin), so load on a
shared machine spreads over all of them; medians and the 25-75% range in ms.
Error columns: max |y - fp32| over the output, and as a fraction of max |fp32|.

    python benchmarks/quantization.py [--layers 1] [--reps 30] [--threads 1] > quant.json
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

HIDDEN, FFN, SEQ = 768, 3072, 128


def build_graph(layers: int, seed: int = 0):
    from bertc.ir import Graph, TensorType

    rng = np.random.default_rng(seed)
    g = Graph("matmul_stack")
    h = g.add_input("x", TensorType("f32", ("batch", "seq", HIDDEN)))
    dims = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, FFN), (FFN, HIDDEN)]
    for layer in range(layers):
        for i, (k, n) in enumerate(dims):
            w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
            h = g.add("matmul", [h, g.const(w, f"layer_{layer}/dense_{i}/kernel")]).result
    g.outputs["y"] = h
    return g


# ------------------------------------------------------------------ ONNX candidates
def _dql(e, x: str) -> tuple[str, str, str]:
    outs = [e.fresh("x_q"), e.fresh("x_scale"), e.fresh("x_zero_point")]
    e.node("DynamicQuantizeLinear", [x], outs)
    return outs[0], outs[1], outs[2]


def lower_matmul_integer_to_float(e, op, ins, outs):
    xq, xs, xz = _dql(e, ins[0])
    e.node("MatMulIntegerToFloat", [xq, ins[1], xs, ins[2], xz, ins[3]], outs, domain="com.microsoft")


def lower_matmul_integer(e, op, ins, outs):
    from onnx import TensorProto

    xq, xs, xz = _dql(e, ins[0])
    acc = e.node("MatMulInteger", [xq, ins[1], xz, ins[3]])
    accf = e.node("Cast", [acc], to=TensorProto.FLOAT)
    e.node("Mul", [accf, e.node("Mul", [xs, ins[2]])], outs)


def lower_qdq(e, op, ins, outs):
    xq, xs, xz = _dql(e, ins[0])
    xd = e.node("DequantizeLinear", [xq, xs, xz])
    axis = {} if op.attrs["axis"] is None else {"axis": 1}
    wd = e.node("DequantizeLinear", ins[1:4], **axis)
    e.node("MatMul", [xd, wd], outs)


ONNX_VARIANTS = {"DynamicQuantizeMatMul": None, "MatMulIntegerToFloat": lower_matmul_integer_to_float,
                 "MatMulInteger": lower_matmul_integer, "QDQ": lower_qdq}


def onnx_models(fp32_graph, q_graph, tmp: Path) -> dict[str, bytes]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import bertc.targets.onnx as T

    models = {"fp32 (bertc)": T.lower_bytes(fp32_graph)}
    chosen = T._LOWERINGS["qmatmul"]
    try:
        for name, fn in ONNX_VARIANTS.items():
            T._LOWERINGS["qmatmul"] = fn or chosen
            models[f"int8 {name} (bertc)"] = T.lower_bytes(q_graph)
    finally:
        T._LOWERINGS["qmatmul"] = chosen
    (tmp / "fp32.onnx").write_bytes(models["fp32 (bertc)"])
    quantize_dynamic(tmp / "fp32.onnx", tmp / "peer.onnx", weight_type=QuantType.QInt8, per_channel=True)
    models["int8 quantize_dynamic per-channel (onnxruntime peer)"] = (tmp / "peer.onnx").read_bytes()
    for data in models.values():
        onnx.checker.check_model(onnx.load_from_string(data))
    return models


def onnx_sessions(models: dict[str, bytes], threads: int, tmp: Path) -> dict[str, tuple]:
    import onnx
    import onnxruntime as ort

    levels = {"disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    out = {}
    for name, data in models.items():
        for lvl, level in levels.items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.graph_optimization_level = level
            opts.log_severity_level = 3
            opt_path = tmp / f"opt_{len(out)}.onnx"
            opts.optimized_model_filepath = str(opt_path)
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            kinds: dict[str, int] = {}
            for node in onnx.load(str(opt_path), load_external_data=False).graph.node:
                kinds[node.op_type] = kinds.get(node.op_type, 0) + 1
            run = (lambda s: lambda x: s.run(None, {"x": x})[0])(sess)
            out[f"onnx | {name} | opt={lvl}"] = (run, {"runtime_graph": kinds, "bytes": len(data)})
    return out


# ------------------------------------------------------------------ TFLite candidates
def tflite_sessions(fp32_graph, q_graph, threads: int) -> dict[str, tuple]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import bertc.targets.tflite as T
    from bertc.targets.tflite_builder import options, quantized_weight

    def sym_inputs(ctx, op):  # the same hybrid FULLY_CONNECTED with symmetric input rows
        a, b, scale, zero_point = op.operands
        w = quantized_weight(ctx, b, scale, zero_point, op.attrs["axis"])
        ctx.emit(T.B.FULLY_CONNECTED, [ctx.tensor(a), w, -1], [ctx.result(op.result)],
                 options("FullyConnectedOptionsT", keepNumDims=True, asymmetricQuantizeInputs=False))

    models = {"fp32 (bertc)": T.lower_bytes(fp32_graph),
              "int8 hybrid asymmetric_quantize_inputs=true (bertc)": T.lower_bytes(q_graph)}
    chosen = T._LOWERINGS["qmatmul"]
    try:
        T._LOWERINGS["qmatmul"] = sym_inputs
        models["int8 hybrid asymmetric_quantize_inputs=false"] = T.lower_bytes(q_graph)
    finally:
        T._LOWERINGS["qmatmul"] = chosen
    out = {}
    for name, data in models.items():
        for delegate, resolver in (("xnnpack", OpResolverType.AUTO),
                                   ("builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
            it = Interpreter(model_content=data, num_threads=threads, experimental_op_resolver_type=resolver)
            inp, outp = it.get_input_details()[0], it.get_output_details()[0]
            it.resize_tensor_input(inp["index"], [1, SEQ, HIDDEN])
            it.allocate_tensors()

            def run(x, it=it, i=inp["index"], o=outp["index"]):
                it.set_tensor(i, x)
                it.invoke()
                return it.get_tensor(o)

            out[f"tflite | {name} | {delegate}"] = (run, {"bytes": len(data)})
    return out


# ------------------------------------------------------------------ measuring
def measure(runners: dict[str, tuple], x: np.ndarray, reps: int, warmup: int) -> dict[str, dict]:
    ref = None
    results: dict[str, dict] = {}
    for name, (run, info) in runners.items():
        y = np.asarray(run(x), np.float64)
        if ref is None:
            ref = y  # the first runner is the fp32 ONNX model
        err = float(np.abs(y - ref).max())
        results[name] = {**info, "max_abs_error_vs_fp32": err,
                         "rel_error_vs_fp32": err / float(np.abs(ref).max()), "times": []}
        for _ in range(warmup):
            run(x)
    for _ in range(reps):  # round robin: load on a shared machine hits every variant alike
        for name, (run, _) in runners.items():
            t0 = time.perf_counter()
            run(x)
            results[name]["times"].append(time.perf_counter() - t0)
    for r in results.values():
        t = np.array(r.pop("times")) * 1e3
        r["median_ms"] = round(float(np.median(t)), 3)
        r["p25_ms"], r["p75_ms"] = (round(float(v), 3) for v in np.percentile(t, [25, 75]))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1, help="repeats of the 6-matmul BERT layer stack")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes")
    ap.add_argument("--act", default="u8_tensor", help="quant_int8's act= option")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnxruntime

    from bertc.pass_manager import PassManager, parse_pipeline

    fp32 = build_graph(args.layers)
    q = build_graph(args.layers)
    PassManager(parse_pipeline(f"quant_int8{{act={args.act}}}")).run(q)
    x = np.random.default_rng(1).standard_normal((1, SEQ, HIDDEN)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runners = onnx_sessions(onnx_models(fp32, q, tmp), args.threads, tmp)
        runners.update(tflite_sessions(fp32, q, args.threads))
        results = measure(runners, x, args.reps, args.warmup)
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # pragma: no cover
        litert = "?"
    report = {
        "benchmark": "qmatmul lowering on a BERT-base-sized matmul stack",
        "shapes": {"x": [1, SEQ, HIDDEN], "per_layer": [[HIDDEN, HIDDEN]] * 4 + [[HIDDEN, FFN], [FFN, HIDDEN]],
                   "layers": args.layers},
        "quant_int8": f"act={args.act}, per_channel=true",
        "threads": args.threads, "reps": args.reps,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "ai_edge_litert": litert},
        "results": results,
    }
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
