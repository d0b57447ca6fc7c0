"""A compile's output directory: one compile at a time, staged, and describing exactly that compile.

- ``locked_output``: an exclusive ``fcntl`` lock on ``OUT/.bertc-lock`` for the
  whole compile; a second compile into the same OUT is refused at once (exit 2)
  instead of interleaving its files with the first one's.
- ``Staging``: artifacts are built in a hidden directory inside OUT and renamed
  in together at the end.  The files the previous compile wrote (the artifacts
  and labels its ``report.json`` lists) and this one did not are removed in the
  same step, so OUT never holds a model.tflite from an older ``--target all``
  beside a report that lists only model.onnx.  Files bertc did not write are
  never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Iterator

from .diagnostics import BertcError

log = logging.getLogger(__name__)

LOCK_NAME = ".bertc-lock"
REPORT = "report.json"
# Every name a compile can write besides report.json; only these are ever replaced or removed.
_WRITTEN = frozenset({"model.onnx", "model.tflite", "labels.txt"})


def _take_lock(out: Path) -> int:
    """An fd holding the exclusive lock on OUT's lock file (retrying if the file was replaced)."""
    path = out / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BertcError(f"-o {out}: another bertc compile (pid {holder}) is writing into this directory.",
                             "Wait for it to finish, or pass a different -o.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder between our open and our lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)


@contextlib.contextmanager
def locked_output(out: Path) -> Iterator[None]:
    """Hold OUT for this compile; on failure, remove OUT again when this compile created it."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(out)
    except OSError as e:
        raise BertcError(f"-o {out}: cannot write there ({e.strerror}).") from None
    ok = False
    try:
        yield
        ok = True
    finally:
        (out / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
        if created and not ok and out.exists() and not any(out.iterdir()):
            out.rmdir()


def previous_outputs(out: Path) -> set[str]:
    """The files the last compile into OUT wrote, as its report.json lists them."""
    try:
        report = json.loads((out / REPORT).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(report, dict):
        return set()
    names = set(report.get("artifacts") or {})
    if report.get("labels"):
        names.add("labels.txt")
    return {n for n in names if n in _WRITTEN}


class Staging:
    """A hidden directory inside OUT where artifacts are built; ``commit`` renames them into OUT.

    On failure everything staged is removed.
    """

    def __init__(self, out: Path) -> None:
        from .tempfiles import make_dir, sweep_stale

        self.out = out
        try:
            for stale in sweep_stale(out):
                log.info("removed %s, left by a bertc process that was killed", stale)
            self.dir = make_dir(out)
        except OSError as e:
            raise BertcError(f"-o {out}: cannot write there ({e.strerror}).") from None

    def commit(self) -> None:
        """Move every staged file into OUT and remove the previous compile's files this one did not
        write; SIGTERM/SIGHUP/SIGINT wait until OUT is complete."""
        from .tempfiles import signals_deferred

        mask = os.umask(0)
        os.umask(mask)
        old = previous_outputs(self.out)
        with signals_deferred():
            new = sorted(self.dir.iterdir())
            for p in new:
                os.chmod(p, 0o666 & ~mask)
                os.replace(p, self.out / p.name)
            self.dir.rmdir()
            for name in sorted(old - {p.name for p in new}):
                (self.out / name).unlink(missing_ok=True)
                log.info("removed %s, written by the previous compile into %s", name, self.out)

    def abandon(self) -> None:
        if self.dir.exists():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()
