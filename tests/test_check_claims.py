"""docs/check_claims.py: numeric claims are found, and backed only by a measured section or a named check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("check_claims", ROOT / "docs" / "check_claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_claims"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_claims_are_backed_by_a_measured_section_or_a_check(tmp_path):
    claims = _module()
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Speed\n\nIt is 2.5× faster than the peer.\n\n"
        "## Measured\n\nOn 2026-12-06, Intel Xeon with AMX, by `python benchmarks/speed.py`: 12.5 ms.\n\n"
        "## Size\n\nThe int8 files are about 65% of fp32.\n\n"
        "```\nbertc run x.onnx  # 3 ms\n```\n\nu8 × s8 kernels are named, not claimed.\n")
    found = {c.line: c.backed_by for c in claims.claims_in(doc)}
    assert set(found) == {3, 7, 11}, found
    assert found[3] is None  # no date, CPU or command: unbacked
    assert "measured section" in found[7]
    assert "test_demo" in found[11]


def test_every_claim_in_the_repository_docs_is_backed(capsys):
    """README.md and docs/*.md: each number is a measurement (date, CPU, command) or names its check."""
    code = _module().main([])
    captured = capsys.readouterr()
    assert "numeric claims" in captured.err
    assert code == 0, "claims with no check (word them as a measurement, or add a CHECKS row):\n" + captured.out


def test_a_subsection_shares_its_measured_section_cpu_and_date(tmp_path):
    claims = _module()
    doc = tmp_path / "doc.md"
    doc.write_text(
        "## AMD EPYC, AVX2 only, measured 2026-11-25\n\nTwo cores.\n\n"
        "### BERT-base\n\n`python benchmarks/speed.py`: 12.5 ms at 16 tokens.\n\n"
        "## Elsewhere\n\n### Unmeasured\n\n`python benchmarks/speed.py`: 9.5 ms.\n")
    found = {c.line: c.backed_by for c in claims.claims_in(doc)}
    assert "measured section" in found[7]  # the date and CPU come from the enclosing heading
    assert found[13] is None  # a command alone, under a heading with no date or CPU
