"""Save and load a graph as text plus its weights (``name.bir`` + ``name.npz``).

A dump is complete: ``load`` gives a graph that runs and lowers exactly like
the one that was saved.  Files are written through a temporary name and then
renamed, so an interrupted dump leaves nothing half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .graph import Graph
from .parser import parse_graph
from .printer import INLINE_LIMIT, print_graph


def weights_path(text_path: Path) -> Path:
    return Path(text_path).with_suffix(".npz")


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_temp(path: Path, data: bytes | str | dict) -> str:
    """``data`` (bytes, text, or arrays for an .npz) in a temporary file beside ``path``; its name."""
    from ..tempfiles import make_file

    fd, tmp = make_file(path, ".npz" if isinstance(data, dict) else ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, dict):
                np.savez(f, **data)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; give the file normal permissions
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _publish(pairs: list[tuple[str, Path]]) -> None:
    """Rename each temporary into place; SIGTERM/SIGHUP/SIGINT wait until all are renamed."""
    from ..tempfiles import signals_deferred

    with signals_deferred():
        for tmp, path in pairs:
            os.replace(tmp, path)


def _write_all(items: list[tuple[Path, bytes | str | dict]]) -> None:
    """Write every (path, data) through a temporary, then publish them together.

    Whatever stops it (an error, Ctrl-C, SIGTERM) before the renames removes the
    temporaries, so the old files stay as they were and nothing is left beside them.
    """
    pairs: list[tuple[str, Path]] = []
    try:
        for path, data in items:
            pairs.append((_write_temp(path, data), path))
        _publish(pairs)
    finally:
        for tmp, _ in pairs:
            Path(tmp).unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    _write_all([(Path(path), data)])


def save(graph: Graph, path: Path) -> None:
    """Write the text form to ``path`` and the large constants to ``path.npz``, as one pair.

    Both are written to temporary names first and renamed together, so a kill
    never leaves a new text beside old weights.
    """
    path = Path(path)
    big = {op.attrs["name"]: op.attrs["value"] for op in graph.ops
           if op.kind == "const" and op.attrs["value"].size > INLINE_LIMIT}
    items: list[tuple[Path, bytes | str | dict]] = [(weights_path(path), big)] if big else []
    _write_all(items + [(path, print_graph(graph))])


def load(path: Path) -> Graph:
    path = Path(path)
    wpath = weights_path(path)
    weights = {}
    if wpath.exists():
        with np.load(wpath, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    return parse_graph(path.read_text(), weights)
