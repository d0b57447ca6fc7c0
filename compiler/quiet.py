"""Keep TensorFlow's and LiteRT's native start-up chatter off the user's terminal.

Their C++ logging (absl's "All log messages before absl::InitializeLog()",
oneDNN notes) writes straight to file descriptor 2 and ignores
TF_CPP_MIN_LOG_LEVEL.  While a command runs, fd 2 points at /dev/null and
Python's ``sys.stderr`` at a duplicate of the real stderr, so bertc's own
messages, logging and progress bars still show.  ``bertc -v`` turns this off.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    if not enabled or sys.stderr is not sys.__stderr__:  # e.g. under pytest's capture: leave it alone
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(real, 2)
        os.close(real)
