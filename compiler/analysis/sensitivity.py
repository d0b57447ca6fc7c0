"""Which parts of a model are sensitive to quantization: rank groups of ops by the output
error that quantizing each group *alone* adds, on calibration data.

    ranking = rank_groups(graph, groups, quantize, batches)

``quantize(copy, chosen)`` quantizes the groups named in ``chosen`` on a copy of
the graph (the caller's rewrite: quant_full's, for instance); everything else
stays float.  Each copy runs through the reference interpreter on the same
batches as the float graph, and two numbers are recorded per group:

* ``error``: the relative L2 error of the outputs, ||q - f|| / ||f|| over all
  real-token positions (the ranking key: continuous, so it orders groups even
  where no prediction flips on a small calibration set);
* ``drop``: the fidelity measure that ``quant_full{target_drop=…}`` holds:
  on classifier outputs ([batch, classes]) the fraction of rows whose argmax
  differs from the float model's; on any other output 1 - mean row cosine
  (over the last axis).  The worst output counts.

Padded positions (batches are padded to their longest sentence) are left out of
both, with the selector calibration uses (``real_token_selector``).

``bertc analyze MODEL --calib FILE --sensitivity`` prints the ranking per encoder layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..ir.graph import Graph
from ..ir.parser import copy_graph
from ..ir.types import is_static
from .ranges import real_token_selector

Outputs = list[dict[str, np.ndarray]]  # per batch: output name -> real-token rows


@dataclass(frozen=True)
class GroupSensitivity:
    """One group's quantization alone: its output error and fidelity drop vs float."""

    group: str
    ops: int
    error: float
    drop: float

    def to_json(self) -> dict:
        return {"group": self.group, "ops": self.ops, "error": self.error, "drop": self.drop}


def calibration_batches(graph: Graph, calib=None, samples: int = 64, batch_size: int = 16
                        ) -> list[tuple[dict[str, np.ndarray], Callable | None]]:
    """(feeds, real-token selector) per batch: ``calib`` (a CalibrationData) when given,
    else random valid token ids, as the calibrate pass does."""
    from dataclasses import replace

    from ..pass_manager import PassContext

    ctx = calib if isinstance(calib, PassContext) else PassContext(calib=calib)
    data = ctx.calibration(graph, n=min(samples, 32), seq=64)
    data = replace(data, sequences=data.sequences[:samples])
    out = []
    for i, feeds in enumerate(data.batches(batch_size)):
        chunk = data.sequences[i * batch_size:(i + 1) * batch_size]
        lengths = [len(s["ids"]) for s in chunk]
        out.append((feeds, real_token_selector(lengths, max(lengths))))
    return out


def run_outputs(graph: Graph, batches: Sequence[tuple[Mapping[str, np.ndarray], Callable | None]]) -> Outputs:
    """The graph's outputs per batch, real-token rows only (f64)."""
    from ..ir.interpreter import run_graph

    outs: Outputs = []
    for feeds, select in batches:
        got = run_graph(graph, dict(feeds))
        outs.append({k: np.asarray(select(v) if select is not None else v, np.float64) for k, v in got.items()})
    return outs


def output_error(want: Outputs, got: Outputs) -> float:
    """||got - want|| / ||want|| over every output and batch (0 when both are zero)."""
    num = den = 0.0
    for w, g in zip(want, got):
        for k, a in w.items():
            num += float(np.sum((g[k] - a) ** 2))
            den += float(np.sum(a ** 2))
    return float(np.sqrt(num / den)) if den > 0 else (0.0 if num == 0 else float("inf"))


def classifier_outputs(graph: Graph) -> set[str]:
    """Outputs typed [batch, classes] with more than one class (as bertc.fidelity
    treats them): their drop is argmax disagreement, every other output's is 1 - cosine."""
    return {name for name, v in graph.outputs.items()
            if v.type.rank == 2 and is_static(v.shape[1]) and v.shape[1] > 1}


def output_drop(want: Outputs, got: Outputs, classifiers: set[str]) -> float:
    """The worst output's drop: 1 - argmax agreement (``classifiers``) or 1 - mean row cosine."""
    worst = 0.0
    for name in (want[0] if want else {}):
        w = [b[name] for b in want]
        g = [b[name] for b in got]
        if name in classifiers:
            agree = np.concatenate([a.argmax(1) == b.argmax(1) for a, b in zip(w, g)])
            worst = max(worst, 1.0 - float(agree.mean()))
        elif w[0].size:
            cos = np.concatenate([_row_cosines(b, a) for a, b in zip(w, g)])
            worst = max(worst, 1.0 - float(cos.mean()))
    return worst


def _row_cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    g = got.reshape(-1, got.shape[-1]) if got.ndim else got.reshape(1, 1)
    w = want.reshape(-1, want.shape[-1]) if want.ndim else want.reshape(1, 1)
    dot = (g * w).sum(1)
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1)
    same = np.abs(g - w).max(1) == 0
    return np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(same, 1.0, 0.0))


def rank_groups(graph: Graph, groups: Mapping[str, int], quantize: Callable[[Graph, set[str]], None],
                batches, reference: Outputs | None = None) -> list[GroupSensitivity]:
    """Every group of ``groups`` (name -> how many ops it holds) quantized alone on a copy
    of ``graph``, most sensitive (largest output error) first."""
    reference = reference if reference is not None else run_outputs(graph, batches)
    ranked = []
    for name, ops in groups.items():
        copy = copy_graph(graph)
        quantize(copy, {name})
        got = run_outputs(copy, batches)
        ranked.append(GroupSensitivity(name, ops, output_error(reference, got),
                                       output_drop(reference, got, classifier_outputs(graph))))
    return sorted(ranked, key=lambda s: (-s.error, s.group))


def drop_with(graph: Graph, chosen: Iterable[str], quantize: Callable[[Graph, set[str]], None], batches,
              reference: Outputs) -> tuple[float, float]:
    """(drop, error) of ``graph`` with exactly the groups in ``chosen`` quantized."""
    copy = copy_graph(graph)
    quantize(copy, set(chosen))
    got = run_outputs(copy, batches)
    return output_drop(reference, got, classifier_outputs(graph)), output_error(reference, got)
