"""Tensor types of the IR: a dtype plus a shape whose dims are ints or symbols.

A dimension is an ``int`` when it is known, or a ``str`` when it is symbolic.
Symbols are products of named factors with an optional integer coefficient,
kept in one canonical spelling so that equal dims compare equal as strings:
``"batch"``, ``"seq"``, ``"batch*seq"``, ``"12*seq"``.  ``"?"`` is a dim that
nothing is known about.  BERT only ever multiplies and divides dims (reshapes
that merge or split batch and sequence), so a monomial is all we need.
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

import numpy as np

Dim = Union[int, str]
UNKNOWN = "?"

# IR dtype name -> numpy dtype.  The short names are what the text form prints.
DTYPES: dict[str, np.dtype] = {
    "f16": np.dtype(np.float16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_NP_TO_IR = {v: k for k, v in DTYPES.items()}

FLOAT_DTYPES = frozenset({"f16", "f32", "f64"})
INT_DTYPES = frozenset({"i8", "u8", "i16", "i32", "i64"})


def dtype_of(array_or_dtype) -> str:
    """The IR dtype name of a numpy array or numpy dtype."""
    dt = np.dtype(getattr(array_or_dtype, "dtype", array_or_dtype))
    try:
        return _NP_TO_IR[dt]
    except KeyError:
        raise TypeError(f"dtype {dt} has no IR equivalent") from None


def np_dtype(name: str) -> np.dtype:
    return DTYPES[name]


# --------------------------------------------------------------------------- dims

_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _split(dim: Dim) -> tuple[int, Counter]:
    """A dim as (coefficient, Counter of symbol factors)."""
    if isinstance(dim, (int, np.integer)):
        return int(dim), Counter()
    coef, factors = 1, Counter()
    for part in dim.split("*"):
        if part.isdigit():
            coef *= int(part)
        else:
            factors[part] += 1
    return coef, factors


def _join(coef: int, factors: Counter) -> Dim:
    names = sorted(n for n, k in factors.items() for _ in range(k))
    if not names:
        return coef
    if coef == 1:
        return "*".join(names)
    return "*".join([str(coef), *names])


def is_static(dim: Dim) -> bool:
    return isinstance(dim, (int, np.integer))


def dim_mul(a: Dim, b: Dim) -> Dim:
    if a == UNKNOWN or b == UNKNOWN:
        return UNKNOWN
    ca, fa = _split(a)
    cb, fb = _split(b)
    if ca == 0 or cb == 0:
        return 0
    return _join(ca * cb, fa + fb)


def dim_prod(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def dim_div(a: Dim, b: Dim) -> Dim:
    """Exact quotient a / b, or UNKNOWN when it is not a monomial."""
    if a == UNKNOWN or b == UNKNOWN:
        return UNKNOWN
    ca, fa = _split(a)
    cb, fb = _split(b)
    if cb == 0 or ca % cb or any(fa[n] < k for n, k in fb.items()):
        return UNKNOWN
    return _join(ca // cb, fa - fb)


def valid_dim(dim: Dim) -> bool:
    if isinstance(dim, (int, np.integer)):
        return dim >= 0
    if dim == UNKNOWN:
        return True
    return all(p.isdigit() or _SYMBOL.match(p) for p in dim.split("*"))


class DimTies:
    """Which input dims a graph ties together: a union-find over free symbols.

    The importer gives every unknown input dim a symbol of its own and imports
    once with ``tying_dims`` active: wherever two of those symbols meet as the
    same dim (broadcast against each other, contracted by a matmul), they are
    united and the op sees one dim.  ``groups`` then says which input dims the
    graph treats as one (BERT's ids, mask and token types share batch and seq);
    the real import names each group once, so inputs the graph never relates keep
    dims of their own instead of all being assumed equal.
    """

    def __init__(self, symbols: Iterable[str]) -> None:
        self.parent = {s: s for s in symbols}

    def find(self, s: str) -> str:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def canon(self, dim: Dim) -> Dim:
        """``dim`` with each free symbol replaced by its group's representative."""
        if is_static(dim) or dim == UNKNOWN:
            return dim
        coef, factors = _split(dim)
        mapped: Counter = Counter()
        for name, k in factors.items():
            mapped[self.find(name) if name in self.parent else name] += k
        return _join(coef, mapped)

    def unite(self, a: Dim, b: Dim) -> Dim | None:
        """The one dim ``a`` and ``b`` become, when both are (groups of) single free symbols."""
        a, b = self.canon(a), self.canon(b)
        if a == b:
            return a
        if isinstance(a, str) and isinstance(b, str) and a in self.parent and b in self.parent:
            first, second = sorted((a, b), key=list(self.parent).index)
            self.parent[second] = first
            return first
        return None

    def groups(self) -> list[list[str]]:
        """The symbols, grouped by what the graph ties, each group in first-seen order."""
        out: dict[str, list[str]] = {}
        for s in self.parent:
            out.setdefault(self.find(s), []).append(s)
        return list(out.values())


_TIES: ContextVar[DimTies | None] = ContextVar("bertc_dim_ties", default=None)


@contextmanager
def tying_dims(symbols: Iterable[str]) -> Iterator[DimTies]:
    """Within the block, dims of ``symbols`` that meet are united (see ``DimTies``)."""
    ties = DimTies(symbols)
    token = _TIES.set(ties)
    try:
        yield ties
    finally:
        _TIES.reset(token)


def same_dim(a: Dim, b: Dim) -> bool:
    """Whether ``a`` and ``b`` are one dim: equal, or united while ``tying_dims`` is active."""
    if a == b:
        return True
    ties = _TIES.get()
    return ties is not None and ties.unite(a, b) is not None


def same_elements(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> None:
    """``a`` and ``b`` hold the same elements (a reshape): while tying dims, unite their free
    symbols in order when both sides have as many and the same static factor.  modeling.py
    reshapes the mask to ``[batch, 1, seq]`` read from the ids: the mask's dims are the ids'."""
    ties = _TIES.get()
    if ties is None or UNKNOWN in a or UNKNOWN in b:
        return
    sides = []
    for dims in (a, b):
        coef, names = 1, []
        for d in dims:
            c, factors = _split(ties.canon(d))
            coef *= c
            names += list(factors.elements())  # a product's factors in its canonical order
        sides.append((coef, names))
    (ca, na), (cb, nb) = sides
    if ca == cb and len(na) == len(nb) and all(n in ties.parent for n in na + nb):
        for x, y in zip(na, nb):
            ties.unite(x, y)


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Numpy broadcasting over symbolic shapes; raises ValueError when they clash.

    A symbol against a static dim n > 1 gives n (the symbol must be 1 or n at
    run time, as TF assumes); two different symbols give UNKNOWN, unless the
    importer is finding which input dims the graph ties (``tying_dims``).
    """
    ties = _TIES.get()
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = [d for d in dims if d != 1]
        statics = {d for d in known if is_static(d)}
        if len(statics) > 1:
            raise ValueError(f"shapes {' and '.join(map(format_shape, shapes))} do not broadcast")
        if statics:
            out.append(statics.pop())
            continue
        symbols = {d for d in known if d != UNKNOWN}
        if ties is not None and len(symbols) > 1:
            symbols = _united(ties, symbols)
        out.append(symbols.pop() if len(symbols) == 1 and UNKNOWN not in known else (1 if not known else UNKNOWN))
    return tuple(out)


def _united(ties: DimTies, symbols: set) -> set:
    """``symbols`` after uniting every free symbol among them (products stay as they are)."""
    dims = list(symbols)
    first = dims[0]
    for other in dims[1:]:
        joined = ties.unite(first, other)
        if joined is None:
            return {ties.canon(d) for d in dims}
        first = joined
    return {first}


def format_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorType:
    """dtype + shape.  Shapes are tuples of dims; ``()`` is a scalar."""

    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(int(d) if is_static(d) else d for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(is_static(d) for d in self.shape)

    @property
    def num_elements(self) -> Dim:
        return dim_prod(self.shape)

    def with_shape(self, shape: Iterable[Dim]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}{format_shape(self.shape)}"

    @staticmethod
    def of(array: np.ndarray) -> "TensorType":
        return TensorType(dtype_of(array), tuple(array.shape))


def normalize_axis(axis: int, rank: int) -> int:
    """A possibly negative axis as an index in [0, rank)."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
