"""``bertc compile``: import, run the pipeline, lower, verify, and write atomically.

Everything is produced in memory and checked first; only then are the files
written, each through a temporary name renamed into OUT.  A failed compile
(bad input, an op a target lacks, broken parity) leaves OUT as it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .diagnostics import BertcError, VerificationFailed
from .ir.graph import Graph
from .targets.base import LoweringError, Target, get_target

log = logging.getLogger(__name__)


def resolve_targets(spec: str) -> list[Target]:
    names = ["onnx", "tflite"] if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    return [get_target(n) for n in names]


def check_output_dir(out: Path) -> None:
    """Fail before any work when OUT cannot receive the artifacts."""
    if out.exists() and not out.is_dir():
        raise BertcError(f"-o {out}: exists and is a file, not a directory.", "Pass a directory to write into.")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BertcError(f"-o {out}: {parent} is a file, so the directory cannot be created.",
                         "Pass a directory path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BertcError(f"-o {out}: {parent} is not writable.", "Choose an output directory you can write to.")


def lower_all(graph: Graph, targets: list[Target], staging: Path) -> dict[str, Path]:
    """Lower to each target (after checking every op is legal there) into ``staging``.

    Each artifact goes to disk as soon as it exists, so only one serialized
    model is in memory at a time (BERT-base: 440 MB each).
    """
    from .legalize import explain

    for target in targets:
        missing = target.unsupported(graph)
        if missing:
            lines = []
            for u in missing[:20]:
                lines.append(f"  {u.op.kind} at {u.op.loc}: {u.reason} ({explain(u.op)})")
            more = f"\n  … and {len(missing) - 20} more" if len(missing) > 20 else ""
            f16 = any(v.dtype == "f16" for u in missing for v in (*u.op.operands, *u.op.results))
            raise BertcError(f"the model is not legal for target '{target.name}': "
                             f"{len(missing)} op(s) it cannot run:\n" + "\n".join(lines) + more,
                             FLOAT16_HINT if f16 else
                             "Drop --no-legalize, add the named passes to --passes, or choose another --target.")
    paths = {}
    for target in targets:
        try:
            data = target.lower(graph)
        except LoweringError as e:
            raise BertcError(f"lowering to {target.name} failed: {e}") from None
        paths[target.file_name] = staging / target.file_name
        paths[target.file_name].write_bytes(data)
        del data
    return paths


FLOAT16_HINT = ("The model computes in float16 (mixed precision). TFLite is lowered in float32 only, and "
                "float16 results differ from TF's own float16 ones by about 1e-3 of their size: re-export the "
                "model computing in float32 (keras.mixed_precision.set_global_policy('float32') before building "
                "it), or compile it with --target onnx and a --tolerance float16 can meet (e.g. 1e-2).")


def computes_in_float16(graph: Graph) -> bool:
    """Whether any value of the graph is float16 (a mixed-precision model)."""
    return any(r.dtype == "f16" for op in graph.ops for r in op.results)


def verify_artifacts(artifacts: dict[str, Path], expected, fidelity) -> dict[str, dict]:
    """Each artifact on its runtime against the recorded reference outputs, held to
    ``fidelity``: the exact max-abs check (--tolerance) unless a pass in the pipeline
    declares its own bound (quant_int8 …; see bertc.runtime.fidelity)."""
    from .runtime.fidelity import check_expected
    from .runtime.session import open_session

    parity = {}
    for file_name, path in artifacts.items():
        kind = file_name.rsplit(".", 1)[1]
        try:
            session = open_session(path)
        except Exception as e:  # a written model must load: this is our bug, say so plainly
            raise BertcError(f"the {kind} artifact does not load in its runtime: {type(e).__name__}: {e}") from None
        report = check_expected(expected, session, fidelity)
        del session
        parity[kind] = report.to_json()
        if not report.ok:
            raise VerificationFailed(
                f"{file_name} does not match the source model: " + "; ".join(report.failures)
                + (f" ({fidelity.reason})" if fidelity.reason else "") + ".",
                "Nothing was written. --dump-ir DIR shows the IR after each pass; --no-verify skips this check.")
        log.info("%s parity: %s", kind, {k: v["max_abs_error"] for k, v in report.to_json()["outputs"].items()})
    return parity


def _static_int8_lowering():
    from .runtime.fidelity import Fidelity

    # Each integer op of a static-int8 graph computes the IR's integers on both runtimes, but a
    # 1-ulp float difference elsewhere (layer norm, GELU, softmax kernels) can move an activation
    # across a rounding boundary of the next quantize, and that one step propagates through the
    # later layers.  Measured on two BERT-base-wide layers: onnxruntime 0.45-0.63% of the logits'
    # range off the IR (benchmarks/quant_full.py), LiteRT up to 2.8% (benchmarks/tflite_int8.py,
    # outputs=all, seq 16); the 5% bound leaves ~1.8x headroom over the worst seen.
    return Fidelity(max_rel_error=0.05, min_cosine=0.99,
                    reason="static int8 artifact vs its IR: a float ulp can flip one quantization step")


def _lowering_fidelity(graph: Graph, tolerance: float):
    """Artifacts against the final IR: exact, except where the runtime itself quantizes at run time
    (qmatmul's dynamic activation scheme differs per runtime), which declares its own bound."""
    from .runtime.fidelity import Fidelity, pipeline_fidelity

    if any(op.kind == "qmatmul" for op in graph.ops):
        from .pass_manager import all_passes

        return pipeline_fidelity([all_passes()["quant_int8"]()], tolerance)
    if any(op.kind == "quantize" and not op.operands[0].is_const() for op in graph.ops):
        return _static_int8_lowering()
    return Fidelity.exact(tolerance)


def _store_labels(args, graph: Graph, artifacts: dict[str, Path], staging: Path) -> list[str] | None:
    """With --labels: the label order goes into each artifact's metadata and labels.txt (before verification,
    so the bytes verified are the bytes written)."""
    if not getattr(args, "labels", None):
        return None
    from .runtime.metadata import read_labels_file, write_labels_onnx, write_labels_tflite

    labels = read_labels_file(args.labels)
    width = next(iter(graph.outputs.values())).shape[-1]
    if isinstance(width, int) and width != len(labels):
        raise BertcError(f"--labels {args.labels}: {len(labels)} labels, but the model has {width} logits.")
    writers = {"onnx": write_labels_onnx, "tflite": write_labels_tflite}
    for name, path in artifacts.items():
        path.write_bytes(writers[name.rsplit(".", 1)[1]](path.read_bytes(), labels))
    (staging / "labels.txt").write_text("\n".join(labels) + "\n")
    return labels


class Staging:
    """A hidden directory inside OUT where artifacts are built; ``commit`` renames them into OUT.

    On failure everything staged is removed, and OUT too when this compile created it.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.created_out = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=".bertc-", dir=out))
        except OSError as e:
            raise BertcError(f"-o {out}: cannot write there ({e.strerror}).") from None

    def commit(self) -> None:
        mask = os.umask(0)
        os.umask(mask)
        for p in sorted(self.dir.iterdir()):
            os.chmod(p, 0o666 & ~mask)
            os.replace(p, self.out / p.name)
        self.dir.rmdir()

    def abandon(self) -> None:
        if self.dir.exists():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()
        if self.created_out and self.out.exists() and not any(self.out.iterdir()):
            self.out.rmdir()


def compile_command(args: argparse.Namespace) -> int:
    from .commands import load_graph, pass_context
    from .frontend.tf import CANONICALIZE
    from .pass_manager import PassManager, parse_pipeline

    t_start = time.perf_counter()
    out = Path(args.output)
    targets = resolve_targets(args.target)
    check_output_dir(out)
    user_passes = parse_pipeline(args.passes) if args.passes else []
    verify_data = Path(args.verify_data) if args.verify_data else None
    if verify_data is not None and not verify_data.is_file():
        raise BertcError(f"--verify-data {verify_data}: no such file.")
    ctx = pass_context(args)  # before the slow import, so a bad --calib fails fast

    t0 = time.perf_counter()
    graph, frozen = load_graph(args, canonicalize=False)
    timings = {"import": round(time.perf_counter() - t0, 3)}
    ops_imported = graph.histogram()
    params_before = graph.num_parameters()
    expected = None
    if not args.no_verify:
        # Record the source model's outputs now, then let it go: BERT-base's TF
        # copy of the weights is 440 MB that lowering does not need.
        from .runtime.session import ReferenceSession, TFSession
        from .runtime.verify import record

        t0 = time.perf_counter()
        verify_feeds = _calibration_verify_feeds(args, ctx, graph, user_passes)
        expected = record(TFSession(frozen) if frozen is not None else ReferenceSession(graph), graph, verify_data,
                          verify_feeds)
        timings["reference"] = round(time.perf_counter() - t0, 3)
        frozen = None
        import gc

        gc.collect()

    pm = PassManager(parse_pipeline(CANONICALIZE) + user_passes,
                     dump_dir=Path(args.dump_ir) if args.dump_ir else None)
    pm.run(graph, ctx)
    if not args.no_legalize:
        from .legalize import plan

        extra = plan(graph, targets)
        if extra:
            pm.run_more(graph, extra, ctx)

    staging = Staging(out)
    try:
        report = _lower_verify_report(args, graph, pm, targets, staging, expected, ops_imported, params_before,
                                      timings, t_start, ctx)
        (staging.dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except BaseException:
        staging.abandon()
        raise
    staging.commit()
    _print_summary(report, out)
    return 0


def _calibration_verify_feeds(args, ctx, graph, user_passes) -> list | None:
    """Calibration batches to verify on, for a pipeline that changes numbers on purpose when
    --calib is given and --verify-data is not (see runtime.verify.calibration_feeds); else None:
    exact pipelines are held to the default random cases, which any input must pass."""
    from .frontend.tf import CANONICALIZE
    from .pass_manager import parse_pipeline
    from .runtime.fidelity import Fidelity, pipeline_fidelity
    from .runtime.verify import calibration_feeds

    if ctx.calib is None or args.verify_data:
        return None
    if pipeline_fidelity(parse_pipeline(CANONICALIZE) + user_passes, args.tolerance) == Fidelity.exact(args.tolerance):
        return None
    return calibration_feeds(ctx.calib, graph)


def _lower_verify_report(args, graph, pm, targets, staging, expected, ops_imported, params_before,
                         timings, t_start, ctx) -> dict:
    t0 = time.perf_counter()
    artifacts = lower_all(graph, targets, staging.dir)
    labels = _store_labels(args, graph, artifacts, staging.dir)
    lower_s = time.perf_counter() - t0

    parity: dict = {}
    t0 = time.perf_counter()
    lowering_parity: dict = {}
    if expected is not None:
        from .runtime.fidelity import Fidelity, pipeline_fidelity

        fidelity = pipeline_fidelity(pm.passes, args.tolerance)
        if args.max_drop is not None:
            fidelity = dataclasses.replace(fidelity, min_argmax_agreement=1.0 - args.max_drop,
                                           reason="; ".join(r for r in (fidelity.reason, f"--max-drop {args.max_drop:g}") if r))
        try:
            parity = verify_artifacts(artifacts, expected, fidelity)
        except VerificationFailed as e:
            if not computes_in_float16(graph):
                raise
            raise VerificationFailed(e.message, f"{e.hint} {FLOAT16_HINT}") from None
        if fidelity != Fidelity.exact(args.tolerance):
            # Passes changed the numbers on purpose, so the check above is loose: also hold each
            # artifact to the final IR exactly, so a lowering bug cannot hide behind the pruning.
            from .runtime.session import ReferenceSession
            from .runtime.verify import record

            ir_expected = record(ReferenceSession(graph), graph, feeds_list=[f for f, _ in expected.runs])
            lowering_parity = verify_artifacts(artifacts, ir_expected, _lowering_fidelity(graph, args.tolerance))
    verify_s = time.perf_counter() - t0

    params_after = graph.num_parameters()
    return {
        "source": str(args.model),
        "targets": [t.name for t in targets],
        "pipeline": [p.spec() for p in pm.passes],
        "passes": [{"name": r.name, "spec": r.spec, "changed": r.changed, "seconds": round(r.seconds, 4),
                    "ops_before": r.ops_before, "ops_after": r.ops_after} for r in pm.records],
        "ops": {"imported": ops_imported, "final": graph.histogram()},
        "parameters": {"before": params_before[0], "after": params_after[0],
                       "bytes_before": params_before[1], "bytes_after": params_after[1]},
        "artifacts": {name: {"bytes": path.stat().st_size} for name, path in artifacts.items()},
        "labels": labels,
        "calibration": ctx.calib.source if ctx.calib is not None else None,
        "pass_reports": json.loads(json.dumps(ctx.report, default=str)),
        "verification": parity if not args.no_verify else "skipped (--no-verify)",
        "verification_data": expected.data if expected is not None else None,
        "verification_against_final_ir": lowering_parity or None,
        "seconds": {**timings, "passes": round(sum(r.seconds for r in pm.records), 3),
                    "lower": round(lower_s, 3), "verify": round(verify_s, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
    }


def _print_summary(report: dict, out: Path) -> None:
    lines = [f"compiled {report['source']} -> {out}/"]
    for name, info in report["artifacts"].items():
        lines.append(f"  {name:14s} {info['bytes'] / 1e6:8.2f} MB")
    if isinstance(report["verification"], dict):
        for kind, p in report["verification"].items():
            errs = ", ".join(f"{k}: max|err| {v['max_abs_error']:.2e}" for k, v in p["outputs"].items())
            lines.append(f"  parity {kind}: {errs} on {len(p['cases'])} input sets ({report['verification_data']})")
    else:
        lines.append("  parity: not checked (--no-verify)")
    lines.append(f"  {report['seconds']['total']:.1f} s; report.json has the details")
    print("\n".join(lines), file=sys.stderr)


def check_command(args: argparse.Namespace) -> int:
    """``bertc check``: what each target lacks, what rewrites it, and whether that suffices."""
    from .commands import load_graph
    from .ir.parser import copy_graph
    from .legalize import plan, report
    from .pass_manager import PassManager

    targets = resolve_targets(args.target)
    graph, _ = load_graph(args)
    after = copy_graph(graph)
    note = ""
    try:
        extra = plan(after, targets)
        if extra:
            PassManager(extra).run(after)
    except BertcError as e:
        note, after = f"legalization failed: {e.message}\n", graph
    text, legal = report(graph, targets, after)
    sys.stdout.write(text + note)
    return 0 if legal else 2


def run_command(args: argparse.Namespace) -> int:
    """``bertc run ARTIFACT --ids "101 2023 102"``: one sequence, outputs printed."""
    from .runtime.inputs import input_role, positions_like
    from .runtime.session import open_session

    try:
        ids = np.array([[int(t) for t in args.ids.replace(",", " ").split()]], dtype=np.int64)
    except ValueError:
        raise BertcError(f"--ids {args.ids!r}: give whitespace-separated integers, e.g. \"101 2023 102\".") from None
    if ids.size == 0:
        raise BertcError("--ids is empty.")
    session = open_session(args.artifact)
    feeds = {}
    for name in session.input_names:
        role = input_role(name)
        feeds[name] = {"ids": ids, "mask": np.ones_like(ids), "positions": positions_like(ids)}.get(role, np.zeros_like(ids))
    try:
        outputs = session.run(feeds)
    except Exception as e:  # the runtime refused these inputs (ids beyond the vocabulary, say)
        first = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
        raise BertcError(f"{args.artifact}: running it on --ids failed: {first}",
                         "Check that every id is below the model's vocabulary size.") from None
    np.set_printoptions(precision=6, suppress=True, linewidth=120)
    for name, value in outputs.items():
        print(f"{name} {list(value.shape)}:\n{value}")
        if value.ndim == 2 and value.shape[1] > 1:
            print(f"argmax: {value.argmax(axis=1).tolist()}")
    return 0
