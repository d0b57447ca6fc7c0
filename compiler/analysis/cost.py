"""What a graph costs: parameters and matmul FLOPs at given sequence lengths, from shapes alone.

Pruning passes report these before and after (batch 1, at the calibration lengths); the
pruning benchmark reads ``matmul_flops`` for the FLOP ratio it compares latency with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertc.ir import Graph, Op
from bertc.ir.types import is_static

DEFAULT_SEQ = 128  # FLOPs are reported here when there is no calibration data


def _resolve(shape: tuple, dims: dict[str, int]) -> tuple | None:
    """A symbolic shape with named dims substituted; None when a dim stays unknown."""
    out = []
    for d in shape:
        if is_static(d):
            out.append(int(d))
            continue
        if d == "?":
            return None
        n = 1
        for part in str(d).split("*"):
            n *= int(part) if part.isdigit() else dims.get(part, dims.get("seq", 1))
        out.append(n)
    return tuple(out)


def _op_flops(op: Op, dims: dict[str, int]) -> int | None:
    if op.kind == "matmul":
        out, a = _resolve(op.result.shape, dims), _resolve(op.operands[0].shape, dims)
        if out is None or a is None:
            return None
        return 2 * int(np.prod(out, dtype=np.int64)) * a[-1]
    if op.kind == "einsum":
        from bertc.ops.linalg import parse_equation

        ins, _ = parse_equation(op.attrs["equation"])
        sizes: dict[str, int] = {}
        for spec, v in zip(ins, op.operands):
            shape = _resolve(v.shape, dims)
            if shape is None:
                return None
            for c, n in zip(spec, shape):
                sizes[c] = max(sizes.get(c, 1), n)
        return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))
    if op.kind == "qmatmul":  # quantized matmul, when quant passes ran first
        out, a = _resolve(op.result.shape, dims), _resolve(op.operands[0].shape, dims)
        return None if out is None or a is None else 2 * int(np.prod(out, dtype=np.int64)) * a[-1]
    return None


def matmul_flops(graph: Graph, seq: int, batch: int = 1) -> int:
    """2 * multiply-adds of every matmul/einsum at (batch, seq), from shapes (elementwise ops not counted)."""
    dims = {"batch": batch, "seq": seq}
    return sum(_op_flops(op, dims) or 0 for op in graph.ops)


def cost(graph: Graph, seqs: list[int]) -> dict[str, Any]:
    n, b = graph.num_parameters()
    return {"parameters": n, "parameter_bytes": b,
            "flops": {str(s): matmul_flops(graph, s) for s in seqs}}


def cost_change(before: dict, after: dict) -> dict[str, Any]:
    """Before/after parameters and FLOPs, with the ratios after/before."""
    flops = {}
    for s, f0 in before["flops"].items():
        f1 = after["flops"][s]
        flops[s] = {"before": f0, "after": f1, "ratio": round(f1 / f0, 4) if f0 else None}
    p0, p1 = before["parameters"], after["parameters"]
    return {"parameters": {"before": p0, "after": p1, "ratio": round(p1 / p0, 4) if p0 else None,
                           "bytes_before": before["parameter_bytes"], "bytes_after": after["parameter_bytes"]},
            "flops_batch1": flops}


def report_seqs(calib) -> list[int]:
    lens = calib.seq_lengths() if calib is not None and hasattr(calib, "seq_lengths") else []
    return lens or [DEFAULT_SEQ]


def report_seqs(calib) -> list[int]:
    """The sequence lengths a report counts FLOPs at: the calibration data's, else DEFAULT_SEQ."""
    lens = calib.seq_lengths() if calib is not None and hasattr(calib, "seq_lengths") else []
    return lens or [DEFAULT_SEQ]
