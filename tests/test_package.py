"""pyproject maps compiler/, passes/ and runtime/ into one `bertc` namespace: check a real install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_non_editable_install_works(tmp_path):
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--quiet", "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    probe = ("import bertc, bertc.passes, bertc.runtime, bertc.pass_manager as pm; "
             "print(bertc.__file__); print(sorted(pm.all_passes()))")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    first, passes = res.stdout.splitlines()
    assert first.startswith(str(target))  # the installed copy, not the checkout
    assert "fold_constants" in passes and "fuse_layer_norm" in passes
    assert (target / "bin" / "bertc").exists()
