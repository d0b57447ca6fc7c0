"""Does structured pruning make a BERT-base faster?  Latency next to the FLOP ratio, as JSON.

    python benchmarks/pruning.py                       # BERT-base sized, 0/25/50/75 % of heads AND neurons
    python benchmarks/pruning.py --sweep all           # also heads only and neurons only
    python benchmarks/pruning.py --layers 2 --hidden 128 --heads 4 --ffn 512 --vocab 1000   # quick
    python benchmarks/pruning.py --reconstruct         # also reconstruct=true: its cost and output drift

A random BERT-base sized classifier from examples/bert_tf.py (12 layers,
hidden 768, 12 heads, FFN 3072, vocabulary 30522) is imported once; for each
ratio, ``prune_heads{ratio=r,per_layer=true}`` and/or
``prune_neurons{ratio=r,per_layer=true}`` (criterion magnitude: which units go
does not change the cost) remove the units, and the pruned graph is lowered to
ONNX and TFLite.  Every artifact is first checked against the reference
interpreter on the pruned IR; then latency at batch 1 is measured on
onnxruntime and LiteRT with the runs interleaved round-robin across all
artifacts, so noise from a shared machine hits every configuration alike.

With ``--reconstruct`` every pruned configuration is also compiled with
``reconstruct=true`` on both passes (least-squares refit of the output
projections, on random calibration tokens here: a random model has no task).
Those rows have the same shapes, hence the same latency, so they are not
timed; they report the pass time (prune_seconds) and, like every row, the
mean |change| of the logits from the unpruned model on the check inputs.

Reported per configuration: heads per layer, FFN width, parameters, matmul
FLOPs at batch 1 (2 x multiply-adds, from shapes), the FLOP ratio to the
unpruned model, and p50/p90 latency with the speed-up over the unpruned model
on each runtime.  Embeddings and the classifier are never pruned, and
softmax/layer-norm/GELU costs are not in the FLOP count, so latency ratios
trail FLOP ratios at high pruning.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_graph(args):
    """Save the plain-TF BERT, import it; returns (IR text, weights, config)."""
    from bertc.frontend.tf import import_model
    from bertc.ir.printer import print_graph
    from examples.bert_tf import BertConfig, save_bert

    config = BertConfig(layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, vocab=args.vocab,
                        max_positions=max(args.seq, 64), labels=3)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_bert(config, str(Path(tmp) / "bert"))
        graph, _ = import_model(Path(path))
    return print_graph(graph), graph.weights(), config


def configurations(ratios: list[float], sweep: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for r in ratios:
        if sweep in ("both", "all"):
            out.append((r, r))
        if sweep in ("heads", "all"):
            out.append((r, 0.0))
        if sweep in ("neurons", "all"):
            out.append((0.0, r))
    return list(dict.fromkeys(out))


def prune(text: str, weights, heads: float, neurons: float, reconstruct: bool = False):
    from bertc.analysis.structure import analyze_structure
    from bertc.ir.parser import parse_graph
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline

    graph = parse_graph(text, weights)
    rc = ",reconstruct=true" if reconstruct else ""
    pipeline = (f"prune_heads{{ratio={heads},criterion=magnitude,per_layer=true{rc}}},"
                f"prune_neurons{{ratio={neurons},criterion=magnitude,per_layer=true{rc}}}")
    t0 = time.perf_counter()
    PassManager(parse_pipeline(pipeline)).run(graph, PassContext())
    seconds = time.perf_counter() - t0
    layers = analyze_structure(graph).layers
    shape = {"heads_per_layer": sorted({la.attention.heads for la in layers if la.attention}),
             "ffn_width": sorted({la.ffn.intermediate for la in layers if la.ffn})}
    return graph, shape, seconds


def logit_change(got: dict, want: dict) -> float:
    """Mean |difference| over every output (the classifier's logits)."""
    return round(float(np.mean([np.abs(got[k] - want[k]).mean() for k in want])), 6)


def lower(graph, name: str) -> bytes:
    from bertc.ir.parser import parse_graph
    from bertc.ir.printer import print_graph
    from bertc.legalize import plan
    from bertc.pass_manager import PassManager
    from bertc.targets.base import get_target

    target = get_target(name)
    g = parse_graph(print_graph(graph), graph.weights())
    extra = plan(g, [target])
    if extra:
        PassManager(extra).run(g)
    return target.lower(g)


def session(name: str, data: bytes, threads: int):
    if name == "onnx":
        from bertc.runtime.onnx_session import OnnxSession

        return OnnxSession(data, threads)
    from bertc.runtime.tflite_session import TFLiteSession

    return TFLiteSession(data, threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--ffn", type=int, default=3072)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--ratios", default="0,0.25,0.5,0.75")
    p.add_argument("--sweep", choices=["both", "heads", "neurons", "all"], default="both")
    p.add_argument("--seq", type=int, default=128, help="sequence length for latency (batch 1)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backends", default="onnx,tflite")
    p.add_argument("--reconstruct", action="store_true",
                   help="also prune with reconstruct=true (rows not timed: same shapes)")
    p.add_argument("-o", "--output", help="also write the JSON here")
    args = p.parse_args(argv)

    from bertc.ir.interpreter import run_graph
    from bertc.analysis.cost import matmul_flops
    from bertc.runtime.inputs import random_graph_inputs

    t0 = time.perf_counter()
    text, weights, config = build_graph(args)
    import_s = time.perf_counter() - t0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    ratios = [float(r) for r in args.ratios.split(",")]
    results, sessions = [], []
    base_flops = base_logits = None
    for heads, neurons in configurations(ratios, args.sweep):
        graph, shape, prune_s = prune(text, weights, heads, neurons)
        flops = matmul_flops(graph, args.seq)
        base_flops = base_flops or flops  # the first configuration has ratio 0
        check = random_graph_inputs(graph, 2, 16, seed=1)
        want = run_graph(graph, check)
        if base_logits is None:
            base_logits = want
        feeds = random_graph_inputs(graph, 1, args.seq, seed=0)
        if args.reconstruct and (heads or neurons):
            fitted, _, fit_s = prune(text, weights, heads, neurons, reconstruct=True)
            results.append({"heads_removed": heads, "neurons_removed": neurons, "reconstruct": True, **shape,
                            "prune_seconds": round(fit_s, 2),
                            "mean_abs_logit_change": logit_change(run_graph(fitted, check), base_logits)})
            del fitted
        entry = {"heads_removed": heads, "neurons_removed": neurons, **shape,
                 "mean_abs_logit_change": logit_change(want, base_logits),
                 "parameters": graph.num_parameters()[0], "matmul_flops": flops,
                 "flop_ratio": round(flops / base_flops, 4), "prune_seconds": round(prune_s, 2), "backends": {}}
        for name in backends:
            data = lower(graph, name)
            sess = session(name, data, args.threads)
            got = sess.run(check)
            err = max(float(np.abs(got[k] - want[k]).max()) for k in want)
            entry["backends"][name] = {"bytes": len(data), "max_abs_err_vs_reference": err}
            for _ in range(args.warmup):
                sess.run(feeds)
            sessions.append((entry, name, sess, feeds, []))
        results.append(entry)
        del graph
        print(f"prepared heads -{heads:.0%} neurons -{neurons:.0%}: {shape}", file=sys.stderr)
    for _ in range(args.runs):  # round-robin: noise spreads over every configuration
        for entry, name, sess, feeds, times in sessions:
            t = time.perf_counter()
            sess.run(feeds)
            times.append((time.perf_counter() - t) * 1e3)
    base = {}
    for entry, name, sess, feeds, times in sessions:
        p50, p90 = float(np.percentile(times, 50)), float(np.percentile(times, 90))
        base.setdefault(name, p50)
        entry["backends"][name].update({"p50_ms": round(p50, 2), "p90_ms": round(p90, 2),
                                        "latency_ratio": round(p50 / base[name], 4),
                                        "speedup": round(base[name] / p50, 3)})
    report = {
        "benchmark": "structured pruning of a random BERT (examples/bert_tf.py)",
        "model": {"layers": config.layers, "hidden": config.hidden, "heads": config.heads, "ffn": config.ffn,
                  "vocab": config.vocab},
        "batch": 1, "seq": args.seq, "runs": args.runs, "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": os.getloadavg()},
        "import_seconds": round(import_s, 1),
        "results": results,
    }
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.output:
        Path(args.output).write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
