"""Legalization side by side: bertc against tf2onnx and the TFLite converter (issue 4).

For each model of ``examples/legalization_models.py``, as built and with the
hand workarounds users apply for the stock converters (``workarounds=True``:
erf-spelled GELU, tf.expand_dims instead of tf.newaxis), this converts the same
SavedModel three ways -- ``bertc compile --target all``, ``python -m
tf2onnx.convert`` (a subprocess with a timeout) and the stock
``tf.lite.TFLiteConverter`` (builtins only, also in a subprocess) -- and
records whether each conversion succeeds, the error in one line, whether the
artifact loads and runs, its largest difference from TensorFlow, and its
median latency next to ours.  ``summary`` condenses that to one line per
model and converter.

Then micro-benchmarks measure each rewrite against the native op where one
exists: our cumprod scan against tf2onnx's Loop (and TF), the scatter forms
of legalize_scatter_nd against onnxruntime's ScatterND and LiteRT's
SCATTER_ND, and the cumsum scan against the native cumsums.

    python benchmarks/legalization.py [--runs 30] [--threads 1] > legalization.json

Prints one JSON document to stdout (progress goes to stderr); about two to
four minutes on two CPU cores.  Latencies are medians in milliseconds at the
stated shapes, one intra-op thread unless --threads says otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MODEL_SHAPE = (8, 48)  # batch, seq (the models' position table has 64 rows)
TF2ONNX_TIMEOUT = 240


def log(msg: str) -> None:
    print(f"[legalization] {msg}", file=sys.stderr, flush=True)


def one_line(text: str, prefer: tuple[str, ...] = ()) -> str:
    """The most telling line of an error text, at most 300 characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for pattern in prefer:
        for ln in lines:
            if re.search(pattern, ln):
                return ln[:300]
    return (lines[-1] if lines else "")[:300]


def load_error(text: str) -> str:
    """onnxruntime's refusal in one short line: which op type it has no kernel for."""
    m = re.search(r'In Node, \("([^"]*)", (\w+),.*?(No Op registered for \S+ with domain_version of \d+)', text, re.S)
    if m:
        return f"onnxruntime: {m.group(3)} (node {m.group(1)})"
    return one_line(text, (r"INVALID_GRAPH", r"Error", r"rror"))


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 4)


# --------------------------------------------------------------------------- peers
_CONVERT_TFLITE = """
import sys, tensorflow as tf
conv = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
open(sys.argv[2], "wb").write(conv.convert())
"""


def tflite_converter(src: Path, out: Path) -> dict:
    """The stock converter, builtins only (its default), in a child process."""
    res = subprocess.run([sys.executable, "-c", _CONVERT_TFLITE, str(src), str(out)], capture_output=True,
                         text=True, timeout=TF2ONNX_TIMEOUT)
    if res.returncode != 0:
        return {"converted": False, "error": one_line(res.stderr, (r"TF Select ops:", r"error:", r"Error"))}
    return {"converted": True}


def tf2onnx_convert(src: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(src), "--output", str(out)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TF2ONNX_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"converted": False, "error": f"timed out after {TF2ONNX_TIMEOUT} s"}
    unsupported = one_line(res.stderr, (r"Unsupported ops",)) if "Unsupported ops" in res.stderr else None
    if res.returncode != 0 or not out.exists():
        return {"converted": False, "error": one_line(res.stderr, (r"ERROR", r"Error"))}
    info = {"converted": True, "opset": _opset(res.stderr)}
    if unsupported:
        info["warning"] = unsupported
    import onnx

    counts = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    info["notable_ops"] = {k: v for k, v in sorted(counts.items())
                           if k in ("Loop", "Erfc", "Erf", "ScatterND", "CumSum", "Einsum", "If", "Scan")}
    return info


def _opset(stderr: str) -> int | None:
    m = re.search(r"Using opset <onnx, (\d+)>", stderr)
    return int(m.group(1)) if m else None


def builtins_only(path: Path) -> bool:
    from bertc.targets.tflite_builder import B, read_model

    model = read_model(path.read_bytes())
    return all(c.customCode is None and max(c.builtinCode, c.deprecatedBuiltinCode) != B.CUSTOM
               for c in model.operatorCodes)


def measure(path: Path, feeds: dict, want: dict, runs: int, threads: int) -> dict:
    """Load, run, compare with TF and time one artifact."""
    from bertc.runtime.session import open_session

    try:
        session = open_session(path, threads=threads)
    except Exception as e:
        return {"loads": False, "error": load_error(str(e))}
    try:
        got = session.run(feeds)
    except Exception as e:
        return {"loads": True, "runs": False, "error": one_line(str(e))}
    err = max(float(np.max(np.abs(np.asarray(got[k], np.float64) - want[k]))) for k in want)
    return {"loads": True, "runs": True, "max_abs_err_vs_tf": err,
            "median_ms": median_ms(lambda: session.run(feeds), runs)}


def compare_models(work: Path, runs: int, threads: int) -> dict:
    """Every model, as built and with the usual hand workarounds, converted three ways."""
    from concurrent.futures import ThreadPoolExecutor

    from examples.legalization_models import MODELS, save_model

    variants = [(kind, workarounds) for kind in MODELS for workarounds in (False, True)]
    sources = {}
    for kind, workarounds in variants:
        name = kind + ("+workarounds" if workarounds else "")
        sources[name] = Path(save_model(kind, str(work / name), workarounds=workarounds))
    # The peers run in child processes, two at a time, while bertc compiles here.
    with ThreadPoolExecutor(max_workers=2) as pool:
        peers = {name: (pool.submit(tf2onnx_convert, src, work / f"{name}.tf2onnx.onnx"),
                        pool.submit(tflite_converter, src, work / f"{name}.converter.tflite"))
                 for name, src in sources.items()}
        ours = {name: _bertc_compile(src, work / f"{name}.bertc") for name, src in sources.items()}
        peers = {name: (a.result(), b.result()) for name, (a, b) in peers.items()}
    return {name: _measure_model(name, src, work, ours[name], *peers[name], runs, threads)
            for name, src in sources.items()}


def _bertc_compile(src: Path, out: Path) -> dict:
    from bertc.cli import main as bertc_main

    log(f"bertc compile {src.name}")
    t0 = time.perf_counter()
    code = bertc_main(["compile", str(src), "--target", "all", "-o", str(out)])
    info = {"converted": code == 0, "seconds": round(time.perf_counter() - t0, 2)}
    if code == 0:
        report = json.loads((out / "report.json").read_text())
        info["legalization_passes"] = [p for p in report["pipeline"] if p.startswith("legalize_")]
        info["tflite_builtins_only"] = builtins_only(out / "model.tflite")
    return info


def _measure_model(name: str, src: Path, work: Path, ours: dict, onnx_peer: dict, lite_peer: dict,
                   runs: int, threads: int) -> dict:
    from bertc.runtime.inputs import random_inputs
    from bertc.runtime.session import open_session

    log(f"measure {name}")
    tf_session = open_session(src)
    feeds = random_inputs(zip(tf_session.input_names, tf_session.input_dtypes), *MODEL_SHAPE,
                          np.random.default_rng(0))
    want = {k: np.asarray(v, np.float64) for k, v in tf_session.run(feeds).items()}
    row: dict = {"shape": list(MODEL_SHAPE),
                 "tensorflow": {"median_ms": median_ms(lambda: tf_session.run(feeds), runs)}}
    if ours["converted"]:
        for kind in ("onnx", "tflite"):
            ours[kind] = measure(work / f"{name}.bertc" / f"model.{kind}", feeds, want, runs, threads)
    row["bertc"] = ours
    if onnx_peer["converted"]:
        onnx_peer.update(measure(work / f"{name}.tf2onnx.onnx", feeds, want, runs, threads))
    row["tf2onnx"] = onnx_peer
    if lite_peer["converted"]:
        path = work / f"{name}.converter.tflite"
        lite_peer["builtins_only"] = builtins_only(path)
        lite_peer.update(measure(path, feeds, want, runs, threads))
    row["tflite_converter"] = lite_peer
    return row


# --------------------------------------------------------------------------- micro-benchmarks
def _lowered(graph, pipeline: str | None):
    from bertc.ir.parser import parse_graph
    from bertc.ir.printer import print_graph
    from bertc.pass_manager import PassManager, parse_pipeline
    from bertc.targets.onnx import TARGET as ONNX
    from bertc.targets.tflite import TARGET as TFLITE

    g = parse_graph(print_graph(graph), graph.weights())
    if pipeline:
        PassManager(parse_pipeline(pipeline + ",fold_constants,cse,dce")).run(g)
    out = {}
    for target in (ONNX, TFLITE):
        out[target.name] = None if target.unsupported(g) else target.lower(g)
    return out


def _time_forms(graph, forms: dict[str, str | None], feeds: dict, runs: int, threads: int) -> dict:
    """{form: {target: median ms or "not legal"}} plus the largest disagreement between forms."""
    from bertc.runtime.session import open_session

    result: dict = {}
    reference = None
    for form, pipeline in forms.items():
        row = {}
        for target, data in _lowered(graph, pipeline).items():
            if data is None:
                row[target] = "not legal"
                continue
            session = open_session(data, kind=target, threads=threads)
            got = session.run(feeds)["y"]
            if reference is None:
                reference = got
            elif not np.array_equal(got, reference, equal_nan=True):
                row[f"{target}_max_abs_diff"] = float(np.max(np.abs(got.astype(np.float64) - reference)))
            row[target] = median_ms(lambda: session.run(feeds), runs)
        result[form] = row
    return result


def micro_cumprod(work: Path, runs: int, threads: int) -> dict:
    """Our scan against tf2onnx's Loop for tf.math.cumprod on [batch, seq] f32, axis 1."""
    import tensorflow as tf

    from bertc.frontend.tf import import_model
    from bertc.runtime.session import open_session

    class Cumprod(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.math.cumprod(x, axis=1)}

    src = work / "cumprod"
    module = Cumprod()
    tf.saved_model.save(module, str(src), signatures={"serving_default": module.serve.get_concrete_function()})
    graph, _ = import_model(src)
    peer = tf2onnx_convert(src, work / "cumprod.tf2onnx.onnx")
    lowered = _lowered(graph, "legalize_cumprod")
    log("micro: cumprod measured")
    out = {"tf2onnx": {k: v for k, v in peer.items() if k != "converted"}}
    for batch, seq in ((8, 128), (8, 512)):
        rng = np.random.default_rng(seq)
        x = rng.uniform(0.9, 1.1, (batch, seq)).astype(np.float32)
        x[rng.random(x.shape) < 0.02] = 0.0
        x[rng.random(x.shape) < 0.3] *= -1
        feeds = {"x": x}
        want = tf.math.cumprod(x, axis=1).numpy()
        row: dict = {"tensorflow": median_ms(lambda: module.serve(tf.constant(x)), runs)}
        for target, data in lowered.items():
            s = open_session(data, kind=target, threads=threads)
            row[f"bertc_scan_{target}"] = median_ms(lambda: s.run(feeds), runs)
            row[f"bertc_scan_{target}_max_rel_err"] = _rel_err(s.run(feeds)["y"], want)
        if peer["converted"]:
            s = open_session(work / "cumprod.tf2onnx.onnx", threads=threads)
            row["tf2onnx_loop_onnx"] = median_ms(lambda: s.run(feeds), runs)
            row["tf2onnx_loop_onnx_max_rel_err"] = _rel_err(s.run(feeds)["y"], want)
        out[f"[{batch},{seq}] axis 1"] = row
    return out


def _rel_err(got, want) -> float:
    scale = np.maximum(np.abs(want), 1e-30)
    return float(np.max(np.where(want == got, 0.0, np.abs(got - want) / scale)))


def micro_scatter(runs: int, threads: int) -> dict:
    """Native scatters against legalize_scatter_nd's forms (and a one-hot matmul) on BERT-sized shapes."""
    from bertc.ir import Graph, TensorType

    rng = np.random.default_rng(0)
    out = {}
    b, s, h = 8, 128, 768

    def graph(kind, data_type, idx_type, upd_type):
        g = Graph()
        d = g.add_input("d", TensorType(*data_type))
        i = g.add_input("i", TensorType(*idx_type))
        u = g.add_input("u", TensorType(*upd_type))
        g.outputs["y"] = g.add(kind, [d, i, u]).result
        return g

    cls = np.stack([np.arange(b), np.zeros(b, np.int64)], 1).astype(np.int32)
    every = np.stack(np.meshgrid(np.arange(b), np.arange(s), indexing="ij"), -1).reshape(-1, 2).astype(np.int32)
    cases = {
        f"update f32 [{b},{s},{h}] <- {b} rows": (
            "scatter_nd_update", ("f32", ("batch", "seq", h)), ("i32", ("n", 2)), ("f32", ("n", h)),
            {"d": rng.standard_normal((b, s, h)).astype(np.float32), "i": cls,
             "u": rng.standard_normal((b, h)).astype(np.float32)}),
        f"update i32 [{b},{s}] <- {b} rows": (
            "scatter_nd_update", ("i32", ("batch", "seq")), ("i32", ("n", 2)), ("i32", ("n",)),
            {"d": rng.integers(0, 2, (b, s)).astype(np.int32), "i": cls, "u": np.zeros(b, np.int32)}),
        f"update i32 [{b},{s}] <- {b * s} rows": (
            "scatter_nd_update", ("i32", ("batch", "seq")), ("i32", ("n", 2)), ("i32", ("n",)),
            {"d": rng.integers(0, 2, (b, s)).astype(np.int32), "i": every,
             "u": rng.integers(0, 9, b * s).astype(np.int32)}),
        f"add f32 [{b},{s},{h}] <- {b} rows": (
            "scatter_nd_add", ("f32", ("batch", "seq", h)), ("i32", ("n", 2)), ("f32", ("n", h)),
            {"d": rng.standard_normal((b, s, h)).astype(np.float32), "i": cls,
             "u": rng.standard_normal((b, h)).astype(np.float32)}),
    }
    for name, (kind, dt, it, ut, feeds) in cases.items():
        log(f"scatter {name}")
        forms = {"native": None}
        if kind == "scatter_nd_update":
            forms["radix"] = "legalize_scatter_nd{force=true,form=radix}"
            static = graph(kind, (dt[0], (b, s) + dt[1][2:]), it, ut)  # "select" needs a static grid
            row = _time_forms(graph(kind, dt, it, ut), forms, feeds, runs, threads)
            row.update(_time_forms(static, {"select (static grid)": "legalize_scatter_nd{force=true,form=select}"},
                                   feeds, runs, threads))
        else:
            forms["add"] = "legalize_scatter_nd{force=true}"
            row = _time_forms(graph(kind, dt, it, ut), forms, feeds, runs, threads)
        out[name] = row
    out[f"scatter_nd f32 [{b * s},{h}] <- {b} rows"] = _micro_scatter_nd(b, s, h, runs, threads, rng)
    return out


def _micro_scatter_nd(b: int, s: int, h: int, runs: int, threads: int, rng) -> dict:
    """zeros + updates: native SCATTER_ND / ScatterND against onehot(idx)ᵀ @ updates."""
    from bertc.ir import Graph, TensorType

    p = b * s
    native, onehot = Graph(), Graph()
    for g in (native, onehot):
        i = g.add_input("i", TensorType("i32", ("n", 1)))
        u = g.add_input("u", TensorType("f32", ("n", h)))
        if g is native:
            g.outputs["y"] = g.add("scatter_nd", [i, u], {"shape": [p, h]}).result
        else:
            flat = g.add("squeeze", [i], {"axes": [1]}).result
            hot = g.add("one_hot", [flat], {"depth": p, "axis": 0}).result  # [p, n]
            g.outputs["y"] = g.add("matmul", [hot, u]).result
    feeds = {"i": (np.arange(b) * s).reshape(-1, 1).astype(np.int32),
             "u": rng.standard_normal((b, h)).astype(np.float32)}
    row = _time_forms(native, {"native": None}, feeds, runs, threads)
    row.update(_time_forms(onehot, {"one-hot matmul": None}, feeds, runs, threads))
    return row


def micro_cumsum(runs: int, threads: int) -> dict:
    """RoBERTa's position-id cumsum: native cumsum against the scan of legalize_cumsum."""
    from bertc.ir import Graph, TensorType

    g = Graph()
    x = g.add_input("x", TensorType("i32", ("batch", "seq")))
    g.outputs["y"] = g.add("cumsum", [x], {"axis": 1}).result
    feeds = {"x": (np.random.default_rng(0).random((8, 128)) < 0.9).astype(np.int32)}
    return {"i32 [8,128] axis 1": _time_forms(g, {"native": None, "scan": "legalize_cumsum{form=scan}"},
                                              feeds, runs, threads)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime")
    parser.add_argument("--skip-models", action="store_true", help="micro-benchmarks only")
    args = parser.parse_args(argv)

    import onnxruntime
    import tensorflow as tf

    from bertc.quiet import native_stderr_silenced

    t0 = time.perf_counter()
    result: dict = {"versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__,
                                 "tf2onnx": _version("tf2onnx"), "ai_edge_litert": _version("ai_edge_litert")},
                    "threads": args.threads, "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="bertc-legalization-") as tmp, native_stderr_silenced(True):
        work = Path(tmp)
        if not args.skip_models:
            result["models"] = compare_models(work, args.runs, args.threads)
            result["summary"] = summarize(result["models"])
        log("micro: cumprod")
        result["micro"] = {"cumprod": micro_cumprod(work, args.runs, args.threads)}
        result["micro"]["scatter"] = micro_scatter(args.runs, args.threads)
        log("micro: cumsum")
        result["micro"]["cumsum"] = micro_cumsum(args.runs, args.threads)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def summarize(models: dict) -> dict:
    """model -> converter -> "ok, 1.23 ms, err 1e-08" or the failure in one line."""
    def cell(info: dict) -> str:
        if not info.get("converted"):
            return "conversion fails: " + info.get("error", "?")
        if not info.get("loads", True):
            return "converts, does not load: " + info.get("error", "?").split(" (node ")[0]
        if not info.get("runs", True):
            return "loads, does not run: " + info.get("error", "?")
        flex = "" if info.get("builtins_only", True) else ", needs Flex"
        return f"ok{flex}, {info['median_ms']:.3f} ms, max |err| vs TF {info['max_abs_err_vs_tf']:.1e}"

    out = {}
    for name, row in models.items():
        ours = row["bertc"]
        out[name] = {
            "tensorflow": f"{row['tensorflow']['median_ms']:.3f} ms",
            "bertc onnx": cell({"converted": ours["converted"], **ours.get("onnx", {})}),
            "bertc tflite": cell({"converted": ours["converted"], **ours.get("tflite", {}),
                                  "builtins_only": ours.get("tflite_builtins_only", False)}),
            "tf2onnx": cell(row["tf2onnx"]),
            "tflite converter": cell(row["tflite_converter"]),
        }
    return out


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
