"""Vector-Jacobian rules for the indexing ops foreign graphs use between a tap and the loss.

gather_nd, the scatters, pad, tile, reduce_max/min, avg_pool/max_pool, and the
piecewise-constant rounding ops.  Importing this module registers them in ``autodiff.VJP``.
Integer operands (indices, shapes) never need a gradient: ``autodiff``'s
liveness only follows float values.
"""

from __future__ import annotations

import numpy as np

from .autodiff import NoGradient, rule


def _rows(idx: np.ndarray) -> tuple[np.ndarray, int]:
    k = idx.shape[-1]
    return idx.reshape(-1, k).astype(np.int64), k


@rule("gather_nd")
def _gather_nd(op, xs, y, g, need):
    data, idx = xs
    rows, k = _rows(idx)
    out = np.zeros(data.shape, dtype=np.float64)
    np.add.at(out, tuple(rows.T), g.reshape(len(rows), *data.shape[k:]))
    return [out, None]


def _at(g: np.ndarray, idx: np.ndarray, shape) -> np.ndarray:
    """g read at each index row: the gradient an update (or a gathered slice) receives."""
    rows, k = _rows(idx)
    return g[tuple(rows.T)].reshape(*idx.shape[:-1], *g.shape[k:]).reshape(shape)


@rule("scatter_nd")
def _scatter_nd(op, xs, y, g, need):
    return [None, _at(g, xs[0], xs[1].shape)] + [None] * (len(xs) - 2)


@rule("scatter_nd_add")
def _scatter_nd_add(op, xs, y, g, need):
    return [g, None, _at(g, xs[1], xs[2].shape)]


@rule("scatter_nd_update")
def _scatter_nd_update(op, xs, y, g, need):
    data, idx, upd = xs
    rows, _ = _rows(idx)
    kept = np.array(g, dtype=np.float64, copy=True)
    kept[tuple(rows.T)] = 0.0  # overwritten slices pass nothing back to data
    return [kept, None, _at(g, idx, upd.shape)]


@rule("pad")
def _pad(op, xs, y, g, need):
    x = xs[0]
    pairs = np.asarray(op.attrs["pads"]).reshape(-1, 2) if op.attrs["pads"] is not None else np.asarray(xs[1])
    index = tuple(slice(int(b), int(b) + n) for (b, _), n in zip(pairs, x.shape))
    return [g[index]] + [None] * (len(xs) - 1)


@rule("tile")
def _tile(op, xs, y, g, need):
    x = xs[0]
    reps = op.attrs["repeats"] if op.attrs["repeats"] is not None else [int(r) for r in np.atleast_1d(xs[1])]
    split = g.reshape([d for r, n in zip(reps, x.shape) for d in (r, n)])
    return [split.sum(axis=tuple(range(0, 2 * x.ndim, 2)))] + [None] * (len(xs) - 1)


@rule("reduce_max", "reduce_min")
def _reduce_extreme(op, xs, y, g, need):
    """To the elements equal to the extreme, split evenly among ties (as TF's reduce_max)."""
    x = xs[0]
    axes = tuple(sorted({a % x.ndim for a in op.attrs["axes"]}))
    keep = y if op.attrs["keepdims"] else np.expand_dims(y, axes)
    gk = g if op.attrs["keepdims"] else np.expand_dims(g, axes)
    hit = (x == keep).astype(np.float64)
    return [hit * gk / hit.sum(axis=axes, keepdims=True)]


@rule("floor", "ceil", "round", "sign")
def _piecewise_constant(op, xs, y, g, need):
    return [np.zeros(xs[0].shape, dtype=np.float64)]


@rule("mod")
def _mod(op, xs, y, g, need):
    if need[1]:
        raise NoGradient("mod by a value on the path to the loss")
    return [g, None]


@rule("avg_pool", "max_pool")
def _pool(op, xs, y, g, need):
    """Each output's gradient goes back over its window: split evenly among the elements inside
    the input (avg_pool), or to the window's first largest element (max_pool, as TF)."""
    from ..ops.pooling import window

    (x,) = xs
    (kh, kw), (sh, sw), pad = op.attrs["ksize"], op.attrs["strides"], op.attrs["padding"]
    n, h, w, c = x.shape
    (oh, ph), (ow, pw) = window(h, kh, sh, pad), window(w, kw, sw, pad)
    dx = np.zeros(x.shape, np.float64)
    for i in range(oh):
        r0, r1 = max(i * sh - ph, 0), min(i * sh - ph + kh, h)
        for j in range(ow):
            c0, c1 = max(j * sw - pw, 0), min(j * sw - pw + kw, w)
            gij = g[:, i, j, :]
            if op.kind == "avg_pool":
                dx[:, r0:r1, c0:c1, :] += gij[:, None, None, :] / ((r1 - r0) * (c1 - c0))
                continue
            win = x[:, r0:r1, c0:c1, :].reshape(n, -1, c)
            first = win.argmax(axis=1)  # [n, c]: the first largest element, in row-major order
            rows, cols = np.divmod(first, c1 - c0)
            bi, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
            np.add.at(dx, (bi, r0 + rows, c0 + cols, ci), gij)
    return [dx]
