"""``bertc bench``: TF, onnxruntime and LiteRT side by side on one machine, in one run.

    bertc bench saved_model/ out/ [--seq 16,64,128] [--batch 1,8] [--threads N] [--runs N] [-o DIR]

Each artifact (a SavedModel directory, a .onnx, a .tflite, or a ``bertc
compile`` output directory, which stands for the artifacts in it) gets:

* latency p50/p90/p99 per sequence length at batch 1, and throughput
  (sequences/s) at the larger batches.  Runs are interleaved round-robin across
  artifacts (the first one rotating), so a burst of noise from the shared
  machine hits every backend alike instead of one;
* load time, peak RSS and the memory of the bare runtime, measured in a child
  process per artifact (import, load, a few runs, then ``VmHWM``), so one
  backend's memory never counts against another's;
* file size, and the macro-F1 given with ``--accuracy``.

Results go to bench.json, bench.md and bench.png (latency against size).  The
report says whether the CPU has VNNI, without which int8 rarely beats float32.
Top-level imports stay light: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..diagnostics import BertcError

log = logging.getLogger(__name__)

ARTIFACT_FILES = ("model.onnx", "model.tflite")  # what `bertc compile` writes
BACKEND_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite"}
RUNTIME_MODULE = {"tf": "tensorflow", "onnx": "onnxruntime", "tflite": "ai_edge_litert.interpreter"}
DEFAULT_VOCAB = 100
SEED = 0
CHILD_TIMEOUT_S = 900


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL_OR_ARTIFACTS",
                        help="SavedModel dirs, .onnx/.tflite files, or `bertc compile` output dirs")
    parser.add_argument("--seq", default="16,64,128", help="sequence lengths (default 16,64,128)")
    parser.add_argument("--batch", default="1,8",
                        help="batch sizes: 1 for latency, larger for throughput (default 1,8)")
    parser.add_argument("--threads", type=int, help="intra-op threads for every backend (default: the usable cores)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per artifact and shape (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("-o", "--output", default="bench", help="directory for bench.json/.md/.png (default ./bench)")
    parser.add_argument("--accuracy", metavar="FILE.json", help='{"artifact": macro_f1, ...} to show beside each point')


@dataclass
class Artifact:
    label: str
    path: Path
    backend: str  # tf | onnx | tflite
    size_bytes: int
    accuracy: float | None = None
    memory: dict = field(default_factory=dict)  # from the child process
    results: list[dict] = field(default_factory=list)  # one per (seq, batch)


# ------------------------------------------------------------------ arguments
def parse_sizes(text: str, option: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise BertcError(f"{option} {text!r}: give positive integers separated by commas, e.g. 16,64,128.")
    return sorted(set(sizes), key=sizes.index)


def expand(paths: list[str]) -> list[Artifact]:
    """Artifacts for the command line: compile output dirs stand for the files in them."""
    found: dict[Path, tuple[Path, str]] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise BertcError(f"{path}: no such file or directory.")
        for item, backend in _artifacts_in(path):
            found.setdefault(item.resolve(), (item, backend))
    artifacts, labels = [], set()
    for item, backend in found.values():
        label = f"{item.parent.name}/{item.name}" if item.is_file() else f"{item.name}/ (tf)"
        while label in labels:
            label += "'"
        labels.add(label)
        artifacts.append(Artifact(label, item, backend, _size(item)))
    return artifacts


def _artifacts_in(path: Path) -> list[tuple[Path, str]]:
    if path.is_file():
        if path.suffix not in BACKEND_BY_SUFFIX:
            raise BertcError(f"{path}: bench runs .onnx and .tflite files, SavedModel directories and "
                             f"`bertc compile` output directories, not '{path.suffix or path.name}'.")
        return [(path, BACKEND_BY_SUFFIX[path.suffix])]
    items = [(path, "tf")] if (path / "saved_model.pb").is_file() else []
    items += [(path / n, BACKEND_BY_SUFFIX[Path(n).suffix]) for n in ARTIFACT_FILES if (path / n).is_file()]
    if not items:
        raise BertcError(f"{path}: this directory has no saved_model.pb, model.onnx or model.tflite.",
                         "Pass a SavedModel directory or the -o directory of `bertc compile`.")
    return items


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_accuracy(path: str | None, artifacts: list[Artifact]) -> list[str]:
    """Attach macro-F1 from {artifact: macro_f1 or an eval report}; the keys that matched nothing.

    A key may be an artifact's path, its label (``out/model.onnx``) or its file name.
    """
    if not path:
        return []
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BertcError(f"--accuracy {path}: cannot read it as JSON ({e}).") from None
    if not isinstance(table, dict):
        raise BertcError(f"--accuracy {path}: expected an object {{\"artifact\": macro_f1}}.")
    ignored = []
    for key, value in table.items():
        score = value.get("macro_f1") if isinstance(value, dict) else value
        matches = [a for a in artifacts if key in (a.label, str(a.path), a.path.name)
                   or Path(key).resolve() == a.path.resolve()]
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not matches:
            ignored.append(key)
            continue
        for a in matches:
            a.accuracy = float(score)
    return ignored


# ------------------------------------------------------------------ machine
def cpu_info() -> dict:
    """CPU model, usable cores and the int8 dot-product instructions int8 speed depends on."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    info = {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "arch": platform.machine(), "cores": _usable_cores(),
            "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags}
    info["int8_dot"] = info["avx512_vnni"] or info["avx_vnni"] or "asimddp" in flags
    if not flags:
        info["int8_dot"], info["note"] = None, "CPU flags unknown: cannot tell whether int8 pays off."
    elif not info["int8_dot"]:
        info["note"] = ("no VNNI (or Arm dot product): int8 matmuls run on slower instructions, so int8 "
                        "artifacts are unlikely to beat float32 in speed here; expect size savings only.")
    return info


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ------------------------------------------------------------------ sessions and inputs
def open_for_bench(artifact: Artifact, threads: int):
    """A session with ``threads`` intra-op threads (for TF, set before its first use)."""
    from .session import open_session

    if artifact.backend == "tf":
        _tf_threads(threads)
    try:
        return open_session(artifact.path, threads=threads)
    except BertcError:
        raise
    except Exception as e:  # a corrupt artifact: the runtime's own words
        raise BertcError(f"{artifact.path}: cannot load it: {brief(e)}") from None


def _tf_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TF already ran in this process; its pool is fixed
        log.warning("TensorFlow was initialised before bench: it keeps its own thread count")


def feeds_for(session, seq: int, batch: int, vocab: int) -> dict[str, np.ndarray]:
    """The same valid random inputs for every backend (same seed; sessions cast the dtypes)."""
    from .inputs import random_inputs

    specs = list(zip(session.input_names, session.input_dtypes))
    return random_inputs(specs, batch, seq, np.random.default_rng(SEED), vocab)


def detect_vocab(artifacts: list[Artifact]) -> int:
    """Rows of the word-embedding table, read from the ONNX artifacts; else 100 (valid for any BERT)."""
    sizes = [v for a in artifacts if a.backend == "onnx" for v in [_onnx_vocab(a.path)] if v]
    return min(sizes) if sizes else DEFAULT_VOCAB


def _onnx_vocab(path: Path) -> int | None:
    """Rows of the table a Gather reads with the ids input (``bertc.runtime.limits``)."""
    from .limits import onnx_net
    from .session import corrupt_artifact

    try:
        net, inputs = onnx_net(path)
    except Exception as e:  # not an ONNX file: say so now, before any run
        raise corrupt_artifact(path, e) from None
    sizes = net.limits(inputs).vocab.values()
    return min(sizes) if sizes else None


# ------------------------------------------------------------------ memory, in a child process
def measure_in_child(artifact: Artifact, cases: list[tuple[int, int]], threads: int, vocab: int) -> dict:
    """Import, load and run the artifact in a fresh interpreter; its load time and memory."""
    spec = {"path": str(artifact.path), "backend": artifact.backend, "cases": cases,
            "threads": threads, "vocab": vocab}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        res = subprocess.run([sys.executable, "-m", "bertc.runtime.bench", json.dumps(spec)],
                             capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"the child process took over {CHILD_TIMEOUT_S} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return {"error": (res.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def _child_main(spec_json: str) -> int:
    """In the child: time the runtime import and the load, run every shape twice, report VmHWM."""
    import importlib

    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    importlib.import_module(RUNTIME_MODULE[spec["backend"]])
    import_s = time.perf_counter() - t0
    runtime_mb = _rss_mb("VmRSS")
    artifact = Artifact("", Path(spec["path"]), spec["backend"], 0)
    t0 = time.perf_counter()
    session = open_for_bench(artifact, spec["threads"])
    load_s = time.perf_counter() - t0
    for seq, batch in spec["cases"]:
        feeds = feeds_for(session, seq, batch, spec["vocab"])
        for _ in range(2):
            try:
                session.run(feeds)
            except Exception:  # noqa: BLE001 (a shape the model refuses; the timing pass reports it)
                break
    print(json.dumps({"import_s": round(import_s, 3), "load_s": round(load_s, 3),
                      "runtime_rss_mb": runtime_mb, "peak_rss_mb": _rss_mb("VmHWM")}))
    return 0


def _rss_mb(key: str) -> float:
    """VmHWM (peak) or VmRSS from /proc/self/status; getrusage's peak where there is no /proc."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


# ------------------------------------------------------------------ timing
def brief(e: Exception, limit: int = 240) -> str:
    """A runtime's error on one line: its head and its tail, where the reason usually is."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else f"{text[:limit // 2]} … {text[-limit // 2:]}"


def time_case(artifacts: list[Artifact], sessions: list, seq: int, batch: int, runs: int, warmup: int,
              vocab: int, advance) -> None:
    """Time one (seq, batch) on every artifact, interleaved; append a result to each."""
    feeds, alive = {}, []
    for i, (a, s) in enumerate(zip(artifacts, sessions)):
        try:
            feeds[i] = feeds_for(s, seq, batch, vocab)
            for _ in range(max(warmup, 1)):
                s.run(feeds[i])
            alive.append(i)
        except Exception as e:  # noqa: BLE001 (e.g. seq beyond the model's positions)
            a.results.append({"seq": seq, "batch": batch, "error": brief(e)})
    times: dict[int, list[float]] = {i: [] for i in alive}
    for rep in range(runs if alive else 0):
        first = rep % len(alive)
        for i in alive[first:] + alive[:first]:
            t0 = time.perf_counter()
            sessions[i].run(feeds[i])
            times[i].append(time.perf_counter() - t0)
        advance()
    for i in alive:
        artifacts[i].results.append(summarize(times[i], seq, batch))


def summarize(seconds: list[float], seq: int, batch: int) -> dict:
    ms = np.asarray(seconds) * 1e3
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    return {"seq": seq, "batch": batch, "runs": len(ms), "p50_ms": round(p50, 4), "p90_ms": round(p90, 4),
            "p99_ms": round(p99, 4), "mean_ms": round(float(ms.mean()), 4), "min_ms": round(float(ms.min()), 4),
            "throughput_seq_s": round(batch * 1e3 / p50, 2)}


# ------------------------------------------------------------------ the command
def command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    seqs, batches = parse_sizes(args.seq, "--seq"), parse_sizes(args.batch, "--batch")
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise BertcError("--runs and --threads must be at least 1, --warmup at least 0.")
    threads = args.threads or _usable_cores()
    artifacts = expand(args.models)
    ignored = load_accuracy(args.accuracy, artifacts)
    cpu = cpu_info()
    vocab = detect_vocab(artifacts)
    cases = [(s, b) for s in seqs for b in batches]

    console = Console(stderr=True)
    sessions = [open_for_bench(a, threads) for a in artifacts]  # first: a corrupt file fails fast
    out = _output_dir(Path(args.output))
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("memory and load time", total=len(artifacts))
        for a in artifacts:
            progress.update(task, description=f"memory: {a.label}")
            a.memory = measure_in_child(a, cases, threads, vocab)
            progress.advance(task)
        progress.update(task, description="memory and load time")
        for seq, batch in cases:
            task = progress.add_task(f"seq {seq}, batch {batch}", total=args.runs)
            time_case(artifacts, sessions, seq, batch, args.runs, args.warmup, vocab,
                      lambda task=task: progress.advance(task))

    _report_problems(console, artifacts, cpu, ignored)
    settings = {"seq": seqs, "batch": batches, "runs": args.runs, "warmup": args.warmup, "threads": threads,
                "vocab": vocab, "interleaved": "round-robin, first artifact rotating"}
    report = {"cpu": cpu, "settings": settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "artifacts": [asdict(a) for a in artifacts]}
    from .bench_report import markdown, write_reports

    write_reports(report, out)
    sys.stdout.write(markdown(report))
    console.print(f"wrote {out / 'bench.json'}, bench.md, bench.png")
    return 0


def _report_problems(console, artifacts: list[Artifact], cpu: dict, ignored: list[str]) -> None:
    """Say on stderr what the tables only mark: failed shapes, memory not measured, no VNNI."""
    warnings = [f"--accuracy: {key!r} names no benchmarked artifact or has no number; ignored" for key in ignored]
    for a in artifacts:
        failed: dict[int, list[dict]] = {}
        for r in (r for r in a.results if "error" in r):
            failed.setdefault(r["seq"], []).append(r)
        warnings += [f"{a.label} failed at seq {seq} (batch {', '.join(str(r['batch']) for r in rs)}): "
                     f"{rs[0]['error']}" for seq, rs in failed.items()]
        warnings += [f"memory of {a.label} not measured: {a.memory['error']}"] if "error" in a.memory else []
    warnings += [cpu["note"]] if cpu.get("note") else []
    for text in warnings:
        console.print(f"[yellow]warning:[/] {text}", highlight=False, soft_wrap=True)


def _output_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BertcError(f"-o {out}: cannot create this directory ({e.strerror}).") from None
    if not os.access(out, os.W_OK):
        raise BertcError(f"-o {out}: not writable.")
    return out


# ------------------------------------------------------------------ reports


if __name__ == "__main__":  # the child process of measure_in_child
    sys.exit(_child_main(sys.argv[1]))
