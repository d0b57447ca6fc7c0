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
pipeline that declares none keeps the exact check.  Measuring whether a bound
holds is the runtime's (``bertc.runtime.fidelity``): passes only declare.

Combining: errors of lossy passes stack up roughly additively, so the bounds
add (abs and relative errors; disagreement rates 1 - agreement).  A criterion
no pass declares is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


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
