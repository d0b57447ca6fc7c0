"""The op registry: what each op kind means.

An ``OpDef`` is declarative: operand names, an attribute schema with defaults,
type inference, an optional verifier, a numpy reference kernel and an optional
symbolic evaluator (for the small integer tensors that carry shapes).  Op
definitions live in ``bertc.ops``; importing ``bertc.ir`` loads them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .graph import Graph, Op
from .types import TensorType

REQUIRED = object()

# attribute kind -> python check.  "array" is a numpy array (the const op's value).
_ATTR_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float, np.floating)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, (bool, np.bool_)),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, (list, tuple)) and all(_ATTR_CHECKS["int"](x) for x in v),
    "floats": lambda v: isinstance(v, (list, tuple)) and all(_ATTR_CHECKS["float"](x) for x in v),
    "array": lambda v: isinstance(v, np.ndarray),
    "graph": lambda v: isinstance(v, Graph),  # a region: cond's branches
    "any": lambda v: True,
}


# Attribute values are stored in one canonical python form, so that printing,
# parsing and comparing (CSE) agree whether a value came from TF, text or a pass.
_COERCE: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: int(v) if not isinstance(v, bool) else _bad(v),
    "float": lambda v: float(v) if not isinstance(v, bool) else _bad(v),
    "bool": lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else _bad(v),
    "ints": lambda v: [int(x) for x in v],
    "floats": lambda v: [float(x) for x in v],
}


def _bad(v):
    raise TypeError(v)


@dataclass(frozen=True)
class Attr:
    kind: str
    default: Any = REQUIRED
    doc: str = ""


class OpError(ValueError):
    """An op is malformed; the verifier turns this into a diagnostic at the op."""


@dataclass
class OpDef:
    name: str
    operands: tuple[str, ...]
    infer: Callable[[Op], TensorType | Sequence[TensorType]]
    kernel: Callable[..., Any]
    attrs: dict[str, Attr] = field(default_factory=dict)
    verify: Callable[[Op], None] | None = None
    sym: Callable[[Op], Sequence[tuple | None] | None] | None = None
    doc: str = ""
    pure: bool = True  # no side effects: may be folded, CSE'd and dead-code eliminated

    # ------------------------------------------------------------ schema
    @property
    def min_operands(self) -> int:
        return sum(1 for o in self.operands if not o.endswith(("?", "*")))

    @property
    def variadic(self) -> bool:
        return any(o.endswith("*") for o in self.operands)

    def complete_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults and reject attributes the schema does not know."""
        for key in attrs:
            if key not in self.attrs:
                known = ", ".join(self.attrs) or "none"
                raise OpError(f"op '{self.name}' has no attribute '{key}' (it takes: {known})")
        for key, spec in self.attrs.items():
            if key not in attrs:
                if spec.default is REQUIRED:
                    raise OpError(f"op '{self.name}' needs attribute '{key}'")
                attrs[key] = list(spec.default) if isinstance(spec.default, list) else spec.default
            elif attrs[key] is not None and spec.kind in _COERCE:
                try:
                    attrs[key] = _COERCE[spec.kind](attrs[key])
                except (TypeError, ValueError):
                    raise OpError(f"attribute '{key}' of '{self.name}' should be {spec.kind}, "
                                  f"got {attrs[key]!r}") from None
        return attrs

    def check(self, op: Op) -> None:
        """Schema checks shared by every op, then the op's own verifier."""
        n = len(op.operands)
        if n < self.min_operands or (not self.variadic and n > len(self.operands)):
            raise OpError(f"'{self.name}' takes {_arity(self.operands)} operands, got {n}")
        for key, spec in self.attrs.items():
            v = op.attrs.get(key, spec.default)
            if v is REQUIRED:
                raise OpError(f"'{self.name}' needs attribute '{key}'")
            if v is not None and not _ATTR_CHECKS[spec.kind](v):
                raise OpError(f"attribute '{key}' of '{self.name}' should be {spec.kind}, got {v!r}")
        if self.verify is not None:
            self.verify(op)

    def infer_types(self, op: Op) -> list[TensorType]:
        out = self.infer(op)
        return [out] if isinstance(out, TensorType) else list(out)

    def run(self, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.kernel(op.attrs, *inputs)
        return list(out) if isinstance(out, (list, tuple)) else [out]


def _arity(operands: tuple[str, ...]) -> str:
    return "(" + ", ".join(operands) + ")"


_REGISTRY: dict[str, OpDef] = {}


def register_op(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op '{opdef.name}' is registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def define(name: str, operands: Sequence[str], infer, kernel, *, attrs: dict[str, Attr] | None = None,
           verify=None, sym=None, doc: str = "", pure: bool = True) -> OpDef:
    """Register an op kind; the short form every file in ``bertc.ops`` uses."""
    return register_op(OpDef(name, tuple(operands), infer, kernel, dict(attrs or {}), verify, sym,
                             doc, pure))


def get_op_def(kind: str) -> OpDef:
    try:
        return _REGISTRY[kind]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(kind, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise OpError(f"unknown op '{kind}'{hint}") from None


def all_op_defs() -> dict[str, OpDef]:
    return dict(sorted(_REGISTRY.items()))
