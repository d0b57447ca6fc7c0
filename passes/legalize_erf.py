"""Rewrite a lone erf into the rational function XLA and Eigen evaluate for f32 erf.

    erf(x) -> z = clamp(x, -4, 4);  t = z²
              z · P(t) / Q(t)
    P(t) = a1 + a3 t + a5 t² + a7 t³ + a9 t⁴ + a11 t⁵ + a13 t⁶
    Q(t) = b0 + b2 t + b4 t² + b6 t³ + b8 t⁴

with the coefficients of XLA's ``ErfImpl32`` (older Eigen releases evaluate the
same rational function), Horner-evaluated in f32.  |erf(4)| rounds to 1 in f32, so the
clamp loses nothing; NaN passes through the clamp and stays NaN; ±0 and
tiny x keep their sign (z · a1/b0).  Not bit-exact: measured over [-6, 6],
|error| < 4.3e-7 against the true erf and < 4.8e-7 against TF 2.21's own f32
kernel (itself 3e-7 from the true erf) -- a few f32 ulps of values in [-1, 1].

Only erf the target cannot run is rewritten: TFLite has no erf builtin (its
GELU is one; fuse_gelu turns BERT's 0.5·x·(1 + erf(x/√2)), and TF 2.21's
Erfc-based exact GELU after the importer's erfc = 1 - erf, into gelu first).
What is left is an erf used on its own.  ONNX has Erf, so with ``targets``
naming only onnx nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bertc.ir import Graph, Op, Value
from bertc.pass_manager import Pass, PassContext, register_pass

from bertc.ir.emitter import Emitter
from bertc.legalize import unsupported_on

CLAMP = 4.0
ALPHA = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
         -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)  # a1, a3, …, a13
BETA = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
        -1.45660718464996e-05)  # b0, b2, …, b8


def erf_f32(x: np.ndarray) -> np.ndarray:
    """The rewrite in numpy, in the same f32 operation order (tests compare with TF)."""
    f = np.float32
    z = np.minimum(np.maximum(x.astype(f), f(-CLAMP)), f(CLAMP))
    t = z * z
    return (z * _horner(t, ALPHA, f)) / _horner(t, BETA, f)


def _horner(t, coeffs, f):
    acc = np.full_like(t, f(coeffs[-1]))
    for c in reversed(coeffs[:-1]):
        acc = acc * t + f(c)
    return acc


def rewrite_erf(graph: Graph, op: Op) -> Value:
    emit = Emitter(graph, op)
    x = op.operands[0]
    dt = x.dtype
    z = emit("minimum", [emit("maximum", [x, emit.const(-CLAMP, dt, "low")], hint="above"),
                         emit.const(CLAMP, dt, "high")], hint="clamped")
    t = emit("mul", [z, z], hint="square")

    def horner(coeffs, name: str) -> Value:
        acc = emit.const(coeffs[-1], dt, f"{name}_{len(coeffs) - 1}")
        for i, c in reversed(list(enumerate(coeffs[:-1]))):
            acc = emit("add", [emit("mul", [acc, t], hint=f"{name}_t{i}"), emit.const(c, dt, f"{name}_{i}")],
                       hint=f"{name}{i}")
        return acc

    return emit("div", [emit("mul", [z, horner(ALPHA, "p")], hint="odd"), horner(BETA, "q")], hint="erf")


@register_pass
@dataclass(frozen=True)
class LegalizeErf(Pass):
    """Rewrite erf into XLA's f32 rational approximation where a target has no erf."""

    legalizes: ClassVar[tuple[str, ...]] = ("erf",)
    targets: str = "onnx,tflite"  # rewrite an erf when one of these cannot run it

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        changed = False
        for op in graph.ops_of("erf"):
            if op.operands[0].dtype != "f32" or not unsupported_on(op, self.targets):
                continue  # the coefficients are f32's; other dtypes stay for the report
            graph.replace_op(op, [rewrite_erf(graph, op)])
            changed = True
        return changed
