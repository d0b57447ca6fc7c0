"""The reference interpreter: runs any graph with the registry's numpy kernels.

Constant folding, calibration and the numeric tests all use this one walker.
A failing kernel is reported "while executing" the op, with its location.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np

from .graph import Graph, Op, Value
from .printer import Namer, format_op
from .registry import get_op_def
from .types import DTYPES, is_static


class InterpreterError(RuntimeError):
    def __init__(self, message: str, op: Op | None = None) -> None:
        self.op = op
        super().__init__(message)


def _check_input(v: Value, arr: np.ndarray) -> np.ndarray:
    want = DTYPES[v.dtype]
    if arr.dtype != want:
        if arr.dtype.kind != want.kind:
            raise InterpreterError(f"input '{v.name}' needs {v.dtype}, got {arr.dtype}")
        arr = arr.astype(want)
    if arr.ndim != v.type.rank or any(is_static(d) and d != n for d, n in zip(v.shape, arr.shape)):
        raise InterpreterError(f"input '{v.name}' has shape {list(arr.shape)}, the graph expects {v.type}")
    return arr


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], *,
              observe: Callable[[Value, np.ndarray], None] | None = None,
              extra_outputs: Iterable[Value] = ()) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``feeds`` (input name -> array) and return its named outputs.

    ``observe`` is called with every computed value (calibration uses it);
    ``extra_outputs`` keeps more values alive and returns them under their names.
    """
    env: dict[int, np.ndarray] = {}
    for v in graph.inputs:
        if v.name not in feeds:
            raise InterpreterError(f"missing input '{v.name}' (the graph takes {[i.name for i in graph.inputs]})")
        env[id(v)] = _check_input(v, np.asarray(feeds[v.name]))
    keep = {id(v) for v in graph.outputs.values()} | {id(v) for v in extra_outputs}
    remaining = {id(v): len(v.uses) for op in graph.ops for v in op.results}
    for op in graph.ops:
        try:
            out = get_op_def(op.kind).run(op, [env[id(v)] for v in op.operands])
        except Exception as e:  # a kernel failed: say which op, where it came from
            text = format_op(op, Namer())
            raise InterpreterError(f"{type(e).__name__}: {e}\n  while executing {text}", op) from e
        for r, arr in zip(op.results, out):
            env[id(r)] = arr
            if observe is not None:
                observe(r, arr)
        for v in op.operands:  # free what no later op needs
            k = id(v)
            if k in remaining:
                remaining[k] -= 1
                if remaining[k] == 0 and k not in keep:
                    env.pop(k, None)
    result = {name: env[id(v)] for name, v in graph.outputs.items()}
    for v in extra_outputs:
        result[v.name] = env[id(v)]
    return result
