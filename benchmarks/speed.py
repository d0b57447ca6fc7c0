"""Inference speed of BERT-base on CPU: bertc's artifacts against their peers, one run (issue 7).

Variants (batch 1, ``--threads`` intra-op threads each, every one fed the same ids):

  tf                         the SavedModel in TensorFlow (the 1.0 of every ratio)
  tf2onnx_fp32               python -m tf2onnx.convert --opset 17, on onnxruntime
  tf2onnx_int8               onnxruntime.quantization.quantize_dynamic (QInt8) of that file
  bertc_onnx_fp32            bertc compile --target onnx (standard ONNX ops only)
  bertc_onnx_fp32_fused      the same with --passes ort_fusions,fuse_attention (com.microsoft
                             SkipLayerNormalization / BiasGelu / MultiHeadAttention)
  bertc_tflite_fp32          bertc compile --target tflite
  bertc_onnx_int8 / bertc_tflite_int8   --passes quant_int8
  bertc_onnx_full_int8 / bertc_tflite_full_int8   --passes calibrate,quant_full (static int8)
  bertc_onnx_int8_fused / bertc_onnx_full_int8_fused   the int8 pipelines followed by ort_fusions
  bertc_onnx_full_int8_outputs_none   calibrate,quant_full{outputs=none}: no re-quantized results
                             (TFLite needs them for int8 FULLY_CONNECTED; onnxruntime does not)
  bertc_onnx_int8_w7 / bertc_onnx_full_int8_w7   quant_int8{weight_bits=7} and
                             calibrate,quant_full{outputs=none,weight_bits=7}: 7-bit kernels, which
                             onnxruntime runs on its u8 x s8 path exactly (8-bit ones run u8 x u8)
  bertc_*_sliced             the same after sink_row_slice: the last layer computes only the
                             [CLS] row that the pooler reads (fp32 on both targets; int8 w7 on ONNX)
  tf2onnx_static_int8        onnxruntime.quantization.quantize_static (QDQ, MinMax, per channel)
  tflite_converter_fp32      tf.lite.TFLiteConverter (builtins)
  tflite_converter_int8      the same with optimizations=[DEFAULT] (dynamic range)

  bertc_onnx_int8_native / bertc_onnx_full_int8_native   quant_int8 and calibrate,quant_full{outputs=none}
                             with --cpu native: on a VNNI/AMX CPU the 8-bit kernels are stored s8 for
                             onnxruntime's u8 x s8 kernels (exact there, and only there)

The model (``--model``) is BERT-base with random weights: ``plain`` (default),
examples/bert_tf.py with new axes added by ``tf.expand_dims`` (its ``[:, None]`` form
is a StridedSlice the TFLite converter leaves to Flex), which every peer converts; or
``hf``, a Hugging Face ``TFBertForSequenceClassification``, whose exact GELU tf2onnx
writes as an Erfc node onnxruntime refuses (expected failures, named in the JSON).

Artifacts are built once into ``--cache`` (a dir per variant) and reused.  A
peer that fails to convert or load is recorded with its one-line error, and the
benchmark then exits 1, unless the model lists that failure as expected.  Each
sequence length is timed round robin over all variants (the first one
rotating), so the shared machine's noise hits every variant alike.  onnxruntime
sessions run with ``session.intra_op.allow_spinning=0`` unless ``--ort-spinning``:
a spinning session's threads keep two cores busy after its run, which slowed the
variant timed next (and, on this loaded 2-core machine, itself).  Medians in
ms, ``ratio`` = latency / TF latency at that length, ``vs_best_peer`` = the best
peer's latency / this one's (above 1: faster than every peer).  At each length every
variant is also run on 4 random rows and compared with TF: ``max_abs_err_seq{n}``,
and for bertc's variants ``within_bound_seq{n}``, the check its pipeline declares
(bertc.fidelity); only a variant within its bound at every length can be "best".
``roofline`` estimates this CPU's fp32 and int8 peaks (cores x clock x SIMD width,
an estimate, not a measurement) and each variant's fraction of it.

    python benchmarks/speed.py [--model hf|plain] [--cache DIR] [--seq 16,128] [--runs 20] [--threads 2] > speed.json
    python benchmarks/speed.py --quick          # tiny model, few runs: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

# model -> (builder script, BERT-base size flags, tiny --quick flags, vocabulary at full size)
MODELS = {
    "plain": ("bert_tf.py", ["--layers", "12", "--hidden", "768", "--heads", "12", "--ffn", "3072",
                             "--vocab", "30522", "--max-positions", "512", "--new-axes", "expand_dims"],
              ["--new-axes", "expand_dims"], 30522),
    "hf": ("hf_bert.py", ["--num-hidden-layers", "12", "--hidden-size", "768", "--num-attention-heads", "12",
                          "--intermediate-size", "3072", "--vocab-size", "30522", "--max-position-embeddings", "512",
                          "--num-labels", "2", "--no-int64-signature"], ["--no-int64-signature"], 30522),
}
PEERS = ("tf2onnx_fp32", "tf2onnx_int8", "tf2onnx_static_int8", "tflite_converter_fp32", "tflite_converter_int8")
_ERFC = ("tf2onnx 1.17 writes TF's exact GELU as an Erfc node, which is no ONNX op, so onnxruntime refuses the "
         "file; the quantized files are made from it")
EXPECTED_PEER_FAILURES = {"plain": {},
                          "hf": {"tf2onnx_fp32": _ERFC, "tf2onnx_int8": _ERFC, "tf2onnx_static_int8": _ERFC}}
ORT_FUSIONS = "ort_fusions,fuse_attention"  # every onnxruntime contrib fusion (docs/performance.md)
QUANT_FULL = "calibrate,quant_full"  # static int8; no --calib here: ranges from random token ids
CONVERT_TIMEOUT = 600

_TFLITE_CONVERT = """
import sys, tensorflow as tf
conv = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
if sys.argv[3] == "int8":
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
data = conv.convert()
open(sys.argv[2], "wb").write(data)
"""

# onnxruntime's static QDQ int8 (its defaults: MinMax, QDQ format, u8 activations, s8 weights), calibrated on
# 8 random batches like bertc's calibrate without --calib
_QUANTIZE_STATIC = """
import sys, numpy as np, onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
names = [i.name for i in ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).get_inputs()]
rng = np.random.default_rng(0)
class Reader(CalibrationDataReader):
    def __init__(self):
        self.batches = iter([{n: (rng.integers(1, int(sys.argv[3]), (4, 64)) if "ids" in n and "type" not in n
                                  else np.ones((4, 64)) if "mask" in n else np.zeros((4, 64))).astype(np.int32)
                              for n in names} for _ in range(8)])
    def get_next(self):
        return next(self.batches, None)
quantize_static(sys.argv[1], sys.argv[2], Reader(), weight_type=QuantType.QInt8, per_channel=True)
"""

_QUANTIZE_DYNAMIC = """
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)
"""


def log(msg: str) -> None:
    print(f"[speed] {msg}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    """The most telling line of an error text."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for pattern in (r"error:", r"ERROR", r"Error"):
        for ln in lines:
            m = re.search(pattern, ln)
            if m:
                return ln[m.start():][:300]
    return (lines[-1] if lines else "failed")[:300]


# --------------------------------------------------------------------------- building
def _child(cmd: list[str], out: Path) -> str | None:
    """Run a converter; None on success, else its one-line error."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=CONVERT_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"timed out after {CONVERT_TIMEOUT} s"
    if res.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        out.unlink(missing_ok=True)
        return one_line(res.stderr) or f"exit {res.returncode}"
    return None


def _bertc(model: Path, out: Path, target: str, passes: str | None, *extra: str) -> Callable[[], str | None]:
    """A compile without verification (this benchmark checks every artifact against TF at every length)."""
    cmd = [sys.executable, "-m", "bertc.cli", "compile", str(model), "-o", str(out), "--target", target,
           "--no-verify", *extra]
    if passes:
        cmd += ["--passes", passes]
    return lambda: _child(cmd, out / ("model.onnx" if target != "tflite" else "model.tflite"))


# build() job -> the pipeline it compiles (what its verification bound is read from)
JOB_PASSES = {"bertc_fp32": "", "bertc_fused": ORT_FUSIONS, "bertc_int8": "quant_int8", "bertc_full": QUANT_FULL,
              "bertc_full_none": f"{QUANT_FULL}{{outputs=none}}", "bertc_int8_fused": f"quant_int8,{ORT_FUSIONS}",
              "bertc_full_fused": f"{QUANT_FULL},{ORT_FUSIONS}", "bertc_int8_w7": "quant_int8{weight_bits=7}",
              "bertc_full_w7": f"{QUANT_FULL}{{outputs=none,weight_bits=7}}", "bertc_sliced": "sink_row_slice",
              "bertc_int8_w7_sliced": "sink_row_slice,quant_int8{weight_bits=7}",
              "bertc_int8_native": "quant_int8", "bertc_full_native": f"{QUANT_FULL}{{outputs=none}}"}


def build_model(cache: Path, model_kind: str, quick: bool) -> Path:
    """The SavedModel every variant is made from, built once into ``cache``."""
    model = cache / "model"
    if not (model / "saved_model.pb").exists():
        script, sizes, tiny, _ = MODELS[model_kind]
        log(f"building the SavedModel ({model_kind}) into {model}")
        subprocess.run([sys.executable, str(ROOT / "examples" / script), str(model), *(tiny if quick else sizes)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return model


def build(cache: Path, model: Path, vocab: int) -> dict[str, dict]:
    """Every artifact into ``cache`` (skipping what is there): variant -> {path, error?, build_s}."""
    py = sys.executable
    jobs: dict[str, tuple[Path, Callable[[], str | None]]] = {
        "tf2onnx_fp32": (cache / "tf2onnx.onnx",
                         lambda: _child([py, "-m", "tf2onnx.convert", "--saved-model", str(model), "--opset", "17",
                                         "--output", str(cache / "tf2onnx.onnx")], cache / "tf2onnx.onnx")),
        "bertc_fp32": (cache / "bertc_fp32" / "model.onnx", _bertc(model, cache / "bertc_fp32", "all", None)),
        "bertc_onnx_fp32_fused": (cache / "bertc_fused" / "model.onnx",
                                  _bertc(model, cache / "bertc_fused", "onnx", ORT_FUSIONS)),
        "bertc_int8": (cache / "bertc_int8" / "model.onnx", _bertc(model, cache / "bertc_int8", "all", "quant_int8")),
        "bertc_full": (cache / "bertc_full" / "model.onnx", _bertc(model, cache / "bertc_full", "all", QUANT_FULL)),
        "bertc_full_none": (cache / "bertc_full_none" / "model.onnx",
                            _bertc(model, cache / "bertc_full_none", "onnx", f"{QUANT_FULL}{{outputs=none}}")),
        "bertc_int8_fused": (cache / "bertc_int8_fused" / "model.onnx",
                             _bertc(model, cache / "bertc_int8_fused", "onnx", f"quant_int8,{ORT_FUSIONS}")),
        "bertc_full_fused": (cache / "bertc_full_fused" / "model.onnx",
                             _bertc(model, cache / "bertc_full_fused", "onnx", f"{QUANT_FULL},{ORT_FUSIONS}")),
        "bertc_int8_w7": (cache / "bertc_int8_w7" / "model.onnx",
                          _bertc(model, cache / "bertc_int8_w7", "onnx", "quant_int8{weight_bits=7}")),
        "bertc_full_w7": (cache / "bertc_full_w7" / "model.onnx",
                          _bertc(model, cache / "bertc_full_w7", "onnx",
                                 f"{QUANT_FULL}{{outputs=none,weight_bits=7}}")),
        "bertc_sliced": (cache / "bertc_sliced" / "model.onnx",
                         _bertc(model, cache / "bertc_sliced", "all", "sink_row_slice")),
        "bertc_int8_w7_sliced": (cache / "bertc_int8_w7_sliced" / "model.onnx",
                                 _bertc(model, cache / "bertc_int8_w7_sliced", "onnx",
                                        "sink_row_slice,quant_int8{weight_bits=7}")),
        "bertc_int8_native": (cache / "bertc_int8_native" / "model.onnx",
                              _bertc(model, cache / "bertc_int8_native", "onnx", "quant_int8", "--cpu", "native")),
        "bertc_full_native": (cache / "bertc_full_native" / "model.onnx",
                              _bertc(model, cache / "bertc_full_native", "onnx", JOB_PASSES["bertc_full_native"],
                                     "--cpu", "native")),
        "tflite_converter_fp32": (cache / "tflite_conv_fp32.tflite",
                                  lambda: _child([py, "-c", _TFLITE_CONVERT, str(model),
                                                  str(cache / "tflite_conv_fp32.tflite"), "fp32"],
                                                 cache / "tflite_conv_fp32.tflite")),
        "tflite_converter_int8": (cache / "tflite_conv_int8.tflite",
                                  lambda: _child([py, "-c", _TFLITE_CONVERT, str(model),
                                                  str(cache / "tflite_conv_int8.tflite"), "int8"],
                                                 cache / "tflite_conv_int8.tflite")),
    }
    status_file = cache / "build.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}

    def run(name: str) -> tuple[str, dict]:
        path, fn = jobs[name]
        if path.exists() or "error" in status.get(name, {}):
            return name, status.get(name, {"build_s": None})
        t0 = time.perf_counter()
        err = fn()
        info = {"build_s": round(time.perf_counter() - t0, 1)}
        if err:
            info["error"] = err
        log(f"built {name} in {info['build_s']} s" + (f": {err}" if err else ""))
        return name, info

    with ThreadPoolExecutor(2) as pool:  # tf2onnx (the slowest) runs beside the rest
        for name, info in pool.map(run, jobs):
            status[name] = info
    q = cache / "tf2onnx_int8.onnx"
    if "error" not in status["tf2onnx_fp32"] and not q.exists() and "error" not in status.get("tf2onnx_int8", {}):
        t0 = time.perf_counter()
        err = _child([py, "-c", _QUANTIZE_DYNAMIC, str(cache / "tf2onnx.onnx"), str(q)], q)
        status["tf2onnx_int8"] = {"build_s": round(time.perf_counter() - t0, 1), **({"error": err} if err else {})}
    elif "error" in status["tf2onnx_fp32"]:
        status["tf2onnx_int8"] = {"error": "no tf2onnx model to quantize"}
    qs = cache / "tf2onnx_static_int8.onnx"
    if "error" not in status["tf2onnx_fp32"] and not qs.exists() and "error" not in status.get("tf2onnx_static_int8", {}):
        t0 = time.perf_counter()
        err = _child([py, "-c", _QUANTIZE_STATIC, str(cache / "tf2onnx.onnx"), str(qs), str(vocab)], qs)
        status["tf2onnx_static_int8"] = {"build_s": round(time.perf_counter() - t0, 1), **({"error": err} if err else {})}
    elif "error" in status["tf2onnx_fp32"]:
        status["tf2onnx_static_int8"] = {"error": "no tf2onnx model to quantize"}
    status_file.write_text(json.dumps(status, indent=2))
    return status


def variants(cache: Path) -> dict[str, tuple[str, Path, dict, str]]:
    """variant -> (backend, path, extra session options, the build() job that made it)."""
    def bertc(job: str, backend: str) -> tuple[str, Path, dict, str]:
        return backend, cache / job / f"model.{backend}", {}, job

    return {
        "tf": ("tf", cache / "model", {}, "tf"),
        "tf2onnx_fp32": ("onnx", cache / "tf2onnx.onnx", {}, "tf2onnx_fp32"),
        "tf2onnx_int8": ("onnx", cache / "tf2onnx_int8.onnx", {}, "tf2onnx_int8"),
        "bertc_onnx_fp32": bertc("bertc_fp32", "onnx"),
        "bertc_onnx_fp32_fused": bertc("bertc_fused", "onnx"),
        "bertc_tflite_fp32": bertc("bertc_fp32", "tflite"),
        "bertc_onnx_fp32_sliced": bertc("bertc_sliced", "onnx"),
        "bertc_tflite_fp32_sliced": bertc("bertc_sliced", "tflite"),
        "bertc_onnx_int8": bertc("bertc_int8", "onnx"),
        "bertc_tflite_int8": bertc("bertc_int8", "tflite"),
        "bertc_onnx_full_int8": bertc("bertc_full", "onnx"),
        "bertc_onnx_full_int8_outputs_none": bertc("bertc_full_none", "onnx"),
        "bertc_onnx_int8_fused": bertc("bertc_int8_fused", "onnx"),
        "bertc_onnx_full_int8_fused": bertc("bertc_full_fused", "onnx"),
        "bertc_onnx_int8_w7": bertc("bertc_int8_w7", "onnx"),
        "bertc_onnx_full_int8_w7": bertc("bertc_full_w7", "onnx"),
        "bertc_onnx_int8_w7_sliced": bertc("bertc_int8_w7_sliced", "onnx"),
        "bertc_onnx_int8_native": bertc("bertc_int8_native", "onnx"),
        "bertc_onnx_full_int8_native": bertc("bertc_full_native", "onnx"),
        "bertc_tflite_full_int8": bertc("bertc_full", "tflite"),
        "tf2onnx_static_int8": ("onnx", cache / "tf2onnx_static_int8.onnx", {}, "tf2onnx_static_int8"),
        "tflite_converter_fp32": ("tflite", cache / "tflite_conv_fp32.tflite", {}, "tflite_converter_fp32"),
        "tflite_converter_int8": ("tflite", cache / "tflite_conv_int8.tflite", {}, "tflite_converter_int8"),
    }


# --------------------------------------------------------------------------- sessions
def open_variant(backend: str, path: Path, threads: int, extra: dict):
    if backend == "tf":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return _TFSignature(tf.saved_model.load(str(path)))
    if backend == "onnx":
        from bertc.runtime.onnx_session import OnnxSession

        return OnnxSession(path, threads, **extra)
    from bertc.runtime.tflite_session import TFLiteSession

    return TFLiteSession(path, threads)


class _TFSignature:
    """The SavedModel's serving_default signature behind the sessions' run(feeds) API."""

    def __init__(self, loaded) -> None:
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["serving_default"]
        specs = self._fn.structured_input_signature[1]
        self.input_names = sorted(specs)
        self._dtypes = {n: specs[n].dtype.as_numpy_dtype for n in specs}

    def run(self, feeds):
        out = self._fn(**{n: np.asarray(feeds[n]).astype(self._dtypes[n]) for n in self.input_names})
        return {k: v.numpy() for k, v in out.items()}


def feeds_for(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feeds under the session's own input names (tf2onnx and the converter add suffixes)."""
    out = {}
    for name in session.input_names:
        key = next((k for k in sorted(feeds, key=len, reverse=True) if k in name), None)
        if key is None:
            raise KeyError(f"no feed for input {name}")
        out[name] = feeds[key]
    return out


def logits(result: dict) -> np.ndarray:
    key = next((k for k in result if "logits" in k), next(iter(result)))
    return np.asarray(result[key])


def make_feeds(seq: int, vocab: int, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(1, vocab, (batch, seq)).astype(np.int32),
            "attention_mask": np.ones((batch, seq), np.int32),
            "token_type_ids": np.zeros((batch, seq), np.int32)}


def time_round_robin(runners: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    names = list(runners)
    for _ in range(warmup):
        for n in names:
            runners[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(runs):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            runners[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: round(float(np.median(t)) * 1e3, 3) for n, t in times.items()}


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="plain",
                    help="plain: examples/bert_tf.py with tf.expand_dims (default: every peer converts it); hf: "
                         "Hugging Face TFBertForSequenceClassification (tf2onnx's file of it does not load)")
    ap.add_argument("--cache", help="artifact cache dir (default: $TMPDIR/bertc-speed-MODEL[-quick])")
    ap.add_argument("--seq", default="16,128")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny model, 3 runs (a smoke test)")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="let onnxruntime's idle threads busy-wait (its default); off by default here because "
                         "a spinning session steals the cores from the variant timed after it")
    ap.add_argument("--only", help="comma-separated variants to time (default: all)")
    args = ap.parse_args(argv)
    vocab = MODELS[args.model][3] if not args.quick else 100
    seqs = [int(s) for s in args.seq.split(",")] if not args.quick else [8, 16]
    runs, warmup = (args.runs, args.warmup) if not args.quick else (3, 1)
    cache = Path(args.cache or Path(tempfile.gettempdir()) / f"bertc-speed-{args.model}{'-quick' if args.quick else ''}")
    cache.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    status = build(cache, build_model(cache, args.model, args.quick), vocab)
    table = variants(cache)
    if args.only:
        keep = {"tf", *args.only.split(",")}
        table = {k: v for k, v in table.items() if k in keep}
    sessions, results = {}, {}
    for name, (backend, path, extra, job) in table.items():
        built = status.get(job, {})
        results[name] = {"runtime": backend, "file_mb": round(path.stat().st_size / 2**20, 1) if path.is_file() else None,
                         "build_s": built.get("build_s")}
        if job in JOB_PASSES:
            results[name]["pipeline"] = JOB_PASSES[job]
        if "error" in built or not path.exists():
            results[name]["error"] = built.get("error", f"{path.name} missing")
            continue
        try:
            if backend == "onnx":
                extra = {"spinning": args.ort_spinning, **extra}
            sessions[name] = open_variant(backend, path, args.threads, extra)
        except Exception as e:  # a peer the runtime refuses is a result, not a crash
            results[name]["error"] = one_line(f"{type(e).__name__}: {e}")
    for seq in seqs:
        check_accuracy(sessions, results, seq, vocab)
        feeds = make_feeds(seq, vocab)
        runners = {}
        for name, s in sessions.items():
            if "error" in results[name]:
                continue
            f = feeds_for(s, feeds)
            runners[name] = (lambda s=s, f=f: s.run(f))
        log(f"timing seq {seq}: {len(runners)} variants x {runs} runs")
        ms = time_round_robin(runners, runs, warmup)
        for name, v in ms.items():
            results[name][f"ms_seq{seq}"] = v
            if "tf" in ms:
                results[name][f"ratio_seq{seq}"] = round(v / ms["tf"], 3)
    best = best_peers(results, seqs)
    for r in results.values():
        for seq in seqs:
            peer = best.get(f"seq{seq}")
            if peer and f"ms_seq{seq}" in r:
                r[f"vs_best_peer_seq{seq}"] = round(peer["ms"] / r[f"ms_seq{seq}"], 3)
    machine = machine_info(args.threads)
    flops = {seq: encoder_flops(seq, quick=args.quick) for seq in seqs}
    for r in results.values():
        kind = "int8" if "int8" in str(r.get("pipeline", "")) or "quant" in str(r.get("pipeline", "")) else "fp32"
        for seq in seqs:
            if f"ms_seq{seq}" in r:
                gflops = flops[seq] / (r[f"ms_seq{seq}"] * 1e-3) / 1e9
                r[f"gflops_seq{seq}"] = round(gflops, 1)
                peak = machine["roofline"].get(f"{kind}_peak_gops")
                if peak and r.get("pipeline") is not None:
                    r[f"fraction_of_{kind}_peak_seq{seq}"] = round(gflops / peak, 4)
    unexpected = {n: results[n]["error"] for n in PEERS if n in results and "error" in results[n]
                  and n not in EXPECTED_PEER_FAILURES[args.model]}
    report = {
        "benchmark": "speed", "model": f"bert-base ({args.model})" if not args.quick else f"tiny {args.model} (quick)",
        "batch": 1, "seqs": seqs, "threads": args.threads, "runs": runs,
        "ort_spinning": args.ort_spinning, "machine": machine,
        "versions": _versions(), "ort_fusions": ORT_FUSIONS, "results": results,
        "best_peer": best,
        "expected_peer_failures": EXPECTED_PEER_FAILURES[args.model],
        "unexpected_peer_failures": unexpected,
        "encoder_gflop": {str(seq): round(f / 1e9, 3) for seq, f in flops.items()},
        "checks": checks(results, seqs, best),
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(report, indent=2))
    print(table_text(results, seqs), file=sys.stderr)
    if unexpected:
        log(f"peers failed that should not have: {unexpected}")
        return 1
    return 0


def check_accuracy(sessions: dict, results: dict, seq: int, vocab: int) -> None:
    """Every variant against TF on 4 random rows of ``seq`` tokens: max |logits - TF| and, for bertc's
    variants, whether the bound their pipeline declares holds (``within_bound_seq{n}``)."""
    from bertc.fidelity import pipeline_fidelity
    from bertc.pass_manager import parse_pipeline
    from bertc.runtime.fidelity import measure

    if "tf" not in sessions:
        return
    feeds = make_feeds(seq, vocab, seed=seq, batch=4)
    ref = logits(sessions["tf"].run(feeds_for(sessions["tf"], feeds)))
    for name, s in sessions.items():
        r = results[name]
        if name == "tf" or "error" in r:
            continue
        try:
            out = logits(s.run(feeds_for(s, feeds)))
        except Exception as e:
            r["error"] = one_line(f"{type(e).__name__}: {e}")
            continue
        r[f"max_abs_err_seq{seq}"] = float(np.abs(out - ref).max()) if out.shape == ref.shape else None
        if r.get("pipeline") is not None and out.shape == ref.shape:
            fidelity = pipeline_fidelity(parse_pipeline(r["pipeline"]) if r["pipeline"] else [])
            report = measure(_Fixed({"logits": ref}), _Fixed({"logits": out}), [{}], fidelity)
            r[f"within_bound_seq{seq}"] = report.ok
            if not report.ok:
                r.setdefault("bound_failures", {})[f"seq{seq}"] = report.failures


class _Fixed:
    """A 'session' that returns fixed outputs (to hold recorded logits to a bound)."""

    def __init__(self, outputs: dict) -> None:
        self._outputs = outputs

    def run(self, feeds):
        return self._outputs


def best_peers(results: dict, seqs: list[int]) -> dict:
    """Per length: the fastest peer over all, and per runtime (onnx, tflite), by median ms."""
    out: dict = {}
    for seq in seqs:
        timed = {n: results[n][f"ms_seq{seq}"] for n in PEERS if f"ms_seq{seq}" in results.get(n, {})}
        if not timed:
            continue
        name = min(timed, key=timed.get)
        out[f"seq{seq}"] = {"variant": name, "ms": timed[name]}
        for runtime in ("onnx", "tflite"):
            mine = {n: ms for n, ms in timed.items() if results[n]["runtime"] == runtime}
            if mine:
                n = min(mine, key=mine.get)
                out[f"seq{seq}_{runtime}"] = {"variant": n, "ms": mine[n]}
    return out


def encoder_flops(seq: int, quick: bool = False) -> int:
    """Multiply-add work (2 FLOPs each) of the encoder's matmuls at batch 1: per layer the Q/K/V/O
    projections (4·S·H²), the two FFN matmuls (2·S·H·F) and attention's scores and context
    (2·S²·H).  BERT-base: 2.73 GFLOP at seq 16, 22.35 at seq 128."""
    layers, hidden, ffn = (2, 64, 128) if quick else (12, 768, 3072)
    return layers * 2 * (seq * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * seq * seq * hidden)


def cpu_isa() -> list[str]:
    """The SIMD extensions that decide int8 and fp32 speed (from /proc/cpuinfo, Linux only)."""
    from bertc.cpu import host_flags

    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return [f for f in wanted if f in host_flags()]


# Operations per cycle per core, by what the CPU has (an estimate: two vector FMA/ALU ports, full clock):
# fp32: AVX-512 2 x 16-lane FMA = 64 flops, AVX2 2 x 8-lane FMA = 32; int8 (2 ops per multiply-add):
# AMX TDPBUSD 1024 MACs = 2048 ops, AVX-512 VNNI 2 x 64 MACs = 256, AVX-VNNI 2 x 32 = 128, AVX2
# vpmaddubsw+vpmaddwd about 32 MACs = 64.
_FP32_OPS = (("avx512f", 64), ("avx2", 32))
_INT8_OPS = (("amx_int8", 2048), ("avx512_vnni", 256), ("avx_vnni", 128), ("avx2", 64))


def machine_info(threads: int) -> dict:
    """CPU model, ISA, clock, and the fp32/int8 peak estimates the roofline fractions are taken of."""
    from bertc.cpu import host_kind

    isa = cpu_isa()
    mhz = []
    try:
        mhz = [float(ln.split(":")[1]) for ln in Path("/proc/cpuinfo").read_text().splitlines()
               if ln.startswith("cpu MHz")]
    except OSError:
        pass
    ghz = max(mhz) / 1e3 if mhz else None
    roofline: dict = {"note": "estimate: threads x clock x operations per cycle of the widest units (two ports); "
                              "not measured", "threads": threads, "clock_ghz": ghz}
    for kind, table in (("fp32", _FP32_OPS), ("int8", _INT8_OPS)):
        per_cycle = next((ops for flag, ops in table if flag in isa), None)
        roofline[f"{kind}_ops_per_cycle"] = per_cycle
        roofline[f"{kind}_peak_gops"] = round(threads * ghz * per_cycle, 1) if ghz and per_cycle else None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "isa": isa, "kind": host_kind(), "roofline": roofline}


def _cpu_model() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def checks(results: dict, seqs: list[int], best: dict) -> dict:
    """The goals, read off this run, per length:

    * ``default_int8_vs_best_peer``: bertc's default int8 (quant_int8, --cpu portable) on each target
      against the fastest peer of that runtime (above 1: faster);
    * ``best_bertc_vs_best_peer``: the fastest bertc variant within its declared bound at every length,
      against the fastest peer over all; the goal is 1.3;
    * ``static_vs_dynamic``: quant_full's time / quant_int8's per target (below 1: static is faster);
    * ``shorter_is_faster``: every artifact faster at the shorter length."""
    out: dict = {}
    if len(seqs) >= 2:
        short, long_ = min(seqs), max(seqs)
        out["shorter_is_faster"] = {name: r[f"ms_seq{short}"] < r[f"ms_seq{long_}"] for name, r in results.items()
                                    if f"ms_seq{short}" in r and f"ms_seq{long_}" in r}
    sound = [n for n, r in results.items() if n.startswith("bertc_") and "error" not in r
             and all(r.get(f"within_bound_seq{s}") for s in seqs)]
    for seq in seqs:
        key = f"ms_seq{seq}"
        for target in ("onnx", "tflite"):
            mine, peer = results.get(f"bertc_{target}_int8", {}).get(key), best.get(f"seq{seq}_{target}")
            if mine and peer:
                out.setdefault("default_int8_vs_best_peer", {})[f"{target}_seq{seq}"] = {
                    "peer": peer["variant"], "speedup": round(peer["ms"] / mine, 3), "met": mine <= peer["ms"]}
        timed = {n: results[n][key] for n in sound if key in results[n]}
        if timed and f"seq{seq}" in best:
            name = min(timed, key=timed.get)
            speedup = best[f"seq{seq}"]["ms"] / timed[name]
            out.setdefault("best_bertc_vs_best_peer", {})[f"seq{seq}"] = {
                "variant": name, "peer": best[f"seq{seq}"]["variant"], "speedup": round(speedup, 3), "goal": 1.3,
                "met": speedup >= 1.3}
        for target, (full, dyn) in {"onnx": ("bertc_onnx_full_int8", "bertc_onnx_int8"),
                                    "onnx_native": ("bertc_onnx_full_int8_native", "bertc_onnx_int8_native"),
                                    "tflite": ("bertc_tflite_full_int8", "bertc_tflite_int8")}.items():
            a, b = (results.get(n, {}).get(key) for n in (full, dyn))
            if a and b:
                out.setdefault("static_vs_dynamic", {})[f"{target}_seq{seq}"] = {
                    "time_ratio": round(a / b, 3), "static_faster": a < b}
    out["not_within_bound"] = sorted(n for n, r in results.items() if n.startswith("bertc_") and "error" not in r
                                     and n not in sound)
    return out


def table_text(results: dict, seqs: list[int]) -> str:
    head = ("| variant | " + " | ".join(f"seq {s} ms (x TF, x best peer)" for s in seqs)
            + " | max abs err | MB |")
    lines = [head, "|" + "---|" * (len(seqs) + 3)]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | " + " | ".join("-" for _ in seqs) + f" | failed: {r['error'][:120]} | |")
            continue
        cells = [f"{r.get(f'ms_seq{s}', '-')} ({r.get(f'ratio_seq{s}', '-')}, {r.get(f'vs_best_peer_seq{s}', '-')})"
                 for s in seqs]
        errs = [r.get(f"max_abs_err_seq{s}") for s in seqs]
        err = max((e for e in errs if e is not None), default=None)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if err is None else f'{err:.1e}'} | "
                     f"{r.get('file_mb') or ''} |")
    return "\n".join(lines)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tensorflow-cpu", "onnxruntime", "tf2onnx", "ai-edge-litert"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
