"""``Emitter``: adds ops in front of the op a rewrite replaces, at that op's location.

Legalization passes (legalize_scatter_nd, legalize_erf, legalize_cumsum,
legalize_cumprod) expand one op into several; each new op goes just before the
replaced one, carries its location (so errors and dumps still name the TF
node) and gets a name hint derived from the replaced op's result name.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Op, Value
from .types import DTYPES, is_static

INT_MAX = 2**63 - 1  # "to the end" in slice ends


class Emitter:
    """Adds ops in front of the op being replaced, all at its location."""

    def __init__(self, graph: Graph, op: Op) -> None:
        self.graph, self.op = graph, op
        self.name = op.result.name

    def __call__(self, kind: str, operands: list[Value], attrs: dict | None = None, hint: str = "") -> Value:
        return self.graph.add(kind, operands, attrs or {}, self.op.loc, f"{self.name}_{hint or kind}",
                              before=self.op).result

    def const(self, value, dtype: str, hint: str) -> Value:
        return self.graph.const(np.asarray(value, DTYPES[dtype]), f"{self.name}/{hint}", self.op.loc,
                                before=self.op)

    def dims(self, v: Value, start: int, stop: int | None = None) -> Value | list[int]:
        """v.shape[start:stop] as a list when static, else as an i32 vector read at run time."""
        dims = list(v.shape[start:stop])
        if all(is_static(d) for d in dims):
            return [int(d) for d in dims]
        shape = self("shape", [v], {"dtype": "i32"}, "shape")
        end = INT_MAX if stop is None else stop
        return self("slice", [shape], {"starts": [start], "ends": [end], "axes": [0]}, "dims")

    def length(self, v: Value, axis: int = 0) -> Value:
        """v.shape[axis] as an i32 scalar (a constant when static)."""
        if is_static(v.shape[axis]):
            return self.const(int(v.shape[axis]), "i32", "length")
        shape = self("shape", [v], {"dtype": "i32"}, "shape")
        return self("gather", [shape, self.const(axis, "i32", "axis")], {"axis": 0}, "length")
