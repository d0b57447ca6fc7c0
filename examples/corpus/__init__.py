"""A corpus of foreign TF models (Hugging Face, keras-hub, TF1, op families) for coverage tests.

``python -m examples.corpus.build OUT_DIR`` builds it (see build.py).  The two
helpers here are shared by tests/test_corpus.py and benchmarks/coverage.py, so
both run a manifest entry through ``bertc compile`` the same way and name a
failure by the same one line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

PASSES = "prune_heads{ratio=0.5},prune_neurons{ratio=0.5},quant_int8"


def build_each(names, build_one, out_dir, kind: str) -> list[dict]:
    """Manifest entries for ``names``; a model whose builder fails gets a ``build_error``
    (a builder break is itself a corpus result), and the others are still built."""
    entries = []
    for name in names:
        try:
            entries.append(build_one(name, out_dir))
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            entries.append({"name": name, "kind": kind, "build_error": f"{type(e).__name__}: {first}"[:300]})
    return entries


def builder_main(argv: list[str] | None, known, build: Callable, what: str,
                 before: Callable[[], None] | None = None) -> int:
    """The command line of one corpus builder: ``python -m examples.corpus.<source> OUT [--only a,b]``
    builds its models into OUT and prints their manifest entries as JSON (build.py reads them)."""
    parser = argparse.ArgumentParser(description=f"Build the {what} part of the corpus.")
    parser.add_argument("out_dir")
    parser.add_argument("--only", help="comma-separated model names")
    args = parser.parse_args(argv)
    if before is not None:
        before()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n in known] if args.only else None
    json.dump(build(out, names), sys.stdout)
    return 0


def compile_argv(entry: dict, out: str, target: str = "all", passes: str | None = None) -> list[str]:
    """``bertc compile`` arguments for one manifest entry (its verify data and frozen-graph names included)."""
    argv = ["compile", entry["path"], "--target", target, "-o", str(out), *entry.get("compile_args", [])]
    if entry.get("verify_data"):
        argv += ["--verify-data", entry["verify_data"]]
    if passes:
        argv += ["--passes", passes]
    return argv


_OP_LINE = re.compile(r"^\s{4}(\w+) \(\d+x\):")
_REASON_LINE = re.compile(r"^\s{2}(\S.*):$")
_SHORT_REASON = {"no handler in bertc": "no handler", "control flow": "control flow", "string ops": "string ops",
                 "bfloat16 tensors": "bfloat16", "random ops": "random ops", "Python calls": "Python calls"}


def summarize_error(stderr: str) -> str:
    """One line naming what failed.

    bertc's "cannot import" message lists the ops on the lines below its first;
    this folds them in (``cannot import: no handler: Erfc, Sin; control flow:
    StatelessIf``) so the line says which op to add.  Other messages keep their
    first line, without the ``bertc: error:`` prefix and the model path.
    """
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("bertc:") and not ln.startswith("bertc: note:")]
    if not errors:
        return (lines[-1] if lines else "no output").strip()[:300]
    i = errors[0]
    head = re.sub(r"^bertc: (internal )?error: ", lambda m: "internal error: " if m.group(1) else "", lines[i])
    if "cannot import:" in head:
        return _import_groups(lines[i + 1:])
    if "is not legal for target" in head:
        return _illegal_ops(head, lines[i + 1:])
    return _tidy(head)


_ILLEGAL_LINE = re.compile(r"^\s+(\w+) at loc\(.*?\): (.*)$")


def _illegal_ops(head: str, lines: list[str]) -> str:
    """"not legal for target 'tflite'" with the op kinds it lists and why (the reason of the first)."""
    target = re.search(r"target '(\w+)'", head)
    kinds: dict[str, str] = {}
    for ln in lines:
        if m := _ILLEGAL_LINE.match(ln):
            kinds.setdefault(m.group(1), m.group(2))
    if not kinds:
        return _tidy(head)
    first = next(iter(kinds))
    return (f"not legal for {target.group(1) if target else 'the target'}: {', '.join(kinds)} "
            f"({first}: {kinds[first]})")


_TIDY = (
    (re.compile(r"^/\S+: "), ""),  # the model path
    (re.compile(r"^cannot import (\w+) '[^']*': "), r"cannot import \1: "),  # drop the node name
    (re.compile(r" '[^'\s]*/[^'\s]*'"), ""),  # node names repeated in the reason
    (re.compile(r"^pass '([^']*)' \(#\d+ of \d+; ran before it: [^)]*\) "), r"pass \1: "),
    (re.compile(r"^model\.(\w+) does not match the source model: output ('[^']*') differs by up to (\S+) "
                r"\(bound ([^)]*)\).*"), r"\1 parity: \2 off by \3 (bound \4)"),
)


def _tidy(line: str) -> str:
    """A message's first line without what does not name the failure (paths, node names, pass history)."""
    for pattern, repl in _TIDY:
        line = pattern.sub(repl, line)
    return line.strip()


def _import_groups(lines: list[str]) -> str:
    """The op names under each reason of bertc's "cannot import" list, on one line."""
    groups: list[str] = []
    for ln in lines:
        if m := _REASON_LINE.match(ln):
            reason = next((v for k, v in _SHORT_REASON.items() if ln.strip().startswith(k)), m.group(1)[:30])
            groups.append(f"{reason}: ")
        elif (m := _OP_LINE.match(ln)) and groups:
            groups[-1] += ("" if groups[-1].endswith(": ") else ", ") + m.group(1)
        elif not ln.startswith(" "):
            break
    return "cannot import: " + "; ".join(groups)
