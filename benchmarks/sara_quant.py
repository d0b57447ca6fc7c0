"""Task accuracy, size and latency of quantized artifacts of the fine-tuned Sara classifier (issue 6).

    python benchmarks/sara_quant.py [--out /tmp/bertc-sara-quant] [--only quant,full,kmeans,latency]

The model, the test set, compilation and scoring are those of
``benchmarks/sara_accuracy.py`` (imported, not copied): every configuration is
compiled once with the ``bertc compile`` CLI for both targets (``--target
all``) and each artifact is scored over all 998 sara/test.csv sentences
(macro-F1 and accuracy, like ``bertc eval``).  Calibration, where a pipeline
has ``calibrate``, reads 256 sentences of sara/train.csv (``--calib``).

Groups:

  quant    fp32, quant_int8, quant_int8{embeddings=true} (weight-only int8,
           activations quantized at run time) and quant_int8{weight_bits=7}
  full     calibrate{method=M},quant_full for M in minmax, percentile, entropy, mse
           (static int8: activations from calibrated ranges), plus
           quant_full{target_drop=0.01} with the best method, and minmax
           quant_full{outputs=none} with 8- and 7-bit weights (the ONNX-only forms)
  kmeans   kmeans{clusters=K} for K in 2, 4, 16, 256 on the encoder (embeddings
           and classifier excluded), and K=4 on everything (embeddings too), to
           repeat the experiment the issue cites
  latency  every artifact above, each alone in its own process, batch 1, each test
           message at its own length (sara_accuracy.latency)

Results go to OUT/results.jsonl (a re-run skips what is there), OUT/table.md
and the printed JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sara_accuracy as sa  # noqa: E402  (benchmarks/ is not a package)

CALIB_METHODS = ("minmax", "percentile", "entropy", "mse")
CLUSTERS = (2, 4, 16, 256)
KMEANS_ENCODER_ONLY = "embeddings|classifier|pooler"
FP32_TASK = "fp32 macro-F1 0.8787"
GOAL = "quant_int8 and quant_full within 0.5 point of fp32"
PEERS = {"ORT dynamic int8, per-channel": 0.877, "TFLite dynamic-range": 0.877,
         "ORT static QDQ, MinMax": 0.851, "ORT static QDQ, Entropy": 0.851,
         "ORT static QDQ, Percentile": 0.838, "ORT static QDQ, MatMul inputs only": "0.872-0.875",
         "TFLite full int8": 0.836}


def configurations(only: set[str]) -> list[tuple[str, str, str, bool]]:
    """(name, group, passes, needs --calib) in the order they run."""
    rows: list[tuple[str, str, str, bool]] = []
    if "quant" in only:
        rows += [("fp32", "quant", "", False), ("int8", "quant", "quant_int8", False),
                 ("int8_emb", "quant", "quant_int8{embeddings=true}", False),
                 ("int8_w7", "quant", "quant_int8{weight_bits=7}", False)]
    if "full" in only:
        rows += [(f"full_{m}", "full", f"calibrate{{method={m}}},quant_full", True) for m in CALIB_METHODS]
        rows += [(name, "full", f"calibrate{{method=minmax}},quant_full{{outputs=none{bits}}}", True)
                 for name, bits in (("static_none", ""), ("static_none_w7", ",weight_bits=7"))]
    if "kmeans" in only:
        rows += [(f"kmeans{k}", "kmeans", f'kmeans{{clusters={k},exclude="{KMEANS_ENCODER_ONLY}"}}', False)
                 for k in CLUSTERS]
        rows += [("kmeans4_all", "kmeans", "kmeans{clusters=4}", False)]
    return rows


def best_full_method(res: sa.Results) -> str:
    scored = [(r["macro_f1"], r["name"].split("/")[0][len("full_"):]) for r in res.rows
              if r["name"].startswith("full_") and "/" in r["name"] and "target_drop" not in r["name"]]
    return max(scored)[1] if scored else "minmax"


def run(args, res: sa.Results, only: set[str]) -> None:
    todo = configurations(only)
    for name, group, passes, calib in todo:
        try:
            sa.artifact_rows(args, res, name, group, passes, "all", calib=calib)
        except Exception as e:  # one failing configuration must not lose the others
            print(f"FAILED {name}: {e}", file=sys.stderr, flush=True)
    if "full" in only:
        m = best_full_method(res)
        try:
            sa.artifact_rows(args, res, "full_target_drop", "full",
                             f"calibrate{{method={m}}},quant_full{{target_drop=0.01}}", "all", calib=True)
        except Exception as e:
            print(f"FAILED full_target_drop: {e}", file=sys.stderr, flush=True)
    if "latency" in only:
        artifacts = {}
        for r in res.rows:
            path = args.out / "artifacts" / r["name"].split("/")[0] / f"model.{r['target']}"
            if path.exists():
                artifacts[r["name"]] = path
        for name, lat in sa.latency(args, artifacts).items():
            row = dict(res.get(name))
            row.update(lat)
            res.add(row)


def markdown(rows: list[dict]) -> str:
    fp32 = {r["target"]: r["macro_f1"] for r in rows if r["name"].startswith("fp32/")}
    lines = ["| configuration | target | macro-F1 | Δ vs fp32 (points) | accuracy | MB | median ms/msg | verify |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = 100 * (r["macro_f1"] - fp32[r["target"]]) if r["target"] in fp32 else float("nan")
        passes = (r["passes"] or "(none)").replace("|", "\\|")  # a regex's | would split the cell
        lines.append(f"| `{passes}` | {r['target']} | {r['macro_f1']:.4f} | {delta:+.1f} | "
                     f"{r['accuracy']:.4f} | {r['bytes'] / 1e6:.1f} | {r.get('median_ms', '')} | {r['verify']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sa.common_arguments(p, Path("/tmp/bertc-sara-quant"))
    p.add_argument("--only", default="quant,full,kmeans,latency")
    args = p.parse_args(argv)
    if args.model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
        from finetune_sara import ensure_finetuned  # fine-tunes (minutes) only when the cache lacks it

        args.model = Path(ensure_finetuned())
    args.out.mkdir(parents=True, exist_ok=True)
    res = sa.Results(args.out)
    res.flush = lambda: ((args.out / "table.md").write_text(markdown(res.rows)))  # this script's own table
    run(args, res, set(args.only.split(",")))
    print(json.dumps({"model": str(args.model), "task": FP32_TASK, "goal": GOAL, "peers_macro_f1": PEERS,
                      "machine": sa.machine(), "rows": res.rows}, indent=1))
    print(markdown(res.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
