"""What a long command is doing, on stderr, while it does it.

``StageProgress`` shows a spinner with the current stage (import, each pass,
lower, verify) and leaves one ``✓ stage  1.2 s`` line per finished stage.  It
only draws when stderr is a terminal: piped, redirected or captured (tests,
CI, ``2> log``), stderr gets nothing from it.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class StageProgress:
    """A context manager; ``stage(group, detail)`` starts a stage, or updates the detail of the
    current one when ``group`` is the same (so the passes share one ✓ line)."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(file=sys.stderr)
        self.enabled = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._group: str | None = None
        self._detail = ""
        self._t0 = 0.0

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=None)
        return self

    def stage(self, group: str, detail: str = "") -> None:
        """Enter stage ``group`` (finishing the one before) or, if already in it, show ``detail``."""
        if group != self._group:
            self._finish()
            self._group, self._t0 = group, time.perf_counter()
        self._detail = detail
        if self._progress is not None:
            self._progress.update(self._task, description=escape(f"{group}: {detail}" if detail else group))

    def _finish(self) -> None:
        """The ✓ line of the stage that just ended."""
        if self._progress is not None and self._group is not None:
            self._progress.console.print(f"[green]✓[/] {escape(self._group)} "
                                         f"[dim]{time.perf_counter() - self._t0:.1f} s[/]", highlight=False)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._finish()
        if self._progress is not None:
            self._progress.stop()
