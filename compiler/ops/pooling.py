"""Window pooling over the two middle axes of an NHWC tensor: ``avg_pool`` and ``max_pool``.

TF's AvgPool / MaxPool (``tf.nn.avg_pool1d`` expands to them; Funnel pools the
sequence by two between its blocks).  ``padding="SAME"`` pads the end one more
than the start when the total is odd, and an average counts only the elements
inside the input (as TF, ONNX's ``count_include_pad=0`` and LiteRT do).
"""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, OpError, define
from ..ir.types import FLOAT_DTYPES, UNKNOWN, TensorType, is_static
from ._util import t


def window(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) of one axis."""
    if padding == "SAME":
        out = -(-size // s)
        return out, max((out - 1) * s + k - size, 0) // 2
    return max(-(-(size - k + 1) // s), 0), 0


def _pool_type(op) -> TensorType:
    x = t(op)
    n, h, w, c = x.shape
    dims = [n]
    for d, k, s in zip((h, w), op.attrs["ksize"], op.attrs["strides"]):
        if is_static(d):
            dims.append(window(int(d), k, s, op.attrs["padding"])[0])
        elif k == 1 and s == 1:
            dims.append(d)
        else:
            dims.append(UNKNOWN)
    return TensorType(x.dtype, (*dims, c))


def _verify(op) -> None:
    x = t(op)
    if x.rank != 4:
        raise OpError(f"{op.kind} takes an NHWC tensor of rank 4, got {x}")
    if x.dtype not in FLOAT_DTYPES:
        raise OpError(f"{op.kind} needs a float input, got {x}")
    for key in ("ksize", "strides"):
        if len(op.attrs[key]) != 2 or min(op.attrs[key]) < 1:
            raise OpError(f"{op.kind}'s {key} must be two positive ints (height, width), got {op.attrs[key]}")
    if op.attrs["padding"] not in ("SAME", "VALID"):
        raise OpError(f"{op.kind}'s padding must be SAME or VALID, got {op.attrs['padding']!r}")


def _kernel(reduce):
    def kernel(attrs, x):
        (kh, kw), (sh, sw), pad = attrs["ksize"], attrs["strides"], attrs["padding"]
        n, h, w, c = x.shape
        (oh, ph), (ow, pw) = window(h, kh, sh, pad), window(w, kw, sw, pad)
        out = np.empty((n, oh, ow, c), x.dtype)
        for i in range(oh):
            r0 = i * sh - ph
            for j in range(ow):
                c0 = j * sw - pw
                win = x[:, max(r0, 0):min(r0 + kh, h), max(c0, 0):min(c0 + kw, w), :]
                out[:, i, j, :] = reduce(win.astype(np.float64), axis=(1, 2))
        return out
    return kernel


_ATTRS = {"ksize": Attr("ints", doc="window (height, width)"), "strides": Attr("ints", doc="(height, width)"),
          "padding": Attr("str", "VALID", doc="SAME or VALID, as TF")}
define("avg_pool", ("x",), _pool_type, _kernel(np.mean), attrs=_ATTRS, verify=_verify,
       doc="mean over each window of axes 1 and 2 (NHWC), padding not counted (TF AvgPool)")
define("max_pool", ("x",), _pool_type, _kernel(np.max), attrs=_ATTRS, verify=_verify,
       doc="max over each window of axes 1 and 2 (NHWC) (TF MaxPool)")
