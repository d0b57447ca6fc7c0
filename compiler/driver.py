"""``bertc compile``: import, run the pipeline, lower, verify, and write atomically.

Everything is produced in memory and checked first; only then are the files
written, each through a temporary name renamed into OUT.  A failed compile
(bad input, an op a target lacks, broken parity) leaves OUT as it was; how OUT
is locked, staged and kept consistent is ``bertc.outdir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .diagnostics import BertcError, VerificationFailed
from .ir.graph import Graph
from .outdir import Staging, locked_output
from .cpu import host_kind, resolve as resolve_cpu
from .targets.base import LoweringError, Target, get_target

if TYPE_CHECKING:
    from .api import CompileOptions

log = logging.getLogger(__name__)


def resolve_targets(spec: str) -> list[Target]:
    names = ["onnx", "tflite"] if spec == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    return [get_target(n) for n in names]


def check_output_dir(out: Path, flag: str = "-o") -> None:
    """Fail before any work when ``out`` (given as ``flag``) cannot receive files."""
    if out.exists() and not out.is_dir():
        raise BertcError(f"{flag} {out}: exists and is a file, not a directory.", "Pass a directory to write into.")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BertcError(f"{flag} {out}: {parent} is a file, so the directory cannot be created.",
                         "Pass a directory path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BertcError(f"{flag} {out}: {parent} is not writable.", "Choose a directory you can write to.")


def check_compile_options(args: argparse.Namespace) -> None:
    """Numeric options that no model could make valid, refused before any work
    (``--tolerance`` becomes a ``Tolerance``)."""
    from .runtime.fidelity import Tolerance

    if isinstance(args.tolerance, str):
        try:
            args.tolerance = Tolerance.parse(args.tolerance)
        except ValueError as e:
            raise BertcError(f"--tolerance {args.tolerance}: {e}.",
                             "Give RTOL or RTOL,ATOL (numbers >= 0), e.g. --tolerance 2e-5,1e-6: every "
                             "output element within ATOL + RTOL * (|ref| + rms(ref)) of the source.") from None
    from .cpu import check_kind

    check_kind(args.cpu)
    if args.max_drop is not None and not (0.0 <= args.max_drop <= 1.0):
        raise BertcError(f"--max-drop {args.max_drop:g}: must be a fraction in [0, 1] (of predictions allowed "
                         "to change), e.g. 0.01 for 1%.")


def lower_all(graph: Graph, targets: list[Target], staging: Path) -> dict[str, Path]:
    """Lower to each target (after checking every op is legal there) into ``staging``.

    Each artifact goes to disk as it is produced (ONNX piece by piece, ``Target.write``), so
    the weights are not held in several serialized copies at once (BERT-base: 440 MB each).
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
        paths[target.file_name] = staging / target.file_name
        try:
            target.lower_to(graph, paths[target.file_name])
        except LoweringError as e:
            raise BertcError(f"lowering to {target.name} failed: {e}") from None
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
    ``fidelity``: the exact elementwise check (--tolerance) unless a pass in the pipeline
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


OP_CHECK_RUNS = 1  # input sets each op is checked on: the last, a ragged batch of four


def check_ops(graph: Graph, artifacts: dict[str, Path], expected) -> dict[str, dict]:
    """Every op of the final IR against each artifact, on the artifact's own operands
    (``bertc.runtime.op_parity``); raise naming the first op outside float rounding."""
    out = {}
    for file_name, path in artifacts.items():
        kind = file_name.rsplit(".", 1)[1]
        result = _op_parity(kind, graph, path, expected)
        out[kind] = result.to_json()
        if not result.ok:
            raise VerificationFailed(
                f"{file_name} does not compute what its IR says: {len(result.divergent)} op(s) differ from "
                f"the IR on the artifact's own inputs beyond float rounding; the first is "
                f"{result.divergent[0].describe()}.",
                "Nothing was written. This is a bug in the lowering of that op: --dump-ir DIR shows the IR.")
    return out


def _op_parity(kind: str, graph: Graph, path: Path, expected):
    from .runtime.op_parity import onnx_op_parity, tflite_op_parity

    feeds = [f for f, _ in expected.runs][-OP_CHECK_RUNS:]
    if kind == "onnx":
        return onnx_op_parity(graph, feeds)
    return tflite_op_parity(graph, path.read_bytes(), feeds)


def _lowering_diagnosis(graph: Graph, artifacts: dict[str, Path], expected, args) -> str:
    """For a failed check against TF: whether each lowering matches the IR op by op, and when
    they all do, where the IR first departs from TF."""
    notes, innocent = [], []
    for file_name, path in artifacts.items():
        try:
            result = _op_parity(file_name.rsplit(".", 1)[1], graph, path, expected)
        except Exception as e:  # the diagnosis is extra: never hide the failure it explains
            log.info("op-by-op check of %s failed to run: %s", file_name, e)
            continue
        if result.skipped:
            continue
        if not result.ok:
            notes.append(f" {file_name} departs from the IR at {result.divergent[0].describe()} "
                         f"({len(result.divergent)} op(s) in all).")
        else:
            innocent.append(f"{file_name} ({result.checked} ops)")
    if innocent and not notes:
        notes.append(f" {' and '.join(innocent)} compute what the IR says, op by op within float rounding, "
                     "so the IR itself differs from the source: an import or a pass changed the numbers."
                     + _ir_departure(graph, expected, args))
    return "".join(notes)


def _ir_departure(graph: Graph, expected, args) -> str:
    """Where the IR first departs from TF's nodes (``bertc.runtime.tf_parity``), as a sentence."""
    if Path(args.model).suffix == ".bir":
        return ""
    try:
        from .commands import _split
        from .frontend.tf_loader import load_model
        from .runtime.tf_parity import first_divergence

        source = load_model(args.model, args.signature, _split(args.inputs), _split(args.outputs))
        found = first_divergence(source, graph, expected.runs[-1][0])
    except Exception as e:  # the diagnosis is extra: never hide the failure it explains
        log.info("comparing the IR with TF's nodes failed: %s", e)
        return ""
    if found is None:
        return " No IR value named after a TF node differs from it (the difference is in fused or renamed ops)."
    return f" The IR first departs from TF at {found.describe()}; --dump-ir DIR shows which pass made it."


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


def _lowering_fidelity(graph: Graph, tolerance):
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


def compile_command(args: argparse.Namespace) -> int:
    """``bertc compile``: compile into OUT, then print the summary."""
    from .api import CompileOptions

    report = compile_to(CompileOptions.from_args(args), progress=True)
    _print_summary(report, Path(args.output))
    return 0


def compile_to(args: CompileOptions, progress: bool = False) -> dict:
    """Check the options, then compile into ``args.output`` while holding its lock; returns the report
    (report.json's contents).  ``progress``: show the stage spinner on a terminal."""
    from .commands import pass_context
    from .pass_manager import parse_pipeline

    t_start = time.perf_counter()
    out = Path(args.output)
    check_compile_options(args)
    cpu = resolve_cpu(args.cpu)
    targets = [t.for_cpu(cpu) for t in resolve_targets(args.target)]
    check_output_dir(out)
    if args.dump_ir:
        check_output_dir(Path(args.dump_ir), "--dump-ir")
    user_passes = parse_pipeline(args.passes) if args.passes else []
    verify_data = Path(args.verify_data) if args.verify_data else None
    if verify_data is not None and not verify_data.is_file():
        raise BertcError(f"--verify-data {verify_data}: no such file.")
    ctx = pass_context(args)  # before the slow import, so a bad --calib fails fast
    from .progress import StageProgress

    with locked_output(out), StageProgress(enabled=progress) as stages:  # a second compile into OUT is refused
        return _compile_into(args, out, targets, user_passes, verify_data, ctx, t_start, stages)


def _compile_into(args, out: Path, targets: list[Target], user_passes, verify_data, ctx, t_start: float,
                  progress) -> dict:
    """Import, record the reference, run the passes, then lower, verify and publish into ``out``;
    ``progress`` (a StageProgress) is told each stage as it starts."""
    from .commands import check_against_model, load_graph
    from .frontend.tf import CANONICALIZE
    from .pass_manager import PassManager, parse_pipeline

    progress.stage(f"import {Path(args.model).name}")
    t0 = time.perf_counter()
    graph, frozen = load_graph(args, canonicalize=False)
    check_against_model(args, ctx, graph, user_passes)  # before the reference and the passes run
    timings = {"import": round(time.perf_counter() - t0, 3)}
    ops_imported = graph.histogram()
    params_before = graph.num_parameters()
    expected = None
    if not args.no_verify:
        # Record the source model's outputs now, then let it go: BERT-base's TF
        # copy of the weights is 440 MB that lowering does not need.
        from .runtime.session import ReferenceSession, TFSession
        from .runtime.verify import record

        progress.stage("TF reference outputs")
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
    pm.on_pass = lambda i, n, p: progress.stage("passes", f"{i + 1}/{n} {p.spec()}")
    pm.run(graph, ctx)
    if not args.no_legalize:
        from .legalize import plan

        extra = plan(graph, targets)
        if extra:
            pm.run_more(graph, extra, ctx)

    note = cpu_note(args, graph, targets)
    staging = Staging(out)
    try:
        report = _lower_verify_report(args, graph, pm, targets, staging, expected, ops_imported, params_before,
                                      timings, t_start, ctx, progress)
        report["cpu"]["note"] = note
        (staging.dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    except BaseException:
        staging.abandon()
        raise
    staging.commit()
    return report


def cpu_note(args, graph: Graph, targets: list[Target]) -> str | None:
    """What to say when this CPU could run the ONNX int8 kernels much faster with --cpu native (the
    portable default stores 8-bit kernels for u8 x u8 products, exact on every x86 CPU but slower)."""
    from .cpu import u8s8_exact

    if "onnx" not in [t.name for t in targets] or u8s8_exact(args.cpu) or not u8s8_exact("native"):
        return None
    from .targets.onnx import u8u8_kernels

    n = u8u8_kernels(graph, args.cpu)
    if not n:
        return None
    return (f"{n} int8 matmul(s) of model.onnx run u8 x u8 kernels, exact on every x86 CPU but slower; this CPU "
            f"has {host_kind().upper()}: --cpu native stores them s8 for onnxruntime's VNNI/AMX kernels (the fast "
            "path, exact only on CPUs with AVX-512 VNNI, AVX-VNNI or AMX)")


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
                         timings, t_start, ctx, progress) -> dict:
    progress.stage(f"lower to {', '.join(t.name for t in targets)}")
    t0 = time.perf_counter()
    artifacts = lower_all(graph, targets, staging.dir)
    labels = _store_labels(args, graph, artifacts, staging.dir)
    lower_s = time.perf_counter() - t0

    parity: dict = {}
    t0 = time.perf_counter()
    lowering_parity: dict = {}
    op_parity: dict = {}
    if expected is not None:
        from .runtime.fidelity import Fidelity, pipeline_fidelity

        progress.stage("verify against the source model")
        fidelity = pipeline_fidelity(pm.passes, args.tolerance)
        if args.max_drop is not None:
            fidelity = dataclasses.replace(fidelity, min_argmax_agreement=1.0 - args.max_drop,
                                           reason="; ".join(r for r in (fidelity.reason, f"--max-drop {args.max_drop:g}") if r))
        lossy = fidelity != Fidelity.exact(args.tolerance)
        try:
            parity = verify_artifacts(artifacts, expected, fidelity)
        except VerificationFailed as e:  # say whether a lowering is to blame, and which op
            hint = f"{e.hint} {FLOAT16_HINT}" if computes_in_float16(graph) else e.hint
            raise VerificationFailed(e.message + _lowering_diagnosis(graph, artifacts, expected, args), hint) from None
        if lossy:
            # Passes changed the numbers on purpose, so the check above is loose: also hold each
            # artifact to the final IR, op by op where the runtime exposes every tensor, so a
            # lowering bug cannot hide behind the quantization or the pruning.
            op_parity = check_ops(graph, artifacts, expected)
            from .runtime.session import ReferenceSession
            from .runtime.verify import record

            ir_expected = record(ReferenceSession(graph), graph, feeds_list=[f for f, _ in expected.runs])
            lowering_parity = verify_artifacts(artifacts, ir_expected, _lowering_fidelity(graph, args.tolerance))
    branches = {}
    if expected is not None:
        from .runtime.verify import branches_taken

        branches = branches_taken(graph, [f for f, _ in expected.runs])
    verify_s = time.perf_counter() - t0

    params_after = graph.num_parameters()
    return {
        "source": str(args.model),
        "targets": [t.name for t in targets],
        "cpu": {"built_for": resolve_cpu(args.cpu), "asked": args.cpu, "this_cpu": host_kind()},
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
        "verification_op_by_op": op_parity or None,
        "verification_branches": branches or None,  # tf.cond -> runs that took each branch
        "seconds": {**timings, "passes": round(sum(r.seconds for r in pm.records), 3),
                    "lower": round(lower_s, 3), "verify": round(verify_s, 3),
                    "total": round(time.perf_counter() - t_start, 3)},
    }


def _print_summary(report: dict, out: Path) -> None:
    """The lines on stderr after a compile: artifacts, what pruning did, parity against its bounds."""
    lines = [f"compiled {report['source']} -> {out}/"]
    for name, info in report["artifacts"].items():
        lines.append(f"  {name:14s} {info['bytes'] / 1e6:8.2f} MB")
    lines += [f"  {line}" for line in pruning_lines(report.get("pass_reports") or {})]
    if isinstance(report["verification"], dict):
        for kind, p in report["verification"].items():
            errs = "; ".join(_parity_cell(k, v, p["fidelity"]) for k, v in p["outputs"].items())
            check = p["fidelity"]["check"]
            if check == "nothing checked":  # pruning without --max-drop: measured, not bounded
                check = ("nothing bounded: the passes change the numbers on purpose (report.json says how); "
                         "--max-drop FRACTION bounds the argmax changes")
            lines.append(f"  parity {kind}: {errs} on {len(p['cases'])} input sets ({report['verification_data']}); "
                         f"checked: {check}")
    else:
        lines.append("  parity: not checked (--no-verify)")
    if report["cpu"].get("note"):
        lines.append(f"  note: {report['cpu']['note']}")
    from .runtime.verify import untaken_branches

    lines += [f"  note: {line}" for line in untaken_branches(report.get("verification_branches") or {})]
    lines.append(f"  {report['seconds']['total']:.1f} s; report.json has the details")
    print("\n".join(lines), file=sys.stderr)


def _kept_per_layer(before: dict, after: dict) -> str:
    """``layer 0: 3/4, layer 1: 4/4`` from the passes' per-layer counts (string layer keys)."""
    return ", ".join(f"layer {k}: {after.get(k, n)}/{n}" for k, n in before.items())


def pruning_lines(pass_reports: dict) -> list[str]:
    """What the pruning passes removed, one line each, from their reports (ctx.report)."""
    lines = []
    heads = pass_reports.get("prune_heads")
    if heads and "heads_before" in heads:
        lines.append(f"pruned heads ({heads['removed']} of {sum(heads['heads_before'].values())} removed), kept: "
                     + _kept_per_layer(heads["heads_before"], heads["heads_after"]))
    ffn = pass_reports.get("prune_neurons")
    if ffn and "neurons_before" in ffn:
        lines.append(f"pruned FFN neurons ({ffn['removed']} of {sum(ffn['neurons_before'].values())} removed), "
                     "kept: " + _kept_per_layer(ffn["neurons_before"], ffn["neurons_after"]))
    weights = pass_reports.get("prune_weights")
    if weights and weights.get("weights"):
        lines.append(f"pruned weights: {weights['zeros_after'] / weights['weights']:.1%} of "
                     f"{weights['kernels']} kernels' weights are zero (was "
                     f"{weights['zeros_before'] / weights['weights']:.1%})")
    return lines


def _parity_cell(name: str, out: dict, fidelity: dict | None = None) -> str:
    """``logits: max|err| 1.5e-08 (2% of the bound)`` under the exact check; under a loose one,
    each measured figure beside the bound it was held to (``row cosine 0.9991 >= 0.95``)."""
    parts = [f"max|err| {out['max_abs_error']:.2e}"]
    ratio = out.get("tolerance_ratio")
    fidelity = fidelity or {}
    if fidelity.get("max_abs_error") is not None:
        parts[0] += f" <= {fidelity['max_abs_error']:.2e}"
    elif ratio is not None and ratio == ratio:
        parts[0] += f" ({ratio:.0%} of the bound)"
    bounds = (("max_rel_error", "rel_error", "err / max|output| {:.1%} <= {:.0%}"),
              ("min_cosine", "min_cosine", "row cosine {:.4f} >= {}"),
              ("min_argmax_agreement", "argmax_agreement", "argmax agreement {:.1%} >= {:.1%}"))
    for bound, measured, text in bounds:
        if fidelity.get(bound) is not None and out.get(measured) is not None:
            parts.append(text.format(out[measured], fidelity[bound]))
    return f"{name}: {', '.join(parts)}"


def check_command(args: argparse.Namespace) -> int:
    """``bertc check``: what each target lacks, what rewrites it, and whether that suffices."""
    from .commands import load_graph
    from .ir.parser import copy_graph
    from .legalize import check_facts, plan, report
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
    if args.json:
        from .commands import print_json

        print_json(check_facts(graph, targets, after) | {"legalization_error": note.strip() or None})
    else:
        sys.stdout.write(text + note)
    return 0 if legal else 2


def run_command(args: argparse.Namespace) -> int:
    """``bertc run ARTIFACT --ids "101 2023 102"``: one sequence, outputs printed."""
    from .runtime.inputs import input_role, positions_like
    from .runtime.limits import check_ids, model_limits
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
    check_ids(feeds, model_limits(session), args.artifact)
    try:
        outputs = session.run(feeds)
    except Exception as e:  # the runtime refused these inputs (ids beyond the vocabulary, say)
        first = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
        raise BertcError(f"{args.artifact}: running it on --ids failed: {first}",
                         "Check that every id is below the model's vocabulary size and that the sequence "
                         "fits its position table.") from None
    np.set_printoptions(precision=6, suppress=True, linewidth=120)
    for name, value in outputs.items():
        print(f"{name} {list(value.shape)}:\n{value}")
        if value.ndim == 2 and value.shape[1] > 1:
            print(f"argmax: {value.argmax(axis=1).tolist()}")
    return 0
