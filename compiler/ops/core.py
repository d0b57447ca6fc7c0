"""The constant op: weights and small literals alike."""

from __future__ import annotations

import numpy as np

from ..ir.registry import Attr, define
from ..ir.types import TensorType


def _const_sym(op):
    v = op.attrs["value"]
    if v.dtype.kind in "iu" and v.ndim <= 1 and v.size <= 64:
        return [tuple(int(x) for x in np.atleast_1d(v))]
    return None


define("const", (), lambda op: TensorType.of(op.attrs["value"]), lambda attrs: attrs["value"],
       attrs={"value": Attr("array"), "name": Attr("str", "cst")}, sym=_const_sym,
       doc="a constant tensor; large ones print as @name and are stored beside the text")
