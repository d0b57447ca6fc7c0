"""How quant_full's int8 FULLY_CONNECTED runs on LiteRT, against quant_int8's hybrid kernels and fp32.

The model: examples/bert_tf.py with hidden 768, 12 heads, FFN 3072 (BERT-base's
layer) and ``--layers`` layers (default 2), random weights, imported by bertc and
calibrated on random token ids (``calibrate{samples=16}``, minmax).  Variants, each
one IR lowered by bertc's TFLite target (compiler/targets/tflite_quant.py):

  fp32                      float FULLY_CONNECTED
  quant_int8                hybrid FULLY_CONNECTED: int8 kernels, activations quantized per
                            row at run time (dynamic range)
  quant_full                default outputs=qkv,ffn_up: Q/K/V and FFN-up as int8 FULLY_CONNECTED;
                            attention-output and FFN-down keep float results, so they run op by
                            op (DEQUANTIZE + float BATCH_MATMUL)
  quant_full outputs=all    every encoder and pooler dense layer an int8 FULLY_CONNECTED (the
                            classifier stays float)

at batch 1, each ``--seq`` length, ``--threads`` threads, with LiteRT's default
XNNPACK delegate and, for comparison, builtin kernels only.  Runs are interleaved
round robin (load on a shared machine hits all variants alike); median and 25-75%
in ms over ``--reps`` runs.  Per variant also: the operator histogram of the file,
how many operators (and int8 FULLY_CONNECTEDs) XNNPACK took over (found from the
DELEGATE nodes' partitions), the logits' error vs fp32 and vs the reference
interpreter on the same IR (max |diff| / max |reference|), and the lowering time.

    python benchmarks/tflite_int8.py [--layers 2] [--seq 16 128] [--reps 30] [--threads 2] > tflite_int8.json
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

HIDDEN, HEADS, FFN, VOCAB = 768, 12, 3072, 1000
VARIANTS = {"fp32": None, "quant_int8": "quant_int8", "quant_full": "quant_full",
            "quant_full outputs=all": "quant_full{outputs=all}"}


def build(layers: int, max_seq: int, tmp: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from examples.bert_tf import BertConfig, save_bert

    from bertc.frontend.tf import import_model

    cfg = BertConfig(layers=layers, hidden=HIDDEN, heads=HEADS, ffn=FFN, vocab=VOCAB, max_positions=max_seq)
    graph, _ = import_model(Path(save_bert(cfg, str(tmp / "model"))))
    return graph


def variants(graph) -> dict[str, tuple[object, bytes, float]]:
    """name -> (IR, .tflite bytes, lowering seconds)."""
    from bertc.ir.parser import copy_graph
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline
    from bertc.targets.tflite import TARGET

    PassManager(parse_pipeline("calibrate{samples=16}")).run(graph, PassContext())
    out = {}
    for name, spec in VARIANTS.items():
        g = copy_graph(graph)
        if spec:
            PassManager(parse_pipeline(spec)).run(g, PassContext())
        t0 = time.perf_counter()
        data = TARGET.lower(g)
        out[name] = (g, data, time.perf_counter() - t0)
    return out


def file_ops(data: bytes) -> tuple[dict[str, int], int]:
    """The operator histogram of the file, and how many FULLY_CONNECTEDs have an int8 input."""
    from bertc.targets.tflite_builder import B, builtin_name, read_model

    model = read_model(data)
    sub = model.subgraphs[0]
    hist: dict[str, int] = {}
    int8_fc = 0
    for o in sub.operators:
        code = model.operatorCodes[o.opcodeIndex].builtinCode
        hist[builtin_name(code)] = hist.get(builtin_name(code), 0) + 1
        int8_fc += code == B.FULLY_CONNECTED and sub.tensors[o.inputs[0]].type == 9  # INT8
    return dict(sorted(hist.items())), int8_fc


def delegation(it) -> dict:
    """Which operators XNNPACK took over.  A DELEGATE node stands for the operators that compute its
    outputs from its inputs: walk producers back from its outputs, stopping at its inputs."""
    ops = it._get_ops_details()
    producer = {int(t): o for o in ops if o["op_name"] != "DELEGATE" for t in o["outputs"]}
    tensors = {d["index"]: d for d in it.get_tensor_details()}
    taken: dict[int, dict] = {}
    partitions = [o for o in ops if o["op_name"] == "DELEGATE"]
    for d in partitions:
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            o = producer.get(t)
            if t in stop or o is None or o["index"] in taken:
                continue
            taken[o["index"]] = o
            todo.extend(int(i) for i in o["inputs"] if i >= 0)
    original = [o for o in ops if o["op_name"] != "DELEGATE"]

    def int8_fc(o) -> bool:
        return o["op_name"] == "FULLY_CONNECTED" and tensors[int(o["inputs"][0])]["dtype"] == np.int8

    left = {}
    for o in original:
        if o["index"] not in taken:
            left[o["op_name"]] = left.get(o["op_name"], 0) + 1
    return {"partitions": len(partitions), "operators_delegated": len(taken), "operators": len(original),
            "int8_fully_connected_delegated": sum(int8_fc(o) for o in taken.values()),
            "int8_fully_connected": sum(int8_fc(o) for o in original), "left_to_builtin": dict(sorted(left.items()))}


def feeds_for(graph, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for v in graph.inputs:
        n = v.name
        if "mask" in n:
            out[n] = np.ones((1, seq), np.int32)
        elif "type" in n:
            out[n] = np.zeros((1, seq), np.int32)
        else:
            out[n] = rng.integers(1, VOCAB, (1, seq)).astype(np.int32)
    return out


def interpreter(data: bytes, feeds: dict, threads: int, xnnpack: bool):
    """A LiteRT interpreter resized to ``feeds``, and a function that runs it once."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=data, num_threads=threads, experimental_op_resolver_type=resolver)
    inputs = {d["name"]: d["index"] for d in it.get_input_details()}
    for name, x in feeds.items():
        it.resize_tensor_input(inputs[name], list(x.shape))
    it.allocate_tensors()
    out = it.get_output_details()[0]["index"]

    def run():
        for name, x in feeds.items():
            it.set_tensor(inputs[name], x)
        it.invoke()
        return it.get_tensor(out)
    return it, run


def measure(runners: dict[str, object], reps: int, warmup: int) -> dict[str, dict]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        for _ in range(warmup):
            run()
    for _ in range(reps):  # round robin: load on a shared machine hits every variant alike
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        t = np.array(ts) * 1e3
        p25, p75 = np.percentile(t, [25, 75])
        out[name] = {"median_ms": round(float(np.median(t)), 2), "p25_ms": round(float(p25), 2),
                     "p75_ms": round(float(p75), 2)}
    return out


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    want = np.asarray(want, np.float64)
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


def run_seq(models: dict, seq: int, args) -> dict:
    from bertc.ir.interpreter import run_graph

    feeds = feeds_for(next(iter(models.values()))[0], seq)
    runners, info = {}, {}
    for name, (g, data, _) in models.items():
        for xnnpack in (True, False):
            key = f"{name} | {'xnnpack' if xnnpack else 'builtin'}"
            it, run = interpreter(data, feeds, args.threads, xnnpack)
            runners[key] = run
            info[key] = {"logits": run()}
            if xnnpack:
                info[key]["xnnpack"] = delegation(it)
                info[key]["reference"] = next(iter(run_graph(g, feeds).values()))
    results = measure(runners, args.reps, args.warmup)
    fp32 = info["fp32 | xnnpack"]["logits"]
    for key, r in results.items():
        name, kernels = key.split(" | ")
        r["time_vs_fp32"] = round(r["median_ms"] / results[f"fp32 | {kernels}"]["median_ms"], 3)
        r["time_vs_quant_int8"] = round(r["median_ms"] / results[f"quant_int8 | {kernels}"]["median_ms"], 3)
        r["rel_error_vs_fp32"] = round(rel_error(info[key]["logits"], fp32), 5)
        if "xnnpack" in info[key]:
            r["rel_error_vs_ir"] = round(rel_error(info[key]["logits"], info[key]["reference"]), 5)
            r["xnnpack"] = info[key]["xnnpack"]
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from importlib.metadata import version

    with tempfile.TemporaryDirectory() as d:
        graph = build(args.layers, max(128, *args.seq), Path(d))  # calibrate feeds up to 128 tokens
        models = variants(graph)
    files = {}
    for name, (_, data, lower_s) in models.items():
        hist, int8_fc = file_ops(data)
        files[name] = {"bytes": len(data), "lower_s": round(lower_s, 2), "int8_fully_connected": int8_fc,
                       "operators": hist}
    report = {"benchmark": "quant_full's int8 FULLY_CONNECTED vs quant_int8 hybrid vs fp32 on LiteRT",
              "model": {"layers": args.layers, "hidden": HIDDEN, "heads": HEADS, "ffn": FFN, "batch": 1},
              "threads": args.threads, "reps": args.reps,
              "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
                          "python": platform.python_version(), "ai_edge_litert": version("ai-edge-litert")},
              "files": files,
              "results": {f"seq {seq}": run_seq(models, seq, args) for seq in args.seq}}
    report["machine"]["load_avg_1m_after"] = os.getloadavg()[0]
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
