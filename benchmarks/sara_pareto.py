"""Latency against macro-F1 on the fine-tuned Sara classifier: pruning x int8 mode x target (issue 7, goal 4).

    python benchmarks/sara_pareto.py [--out /tmp/bertc-sara-pareto] [--prune none,h40n20,...]

For every pruning recipe (``--prune``: names from RECIPES), the pruning passes
run once (``bertc compile --dump-ir``; the pruned IR is the dump after the last
pruning pass), then each int8 mode (fp32, quant_int8, calibrate + quant_full)
is compiled from that IR for both targets.  Every artifact is scored on all
998 sara/test.csv sentences (``sara_accuracy.evaluate``: macro-F1, like
``bertc eval``) and timed per message: batch 1, each message at its own
length (mean ~8 tokens), every artifact and peer alone in its own process, in rotated order
(``sara_accuracy.latency``), so machine load hits them alike.

Peers from the same run: TF (the SavedModel), tf2onnx on onnxruntime (fp32)
and onnxruntime ``quantize_dynamic`` (per-channel int8), and the TFLite
converter with dynamic-range int8, recorded with its error when it fails.  It
fails on the fine-tuned SavedModel (``[:, tf.newaxis]`` needs Flex), so it also
converts a re-export of the same weights spelled with ``tf.expand_dims``
(``peer_tflite_dynamic_int8_reexport``, the issue's best peer).

The verdict (``verdict``): the fastest artifact within one point and the fastest
peer are then timed head to head for ``--verdict-rounds`` more rounds (each alone
in its process, alternating which goes first), and the speed-up is reported per
round (median, min, max, rounds that reach 1.5x): on a shared machine one
pooled ratio moved between 1.5x and 2x from run to run.

Output: OUT/results.jsonl (re-runs skip finished rows), the JSON with every
point and the Pareto front (points no other point beats on both latency and
macro-F1), and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sara_accuracy as sa  # noqa: E402  (benchmarks/ is not a package)

# name -> pruning pipeline (neurons first: heads are then scored on the thinned model)
RECIPES = {
    "none": "",
    "h25n20": "prune_neurons{ratio=0.2,criterion=taylor},"
              "prune_heads{ratio=0.25,criterion=taylor}",
    "h40n20": "prune_neurons{ratio=0.2,criterion=taylor},"
              "prune_heads{ratio=0.4,criterion=taylor}",
    "h50n40": "prune_neurons{ratio=0.4,criterion=taylor},"
              "prune_heads{ratio=0.5,criterion=taylor}",
}
# heads first, each pass followed by the least-squares refit of the output projections
# (reconstruct=true: +0.9 point at h40n20 in this order, docs/accuracy.md)
for _h, _n in ((0.4, 0.2), (0.5, 0.3), (0.5, 0.4)):
    RECIPES[f"h{round(_h * 100)}n{round(_n * 100)}rc"] = (
        f"prune_heads{{ratio={_h},criterion=taylor,reconstruct=true}},"
        f"prune_neurons{{ratio={_n},criterion=taylor,reconstruct=true}}")
INT8_MODES = {"fp32": "", "int8": "quant_int8", "full": "calibrate{method=percentile},quant_full"}
GOAL = "<= 1 point macro-F1 lost and >= 1.5x faster than the best peer (issue: TFLite dynamic-range, 0.46 ms/msg)"
GOAL_SPEEDUP = 1.5


def verdict(args, ours: str, peer: str, artifacts: dict[str, Path]) -> dict:
    """``ours`` against ``peer``, head to head for ``args.verdict_rounds`` rounds: speed-up per round."""
    import copy

    a = copy.copy(args)
    a.rounds = args.verdict_rounds
    lat = sa.latency(a, {ours: artifacts[ours], peer: artifacts[peer]})
    ratios = [p / o for p, o in zip(lat[peer]["round_ms"], lat[ours]["round_ms"])]
    return {"ours": ours, "peer": peer, "rounds": a.rounds, "ours_ms": lat[ours]["median_ms"],
            "peer_ms": lat[peer]["median_ms"], "speedup_median": round(float(np.median(ratios)), 2),
            "speedup_min": round(min(ratios), 2), "speedup_max": round(max(ratios), 2),
            "rounds_at_goal": sum(r >= GOAL_SPEEDUP for r in ratios)}


def prune_once(args, recipe: str) -> Path:
    """The SavedModel pruned by RECIPES[recipe], as IR text (the model itself for 'none')."""
    if not RECIPES[recipe]:
        return args.model
    dump = args.out / "pruned" / recipe
    done = sorted(dump.glob("*_prune_*.bir"))
    if not done:
        cmd = ["bertc", "compile", str(args.model), "--target", "onnx", "-o", str(dump / "compiled"),
               "--passes", RECIPES[recipe], "--dump-ir", str(dump), "--no-verify", *calib_flags(args),
               "--labels", str(args.model / "labels.txt")]  # the task loss for taylor, not pseudo-labels
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pruning {recipe} failed:\n{proc.stderr[-2000:]}")
        done = sorted(dump.glob("*_prune_*.bir"))
    return done[-1]


def calib_flags(args) -> list[str]:
    return ["--calib", str(args.data / "train.csv"), "--vocab", str(args.model / "tokenizer.json"),
            "--calib-samples", "256", "--calib-max-length", str(sa.MAX_LENGTH)]


def compile_artifacts(args, source: Path, name: str, passes: str) -> Path:
    out = args.out / "artifacts" / name
    if (out / "model.onnx").exists() and (out / "model.tflite").exists():
        return out
    cmd = ["bertc", "compile", str(source), "--target", "all", "-o", str(out),
           "--labels", str(args.model / "labels.txt"), *calib_flags(args)]
    if passes:
        cmd += ["--passes", passes]
    if args.no_verify:
        cmd.append("--no-verify")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: bertc compile failed:\n{proc.stderr[-2000:]}")
    return out


def peers(args) -> dict[str, Path | str]:
    """Peer artifacts (path) or their one-line failure (str)."""
    out = args.out / "peers"
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Path | str] = {"peer_tf": args.model}
    onnx_fp32, onnx_int8 = out / "tf2onnx.onnx", out / "tf2onnx_int8.onnx"
    if not onnx_fp32.exists():
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(args.model), "--opset", "17",
                        "--output", str(onnx_fp32)], capture_output=True, text=True)
    if onnx_fp32.exists() and not onnx_int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(str(onnx_fp32), str(onnx_int8), weight_type=QuantType.QInt8, per_channel=True)
    res["peer_tf2onnx_fp32"] = onnx_fp32 if onnx_fp32.exists() else "tf2onnx failed"
    res["peer_ort_dynamic_int8"] = onnx_int8 if onnx_int8.exists() else "no tf2onnx model to quantize"
    tfl = out / "tflite_converter_int8.tflite"
    err = out / "tflite_converter_int8.error"
    if not tfl.exists() and not err.exists():
        code = ("import sys, tensorflow as tf\n"
                "c = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])\n"
                "c.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                "data = c.convert()\n"
                "open(sys.argv[2], 'wb').write(data)\n")
        proc = subprocess.run([sys.executable, "-c", code, str(args.model), str(tfl)], capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
            err.write_text((lines[0] if lines else proc.stderr[-300:])[:300])
    res["peer_tflite_dynamic_int8"] = tfl if tfl.exists() else "TFLite converter failed: " + err.read_text()
    if not tfl.exists():
        friendly = out / "tflite_converter_int8_reexport.tflite"
        if not friendly.exists():
            _reexport_for_converter(args.model, friendly)
        if friendly.exists():
            res["peer_tflite_dynamic_int8_reexport"] = friendly
    return res


# The fine-tuned SavedModel indexes with [:, tf.newaxis] (examples/minilm.py), a StridedSlice
# that the TFLite converter refuses without Flex.  The converter's dynamic-range model is
# still the best peer, so it is built from a re-export of the same weights (read
# by `bertc import`) with tf.expand_dims instead: the same math, in a spelling it takes.
# examples/minilm.py itself is left alone: its source is part of the fine-tune cache key.
_REEXPORT = """
import sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[3])
import minilm

class ConverterFriendly(minilm.MiniLM):
    def encode(self, input_ids, attention_mask, token_type_ids):
        seq = tf.shape(input_ids)[1]
        positions = tf.slice(self.position_embeddings, [0, 0], [seq, -1])
        x = (tf.gather(self.word_embeddings, input_ids) + tf.expand_dims(positions, 0)
             + tf.gather(self.token_type_embeddings, token_type_ids))
        x = self.embedding_norm(x)
        mask = tf.expand_dims(tf.expand_dims(tf.cast(attention_mask, tf.float32), 1), 1)
        mask_bias = (1.0 - mask) * minilm.MASK_VALUE
        for layer in self.encoder:
            x = layer(x, mask_bias)
        return x

    def pool(self, hidden, attention_mask):
        mask = tf.expand_dims(tf.cast(attention_mask, tf.float32), 2)
        return tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)

weights = dict(np.load(sys.argv[1]))
model = ConverterFriendly(weights, head="classifier", num_labels=weights["minilm/classifier/bias"].shape[0])
conv = tf.lite.TFLiteConverter.from_concrete_functions([model.serve.get_concrete_function()], model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
open(sys.argv[2], "wb").write(conv.convert())
"""


def _reexport_for_converter(model: Path, out: Path) -> None:
    """The TFLite converter's dynamic-range model of ``model``'s weights (see _REEXPORT); on
    failure the reason goes to OUT.error and the peer is left out."""
    ir = out.with_suffix(".bir")
    steps = [["bertc", "import", str(model), "-o", str(ir)],
             [sys.executable, "-c", _REEXPORT, str(ir.with_suffix(".npz")), str(out),
              str(Path(__file__).resolve().parents[1] / "examples")]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out.unlink(missing_ok=True)
            out.with_suffix(".error").write_text(proc.stderr[-2000:])
            return


def pareto(points: list[dict]) -> list[str]:
    """Names of the points that no other point beats on both latency (lower) and macro-F1 (higher)."""
    front = []
    for p in points:
        if not any(q is not p and q["median_ms"] <= p["median_ms"] and q["macro_f1"] >= p["macro_f1"]
                   and (q["median_ms"] < p["median_ms"] or q["macro_f1"] > p["macro_f1"]) for q in points):
            front.append(p["name"])
    return sorted(front, key=lambda n: next(p["median_ms"] for p in points if p["name"] == n))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sa.common_arguments(p, Path("/tmp/bertc-sara-pareto"))
    p.add_argument("--prune", default=",".join(RECIPES), help=f"recipes, from: {', '.join(RECIPES)}")
    p.add_argument("--modes", default=",".join(INT8_MODES), help=f"int8 modes, from: {', '.join(INT8_MODES)}")
    p.add_argument("--verdict-rounds", type=int, default=10,
                   help="head-to-head rounds of the fastest artifact within 1 point vs the fastest peer (0: skip)")
    args = p.parse_args(argv)
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
        from finetune_sara import ensure_finetuned  # fine-tunes (minutes) only when the cache lacks it

        args.model = Path(ensure_finetuned())
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    artifacts: dict[str, Path] = {}
    for recipe in args.prune.split(","):
        try:
            source = prune_once(args, recipe)
        except RuntimeError as e:
            print(f"FAILED {recipe}: {e}", file=sys.stderr, flush=True)
            continue
        for mode in args.modes.split(","):
            name = f"{recipe}+{mode}"
            try:
                out = compile_artifacts(args, source, name, INT8_MODES[mode])
            except RuntimeError as e:
                print(f"FAILED {name}: {e}", file=sys.stderr, flush=True)
                continue
            for target in ("onnx", "tflite"):
                path = out / f"model.{target}"
                key = f"{name}/{target}"
                artifacts[key] = path
                rows[key] = {"name": key, "recipe": recipe, "passes": RECIPES[recipe], "int8": mode,
                             "target": target, "mb": round(path.stat().st_size / 1e6, 1), **sa.evaluate(args, path)}
                print(json.dumps(rows[key]), flush=True)
    failed = {}
    for name, path in peers(args).items():
        if isinstance(path, str):
            failed[name] = path
            continue
        artifacts[name] = path
        rows[name] = {"name": name, "peer": True, **sa.evaluate(args, path)}
    for name, lat in sa.latency(args, artifacts).items():
        rows[name].update(lat)
    points = list(rows.values())
    fp32 = rows.get("none+fp32/onnx", {}).get("macro_f1")
    best_peer = min((r for r in points if r.get("peer") and r["name"] != "peer_tf"), key=lambda r: r["median_ms"],
                    default=None)
    ok = [r for r in points if not r.get("peer") and fp32 is not None and r["macro_f1"] >= fp32 - 0.01]
    fastest_ok = min(ok, key=lambda r: r["median_ms"], default=None)
    report = {"benchmark": "sara_pareto", "model": str(args.model), "goal": GOAL, "machine": sa.machine(),
              "threads": args.threads, "points": points, "pareto_front": pareto(points), "peers_failed": failed,
              "fp32_macro_f1": fp32, "best_peer": best_peer and best_peer["name"],
              "fastest_within_1_point": fastest_ok and fastest_ok["name"],
              "speedup_vs_best_peer": (round(best_peer["median_ms"] / fastest_ok["median_ms"], 2)
                                       if best_peer and fastest_ok else None),
              "verdict": (verdict(args, fastest_ok["name"], best_peer["name"], artifacts)
                          if best_peer and fastest_ok and args.verdict_rounds > 0 else None),
              "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "pareto.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    print(markdown(points, report["pareto_front"], fp32))
    v = report["verdict"]
    if v:
        print(f"verdict: {v['ours']} vs {v['peer']}, {v['rounds']} rounds head to head: {v['ours_ms']} vs "
              f"{v['peer_ms']} ms/msg, speed-up {v['speedup_median']}x (min {v['speedup_min']}, max "
              f"{v['speedup_max']}; {v['rounds_at_goal']} of {v['rounds']} rounds >= {GOAL_SPEEDUP}x)")
    return 0


def markdown(points: list[dict], front: list[str], fp32: float | None) -> str:
    lines = ["| artifact | macro-F1 | Δ points | median ms/msg | p90 | 1-token ms | MB | Pareto |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(points, key=lambda r: r["median_ms"]):
        delta = "" if fp32 is None else f"{100 * (r['macro_f1'] - fp32):+.1f}"
        lines.append(f"| {r['name']} | {r['macro_f1']:.4f} | {delta} | {r['median_ms']} | {r['p90_ms']} | {r['overhead_ms']} | "
                     f"{r.get('mb', '')} | {'*' if r['name'] in front else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
