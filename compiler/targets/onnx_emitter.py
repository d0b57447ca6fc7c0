"""The ONNX target's emitter: collects nodes and initializers while lowering, and names every
value (``bertc.targets.onnx`` drives it; the lowering tables in onnx.py, onnx_quant.py and
onnx_fused.py call it)."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..ir.graph import Graph, Op, Value
from ..ir.names import UniqueNames
from ..ir.printer import Namer
from ..ir.types import DTYPES, UNKNOWN, TensorType, is_static

MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (opset 1)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NAME_CLEAN = re.compile(r"[^A-Za-z0-9_./:=,\[\]\-]")


def onnx_dtype(dtype: str) -> int:
    """The TensorProto element type of an IR dtype name."""
    return helper.np_dtype_to_tensor_dtype(DTYPES[dtype])


def value_info(name: str, type: TensorType) -> onnx.ValueInfoProto:
    """A typed graph input/output: static dims as dim_value, symbols as dim_param."""
    dims = [None if d == UNKNOWN else (int(d) if is_static(d) else str(d)) for d in type.shape]
    return helper.make_tensor_value_info(name, onnx_dtype(type.dtype), dims)


class Emitter:
    """Collects nodes and initializers, and gives every IR value a unique ONNX name."""

    def __init__(self, graph: Graph | None = None) -> None:
        # Value names as the text form prints them, so a graph and its printed-and-
        # reparsed copy lower to the same bytes.
        self._ssa: dict[int, str] = {}
        if graph is not None:
            namer = Namer()
            for v in graph.inputs:
                self._ssa[id(v)] = namer.name(v)
            for op in graph.ops:
                for r in op.results:
                    self._ssa[id(r)] = namer.name(r)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: dict[int, str] = {}
        self._taken = UniqueNames()
        self._consts: dict[tuple, str] = {}
        self._node_names: set[str] = set()
        self.op: Op | None = None  # the op being lowered: names and documents its nodes
        self.contrib = True  # emit com.microsoft kernels for the fused ops (else standard ONNX)
        self.shared: dict[tuple, str] = {}  # tensors computed once for several ops (expanded masks)
        self.cpu = "portable"  # the CPU kind int8 kernels must be exact on (bertc.cpu)

    # ---------------------------------------------------------------- names
    def unique(self, hint: str) -> str:
        return self._taken.claim(_NAME_CLEAN.sub("_", hint) or "t")

    def reserve(self, name: str) -> bool:
        """Claim ``name`` verbatim; False when it is already taken."""
        return self._taken.reserve(name)

    def name_of_bound(self, v: Value) -> str | None:
        return self._names.get(id(v))

    def bind(self, v: Value, name: str) -> str:
        """Give ``v`` the ONNX name ``name`` (already reserved)."""
        self._names[id(v)] = name
        return name

    def name_of(self, v: Value) -> str:
        if id(v) not in self._names:
            self._names[id(v)] = self.unique(self._ssa.get(id(v), v.name))
        return self._names[id(v)]

    def fresh(self, suffix: str) -> str:
        """A name for a helper tensor inside the current op's lowering."""
        base = self.op.results[0].name if self.op is not None and self.op.results else "tmp"
        return self.unique(f"{base}/{suffix}")

    # ---------------------------------------------------------------- emitting
    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None,
             **attrs) -> str:
        """Append one node; returns its (first) output name."""
        outputs = outputs or [self.fresh(op_type)]
        loc = self.op.loc if self.op is not None else None
        base = _NAME_CLEAN.sub("_", loc.primary if loc and loc.names else op_type)
        name, k = base, 0
        while name in self._node_names:
            k += 1
            name = f"{base}.{k}"
        self._node_names.add(name)
        node = helper.make_node(op_type, inputs, outputs, name=name, **attrs)
        if loc is not None and len(loc.names) > 1:
            node.doc_string = str(loc)
        self.nodes.append(node)
        return outputs[0]

    def initializer(self, array: np.ndarray, name: str) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """A small helper constant (axes, shapes …), shared by the ops that need the same one.

        Its name says its role and, when short, its value: ``bertc/axes[0]``, ``bertc/zero=0``.
        """
        array = np.asarray(array)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            shown = ""
            if array.ndim == 0:
                shown = f"={array.item()}"
            elif array.ndim == 1 and array.size <= 8:
                shown = "[" + ",".join(str(x) for x in array.tolist()) + "]"
            self._consts[key] = self.initializer(array, self.unique(f"bertc/{hint}{shown}"))
        return self._consts[key]

    def i64(self, values, hint: str) -> str:
        """A 1-D int64 constant; python ints beyond int64 clamp (slice ends such as 2**63)."""
        return self.const(np.array([max(_INT64_MIN, min(_INT64_MAX, int(v))) for v in values],
                                   np.int64), hint)

    def cast(self, name: str, src: str, to: str) -> str:
        return name if src == to else self.node("Cast", [name], to=onnx_dtype(to))

    def i64_vector(self, name: str, v: Value) -> str:
        """A shape-like operand as the 1-D int64 tensor ONNX wants."""
        out = self.cast(name, v.dtype, "i64")
        if v.type.rank == 0:
            out = self.node("Unsqueeze", [out, self.i64([0], "axes")])
        return out

    def scalar(self, name: str, v: Value) -> str:
        """A one-element operand as a rank-0 tensor (Range wants scalars)."""
        if v.type.rank == 0:
            return name
        return self.node("Reshape", [name, self.const(np.zeros(0, np.int64), "scalar_shape")])


Lowering = Callable[[Emitter, Op, list[str], list[str]], None]

