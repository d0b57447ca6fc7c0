"""Magnitude pruning of individual weights: zeros in dense kernels (unstructured sparsity).

    prune_weights{sparsity=0.5}                        half of every dense kernel's weights set to 0
    prune_weights{sparsity=0.8,exclude="classifier|pooler"}

In every matmul/einsum kernel (a constant of rank >= 2; embedding tables are
not kernels) the ``sparsity`` fraction of weights with the smallest |w| become
exactly 0.  ``exclude`` is a regular expression; kernels whose weight name or
location matches it are left alone.

What this buys, honestly:

* Speed: none.  The shapes do not change, and both runtimes run dense GEMMs:
  onnxruntime's CPU MatMul has no sparse-weight path (a sparse initializer is
  densified when the session loads), and LiteRT's default CPU path (XNNPACK)
  multiplies dense weights.  Zeros cost exactly what other numbers cost.
  ``prune_heads`` and ``prune_neurons`` are the passes that make models faster.
* Size: the artifacts (.onnx, .tflite) store dense float32 arrays, so the files
  do not shrink either; what shrinks is the *compressed* file (gzip, zip, an
  app store's download), because runs of zeros compress.  The report gives the
  kernels' bytes raw and gzip'd, before and after.
* LiteRT sparse tensors: the TFLite schema can store a constant as a sparse
  tensor (``SparsityParameters``: traversal order, block map, CSR-style
  ``DimensionMetadata``), and LiteRT's built-in FULLY_CONNECTED float kernel has
  sparse paths for such weights (random sparsity, and 1x4 blocks).  That needs
  the lowering to emit sparse weight tensors (bertc's TFLite target does not)
  and the op to run outside XNNPACK; speed-ups appear only at high sparsity, and
  for 1x4 blocks rather than scattered zeros.  Other ops need a DENSIFY op in
  front, which gives back the memory.  So this pass is a size/compressibility
  tool and a research baseline, not a latency tool.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertc.analysis.prune_edit import replace_operand_const
from bertc.ir import Graph, Op
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.fidelity import Fidelity


def dense_kernels(graph: Graph, exclude: str = "") -> list[tuple[Op, int]]:
    """(matmul/einsum op, kernel operand index) for every constant float kernel of rank >= 2."""
    pattern = re.compile(exclude) if exclude else None
    out = []
    for op in graph.ops:
        if op.kind not in ("matmul", "einsum") or len(op.operands) != 2:
            continue
        for i, v in enumerate(op.operands):
            c = v.const_value()
            if c is None or c.ndim < 2 or c.dtype.kind != "f":
                continue
            name = v.producer.attrs["name"]
            if pattern is not None and (pattern.search(name) or any(pattern.search(n) for n in op.loc.names)):
                continue
            out.append((op, i))
    return out


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """True where a weight is kept: all but the floor(sparsity * size) smallest |w|."""
    k = int(np.floor(sparsity * w.size))
    keep = np.ones(w.size, dtype=bool)
    if k > 0:
        keep[np.argpartition(np.abs(w).reshape(-1), k - 1)[:k]] = False
    return keep.reshape(w.shape)


def gzip_size(arrays: list[np.ndarray], level: int = 6) -> int:
    """Bytes of the arrays' raw float data after zlib/gzip compression (streamed)."""
    comp = zlib.compressobj(level)
    n = 0
    for a in arrays:
        n += len(comp.compress(np.ascontiguousarray(a).tobytes()))
    return n + len(comp.flush())


@register_pass
@dataclass(frozen=True)
class PruneWeights(Pass):
    """Zero the smallest-magnitude weights of dense kernels (smaller when compressed, not faster)."""

    sparsity: float = 0.5
    exclude: str = ""
    measure_size: bool = True


    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity={self.sparsity} must be in [0, 1)")
        if self.exclude:
            try:
                re.compile(self.exclude)
            except re.error as e:
                raise ValueError(f"exclude={self.exclude!r} is not a regular expression: {e}") from None

    @property
    def fidelity(self) -> Fidelity | None:
        if self.sparsity == 0.0:
            return None
        return Fidelity(reason=f"{self.spec()} zeroes {self.sparsity:.0%} of the dense weights on purpose")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if self.sparsity == 0.0:
            return False
        kernels = dense_kernels(graph, self.exclude)
        before = [op.operands[i].const_value() for op, i in kernels]
        after, per_tensor = [], {}
        for (op, i), w in zip(kernels, before):
            pruned = np.where(magnitude_mask(w, self.sparsity), w, np.zeros((), w.dtype)).astype(w.dtype)
            replace_operand_const(graph, op, i, pruned, suffix="sparse")
            after.append(pruned)
            name = op.operands[i].producer.attrs["name"]
            per_tensor[name] = round(float((pruned == 0).mean()), 4)
        total = sum(w.size for w in before)
        rep: dict[str, Any] = {
            "spec": self.spec(), "criterion": "magnitude |w|, per tensor", "kernels": len(kernels),
            "weights": int(total), "zeros_before": int(sum(int((w == 0).sum()) for w in before)),
            "zeros_after": int(sum(int((w == 0).sum()) for w in after)),
            "sparsity_per_kernel": per_tensor,
            "speed": "none expected: dense kernels (onnxruntime MatMul, LiteRT FULLY_CONNECTED via XNNPACK) "
                     "multiply zeros like any other weight; shapes are unchanged",
            "tflite_sparse_tensors": "not emitted: LiteRT's builtin float FULLY_CONNECTED has sparse-weight "
                                     "kernels (random and 1x4-block SparsityParameters), but bertc's TFLite "
                                     "target stores weights dense and XNNPACK runs dense weights",
        }
        if self.measure_size and kernels:
            raw = sum(w.nbytes for w in before)
            g0, g1 = gzip_size(before), gzip_size(after)
            rep["kernel_bytes"] = {"raw": int(raw), "gzip_before": g0, "gzip_after": g1,
                                   "gzip_ratio": round(g1 / g0, 4) if g0 else None}
        ctx.report[self.name] = rep
        return bool(kernels)
