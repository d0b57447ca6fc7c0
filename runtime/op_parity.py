"""Every op of the final IR against the artifact, each on the artifact's own operands.

End to end, an artifact and its IR can only be compared loosely once the IR
quantizes: a one-ulp difference in a float kernel moves an activation across a
rounding boundary of the next quantize, and that one step travels through the
later layers.  Op by op it can be held tightly: feed each IR op the very arrays
the artifact computed for its operands, run the op's reference kernel, and the
result must equal the artifact's tensor up to float rounding, dynamic int8
included (the same floats in give the same integers, and the same integers the
same floats).  A lowering that is wrong by 0.5% anywhere fails here, and the
first op that fails is the place to look: the "first divergent op".

The bound per element is ``Tolerance``'s: ``atol + rtol * (|ref| + rms(ref))``.
An op whose operands the artifact does not hold on their own (folded into a
fused node) is computed from the operands it does hold, so the check covers the
fused node's result.

ONNX: ``OrtGraphRunner`` exposes every tensor of the lowered graph, which is
the artifact (the lowering is deterministic).  TFLite: the artifact's own bytes
run on LiteRT's builtin kernels with every tensor kept; its tensors carry the IR
value names.  Where LiteRT computes an op differently from its attributes, the
target says so (``RUNS_AS``: a qmatmul quantizes activation rows), and the op is
held to what LiteRT computes.  XNNPACK, which the deployed artifact runs on,
fuses operators and keeps no intermediates; it is held end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..ir.graph import Graph, Op, Value
from ..ir.printer import Namer, format_op
from ..ir.registry import get_op_def
from .fidelity import Tolerance

# Per-op float rounding: an op's reference kernel and the runtime's add in another
# order and use other exp/erf approximations; a few ulps of the magnitudes added.
OP_TOLERANCE = Tolerance(rtol=1e-5, atol=1e-6)
# LiteRT requantizes int8 results in fixed point and rounds ties away from zero; the IR
# computes them in float and rounds half to even.  A result on a rounding boundary may so
# land one step away: measured on quant_full's int8 layers (tests/test_verification.py's
# BERT), at most 0.6% of a tensor's elements, never more than one step.  A scale that is
# 0.5% wrong moves far more of them.
TIE_SHARE = 0.02
# LiteRT quantizes a qmatmul's activation rows with its own arithmetic (a reciprocal scale,
# ties away from zero), so an element within an ulp of a rounding boundary may land one step
# from the IR's: that row of the result then moves by up to one step times the kernel's
# largest weight.  Measured: all-MiniLM-L6-v2 (bertc demo's model), one row of 76-256 in 3 of
# 36 dense layers; a 12-layer BERT-base-size model, up to 2 rows of 76 in most of its 72.  Rows
# beyond float rounding may use FLIP_STEPS steps each, in at most FLIP_ROW_SHARE of the rows
# (at least FLIP_MIN_ROWS); a wrong scale or weight moves every row.
FLIP_STEPS = 2
FLIP_ROW_SHARE = 0.25
FLIP_MIN_ROWS = 2


@dataclass
class OpDivergence:
    """One op whose artifact result is outside the bound, on the artifact's own operands."""

    op: str  # the op as the IR text prints it
    loc: str
    max_abs_error: float
    ratio: float  # |err| / bound at the worst element (> 1)

    def describe(self) -> str:
        """The op as the text form prints it (its location included), and by how much it is off."""
        return f"{self.op}: differs by {self.max_abs_error:.3g} ({self.ratio:.3g}x the bound)"


@dataclass
class OpParity:
    """Which ops were checked, and the ones that diverge, in graph order."""

    checked: int = 0
    skipped: str = ""  # why nothing was checked, when nothing was
    worst_ratio: float = 0.0
    divergent: list[OpDivergence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergent

    def to_json(self) -> dict:
        return {"ok": self.ok, "ops_checked": self.checked, "skipped": self.skipped or None,
                "worst_ratio": self.worst_ratio, "tolerance": str(OP_TOLERANCE),
                "first_divergent_op": self.divergent[0].describe() if self.divergent else None,
                "divergent_ops": len(self.divergent)}


def onnx_op_parity(graph: Graph, feeds_list: Iterable[Mapping[str, np.ndarray]],
                   tolerance: Tolerance = OP_TOLERANCE) -> OpParity:
    """Check every op of ``graph`` against its ONNX lowering on each feed set."""
    from .ort_runner import OrtGraphRunner

    runner = OrtGraphRunner(graph)
    result = OpParity()
    if runner.engine != "onnxruntime":
        result.skipped = runner.reason
        return result
    worst: dict[int, OpDivergence] = {}
    for feeds in feeds_list:
        _check_run(graph, runner, feeds, tolerance, result, worst)
    order = {id(op): i for i, op in enumerate(graph.ops)}
    result.divergent = [worst[k] for k in sorted(worst, key=order.__getitem__)]
    return result


def _check_run(graph: Graph, runner, feeds: Mapping[str, np.ndarray], tol: Tolerance, result: OpParity,
               worst: dict[int, OpDivergence]) -> None:
    """One run: each observed op result against the op's kernel on the observed operands."""
    seen: dict[int, np.ndarray] = {id(v): np.asarray(feeds[v.name]) for v in graph.inputs}
    remaining = {id(v): len(v.uses) for op in graph.ops for v in op.results}
    computed_here = runner.host_ops()  # folded into a fused node: our own kernel ran it, nothing to check
    namer = Namer.of(graph)

    def observe(value: Value, array: np.ndarray) -> None:
        op = value.producer
        seen[id(value)] = array
        if op is None or op.kind == "const" or value is not op.results[-1]:
            return  # a multi-result op is checked once, when its last result arrives
        if id(op) in computed_here:
            _release(op, remaining, seen)
            return
        operands = [seen.get(id(v)) for v in op.operands]
        if all(a is not None for a in operands):
            got = [seen[id(r)] for r in op.results]
            want = get_op_def(op.kind).run(op, operands)
            ratio, err = _worst_ratio(got, want, tol)
            result.checked += 1
            result.worst_ratio = max(result.worst_ratio, ratio)
            if not ratio <= 1 and (id(op) not in worst or ratio > worst[id(op)].ratio):
                worst[id(op)] = OpDivergence(format_op(op, namer).strip(), str(op.loc), err, ratio)
        _release(op, remaining, seen)

    runner.run(feeds, observe)


def _release(op: Op, remaining: dict[int, int], *stores: dict[int, np.ndarray]) -> None:
    """Forget operands no later op reads (BERT-base's intermediates do not all fit at once)."""
    for v in op.operands:
        k = id(v)
        if k in remaining:
            remaining[k] -= 1
            if remaining[k] <= 0:
                for store in stores:
                    store.pop(k, None)


SENTINEL = 1e30  # |x| this large is a mask's "minus infinity" (tf.float32.min, -inf), not a number


def _same_sentinel(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Both sides hold a mask value of the same sign: -inf, tf.float32.min, or that plus a little
    (which one kernel rounds to -inf and another keeps finite); softmax reads them all as zero."""
    with np.errstate(invalid="ignore"):
        return (np.abs(g) >= SENTINEL) & (np.abs(w) >= SENTINEL) & (np.sign(g) == np.sign(w))


def _row_flip_ratio(g: np.ndarray, w: np.ndarray, tol: Tolerance, room: np.ndarray) -> tuple[float, float]:
    """Rows within float rounding count 0; the others may use their flip room, and may be at most
    FLIP_ROW_SHARE of the rows.  The ratio is the worst of the three tests (<= 1: holds)."""
    err = np.abs(g - w).reshape(room.size, -1)
    ref = np.abs(w).reshape(room.size, -1)
    rms = float(np.sqrt(np.mean(w * w)))
    bound = tol.atol + tol.rtol * (ref + rms)
    with np.errstate(divide="ignore", invalid="ignore"):
        plain = err / bound
    off = (plain > 1).any(axis=1) | np.isnan(err).any(axis=1)
    if not off.any():
        return float(np.nanmax(plain)), float(err.max())
    allowed = max(FLIP_MIN_ROWS, int(FLIP_ROW_SHARE * room.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        in_room = float(np.max((err[off] / (bound[off] + room[off, None]))))
    share = off.sum() / allowed  # > 1: more rows off than a flip explains
    return (float("inf") if np.isnan(in_room) else max(in_room, share)), float(np.nanmax(err))


def _worst_ratio(got: list[np.ndarray], want: list[np.ndarray], tol: Tolerance,
                 integer_ties: bool = False, flip_room: np.ndarray | None = None) -> tuple[float, float]:
    """The largest |err| / bound over every result element, and the largest |err|.  With
    ``integer_ties``, integer results may be one step off in up to TIE_SHARE of their elements;
    with ``flip_room`` (per row), FLIP_ROW_SHARE of the rows may be off by up to their room."""
    ratio, err_max = 0.0, 0.0
    for g, w in zip(got, want):
        if flip_room is not None and np.shape(g) == np.shape(w) and np.size(w) \
                and flip_room.size * np.shape(w)[-1] == np.size(w):
            r, e = _row_flip_ratio(np.asarray(g, np.float64), np.asarray(w, np.float64), tol, flip_room)
            ratio, err_max = max(ratio, r), max(err_max, e)
            continue
        if integer_ties and np.asarray(g).dtype.kind in "iu" and np.shape(g) == np.shape(w) and np.size(w):
            steps = np.abs(np.asarray(g, np.int64) - np.asarray(w, np.int64))
            share = float((steps > 0).mean())
            ratio = max(ratio, float("inf") if steps.max() > 1 else share / TIE_SHARE)
            err_max = max(err_max, float(steps.max()))
            continue
        g = np.asarray(g, np.float64)
        w = np.asarray(w, np.float64)
        if g.shape != w.shape:
            return float("inf"), float("inf")
        if not w.size:
            continue
        err = np.abs(g - w)
        both_nan = np.isnan(g) & np.isnan(w)
        err = np.where(both_nan | _same_sentinel(g, w), 0.0, err)
        finite = np.abs(np.where(np.abs(w) < SENTINEL, w, 0.0))
        rms = float(np.sqrt(np.mean(finite * finite)))
        bound = tol.atol + tol.rtol * (finite + rms)
        r = err / bound
        ratio = max(ratio, float(np.nanmax(r)) if not np.isnan(r).all() else float("inf"))
        if np.isnan(r).any():
            ratio = float("inf")
        err_max = max(err_max, float(np.nanmax(err)) if not np.isnan(err).all() else float("inf"))
    return ratio, err_max


def tflite_op_parity(graph: Graph, artifact: bytes, feeds_list: Iterable[Mapping[str, np.ndarray]],
                     tolerance: Tolerance = OP_TOLERANCE) -> OpParity:
    """Check every op of ``graph`` whose result the .tflite ``artifact`` holds in a tensor of its own."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..ir.decompose import decomposed
    from ..targets.tflite_quant import RUNS_AS

    lowered = decomposed(graph)  # what the lowering lowered (attention spelled out)
    interp = Interpreter(model_content=artifact, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    runner = interp.get_signature_runner()
    in_dtypes = {k: d["dtype"] for k, d in runner.get_input_details().items()}
    namer = Namer.of(lowered)  # the lowering's naming order: its tensors carry these names
    tensor_of = {d["name"]: d["index"] for d in interp.get_tensor_details()}
    result = OpParity()
    worst: dict[int, OpDivergence] = {}
    for feeds in feeds_list:
        runner(**{k: np.asarray(v).astype(in_dtypes[k]) for k, v in feeds.items() if k in in_dtypes})
        held = _held_tensors(lowered, interp, tensor_of, namer)
        _check_forced(lowered, feeds, held, RUNS_AS, tolerance, result, worst, namer)
    order = {id(op): i for i, op in enumerate(lowered.ops)}
    result.divergent = [worst[k] for k in sorted(worst, key=order.__getitem__)]
    return result


CHECKED_ON_TFLITE = ("f32", "i8", "u8")  # numbers and quantized numbers; not shapes, indices or masks


def _held_tensors(graph: Graph, interp, tensor_of: dict[str, int], namer: Namer) -> dict[int, np.ndarray]:
    """id(IR value) -> the artifact's array, for each float or int8 op result the artifact holds
    under its name in the IR's dtype (a result folded into another operator, or re-typed, has
    none).  Integer shape arithmetic is left out: the TFLite lowering may hold an equivalent
    form under the value's name (a slice's "to the end" as the length itself), which only its
    reader can tell apart; the end-to-end check covers it."""
    from ..ir.types import DTYPES

    held = {}
    for op in graph.ops:
        if op.kind == "const":
            continue
        for r in op.results:
            if r.dtype not in CHECKED_ON_TFLITE:
                continue
            idx = tensor_of.get(namer.name(r))
            if idx is None:
                continue
            try:
                arr = interp.get_tensor(idx)
            except ValueError:  # a tensor LiteRT did not keep (an unused output slot)
                continue
            if arr.dtype == DTYPES[r.dtype] and arr.ndim == r.type.rank:
                held[id(r)] = arr
    return held


def _check_forced(graph: Graph, feeds: Mapping[str, np.ndarray], held: dict[int, np.ndarray],
                  runs_as: dict[str, dict], tol: Tolerance, result: OpParity, worst: dict[int, OpDivergence],
                  namer: Namer) -> None:
    """Walk the IR: each op on the artifact's operands where it holds them (else on what this
    walk computed), compared with the artifact's result where it holds one."""
    from ..ir.interpreter import _check_input

    env: dict[int, np.ndarray] = {id(v): _check_input(v, np.asarray(feeds[v.name])) for v in graph.inputs}
    flips: dict[int, np.ndarray] = {}  # id(value) -> per-row room for one activation step flipping
    remaining = {id(v): len(v.uses) for op in graph.ops for v in op.results}
    for op in graph.ops:
        if op.kind == "const":
            env[id(op.result)] = op.attrs["value"]
            continue
        args = [env[id(v)] for v in op.operands]
        attrs = {**op.attrs, **runs_as.get(op.kind, {})}
        out = get_op_def(op.kind).kernel(attrs, *args)
        want = list(out) if isinstance(out, (list, tuple)) else [out]
        room = _flip_room(op, attrs, args, flips)
        got = [held.get(id(r)) for r in op.results]
        pairs = [(g, w) for g, w in zip(got, want) if g is not None and np.shape(g) == np.shape(w)]
        if pairs:
            ratio, err = _worst_ratio([g for g, _ in pairs], [w for _, w in pairs], tol, integer_ties=True,
                                      flip_room=room)
            result.checked += 1
            result.worst_ratio = max(result.worst_ratio, ratio)
            if not ratio <= 1 and (id(op) not in worst or ratio > worst[id(op)].ratio):
                worst[id(op)] = OpDivergence(format_op(op, namer).strip(), str(op.loc), err, ratio)
        for r, g, w in zip(op.results, got, want):
            held_here = g is not None and np.shape(g) == np.shape(w)
            env[id(r)] = g if held_here else w
            if room is not None and not held_here:
                flips[id(r)] = room
        _release(op, remaining, env, flips)


def _flip_room(op: Op, attrs: dict, args: list[np.ndarray], flips: dict[int, np.ndarray]) -> np.ndarray | None:
    """Per result row, how far one activation step flipping inside a qmatmul can move it
    (FLIP_STEPS steps times the largest dequantized weight); passed on through the bias add
    that a lowering folds into the same operator.  None for other ops."""
    from ..ops.quant import dynamic_quant_params

    if op.kind == "qmatmul":
        a, b, b_scale, b_zp = args
        _, a_scale, _ = dynamic_quant_params(a, attrs["act_dtype"], attrs["act_symmetric"], attrs["act_per_row"])
        axis = attrs["axis"]
        w = (b.astype(np.float64) - np.asarray(b_zp, np.float64).reshape(-1 if axis is not None else ()))
        w_max = float(np.abs(w * np.asarray(b_scale, np.float64).reshape(-1 if axis is not None else ())).max()) \
            if w.size else 0.0
        rows = np.broadcast_to(np.asarray(a_scale, np.float64), a.shape[:-1] + (1,))
        return (FLIP_STEPS * w_max * rows).reshape(-1)
    if op.kind == "add":  # the bias add folded into the same FULLY_CONNECTED: same rows
        return next((flips[id(v)] for v in op.operands if id(v) in flips), None)
    return None
