"""Save and load a graph as text plus its weights (``name.bir`` + ``name.npz``).

A dump is complete: ``load`` gives a graph that runs and lowers exactly like
the one that was saved.  Files are written through a temporary name and then
renamed, so an interrupted dump leaves nothing half-written.
"""

from __future__ import annotations

import os
import tempfile
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


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(graph: Graph, path: Path) -> None:
    """Write the text form to ``path`` and the large constants to ``path.npz``."""
    path = Path(path)
    big = {op.attrs["name"]: op.attrs["value"] for op in graph.ops
           if op.kind == "const" and op.attrs["value"].size > INLINE_LIMIT}
    wpath = weights_path(path)
    if big:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{wpath.name}.", suffix=".npz")
        os.close(fd)
        try:
            np.savez(tmp, **big)
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, wpath)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    atomic_write(path, print_graph(graph))


def load(path: Path) -> Graph:
    path = Path(path)
    wpath = weights_path(path)
    weights = {}
    if wpath.exists():
        with np.load(wpath, allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
    return parse_graph(path.read_text(), weights)
