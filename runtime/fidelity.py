"""How close a compiled artifact must stay to its source model, declared by the passes.

By default ``bertc compile`` holds every artifact to the exact check: on every
output, max |artifact - source| <= ``--tolerance`` (1e-4).  A pass that changes
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
    None: not checked.
    """

    max_abs_error: float | None = None
    max_rel_error: float | None = None
    min_argmax_agreement: float | None = None
    reason: str = ""
    min_cosine: float | None = None

    @staticmethod
    def exact(tolerance: float) -> "Fidelity":
        """What compile checks when no pass declares anything: max abs error <= tolerance."""
        return Fidelity(max_abs_error=tolerance)

    @property
    def unbounded(self) -> bool:
        """A declaration that bounds nothing (pruning: the change is intended and reported)."""
        return all(v is None for v in (self.max_abs_error, self.max_rel_error, self.min_argmax_agreement,
                                       self.min_cosine))

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
        reason = "; ".join(r for r in (self.reason, other.reason) if r)
        return Fidelity(add(self.max_abs_error, other.max_abs_error),
                        add(self.max_rel_error, other.max_rel_error), agree, reason, cosine)

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
        return " and ".join(parts) or "nothing checked"

    def to_json(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "min_argmax_agreement": self.min_argmax_agreement, "min_cosine": self.min_cosine,
                "reason": self.reason,
                "check": self.describe()}


def declared_fidelity(p) -> Fidelity | None:
    """The bound a pass instance declares (its ``fidelity`` attribute), or None."""
    f = getattr(p, "fidelity", None)
    return f if isinstance(f, Fidelity) else None


def pipeline_fidelity(passes: Iterable, tolerance: float) -> Fidelity:
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
        """ParityReport's keys (cases, tolerance, ok, outputs) plus the bound and its verdicts."""
        return {"cases": [list(c) for c in self.cases], "tolerance": self.fidelity.max_abs_error,
                "ok": self.ok, "fidelity": self.fidelity.to_json(), "failures": self.failures,
                "outputs": {k: {"max_abs_error": o.max_abs_error, "argmax_agreement": o.argmax_agreement,
                                "rel_error": o.rel_error, "reference_max_abs": o.reference_max_abs,
                                "min_cosine": o.min_cosine}
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
    """Per output: max abs error, max |reference|, and argmax agreement of [batch, classes] rows."""
    worst: dict[str, float] = {}
    scale: dict[str, float] = {}
    agree: dict[str, list[bool]] = {}
    cosine: dict[str, float] = {}
    for want, got in pairs:
        for name, w in want.items():
            if name not in got:
                raise BertcError(f"the artifact has no output '{name}' (it has {', '.join(got)}).")
            g = np.asarray(got[name], dtype=np.float64)
            w = np.asarray(w, dtype=np.float64)
            scale[name] = max(scale.get(name, 0.0), float(np.abs(w).max()) if w.size else 0.0)
            if g.shape != w.shape:
                worst[name] = float("inf")
                continue
            worst[name] = max(worst.get(name, 0.0), float(np.abs(g - w).max()) if w.size else 0.0)
            if w.ndim == 2 and w.shape[1] > 1:
                agree.setdefault(name, []).extend((g.argmax(1) == w.argmax(1)).tolist())
            if w.ndim >= 2 and w.size:
                cosine[name] = min(cosine.get(name, 1.0), _min_row_cosine(g, w))
    report = FidelityReport(fidelity, [tuple(c) for c in cases])
    for name, err in worst.items():
        a = agree.get(name)
        report.outputs[name] = OutputFidelity(err, scale[name], float(np.mean(a)) if a else None,
                                              len(a) if a else 0, cosine.get(name))
    return report


def _min_row_cosine(got: np.ndarray, want: np.ndarray) -> float:
    """The smallest cosine similarity between matching rows (last axis); identical rows give 1."""
    g = got.reshape(-1, got.shape[-1])
    w = want.reshape(-1, want.shape[-1])
    dot = (g * w).sum(1)
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1)
    cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(np.abs(g - w).max(1) == 0, 1.0, 0.0))
    return float(cos.min())
