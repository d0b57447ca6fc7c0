"""A corpus of foreign TF models (Hugging Face, keras-hub, TF1, op families) for coverage tests.

``python -m examples.corpus.build OUT_DIR`` builds it (see build.py).  The two
helpers here are shared by tests/test_corpus.py and benchmarks/coverage.py, so
both run a manifest entry through ``bertc compile`` the same way and name a
failure by the same one line.
"""

from __future__ import annotations

import re

PASSES = "prune_heads{ratio=0.5},prune_neurons{ratio=0.5},quant_int8"


def compile_argv(entry: dict, out: str, target: str = "all", passes: str | None = None) -> list[str]:
    """``bertc compile`` arguments for one manifest entry (its verify data and frozen-graph names included)."""
    argv = ["compile", entry["path"], "--target", target, "-o", str(out), *entry.get("compile_args", [])]
    if entry.get("verify_data"):
        argv += ["--verify-data", entry["verify_data"]]
    if passes:
        argv += ["--passes", passes]
    return argv


_OP_LINE = re.compile(r"^\s{4}(\w+) \(\d+x\):")
_REASON_LINE = re.compile(r"^\s{2}(\S[^:]*):$")
_SHORT_REASON = {"no handler in bertc": "no handler", "control flow": "control flow", "string ops": "string ops"}


def summarize_error(stderr: str) -> str:
    """One line naming what failed.

    bertc's "cannot import" message lists the ops on the lines below its first;
    this folds them in (``cannot import: no handler: Erfc, Sin; control flow:
    StatelessIf``) so the line says which op to add.  Other messages keep their
    first line, without the ``bertc: error:`` prefix and the model path.
    """
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("bertc:")]
    if not errors:
        return (lines[-1] if lines else "no output").strip()[:300]
    i = errors[0]
    head = re.sub(r"^bertc: (internal )?error: ", lambda m: "internal error: " if m.group(1) else "", lines[i])
    head = re.sub(r"^\S+: (?=the model uses)", "", head)
    if "cannot import:" not in head:
        return head.strip()
    groups: list[str] = []
    for ln in lines[i + 1:]:
        if m := _REASON_LINE.match(ln):
            reason = next((v for k, v in _SHORT_REASON.items() if ln.strip().startswith(k)), m.group(1)[:30])
            groups.append(f"{reason}: ")
        elif (m := _OP_LINE.match(ln)) and groups:
            groups[-1] += ("" if groups[-1].endswith(": ") else ", ") + m.group(1)
        elif not ln.startswith(" "):
            break
    return "cannot import: " + "; ".join(groups)
