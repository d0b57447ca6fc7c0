"""bertc as a library: compile a model in one call, or load, transform and lower it step by step.

    import bertc

    result = bertc.compile("model/", "out/", passes="prune_heads{ratio=0.3},quant_int8")
    print(result.artifacts)          # {'onnx': PosixPath('out/model.onnx'), 'tflite': PosixPath('out/model.tflite')}
    print(result.parity["onnx"]["ok"])

``compile`` does what ``bertc compile`` does (the same checks, the same verification
against the source model, the same atomic, locked output directory) and returns what
it wrote instead of printing a summary.  Bad input raises ``bertc.BertcError`` with the
message the command line prints; a compile that breaks parity raises
``bertc.VerificationFailed`` and writes nothing.

The step-by-step functions work on the IR (``bertc.ir.Graph``):

    graph = bertc.load("model/")                                  # import and clean up
    reports = bertc.run_passes(graph, "prune_heads{ratio=0.3,criterion=magnitude}")
    onnx_bytes = bertc.lower(graph, "onnx")                       # no verification: that is compile's job
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .ir import Graph


@dataclass
class CompileOptions:
    """Everything a compile is told, one field per ``bertc compile`` flag (the same names and defaults)."""

    model: str
    output: str
    target: str = "all"
    passes: str = ""
    signature: str = "serving_default"
    inputs: str | None = None
    outputs: str | None = None
    dump_ir: str | None = None
    no_legalize: bool = False
    no_verify: bool = False
    verify_data: str | None = None
    tolerance: Any = "2e-5,1e-6"
    labels: str | None = None
    max_drop: float | None = None
    cpu: str = "portable"
    calib: str | None = None
    vocab: str | None = None
    calib_samples: int = 256
    calib_max_length: int | None = None
    plugin: list[str] = field(default_factory=list)
    override: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CompileOptions:
        """The options of a parsed ``bertc compile`` command line."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})


@dataclass(frozen=True)
class CompileResult:
    """What a compile wrote: the output directory, each artifact by target, and report.json's contents."""

    output: Path
    artifacts: dict[str, Path]
    report: dict

    @property
    def parity(self) -> dict | None:
        """Per target, the verification against the source model (None with ``verify=False``)."""
        v = self.report.get("verification")
        return v if isinstance(v, dict) else None


def compile(model: str | Path, output: str | Path, *, passes: str = "",
            targets: str | Sequence[str] = ("onnx", "tflite"), calib: str | Path | None = None,
            vocab: str | Path | None = None, labels: str | Path | None = None, verify: bool = True,
            verify_data: str | Path | None = None, tolerance: str = "2e-5,1e-6", max_drop: float | None = None,
            cpu: str = "portable", signature: str = "serving_default", inputs: Iterable[str] | None = None,
            outputs: Iterable[str] | None = None, dump_ir: str | Path | None = None, legalize: bool = True,
            calib_samples: int = 256, calib_max_length: int | None = None,
            plugins: Iterable[str | Path] = (), progress: bool = False) -> CompileResult:
    """Compile ``model`` (a SavedModel directory, frozen GraphDef ``.pb``, ``.keras`` file or ``.bir``)
    into the directory ``output``, as ``bertc compile`` does.

    ``passes``: the pipeline text (``"prune_heads{ratio=0.3},quant_int8"``).  ``targets``: "onnx",
    "tflite", "all", or a list of them.  ``calib``/``vocab``: calibration text and its tokenizer (or an
    ``.npz`` of token ids).  ``verify=False`` skips the check against the source model.  ``tolerance``,
    ``max_drop``, ``cpu`` and the rest are the command line's flags of the same names; ``inputs`` and
    ``outputs`` name a frozen GraphDef's nodes.  ``progress=True`` shows the command line's stage spinner.
    """
    from .driver import compile_to

    target = targets if isinstance(targets, str) else ",".join(targets)
    opts = CompileOptions(
        model=str(model), output=str(output), target=target, passes=passes, signature=signature,
        inputs=",".join(inputs) if inputs else None, outputs=",".join(outputs) if outputs else None,
        dump_ir=str(dump_ir) if dump_ir else None, no_legalize=not legalize, no_verify=not verify,
        verify_data=str(verify_data) if verify_data else None, tolerance=tolerance,
        labels=str(labels) if labels else None, max_drop=max_drop, cpu=cpu,
        calib=str(calib) if calib else None, vocab=str(vocab) if vocab else None, calib_samples=calib_samples,
        calib_max_length=calib_max_length, plugin=[str(p) for p in plugins])
    _load_plugins(opts)
    report = compile_to(opts, progress=progress)
    out = Path(output)
    artifacts = {name: out / f"model.{name}" for name in report["targets"]}
    return CompileResult(out, artifacts, report)


def load(model: str | Path, *, signature: str = "serving_default", inputs: Iterable[str] | None = None,
         outputs: Iterable[str] | None = None, cleanup: bool = True) -> Graph:
    """The IR of ``model`` (as ``bertc import``), after the canonical cleanup passes unless ``cleanup=False``."""
    from .commands import load_graph

    args = argparse.Namespace(model=str(model), signature=signature, inputs=",".join(inputs) if inputs else None,
                              outputs=",".join(outputs) if outputs else None)
    graph, _ = load_graph(args, canonicalize=cleanup)
    return graph


def run_passes(graph: Graph, passes: str, *, calib: str | Path | None = None, vocab: str | Path | None = None,
               calib_samples: int = 256, calib_max_length: int | None = None) -> dict:
    """Run the pipeline ``passes`` on ``graph`` in place, verifying the IR after every pass; returns the
    passes' reports (what report.json holds under ``pass_reports``)."""
    from .commands import pass_context
    from .pass_manager import PassManager, parse_pipeline

    ctx = pass_context(argparse.Namespace(calib=str(calib) if calib else None, vocab=str(vocab) if vocab else None,
                                          calib_samples=calib_samples, calib_max_length=calib_max_length,
                                          labels=None))
    PassManager(parse_pipeline(passes)).run(graph, ctx)
    return ctx.report


def lower(graph: Graph, target: str, *, cpu: str = "portable") -> bytes:
    """The artifact's bytes for ``target`` ("onnx" or "tflite"); the graph must be legal for it
    (``bertc.legalize.plan`` names the passes that make it so).  Nothing is verified here."""
    from .cpu import resolve
    from .targets.base import get_target

    return get_target(target).for_cpu(resolve(cpu)).lower(graph)


def _load_plugins(opts: CompileOptions) -> None:
    if opts.plugin:
        from .commands import _load_plugins as load

        load(opts)
