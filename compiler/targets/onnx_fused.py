"""The ONNX target's lowerings of the fused ops (skip_layer_norm, bias_gelu, multi_head_attention)
to onnxruntime's contrib kernels (com.microsoft, opset 1).

onnxruntime 1.32 fuses MatMul+Add+Gelu into BiasGelu by itself at ORT_ENABLE_ALL, but
not Add+LayerNormalization on bertc's graphs (symbolic shapes), hence the explicit op.
``lower(graph, contrib=False)`` spells them in standard ONNX instead (Add +
LayerNormalization, Add + Gelu): the fallback for runtimes without the contrib domain.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Op
from .onnx_emitter import MS_DOMAIN, Emitter, Lowering

def _lower_skip_layer_norm(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """SkipLayerNormalization(input, skip, gamma, beta[, bias]) -> output 0 (the normed sum)."""
    if not e.contrib:
        s = e.node("Add", ins[:2])
        if len(ins) > 4:
            s = e.node("Add", [s, ins[4]])
        e.node("LayerNormalization", [s, ins[2], ins[3]], outs, axis=-1, epsilon=op.attrs["epsilon"])
        return
    e.node("SkipLayerNormalization", ins, outs, domain=MS_DOMAIN, epsilon=op.attrs["epsilon"])


def _lower_bias_gelu(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """BiasGelu(x, bias) is the erf form; FastGelu(x, bias) is the tanh form
    0.5x(1 + tanh(0.7978845608 (x + 0.044715 x^3))), the same formula as gelu(approximate='tanh')."""
    if not e.contrib:
        e.node("Gelu", [e.node("Add", ins)], outs, approximate=op.attrs["approximate"])
        return
    e.node("BiasGelu" if op.attrs["approximate"] == "none" else "FastGelu", ins, outs, domain=MS_DOMAIN)


def _lower_attention(e: Emitter, op: Op, ins: list[str], outs: list[str]) -> None:
    """MultiHeadAttention(q, k, v, -, -, attention_bias) {num_heads, scale}.  onnxruntime wants
    the bias as [batch or 1, heads or 1, seq, kv_seq]; BERT's mask is [batch, 1, 1, kv_seq], so it
    is expanded along the query axis once per mask and shared by every layer."""
    inputs = ins[:3]
    if len(ins) > 3:
        mask = op.operands[3]
        if mask.shape[2] == op.operands[0].shape[1]:
            inputs += ["", "", ins[3]]
        else:
            cache = e.shared
            key = ("expanded_mask", ins[3], str(op.operands[0].shape[1]))
            if key not in cache:
                seq = e.node("Shape", [ins[0]], start=1, end=2)
                shape = e.node("Concat", [e.const(np.array([1, 1], np.int64)), seq, e.const(np.array([1], np.int64))],
                               axis=0)
                cache[key] = e.node("Expand", [ins[3], shape])
            inputs += ["", "", cache[key]]
    e.node("MultiHeadAttention", inputs, outs, domain=MS_DOMAIN, num_heads=int(op.attrs["num_heads"]),
           scale=float(op.attrs["scale"]))


FUSED_LOWERINGS: dict[str, Lowering] = {"skip_layer_norm": _lower_skip_layer_norm, "bias_gelu": _lower_bias_gelu,
                                        "multi_head_attention": _lower_attention}
