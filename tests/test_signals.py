"""A kill during `bertc compile` or `bertc import -o` leaves nothing behind, and the next
run into the same place removes what a process killed with SIGKILL could not.

Each signal case runs bertc in a child process that stalls once its temporaries exist
(the driver below patches the step after them to wait), so the signal always lands
while they are on disk.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bertc.cli import main
from bertc.tempfiles import sweep_stale

DRIVER = """
import sys, time
import bertc.compile, bertc.ir.serialize

def stall(*args, **kwargs):
    print("READY", flush=True)
    time.sleep(300)

bertc.compile.verify_artifacts = stall   # compile: the artifacts are in the staging dir
bertc.ir.serialize._publish = stall      # import -o: the .bir and .npz temporaries are written
from bertc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def _kill_when_ready(tmp_path: Path, argv: list[str], sig: int, watch: Path) -> tuple[int, str]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.communicate()[1][-2000:]
        assert _leftovers(watch), "the temporaries should exist when the signal is sent"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_during_compile_leaves_nothing(tmp_path, tf_bert_dir, sig):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _kill_when_ready(tmp_path, ["compile", str(tf_bert_dir), "--target", "onnx", "-o", str(out)],
                                 sig, out)
    assert code != 0
    assert "Traceback" not in err
    assert signal.Signals(sig).name in err or "interrupted" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_sigterm_during_compile_into_a_new_directory_removes_it(tmp_path, tf_bert_dir):
    out = tmp_path / "new" / "out"
    code, err = _kill_when_ready(tmp_path, ["compile", str(tf_bert_dir), "--target", "onnx", "-o", str(out)],
                                 signal.SIGTERM, out)
    assert code == 128 + signal.SIGTERM and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_import_leaves_the_old_pair(tmp_path, tf_bert_dir, sig):
    out = tmp_path / "ir"
    out.mkdir()
    (out / "model.bir").write_text("old text")
    code, err = _kill_when_ready(tmp_path, ["import", str(tf_bert_dir), "-o", str(out / "model.bir")], sig, out)
    assert code == 128 + sig and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["model.bir"]
    assert (out / "model.bir").read_text() == "old text"


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
