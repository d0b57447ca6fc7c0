"""Whether an artifact stays within the bound its pipeline declares (``bertc.fidelity``).

``check_expected`` (what compile calls, on the outputs it recorded from the
source) and ``measure`` (two live sessions) give a ``FidelityReport`` that says
whether, and why not, the bound holds.  The declarations (``Fidelity``,
``Tolerance``, ``pipeline_fidelity``) live in ``bertc.fidelity``, where passes
import them from; they are re-exported here for callers that measure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..diagnostics import BertcError
from ..fidelity import Fidelity, Tolerance, as_tolerance, declared_fidelity, pipeline_fidelity  # noqa: F401


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
