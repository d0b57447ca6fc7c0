"""Weight-only int8 quantization with activations quantized at run time ("dynamic").

    matmul(x, W)   ->  qmatmul(x, Wq, s, 0) {axis=1, act_dtype="u8"}
    gather(T, ids) ->  dequantize(gather(Tq, ids), s, 0) {axis=last}        (embeddings=true)

    Wq = clip(round_half_even(W / s), -127, 127) as int8, zero point 0 (symmetric),
    s = max|W[:, n]| / 127 per output column n (per_channel) or max|W| / 127 per tensor.

Every matmul whose kernel is a 2-D f32 constant is rewritten (Q, K, V, O, both FFN
projections, pooler and classifier); matmuls of two activations (attention scores
and context) stay float.  ``qmatmul`` quantizes its activation at run time with
parameters computed from the activation itself; ``act`` says how, so that the
reference interpreter computes what a runtime computes:

* ``u8_tensor`` (default): u8, asymmetric, one scale per tensor: onnxruntime's
  DynamicQuantizeLinear, which the ONNX target runs bit-exactly.  LiteRT
  quantizes per row (int8, asymmetric): a finer grid, so its activation error
  is within the IR's bound but not bit-equal to it.
* ``i8_row``: int8, asymmetric, one scale per row: LiteRT's hybrid
  FULLY_CONNECTED (XNNPACK), exact on the TFLite target up to float rounding;
  onnxruntime then quantizes more coarsely than the IR says.

"Exact" is per op: each qmatmul computes the same integers on its runtime as in
the reference interpreter.  Over a whole model, a 1-ulp difference in a float
op (GELU, layer norm) can move an activation across a rounding boundary, and
that one quantization step propagates through the later layers; measured, the
logits then differ by up to ~1% of their range, the order of the quantization
error itself.

``weight_bits=7`` rounds the kernels to q in [-63, 63] (scale max|W| / 63): twice the
weight error, for onnxruntime's faster integer kernels on x86.  Its u8 x s8 kernel
(``vpmaddubsw``) adds pairs of u8 * s8 products into int16, which saturates on full
int8 weights (255 * 127 * 2 > 32767) on CPUs without VNNI; with |q| <= 64 the pair
sums fit (255 * 64 * 2 = 32640), so the ONNX target then stores the kernel as s8 and
gets that path exactly.  With 8-bit weights it stores the kernel shifted into u8 (u8 x u8
kernels: exact everywhere, slower).  Measured on BERT-base, AVX2 without VNNI
(benchmarks/speed.py, three runs, docs/performance.md): 0.84-0.86x the 8-bit time at
128 tokens, 0.89-0.93x at 16; Sara macro-F1 0.8770 -> 0.8737 on ONNX.  LiteRT takes
either; 7 bits only lose precision there.

Embedding tables (embeddings=true) are weight-only: gather reads int8 rows
and only those rows are dequantized (gather commutes with a dequantize that is
per tensor or along the hidden axis), so the runtimes never hold a float copy.
Tables read by anything but gathers stay float.

Numerics change on purpose, so the pass declares its own verification bound
(``fidelity``, see ``bertc.fidelity``) instead of the exact 1e-4 check.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from bertc.ir import Graph, Op, Value
from bertc.pass_manager import Pass, PassContext, register_pass
from bertc.fidelity import Fidelity

log = logging.getLogger(__name__)

KNOWN_OPS = ("matmul",)  # ops= may grow (einsum, conv …) as issue 6 goes on
ACT_SCHEMES: dict[str, dict] = {
    "u8_tensor": {"act_dtype": "u8", "act_symmetric": False, "act_per_row": False},
    "i8_row": {"act_dtype": "i8", "act_symmetric": False, "act_per_row": True},
}


WEIGHT_BITS = (7, 8)


def check_weight_bits(bits: int) -> None:
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight_bits={bits!r}: use 8 (q in [-127, 127], the default) or 7 (q in [-63, 63]: "
                         "onnxruntime's faster u8 x s8 kernels, exact on every x86 CPU)")


def quantize_symmetric(w: np.ndarray, axis: int | None, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``w``: (q, scale), with one scale per index of ``axis`` (the
    max over every other axis) or one per tensor.  q is in [-qmax, qmax], qmax =
    2**(bits-1) - 1: 127 for 8 bits, so that -q never overflows and XNNPACK's int8
    kernels take it; 63 for 7 bits (see QuantInt8.weight_bits).  An all-zero slice
    gets scale 1 (any scale represents it exactly)."""
    check_weight_bits(bits)
    qmax = np.float32(2 ** (bits - 1) - 1)
    w = np.asarray(w, np.float32)
    reduce = None if axis is None else tuple(i for i in range(w.ndim) if i != axis)
    amax = np.abs(w).max(axis=reduce).astype(np.float32)
    scale = np.where(amax > 0, amax / qmax, np.float32(1)).astype(np.float32)
    shaped = scale if axis is None else scale.reshape([-1 if i == axis else 1 for i in range(w.ndim)])
    q = np.clip(np.rint(w / shaped), -qmax, qmax).astype(np.int8)
    return q, scale


def _ops_list(spec: str) -> tuple[str, ...]:
    names = tuple(n for n in re.split(r"[\s,+|\[\]]+", spec) if n)
    unknown = [n for n in names if n not in KNOWN_OPS]
    if unknown or not names:
        raise ValueError(f"ops={spec!r}: quant_int8 quantizes {', '.join(KNOWN_OPS)} "
                         f"(unknown: {', '.join(unknown) or 'none given'})")
    return names


@register_pass
@dataclass(frozen=True)
class QuantInt8(Pass):
    """int8 weights (per output channel), activations quantized at run time; optional int8 embeddings."""

    per_channel: bool = True
    embeddings: bool = False
    ops: str = "matmul"
    act: Literal["u8_tensor", "i8_row"] = "u8_tensor"
    weight_bits: int = 8

    # Measured on the tiny test BERT (tests/test_quant.py) and BERT-sized stacks
    # (benchmarks/quantization.py): logits move by 1-3% of their range.  On
    # all-MiniLM-L6-v2's 384-d sentence embeddings: 13-20% of the range on
    # single dims, yet every row's cosine to float >= 0.97 (bertc demo).  So the
    # bound is row cosine (logits and embeddings alike) plus a loose range check;
    # argmax agreement is left to --max-drop (argmax over embedding dims means nothing).
    fidelity: ClassVar[Fidelity] = Fidelity(
        max_rel_error=0.3, min_cosine=0.95,
        reason="quant_int8: int8 weights, activations quantized at run time")

    def __post_init__(self) -> None:
        _ops_list(self.ops)
        if self.act not in ACT_SCHEMES:
            raise ValueError(f"act={self.act!r}: one of {', '.join(ACT_SCHEMES)}")
        check_weight_bits(self.weight_bits)

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.ir.dce import eliminate_dead_code

        _, bytes_before = graph.num_parameters()
        roles = _roles(graph)
        done: dict[str, int] = {}
        cache: dict[tuple[int, int], tuple[Value, Value, Value]] = {}
        if "matmul" in _ops_list(self.ops):
            for op in graph:
                if _eligible_matmul(op):
                    self._rewrite_matmul(graph, op, cache)
                    role = roles.get(id(op), "other")
                    done[role] = done.get(role, 0) + 1
        gathers = 0
        if self.embeddings:
            for op in graph:
                if _eligible_gather(op):
                    self._rewrite_gather(graph, op, cache)
                    gathers += 1
        eliminate_dead_code(graph)
        _, bytes_after = graph.num_parameters()
        ctx.report["quant_int8"] = {"matmuls": sum(done.values()), "by_role": done, "gathers": gathers,
                                    "weight_bytes_before": bytes_before, "weight_bytes_after": bytes_after}
        log.info("quant_int8: %d matmuls %s, %d gathers; weights %d -> %d bytes", sum(done.values()),
                 done, gathers, bytes_before, bytes_after)
        return bool(done) or gathers > 0

    # ------------------------------------------------------------------ rewrites
    def _quantized(self, graph: Graph, w: Value, axis: int | None, bits: int, before: Op,
                   cache: dict[tuple[int, int], tuple[Value, Value, Value]]) -> tuple[Value, Value, Value]:
        """(int8 weight, scale, zero point) constants for the float constant ``w``, made once
        per weight and width (a kernel shared by two ops stays one tensor)."""
        key = (id(w), bits)
        if key not in cache:
            q, scale = quantize_symmetric(w.const_value(), axis, bits)
            name, loc = w.producer.attrs["name"], w.producer.loc
            cache[key] = (graph.const(q, f"{name}_int8", loc, before=before),
                          graph.const(scale, f"{name}_scale", loc, before=before),
                          graph.const(np.zeros_like(q, shape=scale.shape), f"{name}_zero_point", loc,
                                      before=before))
        return cache[key]

    def _rewrite_matmul(self, graph: Graph, op: Op, cache) -> None:
        x, w = op.operands
        q, scale, zero = self._quantized(graph, w, 1 if self.per_channel else None, self.weight_bits, op, cache)
        attrs = {"axis": 1 if self.per_channel else None, **ACT_SCHEMES[self.act]}
        new = graph.add("qmatmul", [x, q, scale, zero], attrs, op.loc, op.result.name, before=op)
        graph.replace_op(op, [new.result])

    def _rewrite_gather(self, graph: Graph, op: Op, cache) -> None:
        table, ids = op.operands
        axis = 1 if self.per_channel else None
        q, scale, zero = self._quantized(graph, table, axis, 8, op, cache)  # gathers gain nothing from 7 bits
        rows = graph.add("gather", [q, ids], {"axis": 0}, op.loc, f"{op.result.name}_int8", before=op)
        out_axis = None if axis is None else rows.result.type.rank - 1
        new = graph.add("dequantize", [rows.result, scale, zero], {"axis": out_axis}, op.loc,
                        op.result.name, before=op)
        graph.replace_op(op, [new.result])


def _eligible_matmul(op: Op) -> bool:
    """x @ W with W a 2-D f32 constant and x computed at run time."""
    if op.kind != "matmul":
        return False
    x, w = op.operands
    return (w.is_const() and w.dtype == "f32" and w.type.rank == 2 and not x.is_const()
            and x.dtype == "f32")


def _eligible_gather(op: Op) -> bool:
    """An embedding lookup: rows of a 2-D f32 constant table that only gathers read."""
    if op.kind != "gather" or op.attrs["axis"] not in (0, -2):
        return False
    table = op.operands[0]
    return (table.is_const() and table.dtype == "f32" and table.type.rank == 2
            and all(user.kind == "gather" and i == 0 for user, i in table.uses))


def _roles(graph: Graph) -> dict[int, str]:
    """id(matmul op) -> its role in the transformer (attention.q … ffn.down), for the report."""
    from bertc.analysis.structure import analyze_structure

    had = "structure" in graph.analyses
    saved = graph.analyses.get("structure")
    try:
        structure = analyze_structure(graph)
    except Exception as e:  # the report is best effort; quantization does not depend on it
        log.debug("structure analysis failed: %s", e)
        return {}
    finally:
        if had:
            graph.analyses["structure"] = saved
        else:
            graph.analyses.pop("structure", None)
    roles: dict[int, str] = {}
    for layer in structure.layers:
        if layer.attention is not None:
            for k in "qkvo":
                roles[id(getattr(layer.attention, k).op)] = f"attention.{k}"
        if layer.ffn is not None:
            roles[id(layer.ffn.up.op)] = "ffn.up"
            roles[id(layer.ffn.down.op)] = "ffn.down"
    return roles
