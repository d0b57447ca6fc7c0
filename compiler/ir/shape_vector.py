"""A run-time shape vector for dims the graph knows only as symbols.

A rewrite that reshapes to ``[4, batch, seq, 2]`` can write one unknown dim as -1,
but not two.  ``shape_vector`` builds the target as an i64 value instead: each
symbolic dim read from the SHAPE of a value that has it (a product of symbols is the
product of such reads), each number a constant.  Its symbolic value (``Value.sym``)
is the dims themselves, so the reshape it feeds is typed exactly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .graph import Graph, Op, Value
from .types import is_static


def _read(graph: Graph, before: Op, sources: Sequence[Value], dim) -> Value | None:
    """A [1]-shaped i64 holding ``dim`` at run time, read from a source that has it, else None."""
    for v in sources:
        for axis, d in enumerate(v.shape):
            if d == dim:
                shape = graph.add("shape", [v], {"dtype": "i64"}, before.loc, "dims", before=before).result
                return graph.add("slice", [shape], {"starts": [axis], "ends": [axis + 1], "axes": [0]},
                                 before.loc, "dim", before=before).result
    factors = str(dim).split("*") if isinstance(dim, str) and "*" in dim else None
    if not factors:
        return None
    out = None
    for f in factors:
        part = (graph.const(np.array([int(f)], np.int64), "dim", before=before) if f.isdigit()
                else _read(graph, before, sources, f))
        if part is None:
            return None
        out = part if out is None else graph.add("mul", [out, part], {}, before.loc, "dim", before=before).result
    return out


def shape_vector(graph: Graph, before: Op, dims: Sequence, sources: Sequence[Value]) -> Value | None:
    """An i64 [len(dims)] value equal to ``dims`` at run time, inserted before ``before``;
    None when a symbolic dim is on none of ``sources``."""
    parts = []
    for d in dims:
        part = (graph.const(np.array([int(d)], np.int64), "dim", before=before) if is_static(d)
                else _read(graph, before, sources, d))
        if part is None:
            return None
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return graph.add("concat", parts, {"axis": 0}, before.loc, "target_shape", before=before).result
