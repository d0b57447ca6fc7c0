"""Reverse-mode differentiation over the IR, for the op kinds BERT inference uses.

Pruning criteria need d loss / d mask, where a mask scales an intermediate
value (a head's context, an FFN neuron).  Masks are *taps*: ``forward`` runs
the graph with the registry's kernels and multiplies each tapped value by its
scale array right after it is computed, keeping every value; ``backward``
walks the ops in reverse from d loss / d outputs and returns d loss / d scale
for each tap.  No graph is edited.

Only values that depend on a tap get gradients, so embeddings, masks and
shape arithmetic upstream never need rules.  Each rule is a VJP: given the
op's inputs, its output and the gradient of its output, the gradients of the
operands that need one.  Broadcasting operands get their gradient summed back
to their shape.  Gradients are float64 (the forward stays in the graph's
dtype, as every runtime computes it).  ``tests/test_prune.py`` checks every
rule against finite differences.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from ..ir.graph import Graph, Op, Value
from ..ir.interpreter import InterpreterError, _check_input
from ..ir.printer import Namer, format_op
from ..ir.registry import get_op_def
from ..ops.elementwise import erf
from ..ops.linalg import parse_equation

Grads = list  # one gradient (or None) per operand
Rule = Callable[[Op, list, np.ndarray, np.ndarray, list[bool]], Grads]

VJP: dict[str, Rule] = {}


class NoGradient(NotImplementedError):
    """An op on the path from a tap to the loss has no VJP rule here."""


def rule(*kinds: str):
    def deco(fn: Rule) -> Rule:
        for k in kinds:
            VJP[k] = fn
        return fn

    return deco


def unbroadcast(g: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Sum ``g`` over the axes numpy broadcasting added or stretched to reach it from ``shape``."""
    shape = tuple(shape)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


# ------------------------------------------------------------------ elementwise
@rule("add")
def _add(op, xs, y, g, need):
    return [unbroadcast(g, x.shape) if n else None for x, n in zip(xs, need)]


@rule("sub")
def _sub(op, xs, y, g, need):
    return [unbroadcast(g, xs[0].shape) if need[0] else None,
            unbroadcast(-g, xs[1].shape) if need[1] else None]


@rule("mul")
def _mul(op, xs, y, g, need):
    a, b = xs
    return [unbroadcast(g * b, a.shape) if need[0] else None,
            unbroadcast(g * a, b.shape) if need[1] else None]


@rule("div")
def _div(op, xs, y, g, need):
    a, b = (x.astype(np.float64) for x in xs)
    return [unbroadcast(g / b, a.shape) if need[0] else None,
            unbroadcast(-g * a / (b * b), b.shape) if need[1] else None]


@rule("neg")
def _neg(op, xs, y, g, need):
    return [-g]


@rule("identity")
def _identity(op, xs, y, g, need):
    return [g]


@rule("cast")
def _cast(op, xs, y, g, need):
    if xs[0].dtype.kind != "f":
        raise NoGradient("cast from a non-float value")
    return [g]


@rule("pow")
def _pow(op, xs, y, g, need):
    x, p = (v.astype(np.float64) for v in xs)
    if need[1]:
        raise NoGradient("pow with a data-dependent exponent")
    return [unbroadcast(g * p * np.power(x, p - 1), x.shape), None]


def _unary(kind: str, dy_dx: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    VJP[kind] = lambda op, xs, y, g, need: [g * dy_dx(xs[0].astype(np.float64), y.astype(np.float64))]


_unary("tanh", lambda x, y: 1.0 - y * y)
_unary("exp", lambda x, y: y)
_unary("sqrt", lambda x, y: 0.5 / y)
_unary("rsqrt", lambda x, y: -0.5 * y ** 3)
_unary("reciprocal", lambda x, y: -y * y)
_unary("sigmoid", lambda x, y: y * (1.0 - y))
_unary("relu", lambda x, y: (x > 0).astype(np.float64))
_unary("abs", lambda x, y: np.sign(x))
_unary("log", lambda x, y: 1.0 / x)
_unary("erf", lambda x, y: 2.0 / np.sqrt(np.pi) * np.exp(-x * x))


@rule("gelu")
def _gelu(op, xs, y, g, need):
    x = xs[0].astype(np.float64)
    if op.attrs["approximate"] == "tanh":
        c = np.sqrt(2.0 / np.pi)
        t = np.tanh(c * (x + 0.044715 * x ** 3))
        d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)
    else:
        d = 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    return [g * d]


@rule("maximum", "minimum")
def _minmax(op, xs, y, g, need):
    a, b = xs
    pick_a = (a >= b) if op.kind == "maximum" else (a <= b)
    return [unbroadcast(np.where(pick_a, g, 0.0), a.shape) if need[0] else None,
            unbroadcast(np.where(pick_a, 0.0, g), b.shape) if need[1] else None]


@rule("where")
def _where(op, xs, y, g, need):
    c, a, b = xs
    return [None,
            unbroadcast(np.where(c, g, 0.0), a.shape) if need[1] else None,
            unbroadcast(np.where(c, 0.0, g), b.shape) if need[2] else None]


# ------------------------------------------------------------------ linear algebra
def _swap(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


@rule("matmul")
def _matmul(op, xs, y, g, need):
    a, b = (x.astype(np.float64) for x in xs)
    return [unbroadcast(g @ _swap(b), a.shape) if need[0] else None,
            unbroadcast(_swap(a) @ g, b.shape) if need[1] else None]


@rule("einsum")
def _einsum(op, xs, y, g, need):
    ins, out = parse_equation(op.attrs["equation"])
    if len(ins) != 2:
        raise NoGradient("einsum with other than two operands")
    grads = []
    for i, (spec, x) in enumerate(zip(ins, xs)):
        if not need[i]:
            grads.append(None)
            continue
        other = ins[1 - i]
        if len(set(spec)) != len(spec) or any(c not in out and c not in other for c in spec):
            raise NoGradient(f"einsum term {spec!r} repeats or sums a letter on its own")
        grads.append(np.einsum(f"{out},{other}->{spec}", g, xs[1 - i].astype(np.float64)))
    return grads


@rule("transpose")
def _transpose(op, xs, y, g, need):
    return [np.transpose(g, np.argsort(op.attrs["perm"]))]


@rule("reshape", "squeeze", "unsqueeze")
def _reshape(op, xs, y, g, need):
    return [g.reshape(xs[0].shape)] + [None] * (len(xs) - 1)


@rule("expand")
def _expand(op, xs, y, g, need):
    return [unbroadcast(g, xs[0].shape)] + [None] * (len(xs) - 1)


@rule("slice")
def _slice(op, xs, y, g, need):
    x = xs[0]
    starts = op.attrs["starts"] if len(xs) == 1 else [int(v) for v in np.atleast_1d(xs[1])]
    ends = op.attrs["ends"] if len(xs) == 1 else [int(v) for v in np.atleast_1d(xs[2])]
    steps = op.attrs["steps"] or [1] * len(op.attrs["axes"])
    index = [slice(None)] * x.ndim
    for ax, s, e, st in zip(op.attrs["axes"], starts, ends, steps):
        index[ax] = slice(s, e, st)
    out = np.zeros(x.shape, dtype=np.float64)
    out[tuple(index)] = g
    return [out] + [None] * (len(xs) - 1)


@rule("concat")
def _concat(op, xs, y, g, need):
    ax = op.attrs["axis"] % g.ndim
    bounds = np.cumsum([x.shape[ax] for x in xs])[:-1]
    return [p if n else None for p, n in zip(np.split(g, bounds, axis=ax), need)]


@rule("gather")
def _gather(op, xs, y, g, need):
    data, idx = xs
    if need[1]:
        raise NoGradient("gather indices")
    ax = op.attrs["axis"] % data.ndim
    out = np.zeros(data.shape, dtype=np.float64)
    moved = np.moveaxis(out, ax, 0)
    gm = np.moveaxis(g, list(range(ax, ax + idx.ndim)), list(range(idx.ndim)))
    np.add.at(moved, idx.astype(np.int64) % data.shape[ax], gm)
    return [out, None]


# ------------------------------------------------------------------ reductions and normalisation
def _reduce_axes(op, x) -> tuple[int, ...]:
    return tuple(a % x.ndim for a in op.attrs["axes"])


@rule("reduce_sum", "reduce_mean")
def _reduce(op, xs, y, g, need):
    x = xs[0]
    axes = _reduce_axes(op, x)
    if not op.attrs["keepdims"]:
        g = np.expand_dims(g, axes)
    if op.kind == "reduce_mean":
        g = g / max(1, int(np.prod([x.shape[a] for a in axes])))
    return [np.broadcast_to(g, x.shape)]


@rule("softmax")
def _softmax(op, xs, y, g, need):
    y64 = y.astype(np.float64)
    ax = op.attrs["axis"]
    return [y64 * (g - (g * y64).sum(axis=ax, keepdims=True))]


@rule("layer_norm")
def _layer_norm(op, xs, y, g, need):
    x, gamma, beta = (v.astype(np.float64) for v in xs)
    axes = tuple(range(op.attrs["axis"] % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + op.attrs["epsilon"])
    xhat = (x - mean) * inv
    grads: list = [None, None, None]
    if need[0]:
        dxhat = g * gamma
        grads[0] = inv * (dxhat - dxhat.mean(axis=axes, keepdims=True)
                          - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    if need[1]:
        grads[1] = unbroadcast(g * xhat, gamma.shape)
    if need[2]:
        grads[2] = unbroadcast(g, beta.shape)
    return grads


# ------------------------------------------------------------------ running
class Tape:
    """Every value of one forward run (by id), and the taps' values before scaling."""

    def __init__(self) -> None:
        self.env: dict[int, np.ndarray] = {}
        self.pre_tap: dict[int, np.ndarray] = {}
        self.outputs: dict[str, np.ndarray] = {}


def forward(graph: Graph, feeds: Mapping[str, np.ndarray], taps: Mapping[Value, np.ndarray] | None = None,
            keep: bool = True) -> Tape:
    """Run ``graph`` with each tapped value multiplied by its scale (broadcasting).

    ``keep=False`` frees values as soon as no later op needs them (what
    ``run_graph`` does), for runs that only want outputs.
    """
    taps = {id(v): s for v, s in (taps or {}).items()}
    tape = Tape()
    env = tape.env
    for v in graph.inputs:
        if v.name not in feeds:
            raise InterpreterError(f"missing input '{v.name}'")
        env[id(v)] = _check_input(v, np.asarray(feeds[v.name]))
    keep_ids = {id(v) for v in graph.outputs.values()}
    remaining = {id(v): len(v.uses) for op in graph.ops for v in op.results} if not keep else {}
    for op in graph.ops:
        try:
            out = get_op_def(op.kind).run(op, [env[id(v)] for v in op.operands])
        except Exception as e:
            raise InterpreterError(f"{type(e).__name__}: {e}\n  while executing {format_op(op, Namer())}", op) from e
        for r, arr in zip(op.results, out):
            if id(r) in taps:
                tape.pre_tap[id(r)] = arr
                arr = (arr * taps[id(r)]).astype(arr.dtype)
            env[id(r)] = arr
        if not keep:
            for v in op.operands:
                k = id(v)
                if k in remaining:
                    remaining[k] -= 1
                    if remaining[k] == 0 and k not in keep_ids:
                        env.pop(k, None)
    tape.outputs = {name: env[id(v)] for name, v in graph.outputs.items()}
    return tape


def _depends_on(graph: Graph, sources: set[int]) -> set[int]:
    """ids of float values computed from any of ``sources`` (included).

    Integers carry no gradient: a shape read off a tapped tensor, and the gather indices computed
    from it (DeBERTa's flattened take_along_axis), are not on a path the loss differentiates.
    """
    live = set(sources)
    for op in graph.ops:
        if any(id(v) in live for v in op.operands):
            live.update(id(r) for r in op.results if str(r.dtype).startswith(("f", "bf")))
    return live


def backward(graph: Graph, tape: Tape, output_grads: Mapping[str, np.ndarray],
             taps: Mapping[Value, np.ndarray]) -> dict[Value, np.ndarray]:
    """d loss / d scale for every tap, from d loss / d output (by output name).

    Each tap's gradient has the shape of its scale array (summed over the axes
    it broadcast along).
    """
    tap_ids = {id(v): (v, s) for v, s in taps.items()}
    live = _depends_on(graph, set(tap_ids))
    grads: dict[int, np.ndarray] = {}
    for name, g in output_grads.items():
        v = graph.outputs[name]
        if id(v) in live:
            grads[id(v)] = grads.get(id(v), 0.0) + np.asarray(g, dtype=np.float64)
    result: dict[Value, np.ndarray] = {}
    _sweep(graph, tape, grads, live, tap_ids, result)
    for v, scale in taps.items():
        result.setdefault(v, np.zeros(np.shape(scale)))
    return result


def _sweep(graph: Graph, tape: Tape, grads: dict[int, np.ndarray], live: set[int],
           tap_ids: dict[int, tuple], result: dict) -> None:
    """Carry ``grads`` (by value id) from the outputs back through ``graph``'s ops, in place;
    each tap's scale gradient goes into ``result``."""
    for op in reversed(graph.ops):
        for r in op.results:  # a tapped result: its scale's gradient, then the gradient before scaling
            if id(r) in tap_ids and id(r) in grads:
                v, scale = tap_ids[id(r)]
                g = grads[id(r)]
                result[v] = unbroadcast(g * tape.pre_tap[id(r)], np.shape(scale))
                grads[id(r)] = g * scale
        gs = [grads.pop(id(r), None) for r in op.results]
        if all(g is None for g in gs):
            continue
        need = [id(v) in live for v in op.operands]
        if not any(need):
            continue
        if op.kind == "cond":
            operand_grads = _cond_vjp(op, tape, gs)
        elif len(op.results) != 1:
            raise NoGradient(f"{op.kind} has several results")
        else:
            fn = VJP.get(op.kind)
            if fn is None:
                raise NoGradient(f"no gradient rule for '{op.kind}' at {op.loc} (it lies between a tap and the loss)")
            xs = [tape.env[id(v)] for v in op.operands]
            operand_grads = fn(op, xs, tape.env[id(op.result)], gs[0], need)
        for v, n, g in zip(op.operands, need, operand_grads):
            if n and g is not None:
                grads[id(v)] = grads[id(v)] + g if id(v) in grads else np.asarray(g, dtype=np.float64)


def _cond_vjp(op: Op, tape: Tape, gs: list) -> list:
    """A cond's operand gradients: those of the branch this run took, run again on its own
    arguments (taps inside a branch are not supported; pruning sees a cond as one op)."""
    taken = op.attrs["then" if bool(np.asarray(tape.env[id(op.operands[0])]).reshape(-1)[0]) else "else"]
    sub = forward(taken, {x.name: tape.env[id(v)] for x, v in zip(taken.inputs, op.operands[1:])})
    live = _depends_on(taken, {id(x) for x in taken.inputs})
    grads: dict[int, np.ndarray] = {}
    for v, g in zip(taken.outputs.values(), gs):
        if g is not None and id(v) in live:
            grads[id(v)] = grads.get(id(v), 0.0) + np.asarray(g, dtype=np.float64)
    _sweep(taken, sub, grads, live, {}, {})
    return [None] + [grads.get(id(x)) for x in taken.inputs]


def tap_gradients(graph: Graph, feeds: Mapping[str, np.ndarray], taps: Mapping[Value, np.ndarray],
                  loss: Callable[[dict[str, np.ndarray]], tuple[float, dict[str, np.ndarray]]]
                  ) -> tuple[float, dict[str, np.ndarray], dict[Value, np.ndarray]]:
    """(loss, outputs, d loss / d scale per tap): one forward and one backward run.

    ``loss(outputs)`` returns the loss and its gradient with respect to each
    output it reads.
    """
    tape = forward(graph, feeds, taps)
    value, out_grads = loss(tape.outputs)
    return value, tape.outputs, backward(graph, tape, out_grads, taps)

from . import autodiff_index  # noqa: E402,F401  (gather_nd, scatters, pad, tile, reduce_max/min rules)
