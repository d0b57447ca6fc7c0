"""What LiteRT 2.x's builtin kernels (and XNNPACK, which takes float ops over) run: dtypes and ranks,
measured op by op with tests/test_target_tflite.py.  Other dtypes (f16, f64, unquantized i8/u8/i16)
need a pass to rewrite them first.  tflite.py builds the target's capability table from these."""

from __future__ import annotations

from typing import Callable

from ..ir.graph import Op

LITE_DTYPES = frozenset({"f32", "i32", "i64", "bool"})
MAX_RANK = 6  # XNNPACK and several kernels refuse 7-D tensors
F32 = frozenset({"f32"})
F32_I32 = frozenset({"f32", "i32"})
NUMERIC = frozenset({"f32", "i32", "i64"})
Check = Callable[[Op], "str | None"]


def tensor_limits(op: Op) -> str | None:
    """Every operand and result: a dtype LiteRT computes in, and at most MAX_RANK dims."""
    for v in (*op.operands, *op.results):
        if v.dtype not in LITE_DTYPES:
            return f"{op.kind} on {v.dtype}: tflite lowers {'/'.join(sorted(LITE_DTYPES))} tensors only"
        if v.type.rank > MAX_RANK:
            return f"{op.kind} on a rank-{v.type.rank} tensor: LiteRT kernels take at most {MAX_RANK} dims"
    return None


def dtypes(allowed: frozenset[str], operand: int = 0, why: str = "") -> Check:
    """Operand ``operand`` must have one of ``allowed`` dtypes."""
    def check(op: Op) -> str | None:
        reason = tensor_limits(op)
        if reason or not op.operands:
            return reason
        dt = op.operands[operand].dtype
        if dt not in allowed:
            return why or f"{op.kind} on {dt}: LiteRT runs it on {'/'.join(sorted(allowed))} only"
        return None
    return check
