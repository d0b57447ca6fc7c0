"""Common-subexpression elimination: one op per (kind, operands, attributes).

Keras graphs compute the same ``tf.shape`` slices and mask casts in every
layer; after CSE each is computed once.  Constants are merged when their bytes
are equal (only small ones, to keep hashing cheap on big models).  Fills of one
value in different layers (every layer norm's gamma of ones, zero biases) then
share one constant, named ``shared/<name>`` rather than after whichever layer
came first, so that the embedding norm does not read as if it used ``layer_1``'s
gamma.  Equal weights that are not fills (ALBERT's shared layers, equal Q/K/V
kernels) keep the first one's name: they are one weight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bertc.ir import Graph, Op, get_op_def
from bertc.pass_manager import Pass, PassContext, register_pass

MAX_HASHED_CONST = 4096


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest())
    if isinstance(v, (list, tuple)):
        return tuple(_attr_key(x) for x in v)
    return v


def op_key(op: Op):
    if op.kind == "const":
        value = op.attrs["value"]
        if value.size > MAX_HASHED_CONST:
            return None
        return ("const", _attr_key(value))
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in op.attrs.items()))
    return (op.kind, tuple(id(v) for v in op.operands), attrs)


@register_pass
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    """Merge ops that compute the same thing from the same operands."""

    in_regions: ClassVar[bool] = True  # also inside cond's branches

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        seen: dict = {}
        changed = False
        for op in graph:
            if not get_op_def(op.kind).pure:
                continue
            key = op_key(op)
            if key is None:
                continue
            first = seen.get(key)
            if first is None:
                seen[key] = op
                continue
            if op.kind == "const" and op.attrs["name"] != first.attrs["name"] and _is_fill(op.attrs["value"]):
                _name_as_shared(graph, first, op)
            graph.replace_op(op, first.results)
            changed = True
        return changed


def _is_fill(value: np.ndarray) -> bool:
    """Every element the same (ones, zeros): equal across layers by construction, not by sharing."""
    return value.size > 1 and bool(np.all(value == value.flat[0]))


def _name_as_shared(graph: Graph, kept: Op, merged: Op) -> None:
    """Give a constant that now stands for equal weights of several layers a neutral name:
    ``shared/gamma`` when they share their last name part, else ``shared/const``."""
    if kept.attrs["name"].startswith("shared/"):
        return
    leaves = {kept.attrs["name"].rsplit("/", 1)[-1], merged.attrs["name"].rsplit("/", 1)[-1]}
    leaf = leaves.pop() if len(leaves) == 1 else "const"
    kept.attrs["name"] = graph.unique_const_name(f"shared/{leaf}")
    kept.result.name = f"shared_{leaf}"  # the text form's %name follows
