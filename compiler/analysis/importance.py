"""How much each attention head and FFN neuron matters: the criteria of prune_heads / prune_neurons.

Higher scores mean more important; the passes remove the lowest.

Heads:

* ``taylor`` (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"):
  a mask xi_h multiplies head h's context; I_h = sum over calibration examples
  of |d loss / d xi_h| at xi = 1.  Gradients come from ``autodiff`` (reverse
  mode over the IR).  The mask has a batch axis, so each example's gradient is
  taken on its own before the absolute value, as in the paper.
* ``ablation``: how much the outputs move when head h alone is masked
  (one forward run per head and batch).
* ``magnitude``: the L2 norm of the head's Q, K, V columns and O rows; needs no data.

Neurons: ``taylor`` (a mask on the activation output, as for heads),
``activation`` (mean |activation| over real tokens) and ``magnitude``
(||up column|| * ||down row||).

The loss: with labels, cross-entropy on the classifier logits.  Without, the
ablation criterion measures the divergence from the unpruned model: KL of the
softmaxed logits, or the MSE of non-classifier outputs (embeddings).  That
divergence has zero gradient at the unpruned model (it is minimal there), so
``taylor`` without labels differentiates cross-entropy against the unpruned
model's own argmax (pseudo-labels) for classifiers, and a fixed random
projection <r, y> of other outputs (its squared gradient estimates the
Jacobian's norm, Hutchinson-style).  ``Scores.loss`` states which was used.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.interpreter import run_graph
from ..ir.types import is_static
from .input_roles import input_role
from .autodiff import forward, tap_gradients
from .layout import Units
from .structure import Attention, FeedForward, Projection, Structure

log = logging.getLogger(__name__)

HEAD_CRITERIA = ("taylor", "ablation", "magnitude")
NEURON_CRITERIA = ("taylor", "activation", "magnitude")
DATA_FREE = ("magnitude",)


@dataclass
class Scores:
    """Importance per layer (layer index -> one score per head or neuron) and how it was measured."""

    criterion: str
    per_layer: dict[int, np.ndarray]
    data: str = "none (weights only)"
    loss: str = ""
    notes: list[str] = field(default_factory=list)

    def normalized(self) -> dict[int, np.ndarray]:
        """Each layer's scores divided by their L2 norm (Michel et al.), for ranking across layers."""
        out = {}
        for layer, s in self.per_layer.items():
            n = float(np.linalg.norm(s))
            out[layer] = s / n if n > 0 else s
        return out

    def to_json(self, digits: int = 6) -> dict:
        return {"criterion": self.criterion, "data": self.data, "loss": self.loss,
                "scores": {str(k): [float(f"{float(x):.{digits}g}") for x in v] for k, v in self.per_layer.items()}}


# ------------------------------------------------------------------ weights
def take_features(arr: np.ndarray, axes: list[int], groups: int, size: int, keep: np.ndarray,
                  outer: int = 1) -> np.ndarray:
    """Keep feature groups ``keep`` of ``arr`` along ``axes``.

    The features span either one axis of ``outer * groups * size`` (group-major, as a
    reshape to [..., outer, groups, size] reads it; ``outer`` is 3 for a fused QKV kernel [q|k|v] whose
    thirds each hold every head) or two axes ``(groups, size)``.
    Heads are groups of ``head_size``; neurons are groups of one.
    """
    keep = np.asarray(keep, dtype=np.int64)
    if len(axes) == 1:
        ax = axes[0]
        if arr.shape[ax] != outer * groups * size:
            raise ValueError(f"axis {ax} of {list(arr.shape)} is not {outer}x{groups}x{size} features")
        split = arr.reshape(arr.shape[:ax] + (outer, groups, size) + arr.shape[ax + 1:])
        out = np.take(split, keep, axis=ax + 1)
        return out.reshape(arr.shape[:ax] + (outer * len(keep) * size,) + arr.shape[ax + 1:])
    if len(axes) == 2 and (arr.shape[axes[0]], arr.shape[axes[1]]) == (groups, size) and axes[1] == axes[0] + 1:
        return np.take(arr, keep, axis=axes[0])
    raise ValueError(f"axes {axes} of {list(arr.shape)} are not {groups} groups of {size} features")


def bias_axes(bias: np.ndarray, features: int) -> list[int]:
    """The trailing axes of a bias that hold ``features`` values: [n-1] or [n-2, n-1]."""
    n = bias.ndim
    if n >= 1 and bias.shape[-1] == features:
        return [n - 1]
    if n >= 2 and bias.shape[-2] * bias.shape[-1] == features:
        return [n - 2, n - 1]
    raise ValueError(f"bias of shape {list(bias.shape)} does not hold {features} features")


def _group_norms2(arr: np.ndarray, axes: list[int], groups: int, size: int, outer: int = 1) -> np.ndarray:
    """Sum of squares of each feature group of ``arr`` (see ``take_features``)."""
    a = arr.astype(np.float64) ** 2
    if len(axes) == 1:
        ax = axes[0]
        a = a.reshape(a.shape[:ax] + (outer, groups, size) + a.shape[ax + 1:])
        head_axis = ax + 1
    else:
        head_axis = axes[0]
    other = tuple(i for i in range(a.ndim) if i != head_axis)
    return a.sum(axis=other)


def _projection_norms2(p: Projection, side: str, groups: int, size: int, outer: int = 1) -> np.ndarray:
    ins, outs = p.kernel_axes()
    axes = outs if side == "out" else ins
    total = _group_norms2(p.kernel.const_value(), axes, groups, size, outer)
    if side == "out" and p.bias is not None:
        b = p.bias.const_value()
        total = total + _group_norms2(b, bias_axes(b, outer * groups * size), groups, size, outer)
    return total


def head_magnitude(att: Attention) -> np.ndarray:
    h, d = att.heads, att.head_size
    total = sum(_projection_norms2(p, "out", h, att.split(p)[1], att.split(p)[0]) for p in att.projections)
    return np.sqrt(total + _projection_norms2(att.o, "in", h, d))


def neuron_magnitude(ffn: FeedForward) -> np.ndarray:
    n = ffn.intermediate
    return np.sqrt(_projection_norms2(ffn.up, "out", n, 1)) * np.sqrt(_projection_norms2(ffn.down, "in", n, 1))


# ------------------------------------------------------------------ masks (taps)
def concrete_shape(graph: Graph, value: Value, feeds: dict) -> tuple[int, ...]:
    """``value``'s shape for these feeds: its symbols read off the inputs' shapes, else from a run."""
    dims: dict[str, int] = {}
    for v in graph.inputs:
        if v.name in feeds:
            for d, n in zip(v.shape, np.shape(feeds[v.name])):
                if isinstance(d, str) and d.isidentifier():
                    dims[d] = int(n)
    out = []
    for d in value.shape:
        n = 1
        for part in str(d).split("*"):
            if part.isdigit():
                n *= int(part)
            elif part in dims:
                n *= dims[part]
            else:
                return _observed_shape(graph, value, feeds)
        out.append(n)
    return tuple(out)


def _observed_shape(graph: Graph, value: Value, feeds: dict) -> tuple[int, ...]:
    seen: dict[str, tuple] = {}
    run_graph(graph, feeds, observe=lambda v, a: seen.setdefault("s", a.shape) if v is value else None)
    return tuple(seen["s"])


@dataclass
class Site:
    """Where a family of units (one layer's heads or neurons) can be masked.

    ``where`` says which axis of the tapped value holds the units and what is
    merged with them (``shape[axis] = outer * units * inner``): heads on an axis
    of their own, ``[batch*seq, neurons]`` of a flattened FFN, ``[batch*heads, ...]``
    alike.  Taylor masks are as large as the value (one scale per element) and
    their gradients are summed per example and unit: the same as one scale per
    (example, unit), whatever the layout, since an example's rows come first
    in the flattening of its leading axis.
    """

    layer: int
    value: Value  # the tapped value: head context, or activation output
    where: Units

    @property
    def axis(self) -> int:
        return self.where.axis

    @property
    def units(self) -> int:
        return self.where.count

    def _split(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """(outer, inner) as numbers for this concrete shape."""
        n = shape[self.axis]
        if is_static(self.where.inner):
            inner = int(self.where.inner)
        else:
            outer = self.where.outer(self.value.shape)
            if not is_static(outer):
                raise ValueError(f"%{self.value.name} {self.value.type}: both sides of the units on axis "
                                 f"{self.axis} are symbolic")
            inner = n // (self.units * int(outer))
        return n // (self.units * inner), inner

    def per_unit(self, grad: np.ndarray, batch: int) -> np.ndarray:
        """sum over examples of |sum of that example's gradients of unit u|, from a full-size mask's gradient."""
        outer, inner = self._split(grad.shape)
        a = self.axis
        g = grad.reshape(grad.shape[:a] + (outer, self.units, inner) + grad.shape[a + 1:])
        g = np.moveaxis(g, a + 1, -1)
        return np.abs(g.reshape(batch, -1, self.units).sum(1)).sum(0)

    def rows(self, arr: np.ndarray) -> np.ndarray:
        """The value as [positions, units] (positions in row-major order, examples first)."""
        outer, inner = self._split(arr.shape)
        a = self.axis
        g = arr.reshape(arr.shape[:a] + (outer, self.units, inner) + arr.shape[a + 1:])
        return np.moveaxis(g, a + 1, -1).reshape(-1, self.units)

    def without(self, unit: int, shape: tuple[int, ...]) -> np.ndarray:
        """A mask (broadcast over everything but the units' axis) that zeroes ``unit``."""
        outer, inner = self._split(shape)
        pattern = np.ones((outer, self.units, inner), dtype=np.float32)
        pattern[:, unit, :] = 0.0
        m = [1] * len(shape)
        m[self.axis] = shape[self.axis]
        return pattern.reshape(m)


def head_sites(structure: Structure) -> list[Site]:
    return [Site(layer.index, layer.attention.context.result, layer.attention.context_units)
            for layer in structure.layers if layer.attention is not None]


def neuron_sites(structure: Structure) -> list[Site]:
    out = []
    for layer in structure.layers:
        if layer.ffn is not None:
            f = layer.ffn
            out.append(Site(layer.index, f.activation.result, f.up.units("out", f.intermediate)))
    return out


# ------------------------------------------------------------------ the loss
def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class Objective:
    """What "the outputs moved" means for one graph and calibration set.

    Classifier outputs ([batch, classes], classes > 1) are preferred; other
    float outputs are used when there is none.
    """

    def __init__(self, graph: Graph, calib) -> None:
        floats = {n: v for n, v in graph.outputs.items() if v.dtype in ("f16", "f32", "f64")}
        self.classifiers = [n for n, v in floats.items()
                            if v.type.rank == 2 and isinstance(v.shape[1], int) and v.shape[1] > 1]
        self.names = self.classifiers or list(floats)
        self.labels: np.ndarray | None = None
        self.label_note = "no labels"
        if self.classifiers and calib is not None and calib.labels is not None:
            classes = graph.outputs[self.classifiers[0]].shape[1]
            self.labels, self.label_note = calib.label_ids(classes)
        self.mask_name = next((v.name for v in graph.inputs if input_role(v.name) == "mask"), None)

    def describe(self, gradient: bool) -> str:
        if self.labels is not None:
            return f"cross-entropy of '{self.classifiers[0]}' on the labels ({self.label_note})"
        if self.classifiers:
            if gradient:
                return (f"cross-entropy of '{self.classifiers[0]}' against the unpruned model's argmax "
                        f"(pseudo-labels; {self.label_note})")
            return f"KL(unpruned || masked) of softmax('{self.classifiers[0]}') ({self.label_note})"
        names = ", ".join(self.names)
        return (f"random projection of {names} (no classifier output)" if gradient
                else f"mean squared change of {names} from the unpruned model")

    def _weights(self, y: np.ndarray, feeds: dict) -> np.ndarray | None:
        """Token weights [batch, seq, 1...] for outputs over tokens (padding counts 0)."""
        mask = feeds.get(self.mask_name) if self.mask_name else None
        if mask is None or y.ndim < 2 or y.shape[:2] != mask.shape:
            return None
        return mask.astype(np.float64).reshape(mask.shape + (1,) * (y.ndim - 2))

    def gradient_loss(self, feeds: dict, labels: np.ndarray | None, seed: int):
        """loss(outputs) -> (value, d value / d output) summed over the batch (per-example separable)."""
        def loss(outputs: dict[str, np.ndarray]):
            total, grads = 0.0, {}
            if self.classifiers:
                name = self.classifiers[0]
                y = outputs[name]
                target = labels if labels is not None else y.argmax(axis=-1)
                p = _softmax(y)
                total = float(-_log_softmax(y)[np.arange(len(y)), target].sum())
                p[np.arange(len(y)), target] -= 1.0
                return total, {name: p}
            rng = np.random.default_rng(seed)
            for name in self.names:
                y = outputs[name]
                r = rng.standard_normal(y.shape)
                w = self._weights(y, feeds)
                if w is not None:
                    r = r * w
                total += float((r * y).sum())
                grads[name] = r
            return total, grads

        return loss

    def divergence(self, ref: dict[str, np.ndarray], out: dict[str, np.ndarray], feeds: dict,
                   labels: np.ndarray | None) -> float:
        """How far ``out`` is from ``ref``: loss increase with labels, KL or MSE without; summed over examples."""
        if self.classifiers:
            name = self.classifiers[0]
            if labels is not None:
                rows = np.arange(len(labels))
                return float(-_log_softmax(out[name])[rows, labels].sum() + _log_softmax(ref[name])[rows, labels].sum())
            p = _softmax(ref[name])
            return float((p * (_log_softmax(ref[name]) - _log_softmax(out[name]))).sum())
        total = 0.0
        for name in self.names:
            d2 = (out[name].astype(np.float64) - ref[name].astype(np.float64)) ** 2
            w = self._weights(d2, feeds)
            if w is not None:
                d2 = d2 * w
                per = d2.reshape(len(d2), -1).sum(1) / np.maximum(w.reshape(len(w), -1).sum(1) * d2[0, 0].size, 1)
            else:
                per = d2.reshape(len(d2), -1).mean(1)
            total += float(per.sum())
        return total


# ------------------------------------------------------------------ progress
@contextlib.contextmanager
def progress(total: int, description: str) -> Iterator:
    """A rich progress bar on stderr (shown on terminals only); yields ``advance()``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


# ------------------------------------------------------------------ criteria
def _calibration(graph: Graph, calib):
    """Data bound to ``graph`` from ``calib``: a PassContext, calibration data, or None (random
    token ids, and a note that says so)."""
    from ..pass_manager import PassContext

    ctx = calib if isinstance(calib, PassContext) else PassContext(calib=calib)
    data = ctx.calibration(graph)
    random = ctx.calib is None
    return data, ["no calibration data: random valid token ids stand in (pass --calib)"] if random else []


def _batches_with_labels(calib, objective: Objective, batch_size: int):
    for i, feeds in enumerate(calib.batches(batch_size)):
        labels = None
        if objective.labels is not None:
            labels = objective.labels[i * batch_size:i * batch_size + len(next(iter(feeds.values())))]
        yield feeds, labels


def taylor_scores(graph: Graph, sites: list[Site], calib, batch_size: int, what: str) -> Scores:
    """sum over examples of |d loss / d mask| per unit (per-example masks, one backward per batch)."""
    calib, notes = _calibration(graph, calib)
    objective = Objective(graph, calib)
    totals = {s.layer: np.zeros(s.units) for s in sites}
    with progress(calib.num_batches(batch_size), f"taylor importance of {what}") as advance:
        for i, (feeds, labels) in enumerate(_batches_with_labels(calib, objective, batch_size)):
            batch = len(next(iter(feeds.values())))
            taps = {s.value: np.ones(concrete_shape(graph, s.value, feeds), np.float32) for s in sites}
            _, _, grads = tap_gradients(graph, feeds, taps, objective.gradient_loss(feeds, labels, seed=i))
            for s in sites:
                totals[s.layer] += s.per_unit(grads[s.value], batch)
            advance()
    return Scores("taylor", totals, calib.source, objective.describe(gradient=True), notes)


def ablation_scores(graph: Graph, sites: list[Site], calib, batch_size: int, what: str) -> Scores:
    """Output divergence with each unit masked alone (one forward run per unit and batch)."""
    calib, notes = _calibration(graph, calib)
    objective = Objective(graph, calib)
    totals = {s.layer: np.zeros(s.units) for s in sites}
    runs = calib.num_batches(batch_size) * (1 + sum(s.units for s in sites))
    with progress(runs, f"ablation importance of {what}") as advance:
        for feeds, labels in _batches_with_labels(calib, objective, batch_size):
            ref = run_graph(graph, feeds)
            advance()
            for s in sites:
                shape = concrete_shape(graph, s.value, feeds)
                for u in range(s.units):
                    out = forward(graph, feeds, {s.value: s.without(u, shape)}, keep=False).outputs
                    totals[s.layer][u] += objective.divergence(ref, out, feeds, labels)
                    advance()
    return Scores("ablation", totals, calib.source, objective.describe(gradient=False), notes)


def activation_scores(graph: Graph, sites: list[Site], calib, batch_size: int) -> Scores:
    """Mean |activation| of each neuron over real (unpadded) tokens."""
    calib, notes = _calibration(graph, calib)
    mask_name = next((n for n in calib.input_names if input_role(n) == "mask"), None)
    sums = {s.layer: np.zeros(s.units) for s in sites}
    counts = {s.layer: 0.0 for s in sites}
    by_id = {id(s.value): s for s in sites}
    with progress(calib.num_batches(batch_size), "activation importance of neurons") as advance:
        for feeds in calib.batches(batch_size):
            mask = feeds.get(mask_name) if mask_name else None

            def observe(v, arr, mask=mask):
                s = by_id.get(id(v))
                if s is None:
                    return
                a = np.abs(s.rows(arr).astype(np.float64))
                if mask is not None and len(a) == mask.size:  # [batch, seq, n] or flattened [batch*seq, n]
                    w = mask.astype(np.float64).reshape(-1, 1)
                    sums[s.layer] += (a * w).sum(0)
                    counts[s.layer] += float(w.sum())
                else:
                    sums[s.layer] += a.sum(0)
                    counts[s.layer] += len(a)

            run_graph(graph, feeds, observe=observe)
            advance()
    per = {k: sums[k] / max(counts[k], 1.0) for k in sums}
    return Scores("activation", per, calib.source, "mean |activation| over real tokens", notes)


def head_scores(graph: Graph, structure: Structure, criterion: str, calib=None, batch_size: int = 8) -> Scores:
    """Importance of every head of every matched layer."""
    if criterion == "magnitude":
        return Scores("magnitude", {layer.index: head_magnitude(layer.attention) for layer in structure.layers
                                    if layer.attention is not None}, loss="L2 norm of the head's Q/K/V/O weights")
    sites = head_sites(structure)
    if criterion == "taylor":
        return taylor_scores(graph, sites, calib, batch_size, "heads")
    if criterion == "ablation":
        return ablation_scores(graph, sites, calib, batch_size, "heads")
    raise ValueError(f"unknown head criterion {criterion!r} (choose {', '.join(HEAD_CRITERIA)})")


def neuron_scores(graph: Graph, structure: Structure, criterion: str, calib=None, batch_size: int = 8) -> Scores:
    """Importance of every FFN neuron of every matched layer."""
    if criterion == "magnitude":
        return Scores("magnitude", {layer.index: neuron_magnitude(layer.ffn) for layer in structure.layers
                                    if layer.ffn is not None}, loss="||up column|| * ||down row||")
    sites = neuron_sites(structure)
    if criterion == "taylor":
        return taylor_scores(graph, sites, calib, batch_size, "neurons")
    if criterion == "activation":
        return activation_scores(graph, sites, calib, batch_size)
    raise ValueError(f"unknown neuron criterion {criterion!r} (choose {', '.join(NEURON_CRITERIA)})")
