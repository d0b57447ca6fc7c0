"""Refit the output projections of a pruned model so that each sublayer's output matches the unpruned model's.

Removing heads or neurons drops their contribution to the attention output
projection (O) and the FFN down projection; the rest of the network then sees
shifted inputs.  Kwon et al. 2022 ("A Fast Post-Training Pruning Framework
for Transformers") recover most of the loss without any gradient training by
a layer-wise linear least-squares fit: the kept rows of those projections
(and their bias) are refit so that, on calibration data, the sublayer output
of the pruned model matches the unpruned one.

For every sublayer, in graph order (so each fit sees the already refit
layers before it):

    X = input of the projection in the PRUNED model (its own activations)
    Y = output of the projection, bias included, in the REFERENCE model
        + (REFERENCE residual - PRUNED residual) where the output feeds a residual add
    min ||[X 1] W - Y||^2 + lam ||W_rows - W0_rows||^2      over real tokens

The residual term makes the pre-LayerNorm sum (residual + sublayer output)
match the unpruned one, so each sublayer also makes up for the drift left by
the layers before it instead of passing it on (``residual=False`` matches the
sublayer output alone).  On the Sara MiniLM, 40% of heads then 20% of neurons
(taylor) went from 0.8650 to 0.8738 macro-F1 with it; docs/accuracy.md has the
table, with the orders where it does not help.

Ridge pulls towards the unrefit weights W0 (not towards zero), so a large
``lam`` gives W0 back; ``lam`` is tried at a few multiples of the Gram
matrix's mean diagonal and chosen on held-out calibration sequences (every
``HOLDOUT``-th one).  A sublayer keeps its fitted weights only when they
reduce that held-out error; the final fit then uses all sequences.  All of
it needs only sums (Gram matrices X^T X, X^T Y): one reference run and, per
sublayer, one run of the pruned model that stops once the projection's
input is computed.

Every output projection is refit, also in layers where nothing was removed:
their inputs moved too.  Projections are matched by structure
(``bertc.analysis.structure``), so matmul kernels [in, out] and Keras'
einsum kernels [heads, head_size, hidden] are handled alike.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..ir.graph import Graph, Value
from ..ir.interpreter import run_graph
from .input_roles import input_role
from .structure import Projection, Structure, analyze_structure

log = logging.getLogger(__name__)

HOLDOUT = 5  # every 5th calibration sequence is held out to choose lam and check the fit
LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # multiples of the Gram matrix's mean diagonal
MIN_GAIN = 1e-3  # a fit is kept when it cuts the held-out error by more than this fraction (not round-off)


@dataclass
class SublayerFit:
    """What the refit of one projection did; errors are held-out ||Z W - Y||^2 / ||Y - mean Y||^2."""

    layer: int
    sublayer: str  # "attention" (output projection) or "ffn" (down projection)
    inputs: int  # rows of the kernel that were refit (kept heads * head_size, or kept neurons)
    tokens: int  # real tokens fitted on
    error_before: float
    error_after: float
    lam: float  # chosen ridge strength, as a multiple of the mean Gram diagonal
    applied: bool


class _Captured(Exception):
    """Stops ``run_graph`` once the value asked for is computed (later ops are not needed)."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        self.array = array


# ------------------------------------------------------------------ projections as matrices
def _einsum_letters(p: Projection) -> tuple[str, str, str, str]:
    """(input spec, output spec, contracted letters, kept kernel letters), both in kernel order."""
    from ..ops.linalg import parse_equation

    ins, out = parse_equation(p.op.attrs["equation"])
    kspec = ins[1]
    return ins[0], out, "".join(c for c in kspec if c not in out), "".join(c for c in kspec if c in out)


def _features_last(spec: str, features: str, a: np.ndarray) -> np.ndarray:
    """``a`` (laid out as ``spec``) as [other dims..., features flattened in ``features`` order]."""
    tokens = "".join(c for c in spec if c not in features)
    y = np.einsum(f"{spec}->{tokens}{features}", a)
    return y.reshape(y.shape[:len(tokens)] + (-1,))


def input_rows(p: Projection, x: np.ndarray) -> np.ndarray:
    """The projection's input as [token dims..., in_features], features in kernel order."""
    if p.op.kind != "einsum":
        return x
    xspec, _, contracted, _ = _einsum_letters(p)
    return _features_last(xspec, contracted, x)


def output_rows(p: Projection, y: np.ndarray) -> np.ndarray:
    """The projection's output as [token dims..., out_features], features in kernel order."""
    if p.op.kind != "einsum":
        return y
    _, out, _, kept = _einsum_letters(p)
    return _features_last(out, kept, y)


def kernel_matrix(p: Projection) -> np.ndarray:
    """The kernel as [in_features, out_features] (contracted axes first, in kernel order)."""
    k = p.kernel.const_value()
    ins, outs = p.kernel_axes()
    return np.transpose(k, ins + outs).reshape(p.in_features, p.out_features)


def set_kernel_matrix(graph: Graph, p: Projection, w: np.ndarray) -> None:
    """Write an [in_features, out_features] matrix back in the kernel's own layout and dtype."""
    from .prune_edit import replace_operand_const

    k = p.kernel.const_value()
    ins, outs = p.kernel_axes()
    perm = ins + outs
    arr = w.reshape([k.shape[a] for a in perm]).transpose(np.argsort(perm)).astype(k.dtype)
    replace_operand_const(graph, p.op, 1, np.ascontiguousarray(arr), "refit")


def set_bias(graph: Graph, p: Projection, b: np.ndarray) -> None:
    from .prune_edit import replace_operand_const

    old = p.bias.const_value()
    idx = [i for i, v in enumerate(p.bias_add.operands) if v is p.bias][0]
    replace_operand_const(graph, p.bias_add, idx, b.reshape(old.shape).astype(old.dtype), "refit")


# ------------------------------------------------------------------ token selection
def _token_weights(lead: tuple[int, ...], mask: np.ndarray | None, first_seq: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask over the flattened token dims, sequence index of each row) for rows [prod(lead)].

    Rows follow the graph's [batch, seq] layout, or its flattening [batch*seq];
    anything else counts every row, all as sequence ``first_seq``.
    """
    n = int(np.prod(lead, dtype=np.int64))
    if mask is not None and (tuple(lead) == mask.shape or n == mask.size):
        seq = np.broadcast_to(np.arange(mask.shape[0])[:, None] + first_seq, mask.shape)
        return mask.reshape(-1) > 0, seq.reshape(-1)
    return np.ones(n, dtype=bool), np.full(n, first_seq)


class _Sums:
    """Z^T Z, Z^T Y and Y stats for Z = [X 1] (or X when there is no bias), over fit and held-out rows."""

    def __init__(self, d_in: int, d_out: int, bias: bool) -> None:
        d = d_in + int(bias)
        self.bias = bias
        self.parts = {k: {"G": np.zeros((d, d)), "C": np.zeros((d, d_out)), "yy": 0.0,
                          "y": np.zeros(d_out), "n": 0} for k in ("fit", "held")}

    def add(self, x: np.ndarray, y: np.ndarray, held: np.ndarray) -> None:
        x = x.astype(np.float64)
        y = y.astype(np.float64)
        if self.bias:
            x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        for key, rows in (("fit", ~held), ("held", held)):
            if not rows.any():
                continue
            xs, ys, s = x[rows], y[rows], self.parts[key]
            s["G"] += xs.T @ xs
            s["C"] += xs.T @ ys
            s["yy"] += float((ys * ys).sum())
            s["y"] += ys.sum(0)
            s["n"] += int(rows.sum())

    def total(self) -> dict:
        f, h = self.parts["fit"], self.parts["held"]
        return {k: f[k] + h[k] for k in ("G", "C", "yy", "y", "n")}


def _error(s: dict, w: np.ndarray) -> float:
    """sum ||Z w - Y||^2 from the sums alone."""
    return float(np.einsum("ik,ij,jk->", w, s["G"], w) - 2.0 * np.einsum("ij,ij->", w, s["C"]) + s["yy"])


def _spread(s: dict) -> float:
    """sum ||Y - mean Y||^2: the error of predicting the mean, to make errors relative."""
    return max(s["yy"] - float(s["y"] @ s["y"]) / max(s["n"], 1), 1e-30)


def _ridge(s: dict, w0: np.ndarray, lam: float, d_in: int) -> np.ndarray:
    """argmin ||Z w - Y||^2 + lam ||w[:d_in] - w0[:d_in]||^2 (the bias row is not penalised)."""
    reg = np.zeros(len(w0))
    reg[:d_in] = lam
    a = s["G"] + np.diag(reg)
    b = s["C"] + reg[:, None] * w0
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def fit_projection(sums: _Sums, w0: np.ndarray, d_in: int) -> tuple[np.ndarray | None, float, float, float]:
    """(refit weights or None, held-out error before, after, chosen lam multiple)."""
    fit, held = sums.parts["fit"], sums.parts["held"]
    check = held if held["n"] else fit  # too few sequences to hold any out: judged on the fit data
    spread = _spread(check)
    before = _error(check, w0) / spread
    scale = float(np.mean(np.diag(fit["G"])[:d_in])) or 1.0
    best = (before, None, 0.0)
    for mult in LAMBDAS:
        w = _ridge(fit, w0, mult * scale, d_in)
        err = _error(check, w) / spread
        if np.isfinite(err) and err < best[0]:
            best = (err, w, mult)
    err, w, mult = best
    if w is None or err >= before * (1.0 - MIN_GAIN) - 1e-9:
        return None, before, before, 0.0
    total = sums.total()
    return _ridge(total, w0, mult * float(np.mean(np.diag(total["G"])[:d_in])), d_in), before, err, mult


# ------------------------------------------------------------------ the driver
def _sublayers(structure: Structure) -> dict[tuple[int, str], Projection]:
    out: dict[tuple[int, str], Projection] = {}
    for layer in structure.layers:
        if layer.attention is not None:
            out[(layer.index, "attention")] = layer.attention.o
        if layer.ffn is not None:
            out[(layer.index, "ffn")] = layer.ffn.down
    return out


def residual_of(p: Projection) -> Value | None:
    """The other operand of the residual add that the projection's output feeds, if it does."""
    users = p.out.users
    if len(users) != 1 or users[0].kind != "add":
        return None
    other = [v for v in users[0].operands if v is not p.out and not v.is_const()]
    return other[0] if len(other) == 1 and other[0].shape == p.out.shape else None


def _capture(graph: Graph, feeds: dict, values: list[Value]) -> list[np.ndarray]:
    """The arrays of ``values``, running ``graph`` only as far as needed."""
    want = {id(v): i for i, v in enumerate(values)}
    got: dict[int, np.ndarray] = {}

    def observe(v: Value, arr: np.ndarray) -> None:
        if id(v) in want:
            got[want[id(v)]] = arr
            if len(got) == len(want):
                raise _Captured(arr)

    try:
        run_graph(graph, feeds, observe=observe)
    except _Captured:
        return [got[i] for i in range(len(values))]
    raise ValueError(f"{[v.name for v in values]} were not all computed")


def reconstruct(graph: Graph, reference: Graph, calib=None, batch_size: int = 8,
                residual: bool = True, sublayers: tuple[str, ...] = ("attention", "ffn")) -> dict[str, Any]:
    """Refit every attention output and FFN down projection of ``graph`` towards ``reference``, in place.

    ``reference`` is the model before pruning (same inputs, same layers).  With
    ``residual`` (the default), where the projection feeds a residual add, the target
    is the reference's sum (sublayer output + residual) minus the pruned model's own
    residual: the sublayer also makes up for the drift of the layers before it.
    Returns a JSON-able report: the data used and one ``SublayerFit`` per projection.
    """
    from .importance import _calibration

    data, notes = _calibration(graph, calib)
    ref_subs = _sublayers(analyze_structure(reference))
    subs = _sublayers(analyze_structure(graph))
    keys = [k for k in subs if k in ref_subs and subs[k].out_features == ref_subs[k].out_features
            and k[1] in sublayers]
    skipped = [f"{k[1]} of layer {k[0]}" for k in subs if k not in keys and k[1] in sublayers]
    mask_name = next((n for n in data.input_names if input_role(n) == "mask"), None)
    batches = list(data.batches(batch_size))

    # reference outputs over real tokens, with which of those rows are held out, per sublayer and batch
    targets: dict[tuple[int, str], list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {k: [] for k in keys}
    res_ref = {k: residual_of(ref_subs[k]) if residual else None for k in keys}
    res = {k: residual_of(subs[k]) if res_ref[k] is not None else None for k in keys}
    watch = {id(ref_subs[k].out): (k, "out") for k in keys}
    watch.update({id(v): (k, "res") for k, v in res_ref.items() if v is not None and res[k] is not None})
    first = 0
    for feeds in batches:
        mask = feeds.get(mask_name) if mask_name else None
        got: dict[tuple, np.ndarray] = {}
        run_graph(reference, feeds, observe=lambda v, a: got.__setitem__(watch[id(v)], a) if id(v) in watch else None)
        for k in keys:
            # residual: the sublayer also makes up for how far the residual stream already drifted
            y = got[(k, "out")] + got[(k, "res")] if (k, "res") in got else got[(k, "out")]
            y = output_rows(ref_subs[k], y)
            keep, seq = _token_weights(y.shape[:-1], mask, first)
            held = (seq[keep] % HOLDOUT) == HOLDOUT - 1
            targets[k].append((y.reshape(-1, y.shape[-1])[keep].astype(np.float32), keep, held))
        first += len(next(iter(feeds.values())))

    fits: list[SublayerFit] = []
    for k in keys:
        p = subs[k]
        d_in, bias = p.in_features, p.bias is not None
        w0 = kernel_matrix(p).astype(np.float64)
        if bias:
            w0 = np.concatenate([w0, p.bias.const_value().reshape(1, -1).astype(np.float64)], axis=0)
        sums = _Sums(d_in, p.out_features, bias)
        for feeds, (y, keep, held) in zip(batches, targets[k]):
            if res[k] is not None:
                x, r = _capture(graph, feeds, [p.op.operands[0], res[k]])
                y = y - output_rows(p, r).reshape(-1, y.shape[-1])[keep]
            else:
                [x] = _capture(graph, feeds, [p.op.operands[0]])
            x = input_rows(p, x).reshape(-1, d_in)
            if len(x) != len(keep):
                raise ValueError(f"{k[1]} of layer {k[0]}: {len(x)} input rows, {len(keep)} reference rows")
            sums.add(x[keep], y, held)
        w, before, after, lam = fit_projection(sums, w0, d_in)
        if w is not None:
            set_kernel_matrix(graph, p, w[:d_in])
            if bias:
                set_bias(graph, p, w[d_in])
        fit = SublayerFit(k[0], k[1], d_in, sums.total()["n"], round(before, 6), round(after, 6), lam, w is not None)
        log.info("reconstruct %s", fit)
        fits.append(fit)
    if skipped:
        notes.append("not refit (no matching sublayer in the unpruned model): " + ", ".join(skipped))
    target = ("unpruned (sublayer output + residual) - pruned residual" if residual
              else "unpruned sublayer output")
    return {"data": data.source, "target": target, "holdout": f"every {HOLDOUT}th sequence", "notes": notes,
            "sublayers": [asdict(f) for f in fits]}
