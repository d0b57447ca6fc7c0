"""Activation ranges for quantization: streaming histograms and threshold searches.

``RangeObserver`` keeps, per tensor, its exact min and max and a fixed-size
histogram of |x| over [0, R].  When a batch exceeds R, R doubles as often as
needed and adjacent bins are summed pairwise, so re-binning is exact (no
count is smeared across bins) and memory stays ``BINS`` counts per tensor no
matter how much data flows through.  Activations are never stored.

A range is then chosen from what was observed (``choose_range``):

* ``minmax``: [min, max], exact.
* ``percentile``: symmetric: t = the p-th percentile of |x| (interpolated
  within its bin); the range is [-t, t] intersected with [min, max].
  Symmetric because int8 weights/activations in this compiler are symmetric
  and because one histogram of |x| then serves every method.
* ``entropy``: TensorRT's KL-divergence calibration on the |x| histogram:
  for each candidate threshold i (in bins), P = hist[:i] with the outliers
  hist[i:] added to its last bin, Q = hist[:i] merged into 128 levels and
  spread back uniformly over each level's non-empty bins; choose the i with
  the least KL(P || Q).  Every candidate builds its own P and Q (a classic bug
  is to modify the shared histogram in place, which makes all candidates after
  the first wrong).
* ``mse``: the t that minimises the expected squared error of symmetric int8
  quantization (scale t/127) over the histogram: rounding error inside
  [-t, t] plus clipping error outside it.

Every threshold is at most max |x|, so every range lies inside [min, max].

Keys (``value_keys``): a value is named ``"<loc primary>:<result index>"``,
with ``"#n"`` appended for the n-th later op (in graph order) whose location
has the same primary name.  Locations survive print/parse and most rewrites
(an inserted op with another location shifts no key), unlike printed SSA
names, which renumber whenever an op with the same name hint appears earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from bertc.ir import Graph, Value

BINS = 2048
METHODS = ("minmax", "percentile", "entropy", "mse")
_LEVELS = 128  # int8 has 128 magnitudes on each side


# ------------------------------------------------------------------ keys
def value_keys(graph: Graph) -> dict[int, str]:
    """id(value) -> its stable key, for every op result (see the module docstring)."""
    seen: dict[str, int] = {}
    keys: dict[int, str] = {}
    for op in graph.ops:
        primary = op.loc.primary
        n = seen.get(primary, 0)
        seen[primary] = n + 1
        for r in op.results:
            keys[id(r)] = f"{primary}:{r.index}" + (f"#{n}" if n else "")
    return keys


def lookup_range(graph: Graph, value: Value) -> tuple[float, float] | None:
    """The calibrated [lo, hi] of ``value`` from graph.analyses["calibration"], or None."""
    cal = graph.analyses.get("calibration")
    if not cal:
        return None
    r = cal["ranges"].get(value_keys(graph).get(id(value), ""))
    return (float(r[0]), float(r[1])) if r is not None else None


# ------------------------------------------------------------------ histograms
@dataclass
class TensorStats:
    """min, max, count and a histogram of |x| over [0, top] in BINS bins."""

    lo: float = float("inf")
    hi: float = float("-inf")
    count: int = 0
    top: float = 0.0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.float64))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        self.count += x.size
        a = np.abs(x)
        amax = float(a.max())
        if amax > self.top:
            self._grow(amax)
        if self.top == 0.0:  # everything seen so far is 0
            self.hist[0] += a.size
            return
        idx = np.minimum((a * (BINS / self.top)).astype(np.int64), BINS - 1)
        self.hist += np.bincount(idx, minlength=BINS)

    def _grow(self, amax: float) -> None:
        """Make top >= amax: the first time, top = amax; then double and merge bin pairs."""
        if self.top == 0.0:
            old = self.hist.sum()
            self.top = amax
            self.hist[:] = 0
            self.hist[0] = old  # zeros seen before any non-zero value
            return
        while self.top < amax:
            self.top *= 2
            merged = self.hist.reshape(BINS // 2, 2).sum(axis=1)
            self.hist[:] = 0
            self.hist[:BINS // 2] = merged

    @property
    def amax(self) -> float:
        return max(abs(self.lo), abs(self.hi)) if self.count else 0.0


def _percentile_threshold(s: TensorStats, pct: float) -> float:
    cdf = np.cumsum(s.hist)
    target = cdf[-1] * pct / 100.0
    i = int(np.searchsorted(cdf, target))
    i = min(i, BINS - 1)
    below = cdf[i - 1] if i else 0.0
    frac = (target - below) / s.hist[i] if s.hist[i] else 1.0
    return (i + frac) * s.top / BINS


def _entropy_threshold(s: TensorStats, stride: int = 16) -> float:
    """TensorRT-style KL minimisation over thresholds 128, 128 + stride, …, BINS bins."""
    hist = s.hist
    best_i, best_kl = BINS, np.inf
    for i in range(_LEVELS, BINS + 1, stride):
        kl = _kl_for(hist, i)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i * s.top / BINS


def _kl_for(hist: np.ndarray, i: int) -> float:
    p = hist[:i].copy()  # a fresh reference distribution per candidate
    p[i - 1] += hist[i:].sum()
    kept = hist[:i]
    edges = np.linspace(0, i, _LEVELS + 1).astype(np.int64)
    starts = edges[:-1]
    nonempty = (kept > 0).astype(np.float64)
    sums = np.add.reduceat(kept, starts)
    counts = np.add.reduceat(nonempty, starts)
    level = np.repeat(np.arange(_LEVELS), np.diff(edges))
    avg = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    q = np.where(kept > 0, avg[level], 0.0)
    return _kl(p, q)


def _kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    """KL(p || q) after smoothing zeros of q where p has mass (as TensorRT does)."""
    if p.sum() == 0:
        return 0.0
    p = p / p.sum()
    if q.sum() == 0:
        return np.inf
    q = q / q.sum()
    zeros = (q == 0) & (p > 0)
    if zeros.any():
        n_zero, n_nonzero = zeros.sum(), (q > 0).sum()
        if n_nonzero == 0:
            return np.inf
        q = q.copy()
        q[q > 0] -= eps * n_zero / n_nonzero
        q[zeros] = eps
        if (q < 0).any():
            return np.inf
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def _mse_threshold(s: TensorStats, candidates: int = 256, sub: int = 4) -> float:
    """argmin over t of the expected squared error of symmetric int8 (scale t / 127).

    Each bin stands for ``sub`` evenly spaced points (its counts split evenly):
    clipping error (x - t)^2 above t, rounding error (x - q(x))^2 below.  Where a
    point stands for a span wider than the quantization step, the rounding error
    is the uniform-noise scale^2 / 12 instead (a point would alias onto the grid).
    """
    width = s.top / BINS
    points = ((np.arange(BINS * sub) + 0.5) * (width / sub))
    n = np.repeat(s.hist, sub) / sub
    ts = np.linspace(s.top / candidates, s.top, candidates)
    best_t, best_err = s.top, np.inf
    for t in ts:
        scale = t / 127.0
        if width / sub >= scale:
            inside = np.full_like(points, scale * scale / 12)
        else:
            inside = (points - np.round(points / scale) * scale) ** 2
        err = float(np.sum(n * np.where(points > t, (points - t) ** 2, inside)))
        if err < best_err:
            best_t, best_err = float(t), err
    return best_t


def choose_range(s: TensorStats, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """The [lo, hi] ``method`` picks from what ``s`` observed; inside [min, max]."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: one of {', '.join(METHODS)}")
    if s.count == 0:
        return (0.0, 0.0)
    if method == "minmax" or s.top == 0.0:
        return (s.lo, s.hi)
    if method == "percentile":
        t = _percentile_threshold(s, percentile)
    elif method == "entropy":
        t = _entropy_threshold(s)
    else:
        t = _mse_threshold(s)
    t = min(t, s.amax)
    lo, hi = max(s.lo, -t), min(s.hi, t)
    if lo > hi:  # one-sided data wholly beyond t (e.g. a constant): keep its edge nearest 0
        lo = hi = s.lo if s.lo > 0 else s.hi
    return (lo, hi)


class RangeObserver:
    """An ``observe`` callback for ``run_graph``: f32 op results into per-key ``TensorStats``.

    ``select`` (optional) maps an observed array to the elements to count (real
    tokens only); it is set per batch by the caller.
    """

    def __init__(self, graph: Graph) -> None:
        keys = value_keys(graph)
        self.keys = {id(r): keys[id(r)] for op in graph.ops if op.kind != "const"
                     for r in op.results if r.dtype == "f32"}
        self.stats: dict[str, TensorStats] = {k: TensorStats() for k in self.keys.values()}
        self.select = None

    def __call__(self, value: Value, arr: np.ndarray) -> None:
        key = self.keys.get(id(value))
        if key is None:
            return
        self.stats[key].add(self.select(arr) if self.select is not None else arr)

    def ranges(self, method: str, percentile: float = 99.99) -> dict[str, list[float]]:
        return {k: [float(v) for v in choose_range(s, method, percentile)] for k, s in sorted(self.stats.items())}


def real_token_selector(lengths: Iterable[int], width: int):
    """A ``select`` that keeps real-token positions of arrays laid out by batch and sequence.

    Recognised layouts (b = batch, s = the padded width): [b, s, …];
    [b*s, …] (flattened tokens); [b, h, s, s] (attention scores: real query
    and key positions); [b, 1, 1, s] or [b, h, 1, s] (additive masks).  Anything
    else (pooled [b, hidden], logits) has no padded position and is kept whole.
    A dim that merely equals b or s by coincidence is taken as one: ranges then
    lose the padded rows of that tensor, never gain garbage.
    """
    lengths = np.asarray(list(lengths), np.int64)
    b = len(lengths)
    mask = np.arange(width)[None, :] < lengths[:, None]  # [b, s]
    if mask.all():
        return None

    def select(arr: np.ndarray) -> np.ndarray:
        sh = arr.shape
        if arr.ndim >= 2 and sh[0] == b and sh[1] == width:
            return arr[mask]
        if arr.ndim >= 1 and sh[0] == b * width and b > 1:
            return arr[mask.ravel()]
        if arr.ndim == 4 and sh[0] == b and sh[3] == width:
            if sh[2] == width:
                m = mask[:, None, :, None] & mask[:, None, None, :]
            elif sh[2] == 1:
                m = mask[:, None, None, :]
            else:
                return arr
            return arr[np.broadcast_to(m, sh)]
        return arr

    return select
