"""Tools for rewrites that recognise a computation by what it computes.

Layer norm and GELU arrive from TF in many spellings: ``x*0.5*(1+erf(x/√2))``
or ``0.5*x*(1+erf(x*0.7071))``; moments with ``SquaredDifference`` or with
``sub``/``mul``; gamma folded into the rsqrt or applied last.  Matching each
spelling by syntax is brittle.  Instead a fusion finds a *single-exit region*:
the ops between one input value and one output value that depend only on that
input and constants, and whose intermediate values nothing outside uses.  It
then runs the region on random inputs with the reference interpreter and
accepts the fusion only if the numbers match the fused op's definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .ir.graph import Graph, Loc, Op, Value
from .ir.registry import get_op_def
from .ir.types import DTYPES, is_static


@dataclass
class Region:
    input: Value
    ops: list[Op]  # topologically ordered, ends with the exit op
    exit: Value

    @property
    def loc(self) -> Loc:
        return Loc.fused(op.loc for op in self.ops)

    def consts(self) -> list[np.ndarray]:
        return [v.const_value() for op in self.ops for v in op.operands if v.is_const()]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        env = {id(self.input): x}
        for op in self.ops:
            args = [v.const_value() if v.is_const() else env[id(v)] for v in op.operands]
            for r, out in zip(op.results, get_op_def(op.kind).run(op, args)):
                env[id(r)] = out
        return env[id(self.exit)]


def forward_closure(graph: Graph, x: Value, max_ops: int = 32, max_scan: int = 400,
                    kinds: frozenset[str] | None = None) -> list[Op]:
    """Ops after ``x`` that compute only from ``x`` and constants, in graph order.

    ``kinds`` limits the closure to op kinds the sought computation can contain,
    which keeps candidate regions small (and cheap to evaluate) on big models.
    """
    inside = {id(x)}
    users = {id(op) for op, _ in x.uses}
    start = min((i for i, op in enumerate(graph.ops) if id(op) in users), default=None)
    if start is None:
        return []
    closure: list[Op] = []
    for op in graph.ops[start:start + max_scan]:
        if op.kind == "const" or not op.operands or (kinds is not None and op.kind not in kinds):
            continue
        if all(id(v) in inside or v.is_const() for v in op.operands) and any(id(v) in inside for v in op.operands):
            closure.append(op)
            inside.update(id(r) for r in op.results)
            if len(closure) >= max_ops:
                break
    return closure


def single_exit_regions(graph: Graph, x: Value, must_include: Op, max_ops: int = 32,
                        kinds: frozenset[str] | None = None):
    """Yield each region from ``x`` that contains ``must_include`` and has one exit, smallest first."""
    closure = forward_closure(graph, x, max_ops, kinds=kinds)
    if must_include not in closure:
        return
    producer = {id(r): op for op in closure for r in op.results}
    for c in closure[closure.index(must_include):]:
        if len(c.results) != 1:
            continue
        deps: dict[int, Op] = {}
        stack = [c]
        while stack:
            op = stack.pop()
            if id(op) in deps:
                continue
            deps[id(op)] = op
            stack.extend(producer[id(v)] for v in op.operands if id(v) in producer)
        if id(must_include) not in deps:
            continue
        outputs = {id(v) for v in graph.outputs.values()}
        sealed = all(all(id(u) in deps for u, _ in r.uses) and id(r) not in outputs
                     for op in deps.values() if op is not c for r in op.results)
        if sealed:
            ordered = [op for op in closure if id(op) in deps]
            yield Region(x, ordered, c.result)


def sample_input(v: Value, rng: np.random.Generator, scale: float = 3.0, rows: int = 3) -> np.ndarray | None:
    """A random array of ``v``'s type; symbolic dims get small sizes.  None if not float."""
    if v.dtype not in ("f16", "f32", "f64"):
        return None
    shape = [d if is_static(d) else rows + i for i, d in enumerate(v.shape)]
    return (rng.standard_normal(shape) * scale).astype(DTYPES[v.dtype])


def matches(region: Region, reference: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
            atol: float = 1e-5, rtol: float = 1e-4, trials: int = 2) -> bool:
    """Does the region compute ``reference`` on random inputs (within tolerance)?"""
    for _ in range(trials):
        x = sample_input(region.input, rng)
        if x is None:
            return False
        try:
            got = region.evaluate(x)
        except Exception:
            return False
        want = reference(x)
        if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=rtol):
            return False
    return True
