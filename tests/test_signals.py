"""What a process killed with SIGKILL leaves (its `.bertc-<pid>-…` temporaries) is removed by
the next compile or import into the same place, and only that.  The SIGTERM/SIGHUP/SIGINT
cases, which kill a child bertc, are in the table of tests/test_bad_input.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bertc.cli import main
from bertc.tempfiles import sweep_stale

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_temporaries_of_dead_processes(tmp_path):
    import os

    dead, alive = _dead_pid(), os.getppid()
    (tmp_path / f".bertc-{dead}-abc").mkdir()
    (tmp_path / f".bertc-{dead}-abc" / "model.onnx").write_bytes(b"x")
    (tmp_path / f".model.npz.bertc-{dead}-xyz.npz").write_bytes(b"x")
    (tmp_path / f".bertc-{alive}-live").mkdir()
    (tmp_path / ".bertc-notapid").mkdir()  # not a name bertc makes: left alone
    (tmp_path / "model.onnx").write_bytes(b"x")
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == [f".bertc-{dead}-abc", f".model.npz.bertc-{dead}-xyz.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".bertc-{alive}-live", ".bertc-notapid", "model.onnx"]


def test_compile_and_import_sweep_what_a_killed_run_left(capsys, tmp_path, tf_bert_dir):
    dead = _dead_pid()
    out = tmp_path / "out"
    (out / f".bertc-{dead}-abc").mkdir(parents=True)
    (tmp_path / f".m.bir.bertc-{dead}-q.tmp").write_text("half")
    assert main(["import", str(tf_bert_dir), "-o", str(tmp_path / "m.bir")]) == 0
    assert not (tmp_path / f".m.bir.bertc-{dead}-q.tmp").exists()
    assert main(["compile", str(tmp_path / "m.bir"), "--target", "onnx", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
