"""Parity between the source model and a compiled artifact.

Both run on the same inputs: by default random but valid token ids with
padded attention masks, at batch 1 and 4 and two sequence lengths (inputs
whose dims the graph does not tie to the others get sizes of their own); or
real inputs from an ``.npz``.  ``bertc.runtime.fidelity`` judges the outputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..diagnostics import BertcError
from .inputs import random_graph_inputs, random_inputs

log = logging.getLogger(__name__)

DEFAULT_CASES = ((1, 8), (4, 8), (1, 19), (4, 19))  # (batch, seq): two lengths, ragged padding


def feeds_for(session, cases: Iterable[tuple[int, int]], vocab: dict[str, int], seed: int = 0):
    """(case, random feeds) for a session's inputs at each (batch, seq) case: the tests' helper
    for graphs whose inputs are all [batch, seq] token ids, masks and segments."""
    rng = np.random.default_rng(seed)
    specs = list(zip(session.input_names, session.input_dtypes))
    for batch, seq in cases:
        yield (batch, seq), random_inputs(specs, batch, seq, rng, vocab)


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
    data = "random token ids"
    if feeds_list is not None:
        cases = [tuple(next(iter(f.values())).shape) for f in feeds_list]
        data = "calibration sentences"
    elif verify_data is not None:
        data = f"--verify-data {verify_data.name}"
        feeds_list = load_verify_data(verify_data, reference.input_names)
        cases = [tuple(next(iter(feeds_list[0].values())).shape)]
    else:
        cases = fit_cases(graph, DEFAULT_CASES)
        return _record_random(reference, graph, cases)
    return Expected(cases, [(f, _run_reference(reference, f, data)) for f in feeds_list], data)


def _record_random(reference, graph, cases: list[tuple[int, int]]) -> Expected:
    """Random token ids; inputs whose dims the graph leaves independent at sizes of their own.

    A source whose inputs must agree in a way its graph shows only through a reshape
    (modeling.py reshapes the mask to the ids' batch) refuses those sizes: it is then
    verified with every input at the same batch and length, which is all it accepts."""
    def run(independent: bool) -> list:
        feeds = [random_graph_inputs(graph, b, s, seed=k, independent=independent) for k, (b, s) in enumerate(cases)]
        return [(f, _run_reference(reference, f, "random token ids")) for f in feeds]

    try:
        return Expected(cases, run(True), "random token ids")
    except BertcError as e:
        same = [random_graph_inputs(graph, b, s, seed=k, independent=False) for k, (b, s) in enumerate(cases)]
        if all(_same_feeds(a, b) for a, b in zip(same, [random_graph_inputs(graph, b, s, seed=k, independent=True)
                                                        for k, (b, s) in enumerate(cases)])):
            raise  # the sizes were the same already: the source refuses them for another reason
        log.info("verifying with every input at one batch and length: %s", e.message)
        return Expected(cases, run(False), "random token ids (every input at one batch and length: the source "
                                           "refuses independent sizes)")


def _same_feeds(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.shape(a[k]) == np.shape(b[k]) for k in a)


def _run_reference(reference, feeds: dict[str, np.ndarray], data: str) -> dict[str, np.ndarray]:
    """The source model's outputs; a source that refuses the inputs is told apart from a bertc bug."""
    try:
        return reference.run(feeds)
    except BertcError:
        raise
    except Exception as e:
        shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in feeds.items())
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        detail = next((ln.strip() for ln in str(e).splitlines() if "Input to" in ln or "requested shape" in ln), "")
        raise BertcError(f"the source model refuses the verification inputs ({data}: {shapes}): "
                         f"{detail or first}",
                         "Its inputs must relate in a way bertc cannot see from the signature. Pass "
                         "--verify-data FILE.npz with inputs it accepts (one array per input), or --no-verify.") from None


def branches_taken(graph, runs: list[dict[str, np.ndarray]]) -> dict[str, dict[str, int]]:
    """For each ``cond`` op (by its TF node): in how many of the verification runs its then
    and its else branch ran.  A branch no run took is one that verification did not check."""
    conds = {id(op.operands[0]): op for op in graph.ops if op.kind == "cond"}
    if not conds:
        return {}
    from ..ir.interpreter import run_graph

    counts = {op.loc.primary: {"then": 0, "else": 0} for op in conds.values()}
    for feeds in runs:
        seen: dict[str, set] = {name: set() for name in counts}

        def observe(v, arr, seen=seen):
            op = conds.get(id(v))
            if op is not None:
                seen[op.loc.primary].add("then" if bool(np.asarray(arr).reshape(-1)[0]) else "else")

        preds = [op.operands[0] for op in conds.values() if op.operands[0].producer is None]
        for v in preds:  # a predicate fed as a graph input
            observe(v, feeds[v.name])
        run_graph(graph, feeds, observe=observe)
        for name, taken in seen.items():
            for key in taken:
                counts[name][key] += 1
    return counts


def untaken_branches(counts: dict[str, dict[str, int]]) -> list[str]:
    """"cond 'X' took only its then branch …" for each cond with a branch no run took."""
    out = []
    for name, c in counts.items():
        missing = [k for k in ("then", "else") if c[k] == 0]
        if missing:
            out.append(f"tf.cond '{name}' never took its {' or '.join(missing)} branch on the verification "
                       "inputs, so that branch is unchecked (--verify-data FILE.npz with inputs that take it)")
    return out


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
