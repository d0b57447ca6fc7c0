"""Dense layers as the structure analysis sees them: ``x @ kernel (+ bias)``, as matmul or einsum.

``as_projection`` recognises one (a constant kernel of rank >= 2, and a constant
bias add if it is the only user); ``Projection`` says which kernel axes are
contracted and kept, how many features it has, and where groups of them
(heads, neurons) sit in its input or output tensor.  Split out of
``structure`` so that the layer matching there stays readable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Op, Value
from .layout import Units


class MatchFailed(Exception):
    pass


def _non_const(op: Op) -> list[Value]:
    return [v for v in op.operands if not v.is_const()]


@dataclass
class Projection:
    """x @ kernel (+ bias): a dense layer, as matmul or einsum."""

    op: Op
    kernel: Value
    bias: Value | None = None
    bias_add: Op | None = None

    @property
    def out(self) -> Value:
        return self.bias_add.result if self.bias_add is not None else self.op.result

    def _kernel_axes(self) -> tuple[list[int], list[int]]:
        """Kernel axes that are contracted (inputs) and kept (outputs)."""
        return self.kernel_axes()

    def kernel_axes(self) -> tuple[list[int], list[int]]:
        """Kernel axes that are contracted (inputs) and kept (outputs), in kernel order."""
        rank = self.kernel.type.rank
        if self.op.kind != "einsum":
            return [0], list(range(1, rank))
        from ..ops.linalg import parse_equation

        ins, out = parse_equation(self.op.attrs["equation"])
        spec = ins[1]
        return [i for i, c in enumerate(spec) if c not in out], [i for i, c in enumerate(spec) if c in out]

    def _features(self, axes: list[int]) -> int:
        n = 1
        for a in axes:
            n *= int(self.kernel.shape[a])
        return n

    def units(self, side: str, groups: int) -> Units:
        """Where ``groups`` feature groups sit in the data tensor: the result (``out``) or the input (``in``)."""
        ins, outs = self.kernel_axes()
        axes = outs if side == "out" else ins
        first = int(self.kernel.shape[axes[0]])
        if first % groups:
            raise MatchFailed(f"{self.op.kind} at {self.op.loc}: kernel axis of {first} is not {groups} groups")
        if self.op.kind != "einsum":
            data = self.op.result if side == "out" else self.op.operands[0]
            return Units(data.type.rank - 1, groups, first // groups)
        from ..ops.linalg import parse_equation

        specs, out = parse_equation(self.op.attrs["equation"])
        data_spec = out if side == "out" else specs[0]
        return Units(data_spec.index(specs[1][axes[0]]), groups, first // groups)

    @property
    def in_features(self) -> int:
        return self._features(self._kernel_axes()[0])

    @property
    def out_features(self) -> int:
        return self._features(self._kernel_axes()[1])


def as_projection(op: Op) -> Projection | None:
    """A matmul/einsum with one constant kernel of rank >= 2 (+ its bias add, if any)."""
    if op.kind not in ("matmul", "einsum") or len(op.operands) != 2:
        return None
    a, b = op.operands
    if not b.is_const() or a.is_const() or b.type.rank < 2:
        return None
    if op.kind == "matmul" and b.type.rank != 2:
        return None
    proj = Projection(op, b)
    users = op.result.users
    if len(users) == 1 and users[0].kind == "add":
        add = users[0]
        other = [v for v in add.operands if v is not op.result]
        if len(other) == 1 and other[0].is_const():
            proj.bias, proj.bias_add = other[0], add
    return proj
