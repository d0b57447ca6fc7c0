"""What every target provides: a capability table and a one-to-one lowering.

A target lowers a *legal* graph: every op kind (with its dtypes and attributes)
is in its capability table.  What is not there, a legalization pass must have
rewritten first; ``unsupported`` lists what is left so the CLI can say which
op, where it came from, and which pass would rewrite it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..ir.graph import Graph, Op, Value


@dataclass(frozen=True)
class Unsupported:
    op: Op
    reason: str  # e.g. "einsum has no TFLite builtin", "scatter_nd indices must be i32"


def folded_bias(dense: Op) -> Op | None:
    """The ``add(y, b)`` that a dense kernel computing ``y = dense(...)`` can take as its bias
    input (ONNX MatMulIntegerToFloat / DynamicQuantizeMatMul, TFLite FULLY_CONNECTED): ``b``
    a 1-D f32 constant as long as y's last dim, and y used only by that add (not an output)."""
    y = dense.result
    if len(y.uses) != 1 or any(v is y for v in dense.graph.outputs.values()):
        return None
    add, i = y.uses[0]
    if add.kind != "add":
        return None
    b = add.operands[1 - i]
    if not (b.is_const() and b.dtype == "f32" and b.type.rank == 1 and b.shape[0] == y.shape[-1]):
        return None
    return add if add.result.shape == y.shape else None


def bias_operand(add: Op, dense: Op) -> Op:
    """The bias side of a ``folded_bias`` add."""
    return add.operands[1] if add.operands[0] is dense.result else add.operands[0]


# Ops that carry token ids from a graph input to the embedding gather unchanged in value.
_ID_MOVES = frozenset({"cast", "reshape", "unsqueeze", "squeeze", "identity", "slice", "pad", "concat",
                       "transpose", "expand", "tile"})


def reads_graph_input(v: Value) -> bool:
    """Whether ``v`` is a graph input, or a graph input only moved around (reshaped, cast …).

    Such indices are what a caller feeds (token ids), so a target must not let an
    invalid one read some row silently.
    """
    seen: set[int] = set()
    stack = [v]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if cur.producer is None:  # a graph input
            return True
        if cur.producer.kind in _ID_MOVES:
            stack.extend(x for x in cur.producer.operands if x.dtype in ("i32", "i64"))
    return False


class LoweringError(Exception):
    """A legal-looking op could not be lowered; names the op and its location."""

    def __init__(self, op: Op, message: str) -> None:
        self.op = op
        super().__init__(f"cannot lower {op.kind} at {op.loc}: {message}")


@dataclass(frozen=True)
class Target:
    name: str  # "onnx" | "tflite"
    file_name: str  # "model.onnx"
    # op kind -> None when every form is supported, or a check returning a reason
    # string when the form at hand is not (dtype limits, attribute limits …)
    capabilities: dict[str, Callable[[Op], str | None] | None]
    lower: Callable[..., bytes]  # lower(graph) -> the artifact's bytes
    # write(graph, file): the same bytes written piece by piece, so a large model is not held twice
    write: Callable[..., None] | None = None
    cpu_dependent: bool = False  # lower and write take cpu= (bertc.cpu): int8 kernels depend on the CPU kind

    def for_cpu(self, kind: str) -> Target:
        """This target lowering for CPU kind ``kind`` (``--cpu``); unchanged if it does not depend on it."""
        if not self.cpu_dependent:
            return self
        from functools import partial

        return replace(self, lower=partial(self.lower, cpu=kind),
                       write=partial(self.write, cpu=kind) if self.write else None)

    def lower_to(self, graph: Graph, path) -> None:
        """Lower ``graph`` into the file ``path``."""
        if self.write is None:
            Path(path).write_bytes(self.lower(graph))
            return
        with open(path, "wb") as f:
            self.write(graph, f)

    def check_legal(self, graph: Graph) -> None:
        """Refuse a graph the table cannot lower, naming every offending op at once."""
        problems = self.unsupported(graph)
        if problems:
            lines = "; ".join(f"{p.reason} at {p.op.loc}" for p in problems)
            raise LoweringError(problems[0].op, f"{len(problems)} op(s) are not legal for {self.name} "
                                                f"(run a legalization pass first): {lines}")

    def unsupported(self, graph: Graph) -> list[Unsupported]:
        """Every op this target cannot lower, those inside cond's branches included."""
        out = []
        for op in (op for g in (graph, *graph.regions()) for op in g.ops):
            if op.kind not in self.capabilities:
                out.append(Unsupported(op, f"{op.kind} has no {self.name} equivalent"))
                continue
            check = self.capabilities[op.kind]
            reason = check(op) if check else None
            if reason:
                out.append(Unsupported(op, reason))
        return out


def get_target(name: str) -> Target:
    from ..diagnostics import BertcError, did_you_mean

    if name == "onnx":
        from .onnx import TARGET
    elif name == "tflite":
        from .tflite import TARGET
    else:
        raise BertcError(f"unknown target '{name}'.{did_you_mean(name, ['onnx', 'tflite', 'all'])}",
                         "Targets: onnx, tflite, all.")
    return TARGET
