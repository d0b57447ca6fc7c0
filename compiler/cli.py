"""The ``bertc`` command line.

    bertc import MODEL [-o OUT.bir]            TF model -> IR text (+ weights .npz)
    bertc opt FILE.bir -p PIPELINE [-o OUT]    run passes on IR text
    bertc inspect MODEL|FILE.bir [--json]      inputs, ops, parameters, transformer structure
    bertc inspect MODEL --draw LOC -o F.png    the IR around the op at LOC, as a picture
    bertc passes                               every pass with its options
    bertc compile MODEL --target onnx|tflite|all -o OUT
    bertc check MODEL --target onnx|tflite|all  legality report before converting
    bertc run ARTIFACT --ids "101 2023 102"    outputs of any artifact
    bertc bench MODEL_OR_ARTIFACTS… [--seq 16,128] [--batch 1,8] [-o DIR]
    bertc eval ARTIFACT --data test.csv --vocab vocab.txt [--labels labels.txt]

Errors in the input (a wrong path, a corrupt model, an unknown pass) print one
paragraph and exit 2; a compile whose artifact does not match the source
model exits 1.  ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .diagnostics import BertcError

log = logging.getLogger("bertc")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="SavedModel directory, frozen GraphDef .pb, .keras file, or IR text .bir")
    p.add_argument("--signature", default="serving_default", help="SavedModel signature (default: serving_default)")
    p.add_argument("--inputs", help="frozen GraphDef: comma-separated input node names")
    p.add_argument("--outputs", help="frozen GraphDef: comma-separated output node names")


def _add_calib_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calib", metavar="FILE",
                   help="calibration data: .csv/.tsv/.jsonl text (with --vocab) or .npz of token ids")
    p.add_argument("--vocab", metavar="FILE", help="vocab.txt or tokenizer.json to tokenize --calib text")
    p.add_argument("--calib-samples", type=int, default=256,
                   help="sentences to use, spread evenly over the file (default 256)")
    p.add_argument("--calib-max-length", type=int, default=None,
                   help="truncate at this many tokens (default 128, at most the model's position table)")


def _add_plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="load passes from a Python file (repeatable)")
    p.add_argument("--override", action="append", default=[], metavar="PASS",
                   help="let a --plugin replace the existing pass PASS (repeatable); without it a clash is an error")


def _add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the same facts as one JSON document, for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertc", description="Compile TensorFlow BERT models to ONNX and TFLite.")
    parser.add_argument("--version", action="version", version=f"bertc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("import", help="import a TF model and print or save its IR")
    _add_model_args(p)
    p.add_argument("-o", "--output", help="write OUT.bir (and OUT.npz with the weights) instead of printing")
    p.add_argument("--raw", action="store_true", help="skip the canonical cleanup passes")

    p = sub.add_parser("opt", help="run a pass pipeline on an IR text file")
    p.add_argument("file", help="IR text (.bir); its weights are read from the .npz beside it")
    p.add_argument("-p", "--passes", required=True, help='pipeline, e.g. "fold_constants,cse"')
    p.add_argument("-o", "--output", help="write the result here (default: print it)")
    p.add_argument("--print-after-all", action="store_true", help="print the IR after every pass to stderr")
    _add_plugin_arg(p)
    _add_calib_args(p)

    p = sub.add_parser("inspect", help="summarise a model: I/O, ops, parameters, layers")
    _add_model_args(p)
    _add_json_arg(p)
    p.add_argument("--draw", metavar="LOC",
                   help="draw the IR around the op whose TF location contains LOC (e.g. the op a conversion "
                        "failed on) into -o FILE.png")
    p.add_argument("--depth", type=int, default=2, help="with --draw: ops to follow each way (default 2)")
    p.add_argument("-o", "--output", metavar="FILE.png", help="with --draw: where to write the picture")

    p = sub.add_parser("passes", help="list every pass with its options")
    _add_plugin_arg(p)
    _add_json_arg(p)

    p = sub.add_parser("compile", help="import, run passes, lower to ONNX/TFLite and verify")
    _add_model_args(p)
    p.add_argument("--target", default="all", help="onnx, tflite or all (default: all)")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--passes", default="", help="pass pipeline to run after import")
    p.add_argument("--dump-ir", metavar="DIR", help="write the IR after import and after every pass")
    p.add_argument("--no-legalize", action="store_true",
                   help="do not rewrite ops a target lacks (the compile then fails on them)")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against TensorFlow")
    p.add_argument("--verify-data", metavar="FILE", help=".npz of real inputs to verify with")
    p.add_argument("--tolerance", default="2e-5,1e-6", metavar="RTOL[,ATOL]",
                   help="exact check: every output element within ATOL + RTOL * (|ref| + rms(ref)) of the "
                        "source (default 2e-5,1e-6; also rtol=X,atol=Y)")
    p.add_argument("--labels", metavar="FILE", help="class labels in logit order, one per line; stored in each artifact")
    p.add_argument("--max-drop", type=float, metavar="FRACTION",
                   help="for passes that change numbers on purpose (pruning): fail when more than this fraction "
                        "of predictions (argmax) differ from the source model")
    p.add_argument("--cpu", default="portable", metavar="KIND",
                   help="x86 CPUs the ONNX int8 kernels must be exact on: portable (every CPU, the default: "
                        "8-bit kernels run u8 x u8), vnni or amx (u8 x s8, 2-3x faster, exact only with AVX-512 "
                        "VNNI, AVX-VNNI or AMX), avx2 (as portable), native (this CPU's kind)")
    _add_plugin_arg(p)
    _add_calib_args(p)

    p = sub.add_parser("check", help="what each target lacks and which pass rewrites it (exit 2 if not legal)")
    _add_model_args(p)
    p.add_argument("--target", default="all", help="onnx, tflite or all (default: all)")
    _add_json_arg(p)

    p = sub.add_parser("run", help="run an artifact (.onnx, .tflite, .bir or a SavedModel) on token ids")
    p.add_argument("artifact")
    p.add_argument("--ids", required=True, help='token ids, e.g. "101 2023 102"')

    # Commands that live in their own modules: each has add_arguments(parser) and
    # command(args); their top-level imports stay light so `bertc --help` is fast.
    import importlib

    for name, module, text in PLUGGED_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # not written yet
        p = sub.add_parser(name, help=text)
        mod.add_arguments(p)
        p.set_defaults(handler=mod.command)
    return parser


PLUGGED_COMMANDS = [
    ("bench", "bertc.runtime.bench", "latency, throughput, load time, size and memory, backends side by side"),
    ("eval", "bertc.runtime.evaluate", "macro-F1, accuracy and confusions on labelled text, any backend"),
    ("demo", "bertc.demo", "compile a real pretrained BERT (all-MiniLM-L6-v2) several ways and compare"),
    ("analyze", "bertc.analyze", "per-layer sensitivity of a model to quantization"),
]


class _CurrentStderr(logging.StreamHandler):
    """Log to whatever sys.stderr is at the time (it is swapped while a command runs)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", handlers=[_CurrentStderr()])
    if not args.command:
        parser.print_help()
        return 2
    from .tempfiles import Terminated, signals_raise

    try:
        from . import commands
        from .quiet import native_stderr_silenced

        handler = getattr(args, "handler", None) or getattr(commands, f"cmd_{args.command}")
        with signals_raise(), native_stderr_silenced(enabled=not args.verbose):
            return int(handler(args) or 0)
    except BertcError as e:
        if args.debug:
            raise
        print(f"bertc: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(e.hint, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("bertc: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:  # SIGTERM / SIGHUP: the cleanup ran on the way out, as for Ctrl-C
        print(f"bertc: stopped by {e}; nothing was written", file=sys.stderr)
        return 128 + e.signum
    except Exception as e:  # a bug: say so in one line unless asked for the traceback
        if args.debug:
            raise
        print(f"bertc: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in bertc; rerun with --debug for the traceback and report it.", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
