"""``bertc analyze``: how sensitive each part of a model is to static int8 quantization.

    bertc analyze MODEL --calib data.csv --vocab vocab.txt --sensitivity [--json ranking.json]

Imports MODEL as ``bertc compile`` does (a SavedModel, frozen GraphDef, .keras or
.bir), runs the canonical cleanup and ``calibrate`` (``--method``; without
``--calib``, random valid token ids, as the calibrate pass says), then
quantizes each group of dense layers alone (one encoder layer, the pooler, the
classifier) with quant_full's rewrite and measures how far the outputs move
from the float model on the calibration data (``bertc.analysis.sensitivity``).
The table lists the groups most sensitive first: the order in which
``quant_full{target_drop=…}`` keeps them float.  ``--exclude`` takes
quant_full's exclude= words (default: none, so that every group is ranked).

Top-level imports stay light: the CLI imports this module to build its parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .diagnostics import BertcError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .cli import _add_calib_args, _add_model_args

    _add_model_args(parser)
    _add_calib_args(parser)
    parser.add_argument("--sensitivity", action="store_true",
                        help="rank the layers by the output error their int8 quantization alone adds (the default "
                             "and, for now, only analysis)")
    parser.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy", "mse"],
                        help="calibration method (default minmax)")
    parser.add_argument("--exclude", default="none",
                        help="quant_full exclude= words: groups left float and not ranked (default none)")
    parser.add_argument("--samples", type=int, default=64,
                        help="calibration sentences to measure the error on (default 64)")
    parser.add_argument("--json", metavar="FILE", help="also write the ranking as JSON")


def command(args: argparse.Namespace) -> int:
    from .commands import check_against_model, load_graph, pass_context
    from .frontend.tf import CANONICALIZE
    from .pass_manager import PassManager, parse_pipeline

    if args.samples < 1:
        raise BertcError("--samples must be at least 1.")
    ctx = pass_context(args)  # before the slow import, so a bad --calib fails fast
    [quant] = parse_pipeline(f'quant_full{{exclude="{args.exclude}"}}')
    graph, _ = load_graph(args, canonicalize=False)
    check_against_model(args, ctx, graph, [])
    calibrate = f"calibrate{{method={args.method}}}"
    PassManager(parse_pipeline(f"{CANONICALIZE},{calibrate}" if CANONICALIZE else calibrate)).run(graph, ctx)
    from .analysis.sensitivity import calibration_batches

    batches = calibration_batches(graph, ctx.calib, samples=args.samples)
    ranking, _, _ = quant.sensitivity(graph, ctx, batches)
    report = {"model": str(args.model), "calibration": ctx.report.get("calibrate", {}),
              "exclude": args.exclude, "batches": len(batches),
              "ranking": [r.to_json() for r in ranking]}
    if args.json:
        out = Path(args.json)
        if not out.parent.exists():
            raise BertcError(f"--json {out}: directory {out.parent} does not exist.")
        out.write_text(json.dumps(report, indent=1) + "\n")
    _print_table(report)
    return 0


def _print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    cal = report["calibration"]
    table = Table(title=f"quantization sensitivity: {report['model']}")
    table.add_column("rank", justify="right")
    table.add_column("group", style="bold")
    table.add_column("matmuls", justify="right")
    table.add_column("output error", justify="right")
    table.add_column("drop", justify="right")
    for i, r in enumerate(report["ranking"], 1):
        table.add_row(str(i), r["group"], str(r["ops"]), f"{r['error']:.3e}", f"{r['drop']:.4f}")
    Console(file=sys.stdout, width=120).print(table)
    sys.stdout.write(f"calibration: {cal.get('method', '?')} over {cal.get('samples', '?')} sequences "
                     f"({cal.get('data', '?')}); each group int8 alone (quant_full's form), the rest float.\n")
    sys.stdout.write("output error: ||quantized - float|| / ||float|| over the outputs; drop: argmax "
                     "disagreement (classifier outputs) or 1 - mean row cosine.\n")
