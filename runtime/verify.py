"""Parity between the source model and a compiled artifact.

Both run on the same inputs: by default random but valid token ids with
padded attention masks, at batch 1 and 4 and two sequence lengths; or real
inputs from an ``.npz``.  For every output: the max absolute error, and for
classifier-like outputs ([batch, classes]) how often the argmax agrees.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..diagnostics import BertcError
from .inputs import lengths_inputs, random_inputs, with_extra_dims

DEFAULT_CASES = ((1, 8), (4, 8), (1, 19), (4, 19))  # (batch, seq): two lengths, ragged padding


@dataclass
class OutputParity:
    max_abs_error: float
    argmax_agreement: float | None  # fraction of rows whose argmax agrees, when [batch, classes]


@dataclass
class ParityReport:
    cases: list[tuple[int, int]]
    outputs: dict[str, OutputParity] = field(default_factory=dict)
    tolerance: float = 1e-4

    @property
    def ok(self) -> bool:
        return all(o.max_abs_error <= self.tolerance for o in self.outputs.values())

    def worst(self) -> tuple[str, OutputParity]:
        return max(self.outputs.items(), key=lambda kv: kv[1].max_abs_error)

    def to_json(self) -> dict:
        return {"cases": [list(c) for c in self.cases], "tolerance": self.tolerance, "ok": self.ok,
                "outputs": {k: asdict(v) for k, v in self.outputs.items()}}


def feeds_for(session, cases: Iterable[tuple[int, int]], vocab: dict[str, int], seed: int = 0,
              lengths_inputs: Iterable[str] = ()):
    rng = np.random.default_rng(seed)
    specs = list(zip(session.input_names, session.input_dtypes))
    for batch, seq in cases:
        yield (batch, seq), random_inputs(specs, batch, seq, rng, vocab, lengths_inputs=lengths_inputs)


def load_verify_data(path: Path, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """Real inputs: an .npz with one array per input name ([batch, seq] each)."""
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BertcError(f"--verify-data {path}: cannot read it as .npz ({e}).") from None
    missing = [n for n in input_names if n not in data]
    if missing:
        raise BertcError(f"--verify-data {path}: no array for input(s) {', '.join(missing)}.",
                         f"It holds: {', '.join(data) or 'nothing'}; the model takes {', '.join(input_names)}.")
    return [{n: data[n] for n in input_names}]


def fit_cases(graph, cases: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (batch, seq) cases with the sizes a signature fixes put in: a model exported at
    [1, 128] (as models for phones are) can only be fed that shape, by TF and by the artifacts."""
    fixed: list[int | None] = [None, None]
    for v in graph.inputs:
        for axis in range(min(2, v.type.rank)):
            if isinstance(v.shape[axis], int):
                fixed[axis] = v.shape[axis]
    fitted = [(fixed[0] or b, fixed[1] or s) for b, s in cases]
    return list(dict.fromkeys(fitted))


@dataclass
class Expected:
    """Reference outputs recorded once, so the source model can be freed before lowering."""

    cases: list[tuple[int, int]]
    runs: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]  # (feeds, outputs)
    data: str = "random token ids"  # what the feeds are, for the report


def record(reference, graph, verify_data: Path | None = None,
           feeds_list: list[dict[str, np.ndarray]] | None = None) -> Expected:
    """Run the reference (TF, or the IR) on the default cases, on --verify-data, or on
    ``feeds_list`` (batches of the calibration data, see ``calibration_feeds``)."""
    from .inputs import vocab_size

    data = "random token ids"
    if feeds_list is not None:
        cases = [tuple(next(iter(f.values())).shape) for f in feeds_list]
        data = "calibration sentences"
    elif verify_data is not None:
        data = f"--verify-data {verify_data.name}"
        feeds_list = load_verify_data(verify_data, reference.input_names)
        cases = [tuple(next(iter(feeds_list[0].values())).shape)]
    else:
        vocab = {v.name: vocab_size(graph, v.name) for v in graph.inputs}
        cases = fit_cases(graph, DEFAULT_CASES)
        rng = np.random.default_rng(1)
        feeds_list = [with_extra_dims(graph, f, rng)
                      for _, f in feeds_for(reference, cases, vocab, lengths_inputs=lengths_inputs(graph))]
    return Expected(cases, [(f, reference.run(f)) for f in feeds_list], data)


def compare(expected: Expected, artifact, tolerance: float) -> ParityReport:
    report = ParityReport(expected.cases, tolerance=tolerance)
    worst: dict[str, float] = {}
    agree: dict[str, list[float]] = {}
    for feeds, want in expected.runs:
        got = artifact.run(feeds)
        for name, w in want.items():
            if name not in got:
                raise BertcError(f"the artifact has no output '{name}' (it has {', '.join(got)}).")
            g = np.asarray(got[name], dtype=np.float64)
            w = np.asarray(w, dtype=np.float64)
            if g.shape != w.shape:
                worst[name] = float("inf")
                continue
            worst[name] = max(worst.get(name, 0.0), float(np.abs(g - w).max()) if w.size else 0.0)
            if w.ndim == 2 and w.shape[1] > 1:
                agree.setdefault(name, []).extend((g.argmax(1) == w.argmax(1)).tolist())
    for name, err in worst.items():
        a = agree.get(name)
        report.outputs[name] = OutputParity(err, float(np.mean(a)) if a else None)
    return report


VERIFY_SENTENCES = 32  # calibration sentences that verify a lossy pipeline (two batches of 16)


def calibration_feeds(calib, graph, n: int = VERIFY_SENTENCES, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
    """``n`` sentences spread evenly over the calibration data, as padded batches for ``graph``.

    Passes that change numbers on purpose (static int8 with calibrated ranges above all) are
    judged on text like the text they were calibrated for: random token ids drive activations
    outside every calibrated range, so they measure clipping that real inputs never see."""
    import dataclasses

    data = calib.bind(graph)
    step = max(1, len(data.sequences) // n)
    picked = dataclasses.replace(data, sequences=data.sequences[::step][:n])
    return list(picked.batches(batch_size))
