"""How close a compiled artifact must stay to its source model, declared by the passes.

By default ``bertc compile`` holds every artifact to the exact check
(``Tolerance``): on every output, every element within
``atol + rtol * (|source| + rms(source))`` of the source's, with rtol 2e-5 and
atol 1e-6 unless ``--tolerance`` says otherwise.  The bound scales with the
numbers, so a model whose logits are 1e-2 is held as tightly as one whose logits
are 10; the rms term keeps the elements near zero of a large output (the
hidden states) from demanding more than float32 gives.  A pass that changes
numerics on purpose (quant_int8 and its successors) cannot meet that, and the
right yardstick is the pass's to state, next to the code that causes the error.
So such a pass declares one:

    @register_pass
    @dataclass(frozen=True)
    class QuantInt8(Pass):
        fidelity: ClassVar[Fidelity] = Fidelity(min_argmax_agreement=0.9, max_rel_error=0.1,
                                                reason="int8 weights, activations quantized at run time")

(a property instead of a ClassVar when the bound depends on the pass's options).
``pipeline_fidelity`` combines the declarations of a pipeline's passes; a
pipeline that declares none keeps the exact check.  ``check_expected`` (what
compile calls, on the outputs it recorded from the source) and ``measure`` (two
live sessions) give a ``FidelityReport`` that says whether, and why not, the
bound holds.

Combining: errors of lossy passes stack up roughly additively, so the bounds
add (abs and relative errors; disagreement rates 1 - agreement).  A criterion
no pass declares is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..diagnostics import BertcError


@dataclass(frozen=True)
class Tolerance:
    """The exact check's bound on each element: |artifact - source| <= atol + rtol * (|source| + rms),
    where rms is the root mean square of that output of the source over every input checked.

    float32 kernels that add in another order (onnxruntime, XNNPACK, TF's oneDNN) move
    each element by a few ulps of the magnitudes that were added, which is what the
    rms term stands for.  Measured (tests/test_long_inputs.py, Xeon with AVX-512):
    a 12-layer BERT-base-size model at 512 tokens uses up to 29% of the default bound
    on its hidden states (5.6e-6 against an rms of 1.0, LiteRT), the pretrained
    all-MiniLM-L6-v2 5%; rtol 2e-5 leaves room for other CPUs' kernels and deeper
    models.  A lowering that scales a weight by 0.5% is over 100x the bound.
    """

    rtol: float = 2e-5
    atol: float = 1e-6

    @staticmethod
    def parse(text: str) -> "Tolerance":
        """``--tolerance``: ``RTOL``, ``RTOL,ATOL`` or ``rtol=X,atol=Y`` (either may be left out)."""
        values: dict[str, float] = {}
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not parts or len(parts) > 2:
            raise ValueError("give RTOL, RTOL,ATOL or rtol=X,atol=Y")
        for i, part in enumerate(parts):
            key, eq, num = part.partition("=")
            key, num = (key.strip(), num) if eq else (("rtol", "atol")[i], part)
            if key not in ("rtol", "atol") or key in values:
                raise ValueError(f"{part!r}: name rtol or atol once each")
            try:
                values[key] = float(num)
            except ValueError:
                raise ValueError(f"{num.strip()!r} is not a number") from None
            if not values[key] >= 0 or values[key] == float("inf"):
                raise ValueError(f"{key}={num.strip()} must be a finite number >= 0")
        return Tolerance(**values)

    def __str__(self) -> str:
        return f"rtol={self.rtol:g},atol={self.atol:g}"


@dataclass(frozen=True)
class Fidelity:
    """A bound on how far an artifact's outputs may be from the source model's.

    ``max_abs_error``: on every output, max |artifact - source|.
    ``max_rel_error``: on every output, max |artifact - source| / max |source|
    (the error as a fraction of the output's range, over all inputs checked).
    ``min_argmax_agreement``: on classifier-like outputs ([batch, classes]), the
    fraction of rows whose argmax agrees.
    ``min_cosine``: on every output of rank >= 2, the smallest cosine similarity
    between an artifact row and the source row (over the last axis).  It suits
    logits and sentence embeddings alike, where argmax over embedding dims does not.
    ``elementwise``: every element within ``Tolerance``'s bound (the exact check).
    None: not checked.
    """

    max_abs_error: float | None = None
    max_rel_error: float | None = None
    min_argmax_agreement: float | None = None
    reason: str = ""
    min_cosine: float | None = None
    elementwise: Tolerance | None = None

    @staticmethod
    def exact(tolerance: "Tolerance | float | str | None" = None) -> "Fidelity":
        """What compile checks when no pass declares anything: every element within ``tolerance``."""
        return Fidelity(elementwise=as_tolerance(tolerance))

    @property
    def unbounded(self) -> bool:
        """A declaration that bounds nothing (pruning: the change is intended and reported)."""
        return all(v is None for v in (self.max_abs_error, self.max_rel_error, self.min_argmax_agreement,
                                       self.min_cosine, self.elementwise))

    def combine(self, other: "Fidelity") -> "Fidelity":
        if self.unbounded or other.unbounded:  # nothing after an unbounded change is guaranteed either
            return Fidelity(reason="; ".join(r for r in (self.reason, other.reason) if r))
        def add(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else a + b

        agree = None
        if self.min_argmax_agreement is not None or other.min_argmax_agreement is not None:
            miss = add(None if self.min_argmax_agreement is None else 1 - self.min_argmax_agreement,
                       None if other.min_argmax_agreement is None else 1 - other.min_argmax_agreement)
            agree = max(0.0, 1 - miss)
        cosine = None
        if self.min_cosine is not None or other.min_cosine is not None:
            cosine = 1 - add(None if self.min_cosine is None else 1 - self.min_cosine,
                             None if other.min_cosine is None else 1 - other.min_cosine)
        elementwise = None
        if self.elementwise is not None or other.elementwise is not None:
            a, b = self.elementwise or Tolerance(0.0, 0.0), other.elementwise or Tolerance(0.0, 0.0)
            elementwise = Tolerance(a.rtol + b.rtol, a.atol + b.atol)
        reason = "; ".join(r for r in (self.reason, other.reason) if r)
        return Fidelity(add(self.max_abs_error, other.max_abs_error),
                        add(self.max_rel_error, other.max_rel_error), agree, reason, cosine, elementwise)

    def describe(self) -> str:
        parts = []
        if self.min_argmax_agreement is not None:
            parts.append(f"argmax agreement >= {self.min_argmax_agreement:.0%}")
        if self.max_abs_error is not None:
            parts.append(f"max |err| <= {self.max_abs_error:g}")
        if self.max_rel_error is not None:
            parts.append(f"max |err| <= {self.max_rel_error:.0%} of max |output|")
        if self.min_cosine is not None:
            parts.append(f"row cosine >= {self.min_cosine:g}")
        if self.elementwise is not None:
            e = self.elementwise
            parts.append(f"every |err| <= {e.atol:g} + {e.rtol:g} * (|ref| + rms(ref))")
        return " and ".join(parts) or "nothing checked"

    def to_json(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "min_argmax_agreement": self.min_argmax_agreement, "min_cosine": self.min_cosine,
                "rtol": self.elementwise.rtol if self.elementwise else None,
                "atol": self.elementwise.atol if self.elementwise else None,
                "reason": self.reason,
                "check": self.describe()}


def as_tolerance(tolerance: "Tolerance | float | str | None") -> Tolerance:
    """A Tolerance from what callers hold: None (the default), a Tolerance, a number (rtol) or --tolerance text."""
    if tolerance is None:
        return Tolerance()
    if isinstance(tolerance, Tolerance):
        return tolerance
    if isinstance(tolerance, str):
        return Tolerance.parse(tolerance)
    return Tolerance(rtol=float(tolerance))


def declared_fidelity(p) -> Fidelity | None:
    """The bound a pass instance declares (its ``fidelity`` attribute), or None."""
    f = getattr(p, "fidelity", None)
    return f if isinstance(f, Fidelity) else None


def pipeline_fidelity(passes: Iterable, tolerance: "Tolerance | float | str | None" = None) -> Fidelity:
    """The bound a pipeline's artifacts are held to: the passes' declarations combined,
    or the exact check with ``tolerance`` when no pass declares one."""
    declared = [f for f in map(declared_fidelity, passes) if f is not None]
    if not declared:
        return Fidelity.exact(tolerance)
    out = declared[0]
    for f in declared[1:]:
        out = out.combine(f)
    return out


# --------------------------------------------------------------------------- measuring
@dataclass
class OutputFidelity:
    max_abs_error: float
    reference_max_abs: float  # max |source| over all inputs: the scale of max_rel_error
    argmax_agreement: float | None  # over rows of a [batch, classes] output, else None
    rows: int = 0
    min_cosine: float | None = None  # smallest row cosine (last axis), outputs of rank >= 2
    reference_rms: float = 0.0  # root mean square of the source's values, over all inputs
    worst_element: tuple[float, float] = (0.0, 0.0)  # (|err|, |ref|) where err / bound is largest

    def tolerance_ratio(self, tol: Tolerance) -> float:
        """max over elements of |err| / (atol + rtol * (|ref| + rms)): at most 1 when the bound holds."""
        err, ref = self.worst_element
        bound = tol.atol + tol.rtol * (ref + self.reference_rms)
        return err / bound if bound > 0 else (0.0 if err == 0 else float("inf"))

    @property
    def rel_error(self) -> float:
        if self.reference_max_abs > 0:
            return self.max_abs_error / self.reference_max_abs
        return 0.0 if self.max_abs_error == 0 else float("inf")


@dataclass
class FidelityReport:
    fidelity: Fidelity
    cases: list[tuple[int, int]]
    outputs: dict[str, OutputFidelity] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """One sentence per output and criterion that the bound does not hold for."""
        f, out = self.fidelity, []
        for name, o in self.outputs.items():
            if f.elementwise is not None and not o.tolerance_ratio(f.elementwise) <= 1:
                e = f.elementwise
                err, ref = o.worst_element
                out.append(f"output '{name}' differs by {err:.3g} where the source is {ref:.3g} "
                           f"(bound {e.atol:g} + {e.rtol:g} * ({ref:.3g} + rms {o.reference_rms:.3g}) = "
                           f"{e.atol + e.rtol * (ref + o.reference_rms):.3g}; largest error {o.max_abs_error:.3g})")
            if f.max_abs_error is not None and not o.max_abs_error <= f.max_abs_error:
                out.append(f"output '{name}' differs by up to {o.max_abs_error:.3g} "
                           f"(bound {f.max_abs_error:g})")
            if f.max_rel_error is not None and not o.rel_error <= f.max_rel_error:
                out.append(f"output '{name}' differs by up to {o.max_abs_error:.3g}, "
                           f"{o.rel_error:.1%} of its range {o.reference_max_abs:.3g} "
                           f"(bound {f.max_rel_error:.0%})")
            if (f.min_argmax_agreement is not None and o.argmax_agreement is not None
                    and o.argmax_agreement < f.min_argmax_agreement):
                out.append(f"output '{name}': argmax agrees on {o.argmax_agreement:.0%} of {o.rows} rows "
                           f"(bound {f.min_argmax_agreement:.0%})")
            if f.min_cosine is not None and o.min_cosine is not None and o.min_cosine < f.min_cosine:
                out.append(f"output '{name}': a row's cosine similarity to the source is {o.min_cosine:.4f} "
                           f"(bound {f.min_cosine:g})")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def worst(self) -> tuple[str, OutputFidelity]:
        return max(self.outputs.items(), key=lambda kv: kv[1].max_abs_error)

    def to_json(self) -> dict:
        """The cases, the bound and its verdicts, and per output the errors measured."""
        tol = self.fidelity.elementwise
        return {"cases": [list(c) for c in self.cases],
                "tolerance": str(tol) if tol else self.fidelity.max_abs_error,
                "ok": self.ok, "fidelity": self.fidelity.to_json(), "failures": self.failures,
                "outputs": {k: {"max_abs_error": o.max_abs_error, "argmax_agreement": o.argmax_agreement,
                                "rel_error": o.rel_error, "reference_max_abs": o.reference_max_abs,
                                "reference_rms": o.reference_rms, "min_cosine": o.min_cosine,
                                "tolerance_ratio": o.tolerance_ratio(tol) if tol else None}
                            for k, o in self.outputs.items()}}


def measure(reference, artifact, feeds_list: Iterable[Mapping[str, np.ndarray]], fidelity: Fidelity,
            cases: Sequence[tuple[int, int]] = ()) -> FidelityReport:
    """Run ``reference`` and ``artifact`` (sessions: ``run(feeds) -> {name: array}``) on each
    feed set and gather, per output, what ``fidelity`` bounds."""
    pairs = ((reference.run(feeds), artifact.run(feeds)) for feeds in feeds_list)
    return _report(pairs, fidelity, cases)


def check_expected(expected, artifact, fidelity: Fidelity) -> FidelityReport:
    """compile's check: ``expected`` holds the source model's outputs recorded before
    lowering (``bertc.runtime.verify.Expected``); run the artifact on the same feeds."""
    pairs = ((want, artifact.run(feeds)) for feeds, want in expected.runs)
    return _report(pairs, fidelity, expected.cases)


def _report(pairs: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]], fidelity: Fidelity,
            cases: Sequence[tuple[int, int]]) -> FidelityReport:
    """Per output: max abs error, max |reference|, its rms, the element farthest outside the elementwise
    bound, and argmax agreement of [batch, classes] rows."""
    errors: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}  # per output: (|err|, |ref|) per input set
    mismatch: set[str] = set()
    agree: dict[str, list[bool]] = {}
    cosine: dict[str, float] = {}
    for want, got in pairs:
        for name, w in want.items():
            if name not in got:
                raise BertcError(f"the artifact has no output '{name}' (it has {', '.join(got)}).")
            g = np.asarray(got[name], dtype=np.float64)
            w = np.asarray(w, dtype=np.float64)
            if g.shape != w.shape:
                mismatch.add(name)
                g = np.full_like(w, np.inf)
            errors.setdefault(name, []).append((np.abs(g - w).ravel(), np.abs(w).ravel()))
            if w.ndim == 2 and w.shape[1] > 1 and name not in mismatch:
                agree.setdefault(name, []).extend((g.argmax(1) == w.argmax(1)).tolist())
            if w.ndim >= 2 and w.size and name not in mismatch:
                cosine[name] = min(cosine.get(name, 1.0), _min_row_cosine(g, w))
    report = FidelityReport(fidelity, [tuple(c) for c in cases])
    tol = fidelity.elementwise or Tolerance()
    for name, parts in errors.items():
        err = np.concatenate([e for e, _ in parts])
        ref = np.concatenate([r for _, r in parts])
        a = agree.get(name)
        o = OutputFidelity(_max(err), _max(ref), float(np.mean(a)) if a else None, len(a) if a else 0,
                           cosine.get(name), float(np.sqrt(np.mean(ref * ref))) if ref.size else 0.0)
        if err.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = err / (tol.atol + tol.rtol * (ref + o.reference_rms))
            i = int(np.nanargmax(ratio)) if not np.isnan(ratio).all() else 0
            i = int(np.flatnonzero(np.isnan(err))[0]) if np.isnan(err).any() else i
            o.worst_element = (float(err[i]), float(ref[i]))
        report.outputs[name] = o
    return report


def _max(a: np.ndarray) -> float:
    """The largest value, NaN if any is NaN (a NaN error must fail every bound), 0 for no values."""
    return float(a.max()) if a.size else 0.0


def _min_row_cosine(got: np.ndarray, want: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows (last axis); identical rows give 1."""
    g = got.reshape(-1, got.shape[-1])
    w = want.reshape(-1, want.shape[-1])
    dot = (g * w).sum(1)
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1)
    cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(np.abs(g - w).max(1) == 0, 1.0, 0.0))
    return float(cos.min())
