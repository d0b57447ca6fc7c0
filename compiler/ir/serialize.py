"""Save and load a graph as text plus its weights (``name.bir`` + ``name.npz``).

A dump is complete: ``load`` gives a graph that runs and lowers exactly like
the one that was saved.  Files are written through a temporary name and then
renamed, so an interrupted dump leaves nothing half-written.

``save(..., store=DIR)`` (what ``--dump-ir`` uses) keeps each large constant
once, as ``DIR/<sha1>.npy`` named by its content, and writes a small index
``.npz`` beside the ``.bir`` instead: a dump after every pass then costs only
the constants that pass changed.  ``load`` reads both forms.
"""

from __future__ import annotations

import hashlib
import io
import json
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


# An index .npz holds one array under this key: UTF-8 JSON {constant name: its file, relative to the .npz}.
INDEX_KEY = "__bertc_store_index__"


def content_name(array: np.ndarray) -> str:
    """``<sha1>.npy``: the same dtype, shape and bytes always get the same name."""
    h = hashlib.sha1(f"{array.dtype.str}{array.shape}".encode())
    h.update(np.ascontiguousarray(array).data)
    return f"{h.hexdigest()}.npy"


def _store_arrays(big: dict[str, np.ndarray], store: Path, base: Path) -> dict[str, np.ndarray]:
    """Write each array the store lacks; the index arrays naming every file relative to ``base``."""
    store.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, value in big.items():
        target = store / content_name(value)
        if not target.exists():
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            atomic_write(target, buf.getvalue())
        files[name] = Path(os.path.relpath(target, base)).as_posix()
    return {INDEX_KEY: np.frombuffer(json.dumps(files).encode(), dtype=np.uint8)}


def save(graph: Graph, path: Path, store: Path | None = None) -> None:
    """Write the text form to ``path`` and the large constants to ``path.npz``, as one pair.

    Both are written to temporary names first and renamed together, so a kill
    never leaves a new text beside old weights.  With ``store`` the constants go
    to that content-addressed folder (each written once) and ``path.npz`` only
    indexes them.
    """
    path = Path(path)
    big = {name: value for name, value in graph.weights().items() if value.size > INLINE_LIMIT}  # branches' too
    if big and store is not None:
        big = _store_arrays(big, Path(store), path.parent)
    items: list[tuple[Path, bytes | str | dict]] = [(weights_path(path), big)] if big else []
    _write_all(items + [(path, print_graph(graph))])


def _read_weights(wpath: Path) -> dict[str, np.ndarray]:
    """The arrays of a weights .npz, following an index into its store."""
    with np.load(wpath, allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    if INDEX_KEY not in weights:
        return weights
    out = {}
    for name, rel in json.loads(weights[INDEX_KEY].tobytes().decode()).items():
        target = wpath.parent / rel
        if not target.is_file():
            raise OSError(f"{wpath} indexes its weight {name!r} in {target}, which does not exist "
                          f"(keep the {Path(rel).parent} folder beside the dumps)")
        out[name] = np.load(target, allow_pickle=False)
    return out


def load(path: Path) -> Graph:
    path = Path(path)
    wpath = weights_path(path)
    weights = _read_weights(wpath) if wpath.exists() else {}
    return parse_graph(path.read_text(), weights)
