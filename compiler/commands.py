"""The CLI's subcommands, one function each (``cmd_<name>``), on top of the library."""

from __future__ import annotations

import argparse
import logging
import sys
import zipfile
from pathlib import Path

from .diagnostics import BertcError, did_you_mean
from .ir.graph import Graph

log = logging.getLogger(__name__)


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def load_ir(path: Path) -> Graph:
    """Read IR text and the weights beside it, with errors that name the file."""
    from .ir.parser import ParseError
    from .ir.serialize import load, weights_path
    from .ir.verifier import VerifyError, verify

    if not path.is_file():
        raise BertcError(f"{path}: no such file.")
    npz = weights_path(path)
    try:
        graph = load(path)
        verify(graph)
    except ParseError as e:
        first = str(e).splitlines()[0].split(': ', 1)[-1]
        if "is not in the weights stored beside" in first:
            _missing_weights(path, npz, first)
        raise BertcError(f"{path}:{e.line_no}: {first}\n  {e.line.strip()}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise BertcError(f"{npz}: the weights beside {path.name} are corrupt or truncated (not an .npz archive: "
                         f"{e}).", "Write the pair again: bertc import MODEL -o FILE.bir.") from None
    except VerifyError as e:
        raise BertcError(f"{path}: the IR is invalid: {e}") from None
    except (OSError, ValueError) as e:
        raise BertcError(f"{path}: cannot read this IR ({type(e).__name__}: {e}).") from None
    return graph


def _missing_weights(path: Path, npz: Path, first: str) -> None:
    """The .bir names a weight its .npz lacks: say whether the .npz is missing or another model's."""
    if not npz.exists():
        raise BertcError(f"{path}: its weights file {npz} does not exist ({first.split(' is not')[0]} and the "
                         "others are stored there).", "Keep the .npz that bertc wrote beside the .bir.")
    raise BertcError(f"{path}: {npz} does not hold its weights ({first.split(' is not')[0]} is missing): "
                     "the .npz belongs to another model or another version of this one.",
                     "Write the pair again: bertc import MODEL -o FILE.bir.")


def load_graph(args: argparse.Namespace, canonicalize: bool = True):
    """A graph from a TF model or IR text; returns (graph, frozen model or None)."""
    path = Path(args.model)
    names = [f for f in ("--inputs", "--outputs") if getattr(args, f[2:], None)]
    if names and path.suffix not in (".pb", ".pbtxt"):
        raise BertcError(f"{names[0]} names nodes of a frozen GraphDef (.pb), but {path} is not one: "
                         "a SavedModel, .keras or .bir model declares its own inputs and outputs.",
                         f"Drop {' and '.join(names)}; for a SavedModel, choose a signature with --signature.")
    if path.suffix == ".bir":
        return load_ir(path), None
    from .frontend.tf import import_model

    return import_model(path, args.signature, _split(args.inputs), _split(args.outputs), canonicalize=canonicalize)


def _load_plugins(args: argparse.Namespace) -> None:
    from .pass_manager import all_passes, load_plugin

    override = getattr(args, "override", []) or []
    unknown = [n for n in override if n not in all_passes()]
    if unknown:
        raise BertcError(f"--override {unknown[0]}: there is no pass '{unknown[0]}' to replace."
                         f"{did_you_mean(unknown[0], all_passes())}", "`bertc passes` lists them.")
    if override and not getattr(args, "plugin", None):
        raise BertcError(f"--override {override[0]}: only a --plugin can replace a pass, and none is given.")
    for plugin in getattr(args, "plugin", []) or []:
        names = load_plugin(plugin, override)
        log.info("plugin %s registered: %s", plugin, ", ".join(names) or "nothing new")


def _write_ir(graph: Graph, out: str | None) -> None:
    from .ir.printer import print_graph
    from .ir.serialize import save

    if out is None:
        sys.stdout.write(print_graph(graph))
        return
    from .tempfiles import sweep_stale

    path = Path(out)
    if not path.parent.is_dir():
        raise BertcError(f"-o {path}: directory {path.parent} does not exist.", "Create it first, or pick another -o.")
    sweep_stale(path.parent)
    save(graph, path)
    print(f"wrote {path}", file=sys.stderr)


# ------------------------------------------------------------------ commands
def cmd_import(args: argparse.Namespace) -> int:
    graph, _ = load_graph(args, canonicalize=not args.raw)
    _write_ir(graph, args.output)
    return 0


def pass_context(args: argparse.Namespace):
    """The PassContext for a command: calibration data from --calib/--vocab, if given."""
    from .pass_manager import PassContext

    calib = None
    check_calib_options(args)
    if getattr(args, "calib", None):
        from .runtime.calib import load_calibration

        names = None
        if getattr(args, "labels", None):
            from .runtime.metadata import read_labels_file

            names = read_labels_file(args.labels)
        calib = load_calibration(args.calib, args.vocab, calib_max_length(args), args.calib_samples,
                                 label_names=names)
    return PassContext(calib=calib)


DEFAULT_CALIB_MAX_LENGTH = 128


def calib_max_length(args: argparse.Namespace) -> int:
    """--calib-max-length as given, else the default (None in argparse tells "not given" apart)."""
    given = getattr(args, "calib_max_length", None)
    return DEFAULT_CALIB_MAX_LENGTH if given is None else given


def check_calib_options(args: argparse.Namespace) -> None:
    """The numeric --calib options, before anything is read."""
    if getattr(args, "calib_max_length", None) is not None and args.calib_max_length < 2:
        raise BertcError(f"--calib-max-length {args.calib_max_length}: must be at least 2 ([CLS] and [SEP]).")
    if getattr(args, "calib_samples", 1) < 1:
        raise BertcError(f"--calib-samples {args.calib_samples}: must be at least 1.")


def check_against_model(args: argparse.Namespace, ctx, graph: Graph, passes: list) -> None:
    """Options that depend on the model, checked right after the import and before any pass runs:
    --calib-max-length (and the --calib sequences) against the position table, each pass's own
    (kmeans' clusters against its matrices); and a note when calibration will use random ids."""
    from .runtime.inputs import position_table_rows

    rows = position_table_rows(graph)
    given = getattr(args, "calib_max_length", None)
    if rows is not None and given is not None and given > rows:
        raise BertcError(f"--calib-max-length {given}: the model's position-embedding table has {rows} rows, "
                         f"so it takes at most {rows} tokens.", f"Pass --calib-max-length {rows} or less.")
    if rows is not None and ctx.calib is not None:
        longest = max((len(s["ids"]) for s in ctx.calib.sequences), default=0)
        if longest > rows:
            raise BertcError(f"--calib {args.calib}: a sentence is {longest} tokens long, but the model's "
                             f"position-embedding table has {rows} rows.",
                             f"Pass --calib-max-length {rows} (or less) to truncate the calibration text.")
    for p in passes:
        p.check_graph(graph)
    if ctx.calib is None and any(getattr(p, "uses_calibration", False) for p in passes):
        names = ", ".join(sorted({p.name for p in passes if getattr(p, "uses_calibration", False)}))
        print(f"bertc: note: no --calib given: {names} calibrates on random token ids, not real text "
              "(pass --calib FILE --vocab vocab.txt for ranges that match your data).", file=sys.stderr)


def cmd_opt(args: argparse.Namespace) -> int:
    import json

    from .pass_manager import PassManager, parse_pipeline

    _load_plugins(args)
    passes = parse_pipeline(args.passes)
    ctx = pass_context(args)
    graph = load_ir(Path(args.file))
    check_against_model(args, ctx, graph, passes)
    PassManager(passes, print_after=args.print_after_all).run(graph, ctx)
    _write_ir(graph, args.output)
    if ctx.report:
        log.info("pass reports: %s", json.dumps(ctx.report, default=str))
    return 0


def print_json(data) -> None:
    """``--json``: one JSON document on stdout, for scripts."""
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def pass_facts() -> list[dict]:
    """Every registered pass: name, summary, and its options (name, default, whether it has one)."""
    import dataclasses

    from .pass_manager import all_passes

    def option(f: dataclasses.Field) -> dict:
        has = f.default is not dataclasses.MISSING
        return {"name": f.name, "default": f.default if has else None, "has_default": has}

    return [{"name": name, "summary": cls.summary(), "options": [option(f) for f in dataclasses.fields(cls)]}
            for name, cls in all_passes().items()]


def cmd_passes(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .inspect import terminal_console

    _load_plugins(args)
    facts = pass_facts()
    if args.json:
        print_json(facts)
        return 0
    table = Table(title="bertc passes", show_lines=False)
    table.add_column("pass", style="bold", no_wrap=True)
    table.add_column("options", overflow="fold")
    table.add_column("what it does", overflow="fold")
    for p in facts:
        opts = ", ".join(f"{o['name']}={o['default']!r}" if o["has_default"] else o["name"] for o in p["options"])
        table.add_row(p["name"], opts or "-", p["summary"])
    terminal_console().print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import inspection_facts, print_inspection

    if bool(args.draw) != bool(args.output):
        raise BertcError("--draw LOC and -o FILE.png go together: --draw names the op, -o the picture.",
                         "e.g. bertc inspect model/ --draw layer_0/attention/self/query/MatMul -o region.png")
    graph, _ = load_graph(args)
    if args.draw:
        from .draw import draw_region

        drawn = draw_region(graph, args.draw, args.depth, Path(args.output))
        print(f"wrote {args.output}: {drawn.number_of_nodes()} ops, {drawn.number_of_edges()} values",
              file=sys.stderr)
    elif args.json:
        print_json(inspection_facts(graph, source=args.model)[0])
    else:
        print_inspection(graph, source=args.model)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from .driver import compile_command

    _load_plugins(args)
    return compile_command(args)


def cmd_check(args: argparse.Namespace) -> int:
    from .driver import check_command

    return check_command(args)


def cmd_run(args: argparse.Namespace) -> int:
    from .driver import run_command

    return run_command(args)
