"""The IR's data structures: ``Graph``, ``Op``, ``Value`` and ``Loc``.

One flat, topologically ordered list of ops in SSA form.  An op may hold whole
graphs as attributes (``cond``'s branches): closed regions with their own inputs,
which share the weight names of the graph around them.  Every ``Value`` knows
its producer and its uses, so rewrites go through ``replace_all_uses_with`` and
``Op.set_operand`` and the use lists stay right.  Types are inferred by the op
registry when an op is created, so a graph built through ``Graph.add`` is typed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .names import UniqueNames
from .types import TensorType


@dataclass(frozen=True)
class Loc:
    """Where an op came from: one TF node name, or the fused names a rewrite replaced."""

    names: tuple[str, ...] = ()

    @staticmethod
    def of(name: str) -> "Loc":
        return Loc((name,))

    @staticmethod
    def fused(locs: Iterable["Loc"]) -> "Loc":
        seen: dict[str, None] = {}
        for loc in locs:
            for n in loc.names:
                seen.setdefault(n, None)
        return Loc(tuple(seen))

    @property
    def primary(self) -> str:
        return self.names[0] if self.names else "<unknown>"

    def __str__(self) -> str:
        if len(self.names) == 1:
            return f'loc("{self.names[0]}")'
        listed = ", ".join(f'"{n}"' for n in self.names)
        prefix = _shared_scope(self.names)
        if len(listed) <= LONG_LOC or not prefix:
            return f"loc(fused[{listed}])"
        # A long list (a fused layer norm names a dozen nodes of one scope): the scope once.
        return f'loc(fused "{prefix}"[' + ", ".join(f'"{n[len(prefix):]}"' for n in self.names) + "])"


LONG_LOC = 120  # characters of a fused location's name list past which its shared scope is printed once


def _shared_scope(names: tuple[str, ...]) -> str:
    """The longest prefix ending in '/' that every name has (and none is only)."""
    import os

    common = os.path.commonprefix(list(names))
    scope = common[:common.rfind("/") + 1]
    return scope if all(len(n) > len(scope) for n in names) else ""


UNKNOWN_LOC = Loc(())


class Value:
    """An SSA value: its type, the op (or graph input) that defines it, and its uses."""

    __slots__ = ("type", "producer", "index", "name", "uses", "graph", "sym")

    def __init__(self, type: TensorType, name: str, graph: "Graph", producer: "Op | None" = None,
                 index: int = 0) -> None:
        self.type = type
        self.name = name  # a name hint; the printer makes names unique
        self.graph = graph
        self.producer = producer  # None for a graph input
        self.index = index
        self.uses: list[tuple[Op, int]] = []
        # For small integer tensors that hold shapes: the value as a tuple of dims
        # (ints or symbols), so reshapes fed by tf.shape() arithmetic stay exact.
        self.sym: tuple | None = None

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def users(self) -> list["Op"]:
        return list(dict.fromkeys(op for op, _ in self.uses))

    def is_const(self) -> bool:
        return self.producer is not None and self.producer.kind == "const"

    def const_value(self) -> np.ndarray | None:
        """The array behind a constant, or None when this value is computed."""
        return self.producer.attrs["value"] if self.is_const() else None

    def replace_all_uses_with(self, other: "Value") -> None:
        if other is self:
            return
        for op, i in list(self.uses):
            op.set_operand(i, other)
        for name, v in self.graph.outputs.items():
            if v is self:
                self.graph.outputs[name] = other

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Op:
    """One operation: ``kind`` names an entry of the op registry."""

    __slots__ = ("kind", "operands", "results", "attrs", "loc", "graph")

    def __init__(self, kind: str, attrs: dict[str, Any], loc: Loc, graph: "Graph") -> None:
        self.kind = kind
        self.operands: list[Value] = []
        self.results: list[Value] = []
        self.attrs = attrs
        self.loc = loc
        self.graph = graph

    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise ValueError(f"{self.kind} has {len(self.results)} results")
        return self.results[0]

    def set_operand(self, i: int, value: Value) -> None:
        old = self.operands[i]
        old.uses.remove((self, i))
        self.operands[i] = value
        value.uses.append((self, i))

    def __repr__(self) -> str:
        res = ", ".join(f"%{r.name}" for r in self.results)
        args = ", ".join(f"%{o.name}" for o in self.operands)
        return f"{res} = {self.kind} {args} {self.loc}"


class Graph:
    """A function: named inputs, ordered ops, named outputs, and analyses."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: dict[str, Value] = {}
        self.ops: list[Op] = []
        # Results of analyses (calibration ranges, importance scores, labels …),
        # keyed by analysis name.  Printed as graph attributes when JSON-able.
        self.analyses: dict[str, Any] = {}
        self._const_names = UniqueNames()
        self._fresh = itertools.count()

    # ----------------------------------------------------------- building
    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name, self)
        self.inputs.append(v)
        return v

    def add(self, kind: str, operands: Sequence[Value] = (), attrs: dict[str, Any] | None = None,
            loc: Loc = UNKNOWN_LOC, name: str | None = None, *, before: Op | None = None,
            result_types: Sequence[TensorType] | None = None) -> Op:
        """Create an op, infer its result types through the registry, and insert it.

        It goes at the end, or just before ``before`` (a rewrite usually inserts
        in front of the op it replaces, which keeps the list topologically ordered).
        ``result_types`` skips inference: the parser uses it to keep printed types.
        """
        from .registry import get_op_def  # late: the registry imports this module

        opdef = get_op_def(kind)
        attrs = opdef.complete_attrs(dict(attrs or {}))
        op = Op(kind, attrs, loc, self)
        for i, v in enumerate(operands):
            op.operands.append(v)
            v.uses.append((op, i))
        types = list(result_types) if result_types is not None else opdef.infer_types(op)
        hint = name or kind
        op.results = [Value(t, hint if len(types) == 1 else f"{hint}_{i}", self, op, i)
                      for i, t in enumerate(types)]
        if opdef.sym is not None:
            try:
                syms = opdef.sym(op)
            except Exception:  # symbolic evaluation is best effort
                syms = None
            if syms is not None:
                for r, s in zip(op.results, syms):
                    r.sym = s
        if before is None:
            self.ops.append(op)
        else:
            self.ops.insert(self.ops.index(before), op)
        return op

    def const(self, value: np.ndarray | float | int, name: str | None = None, loc: Loc = UNKNOWN_LOC,
              *, before: Op | None = None, dtype=None) -> Value:
        """A constant value.  ``name`` is its weight name, made unique in this graph."""
        arr = np.asarray(value, dtype=dtype)
        if dtype is None and isinstance(value, float) and not isinstance(value, np.generic):
            arr = arr.astype(np.float32)  # a bare Python float means f32, as in the models we compile
        wname = self.unique_const_name(name or "cst")
        op = self.add("const", (), {"value": arr, "name": wname}, loc, _hint(wname), before=before)
        return op.result

    def unique_const_name(self, name: str) -> str:
        return self._const_names.claim(name)

    def adopt(self, region: "Graph") -> "Graph":
        """Make ``region`` (a branch of one of this graph's ops) share this graph's weight
        names, so that every weight of the whole graph has one name (``weights()``, the
        ``.npz`` beside a dump).  A branch constant whose name the graph already uses for
        another constant is renamed, never merged with it."""
        for g in [region, *region.regions()]:
            if g._const_names is self._const_names:
                continue  # adopted already
            for op in g.ops:
                if op.kind == "const" and not self._const_names.reserve(op.attrs["name"]):
                    op.attrs["name"] = self._const_names.claim(op.attrs["name"])
            g._const_names = self._const_names
        return region

    def regions(self) -> Iterator["Graph"]:
        """The graphs held by this graph's ops (cond's branches), nested ones too."""
        for op in self.ops:
            for v in op.attrs.values():
                if isinstance(v, Graph):
                    yield v
                    yield from v.regions()

    def erase(self, op: Op) -> None:
        """Remove an op whose results are unused."""
        for r in op.results:
            if r.uses or any(v is r for v in self.outputs.values()):
                raise ValueError(f"cannot erase {op.kind} at {op.loc}: its result is still used")
        for i, v in enumerate(op.operands):
            v.uses.remove((op, i))
        self.ops.remove(op)
        if op.kind == "const":
            self._const_names.release(op.attrs["name"])

    def replace_op(self, op: Op, new_values: Sequence[Value]) -> None:
        """Make every use of ``op``'s results use ``new_values`` instead, then erase it."""
        for old, new in zip(op.results, new_values):
            old.replace_all_uses_with(new)
        self.erase(op)

    def fresh_dim(self, hint: str = "n") -> str:
        """A new dim symbol that no value of this graph uses yet: the size of a result
        only the data decides (the rows of ``nonzero``), named so that the ops
        downstream type their results by it."""
        used = {f for v in self.inputs for d in v.shape if isinstance(d, str) for f in d.split("*")}
        used |= {f for op in self.ops for r in op.results for d in r.shape if isinstance(d, str)
                 for f in d.split("*")}
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint).strip("_") or "n"
        base = base if not base[0].isdigit() else f"n_{base}"
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        return name

    # ----------------------------------------------------------- queries
    def __iter__(self) -> Iterator[Op]:
        return iter(list(self.ops))

    def ops_of(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    def histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def weights(self) -> dict[str, np.ndarray]:
        """Every constant by weight name, those of the regions (cond's branches) included."""
        out = {op.attrs["name"]: op.attrs["value"] for op in self.ops if op.kind == "const"}
        for g in self.regions():
            out.update((op.attrs["name"], op.attrs["value"]) for op in g.ops if op.kind == "const")
        return out

    def num_parameters(self, min_size: int = 2) -> tuple[int, int]:
        """(elements, bytes) over constants with at least ``min_size`` elements, regions included."""
        n = b = 0
        for op in (op for g in (self, *self.regions()) for op in g.ops):
            if op.kind == "const" and op.attrs["value"].size >= min_size:
                n += op.attrs["value"].size
                b += op.attrs["value"].nbytes
        return n, b

    def toposort(self) -> None:
        """Re-order ops so every operand is defined before use (stable otherwise)."""
        placed: set[int] = {id(v) for v in self.inputs}
        pending = list(self.ops)
        ordered: list[Op] = []
        while pending:
            rest = []
            for op in pending:
                if all(id(v) in placed for v in op.operands):
                    ordered.append(op)
                    placed.update(id(r) for r in op.results)
                else:
                    rest.append(op)
            if len(rest) == len(pending):
                raise ValueError(f"graph has a cycle through {rest[0].kind} at {rest[0].loc}")
            pending = rest
        self.ops = ordered


def _hint(weight_name: str) -> str:
    """A short, readable SSA name hint from a weight path like 'layer_0/query/kernel'."""
    parts = [p for p in weight_name.replace(":", "/").split("/") if p]
    tail = parts[-2:] if len(parts) >= 2 else parts
    return "_".join(tail) or "cst"
