"""Coverage of the foreign-model corpus: bertc, tf2onnx and the TFLite converter, in the same run.

Builds the corpus (examples/corpus/build.py) unless ``--corpus DIR`` names a
built one, then for every model:

- bertc: ``import`` (bertc.frontend.tf.import_model), ``onnx`` and ``tflite``
  (``bertc compile --target all``, verified against TF; when that fails,
  ``--target onnx`` and ``--target tflite`` each on its own),
  ``parity`` (the max abs error of each verified target), ``prune_heads``
  (``--passes prune_heads{ratio=0.5} --target all``) and ``quant_int8``;
- tf2onnx 1.17: its own SavedModel loader and freezer
  (``tf2onnx.tf_loader.from_saved_model``, what ``python -m tf2onnx.convert
  --saved-model`` runs) then ``tf2onnx.convert.from_graph_def`` at opset 17,
  loaded in onnxruntime and compared with TF;
- TF's TFLite converter, builtins only
  (``TFLiteConverter.from_saved_model``, ``supported_ops=[TFLITE_BUILTINS]``),
  run in LiteRT through its signature runner and compared with TF.

Peers are compared with TF on one batch (2 x 11, the second row padded);
bertc's parity is what ``bertc compile`` verified (batch 1 and 4, sequence 8
and 19, or the model's verify.npz).  A failure cell holds the failure's first
line, cut to 80 characters.  It also lists every TF op type seen across the
corpus and how many of them bertc's importer maps (bertc.frontend.tf.HANDLERS, plus
tf.cond and tf.while_loop, which conditionals.py and loops.py import).

    python benchmarks/coverage.py [--corpus DIR] [--only NAME,...] [--md docs/coverage.md] > coverage.json

Prints one JSON document to stdout and the markdown tables to stderr; progress
goes to stderr.  About 15 minutes for the whole corpus on two CPU cores.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import io
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from examples.corpus import compile_argv, summarize_error  # noqa: E402

CELL = 80
PEER_BATCH, PEER_SEQ, PEER_VOCAB = 2, 11, 30  # every corpus vocabulary has at least 33 ids
BERTC_COLUMNS = ("import", "onnx", "tflite", "parity", "prune_heads", "quant_int8")
PEER_COLUMNS = ("tf2onnx", "tf2onnx_parity", "tflite_converter", "tflite_converter_parity")


def log(msg: str) -> None:
    print(f"[coverage] {msg}", file=sys.stderr, flush=True)


def cut(text: str) -> str:
    """The first non-empty line of an error, at most CELL characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "error")
    return line if len(line) <= CELL else line[:CELL - 1] + "…"


def cpu_info() -> dict:
    """CPU model name, core count and the ISA flags that matter for int8 kernels."""
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown", "x86_64", ""):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
    return {"model": name, "cores": os.cpu_count(), "isa": [f for f in wanted if f in flags]}


# --------------------------------------------------------------------------- inputs and TF
def feeds_for(entry: dict) -> dict[str, np.ndarray]:
    """The peers' comparison batch: the model's verify.npz, or random ids with a padded second row."""
    if entry.get("verify_data"):
        data = np.load(entry["verify_data"])
        return {k: data[k] for k in entry["inputs"]}
    from bertc.runtime.inputs import random_inputs

    specs = [(k, v["dtype"]) for k, v in entry["inputs"].items()]
    shapes = [v.get("shape") or [] for v in entry["inputs"].values()]
    fixed = [next((s[i] for s in shapes if len(s) > i and isinstance(s[i], int)), None) for i in (0, 1)]
    lengths = [k for k, v in entry["inputs"].items() if len(v.get("shape") or []) == 1]
    return random_inputs(specs, fixed[0] or PEER_BATCH, fixed[1] or PEER_SEQ, np.random.default_rng(0), PEER_VOCAB,
                         lengths_inputs=lengths)


def frozen_inputs_outputs(entry: dict) -> tuple[list[str] | None, list[str] | None]:
    args = entry.get("compile_args", [])
    get = (lambda flag: args[args.index(flag) + 1].split(",") if flag in args else None)
    return get("--inputs"), get("--outputs")


def max_err(got: dict, want: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(got[k], np.float64) - np.asarray(want[k], np.float64))))
               for k in want)


# --------------------------------------------------------------------------- bertc
def bertc_compile(entry: dict, target: str, passes: str | None = None) -> tuple[str, dict | None]:
    """``bertc compile`` in this process: ("ok", report) or (first error line, None)."""
    from bertc.cli import main

    with tempfile.TemporaryDirectory(prefix="bertc-cov-") as out:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(compile_argv(entry, out, target=target, passes=passes))
        if code != 0:
            return cut(summarize_error(err.getvalue())), None
        return "ok", json.loads((Path(out) / "report.json").read_text())


def bertc_row(entry: dict, op_types: collections.Counter) -> dict:
    from bertc.frontend.tf import import_frozen
    from bertc.frontend.tf_loader import load_model

    row: dict = {}
    inputs, outputs = frozen_inputs_outputs(entry)
    try:
        frozen = load_model(entry["path"], "serving_default", inputs, outputs)
    except Exception as e:
        row["import"] = cut(f"load: {summarize_error(str(e))}")
        return row
    op_types.update({n.op for n in frozen.graph_def.node})
    try:
        import_frozen(frozen)
        row["import"] = "ok"
    except Exception as e:
        row["import"] = cut(summarize_error("bertc: error: " + getattr(e, "message", str(e))))
        return row
    del frozen
    status, report = bertc_compile(entry, "all")
    reports = {"onnx": report, "tflite": report}
    if report is None:  # find out which target failed: each on its own
        for target in ("onnx", "tflite"):
            row[target], reports[target] = bertc_compile(entry, target)
    else:
        row["onnx"] = row["tflite"] = status
    parity = []
    for target, rep in reports.items():
        if rep:
            errs = [o["max_abs_error"] for o in rep["verification"][target]["outputs"].values()]
            parity.append(f"{target} {max(errs):.1e}")
    row["parity"] = ", ".join(parity) or "-"
    row["prune_heads"], _ = bertc_compile(entry, "all", "prune_heads{ratio=0.5}")
    row["quant_int8"], _ = bertc_compile(entry, "all", "quant_int8")
    return row


# --------------------------------------------------------------------------- peers
def tf2onnx_row(entry: dict, feeds: dict, want: dict, work: Path) -> dict:
    import onnxruntime as ort
    import tf2onnx
    from tf2onnx import tf_loader

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            if entry["path"].endswith(".pb"):
                inputs, outputs = frozen_inputs_outputs(entry)
                in_names, out_names = [f"{n}:0" for n in inputs], [f"{n}:0" for n in outputs]
                graph_def, in_names, out_names = tf_loader.from_graphdef(entry["path"], in_names, out_names)
            else:
                graph_def, in_names, out_names = tf_loader.from_saved_model(
                    entry["path"], None, None, signatures=["serving_default"])[:3]
            model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=in_names, output_names=out_names,
                                                      opset=17)
    except Exception as e:
        return {"tf2onnx": cut(f"{type(e).__name__}: {e}"), "tf2onnx_parity": "-"}
    path = work / f"{entry['name']}.tf2onnx.onnx"
    path.write_bytes(model.SerializeToString())
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name: i.name.split(":")[0] for i in sess.get_inputs()}
        kinds = {i.name: (np.int64 if "int64" in i.type else np.int32) for i in sess.get_inputs()}
        got = sess.run(None, {n: feeds[short].astype(kinds[n]) for n, short in names.items()})
    except Exception as e:
        return {"tf2onnx": "ok", "tf2onnx_parity": cut("onnxruntime: " + _ort_error(str(e)))}
    by_name = {o.name.split(":")[0]: g for o, g in zip(sess.get_outputs(), got)}
    return {"tf2onnx": "ok", "tf2onnx_parity": _parity(by_name, want, out_names, sess)}


def _parity(by_name: dict, want: dict, out_names: list[str], sess) -> str:
    """tf2onnx names outputs after the signature's tensors, not its keys: match by order when needed."""
    if not set(want) <= set(by_name):
        by_name = dict(zip(sorted(want), [by_name[o.name.split(":")[0]] for o in sess.get_outputs()]))
    try:
        return f"{max_err(by_name, want):.1e}"
    except Exception as e:
        return cut(f"compare: {e}")


def tflite_row(entry: dict, feeds: dict, want: dict) -> dict:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            if entry["path"].endswith(".pb"):
                inputs, outputs = frozen_inputs_outputs(entry)
                conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
                    entry["path"], inputs, outputs, {n: list(feeds[n].shape) for n in inputs})
            else:
                conv = tf.lite.TFLiteConverter.from_saved_model(entry["path"])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            data = conv.convert()
    except Exception as e:
        return {"tflite_converter": cut(_converter_error(e)), "tflite_converter_parity": "-"}
    try:
        interp = Interpreter(model_content=data)
        if entry["path"].endswith(".pb"):
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], feeds[d["name"]].astype(d["dtype"]))
            interp.invoke()
            got = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
        else:
            runner = interp.get_signature_runner()
            details = runner.get_input_details()
            got = runner(**{k: v.astype(details[k]["dtype"]) for k, v in feeds.items()})
        return {"tflite_converter": "ok", "tflite_converter_parity": f"{max_err(got, want):.1e}"}
    except Exception as e:
        return {"tflite_converter": "ok", "tflite_converter_parity": cut(f"LiteRT: {type(e).__name__}: {e}")}


def _ort_error(text: str) -> str:
    """onnxruntime's load error without the file path: what is wrong, and in which node."""
    m = re.search(r"(No Op registered for \S+ with domain_version of \d+)", text)
    if m:  # tf2onnx leaves ops it cannot convert in the graph (it only warns): name the op
        return m.group(1)
    text = text.split(" failed:", 1)[-1].strip() if "Load model from" in text else text
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)


def _converter_error(e: Exception) -> str:
    """The converter's telling line: the ops it could not lower, else its first error line."""
    text = str(e)
    flex = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    if flex:
        return "needs TF ops (Flex): " + ", ".join(flex)
    for line in text.splitlines():
        if "ops are not supported" in line or "failed to legalize" in line or "TF Select ops" in line:
            return line.split("error:", 1)[-1].strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.split("error:", 1)[-1].strip()
    return f"{type(e).__name__}: {text}"


# --------------------------------------------------------------------------- driver
def run(manifest: list[dict], peers: bool = True) -> dict:
    from bertc.frontend import tf_ops  # noqa: F401  (fills HANDLERS)
    from bertc.frontend.loops import LOOPS
    from bertc.frontend.tf import CONDITIONALS, HANDLERS
    from bertc.frontend.tf_loader import load_model
    from bertc.quiet import native_stderr_silenced

    op_types: collections.Counter = collections.Counter()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bertc-coverage-") as tmp, native_stderr_silenced(True):
        for entry in manifest:
            name = entry["name"]
            t0 = time.perf_counter()
            if "build_error" in entry:
                rows[name] = {"kind": entry["kind"], "build_error": cut(entry["build_error"])}
                continue
            row = {"kind": entry["kind"], "source": entry.get("source", ""),
                   "expect_refusal": entry.get("expect_refusal")}
            row.update(bertc_row(entry, op_types))
            if peers:
                feeds = feeds_for(entry)
                inputs, outputs = frozen_inputs_outputs(entry)
                want = load_model(entry["path"], "serving_default", inputs, outputs).function(**feeds)
                row.update(tf2onnx_row(entry, feeds, want, Path(tmp)))
                row.update(tflite_row(entry, feeds, want))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[name] = row
            log(f"{name}: {row.get('import')} / {row.get('onnx', '-')} / {row.get('tflite', '-')} ({row['seconds']} s)")
    # tf.cond and tf.while_loop have no handler: conditionals.py and loops.py import them (a loop
    # only over constants)
    mapped = sorted(t for t in op_types if t in HANDLERS or t in CONDITIONALS or t in LOOPS or t == "Placeholder")
    unmapped = sorted(set(op_types) - set(mapped))
    return {"models": rows,
            "tf_ops": {"seen": len(op_types), "mapped": len(mapped), "unmapped": unmapped,
                       "counts": dict(sorted(op_types.items()))},
            "totals": totals(rows)}


def totals(rows: dict) -> dict:
    """How many models each column passes."""
    cols = BERTC_COLUMNS[:3] + BERTC_COLUMNS[4:] + ("tf2onnx", "tflite_converter")
    out = {c: sum(1 for r in rows.values() if r.get(c) == "ok") for c in cols}
    for peer in ("tf2onnx", "tflite_converter"):  # converted, ran, and matched TF within 1e-4
        out[f"{peer} matching TF"] = sum(1 for r in rows.values() if _within(r.get(f"{peer}_parity"), 1e-4))
    out["models"] = len(rows)
    return out


def _within(cell: str | None, tolerance: float) -> bool:
    try:
        return float(cell) <= tolerance
    except (TypeError, ValueError):
        return False


def markdown(result: dict) -> str:
    """The two tables (bertc; the peers) and the op-coverage line."""
    rows = result["models"]
    lines = ["| model | " + " | ".join(BERTC_COLUMNS) + " |", "|---" * (len(BERTC_COLUMNS) + 1) + "|"]
    for name, r in rows.items():
        cells = [r.get("build_error", "")] if "build_error" in r else [r.get(c, "-") for c in BERTC_COLUMNS]
        note = " (must refuse)" if r.get("expect_refusal") else ""
        lines.append(f"| {name}{note} | " + " | ".join(_md(c) for c in cells) + " |")
    lines += ["", "| model | tf2onnx | tf2onnx parity | TFLite converter | TFLite parity |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_md(r.get(c, "-")) for c in PEER_COLUMNS) + " |")
    t = result["totals"]
    lines += ["", f"Models passing, of {t['models']}: " + ", ".join(f"{k} {v}" for k, v in t.items() if k != "models")
              + ".", "", f"TF op types seen across the corpus: {result['tf_ops']['seen']}; bertc's importer maps "
              f"{result['tf_ops']['mapped']}. Not mapped: {', '.join(result['tf_ops']['unmapped']) or 'none'}."]
    return "\n".join(lines)


def _md(cell: str) -> str:
    return str(cell).replace("|", "\\|").replace("\n", " ")


DOC_HEAD = """# Coverage: foreign TensorFlow models

How much of a corpus of BERT-family models written by other libraries bertc
compiles, next to tf2onnx and TensorFlow's own TFLite converter on the same
SavedModels. The corpus (`examples/corpus/`) holds every BERT-family TF encoder
of transformers 4.57.6, keras-hub 0.32's BERT-family text models, a TF1
`modeling.py`-style BERT (SavedModel and frozen GraphDef) and small plain-TF
graphs, one op family each. All are tiny and randomly initialised, and take
int32 inputs with dynamic batch and sequence length; `docs/coverage.md` is
regenerated by the command below, not edited by hand.

Reproduce ({timing}):

```bash
{command}
```

Measured on {date} by `{command}`: {cpu} ({cores} cores; {isa}). TensorFlow {tf}, tf2onnx
{tf2onnx}, onnxruntime {ort}.

## Columns

- **import**: bertc reads the graph into its IR (`ok`, or the TF ops it cannot import).
- **onnx**, **tflite**: `bertc compile --target all` (each target on its own when that
  fails), verified against TF
  (every element within 1e-6 + 2e-5 * (|ref| + rms(ref)), compile's default, at batch 1
  and 4, sequence 8 and 19, or on the model's own `verify.npz`). **parity** is the
  largest error seen, per target.
- **prune_heads**, **quant_int8**: the same with `--passes prune_heads{{ratio=0.5}}` or
  `--passes quant_int8`, each verified to that pass's bound.
- **tf2onnx**: `tf2onnx.tf_loader.from_saved_model` + `tf2onnx.convert.from_graph_def`
  (opset 17); **TFLite converter**: `TFLiteConverter.from_saved_model` with
  `TFLITE_BUILTINS` only. Their parity is the max abs error against TF on one
  2 × 11 batch with padding, run in onnxruntime and LiteRT.

A failure cell holds the first line of the error, cut to 80 characters. A tf2onnx
conversion counts as `ok` when it returns a model, even where it only warned about
ops it could not convert; onnxruntime then refuses to load that model.
`while_loop_refusal` loops a data-dependent number of times; bertc is meant to
refuse it with one message (exit code 2). `hf_longformer` is refused for the same
reason: `tf.signal.frame` computes a gcd of its window and a step derived from the
sequence length in a `tf.while_loop`. A `tf.cond` only the data decides (Funnel's
pooling, `cond_on_padding`) compiles to ONNX `If` and TFLite `IF`.

## Results

"""


def write_doc(path: Path, result: dict, command: str) -> None:
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    cpu = result["cpu"]
    minutes = max(1, round(result["seconds"] / 60))
    timing = (f"the run took {minutes} minutes here on a corpus built beforehand; building it takes about 3 more"
              if result.get("prebuilt") else f"builds the corpus first; about {minutes} minutes here")
    head = DOC_HEAD.format(timing=timing, command=command, date=result["date"],
                           cpu=cpu["model"], cores=cpu["cores"], isa=", ".join(cpu["isa"]) or "no AVX2",
                           tf=tf.__version__, tf2onnx=tf2onnx.__version__, ort=onnxruntime.__version__)
    path.write_text(head + markdown(result) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help="a corpus built by examples/corpus/build.py (default: build one)")
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--no-peers", action="store_true", help="bertc columns only")
    parser.add_argument("--md", help="write the markdown page here (docs/coverage.md)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    with tempfile.TemporaryDirectory(prefix="bertc-corpus-") as tmp:
        corpus = Path(args.corpus or tmp)
        if not args.corpus:
            from examples.corpus.build import build_corpus

            log(f"building the corpus into {corpus}")
            build_corpus(corpus, only)
        manifest = json.loads((corpus / "manifest.json").read_text())
        manifest = [e for e in manifest if only is None or e["name"] in only]
        result = run(manifest, peers=not args.no_peers)
    result.update(cpu=cpu_info(), date=datetime.date.today().isoformat(),
                  seconds=round(time.perf_counter() - t0, 1), prebuilt=bool(args.corpus))
    json.dump(result, sys.stdout, indent=1)
    print()
    print(markdown(result), file=sys.stderr)
    if args.md:
        command = "python benchmarks/coverage.py --md docs/coverage.md > coverage.json"
        write_doc(Path(args.md), result, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
