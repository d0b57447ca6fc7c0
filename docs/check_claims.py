"""List the numeric claims in README.md and docs/*.md, and the check behind each.

    python docs/check_claims.py            # the claims with no check (exit 1 if any)
    python docs/check_claims.py --all      # every claim with what backs it

A claim is a line that states a number with a unit or a comparison (ms, MB, %,
x, points, "faster", "within" ...).  It is backed when:

* it stands in a measured section: a section (up to the next heading, with the
  intros of the sections around it) that says when and where it was measured (a
  date, and a CPU or "this machine") and how (a backticked command): the reader
  can reproduce it, and it claims nothing beyond that run; or
* a row of ``CHECKS`` below names the test or benchmark that checks it (the
  row's pattern matches the line).

Fenced code blocks and inline code spans are skipped: they show commands, IR and
output, not claims.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"\d[\d,]*(?:\.\d+)?"
CLAIM = re.compile(rf"(?<![\w.]){NUMBER}\s*(?:%|×|x\b|ms\b|MB\b|GB\b|GiB\b|s\b|seconds?\b|minutes?\b|points?\b|GFLOP)"
                   r"|\b(?:faster|slower|within|at least|at most)\b.*(?<![\w.])\d", re.IGNORECASE)
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
CPU = re.compile(r"\b(?:AMD|Intel|Xeon|EPYC|AVX2|AVX-512|VNNI|AMX|this machine)\b", re.IGNORECASE)
CODE_SPAN = re.compile(r"`[^`]*`")  # inline code: commands, IR and output shown, not claimed
COMMAND = re.compile(r"`(?:python |bertc |bash )[^`]+`")

# (pattern on the claim's line, what checks it): tests run by .ci/run, or benchmarks.
CHECKS: list[tuple[str, str]] = [
    (r"int8 files are about 65%", "tests/test_demo.py::test_int8_artifacts_are_smaller (< 75% of fp32)"),
    (r"2e-5,1e-6|1e-6 \+ 1e-5 \* \(\|ref\| \+ rms\)|0\.5% off|injected 0\.5%",
     "tests/test_verification.py (the bound, injected 0.5% lowering errors on both targets)"),
    (r"2% of its elements|a quarter", "runtime/op_parity.py TIE_SHARE, FLIP_ROW_SHARE; "
     "tests/test_verification.py::test_int8_artifacts_are_held_to_their_ir_op_by_op"),
    (r"row cosine ≥ 0\.95|30% of the output's range", "passes/quant_int8.py QuantInt8.fidelity, applied by compile"),
    (r"weights shrink 4×", "tests/test_quant.py (int8 kernels; parameter bytes in report.json)"),
    (r"under a minute|about a minute", "tests/test_demo.py runs `bertc demo --quick` (time not asserted: tests never time)"),
    (r"computes only the \[CLS\] row.*exact", "tests/test_sink_row_slice.py (fp32 artifacts equal the unsliced graph)"),
    (r"at most 65536|at least 2 and at most", "tests/test_bad_input.py (option ranges refused with exit 2)"),
]


@dataclass
class Claim:
    path: Path
    line: int
    text: str
    backed_by: str | None


def sections(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges between headings."""
    heads = [i for i, ln in enumerate(lines) if ln.startswith("#")] + [len(lines)]
    starts = [0] + heads[:-1]
    return [(a, b) for a, b in zip(starts, heads) if b > a]


def level(line: str) -> int:
    """A heading's level (``## x`` is 2); 0 for a line that is no heading."""
    return len(line) - len(line.lstrip("#")) if line.startswith("#") else 0


def enclosing_intros(lines: list[str], start: int) -> list[str]:
    """The intros (heading and text up to the next heading) of the sections that enclose the one at
    ``start``: a subsection of a measured section ("## Some CPU, measured on DATE") shares its CPU and
    date."""
    out: list[str] = []
    mine = level(lines[start]) or 1
    for i in range(start - 1, -1, -1):
        lv = level(lines[i])
        if lv and lv < mine:
            end = next((j for j in range(i + 1, len(lines)) if level(lines[j])), len(lines))
            out = lines[i:end] + out
            mine = lv
    return out


def measured(block: list[str]) -> bool:
    text = "\n".join(block)
    return bool(DATE.search(text) and CPU.search(text) and COMMAND.search(text))


def claims_in(path: Path) -> list[Claim]:
    lines = path.read_text().splitlines()
    fenced = set()
    inside = False
    for i, ln in enumerate(lines):
        if ln.strip().startswith("```"):
            inside = not inside
            fenced.add(i)
        elif inside:
            fenced.add(i)
    out = []
    for start, end in sections(lines):
        is_measured = measured(enclosing_intros(lines, start) + lines[start:end])
        for i in range(start, end):
            ln = lines[i]
            if i in fenced or ln.startswith("#") or not CLAIM.search(CODE_SPAN.sub("", ln)):
                continue
            backed = "measured section (date, CPU, command)" if is_measured else next(
                (check for pattern, check in CHECKS if re.search(pattern, ln)), None)
            out.append(Claim(path, i + 1, ln.strip(), backed))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every claim, with what backs it")
    args = parser.parse_args(argv)
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    claims = [c for f in files if f.exists() for c in claims_in(f)]
    unbacked = [c for c in claims if c.backed_by is None]
    for c in claims if args.all else unbacked:
        where = f"{c.path.relative_to(ROOT)}:{c.line}"
        print(f"{where}: {c.text[:160]}" + (f"\n    -> {c.backed_by}" if c.backed_by else ""))
    print(f"{len(claims)} numeric claims, {len(claims) - len(unbacked)} backed, {len(unbacked)} with no check",
          file=sys.stderr)
    return 1 if unbacked else 0


if __name__ == "__main__":
    sys.exit(main())
