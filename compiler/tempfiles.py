"""Temporary files and directories bertc writes beside its outputs, and what ends them.

Every output goes through a temporary name renamed into place, so an
interrupted run leaves the old output as it was.  Three things make that hold:

- ``signals_raise``: SIGTERM and SIGHUP raise ``Terminated`` (as SIGINT raises
  KeyboardInterrupt), so the same cleanup code runs for a kill as for Ctrl-C.
- ``signals_deferred``: the renames that publish a result run with those signals
  held back, so a kill lands before or after them, never between two files.
- Temporary names carry the writer's process id (``.bertc-<pid>-…``); a process
  killed with SIGKILL cannot clean up, so ``sweep_stale`` removes the temporaries
  of processes that are no longer alive the next time bertc writes to that place.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

PREFIX = ".bertc-"
_OWNED = re.compile(r"\.bertc-(\d+)-")
_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Terminated(BaseException):
    """The process got SIGTERM or SIGHUP; unwinds like KeyboardInterrupt, cleanup included."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def tag() -> str:
    """The part of a temporary name that says which process owns it."""
    return f"{PREFIX}{os.getpid()}-"


def make_dir(parent: Path) -> Path:
    """A hidden staging directory in ``parent`` owned by this process."""
    return Path(tempfile.mkdtemp(prefix=tag(), dir=parent))


def make_file(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """(fd, name) of a temporary file beside ``path``, owned by this process."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{tag()}", suffix=suffix)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Remove the temporaries in ``directory`` whose owning process is dead; returns them.

    Only names bertc makes (``.bertc-<pid>-…``) are looked at, and only those of a
    process that no longer exists are removed; a live run's files are left alone.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _OWNED.search(entry.name)
        if not entry.name.startswith(".") or m is None or _alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # someone else swept it, or it is not ours to remove
    return removed


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise ``Terminated`` (main thread only)."""
    try:
        old = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: leave the handlers as they are
        yield
        return
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGTERM, SIGHUP and SIGINT while publishing outputs; they arrive after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
