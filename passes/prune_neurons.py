"""Remove FFN intermediate neurons for real: narrower up and down projections.

    prune_neurons{ratio=0.3}                         30% of all neurons, ranked across layers
    prune_neurons{ratio=0.5,per_layer=true,criterion=activation}
    prune_neurons{keep="0:0,1,2;1:5"}                explicit neurons to keep (others keep all)

Neuron j of a layer is column j of the first dense kernel (and entry j of its
bias) and row j of the second.  Removing it equals zeroing its column and
bias entry when the activation maps 0 to 0 (gelu, relu, tanh; sigmoid does
not, and then removal also drops the constant sigmoid(0) * row that zeroing
would keep).  Reshapes between the activation and the second dense layer
that spell the width out are rewritten too; types are then re-inferred.

Ranking, criteria, the report and the output drift measurement work as in
``prune_heads``: ``taylor`` (|d loss / d mask| per neuron, per example),
``activation`` (mean |activation| over real tokens) and ``magnitude``
(||up column|| * ||down row||, no data).  ``reconstruct=true`` refits the
output projections afterwards, as in ``prune_heads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bertc.analysis.cost import cost, cost_change, report_seqs
from bertc.analysis.drift import OutputDrift
from bertc.analysis.importance import NEURON_CRITERIA, Scores, neuron_scores
from bertc.analysis.prune_edit import Edit, PruneError, apply_reshapes, finish, plan_reshapes, slice_projection
from bertc.analysis.reconstruct import reconstruct
from bertc.analysis.structure import FeedForward, Structure, analyze_structure
from bertc.analysis.units import layer_where, parse_keep, select_units
from bertc.fidelity import Fidelity
from bertc.ir import Graph
from bertc.ir.parser import copy_graph
from bertc.pass_manager import Pass, PassContext, register_pass


DEFAULT_RATIO = 0.3


def prune_ffn(graph: Graph, ffn: FeedForward, keep: list[int], where: str) -> list[Edit]:
    """Keep neurons ``keep`` (sorted) of ``ffn``; types are stale until ``finish``, which checks the returned edits."""
    n = ffn.intermediate
    if len(keep) == n:
        return []
    if not keep:
        raise PruneError(f"{where}: the feed-forward at {ffn.up.op.loc} would keep no neuron (min_neurons >= 1).")
    edits = plan_reshapes(ffn.width_paths, len(keep), where)
    slice_projection(graph, ffn.up, "out", n, 1, keep)
    slice_projection(graph, ffn.down, "in", n, 1, keep)
    apply_reshapes(graph, edits, n, len(keep))
    return edits


def layer_widths(structure: Structure) -> dict[int, int]:
    return {layer.index: layer.ffn.intermediate for layer in structure.layers if layer.ffn is not None}


@register_pass
@dataclass(frozen=True)
class PruneNeurons(Pass):
    """Remove FFN intermediate neurons physically (up columns, bias entries, down rows)."""

    ratio: float | None = None
    keep: str = ""
    criterion: Literal["taylor", "activation", "magnitude"] = "taylor"
    min_neurons: int = 1
    per_layer: bool = False
    normalize: bool = True
    batch_size: int = 8
    reconstruct: bool = False

    @property
    def uses_calibration(self) -> bool:
        """Importance from data (taylor, ablation) reads calibration; magnitude and keep= do not."""
        return not self.keep and self.criterion != "magnitude"

    def __post_init__(self) -> None:
        if self.ratio is not None and self.keep:
            raise ValueError("give ratio or keep, not both")
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio={self.ratio} must be in [0, 1)")
        if self.min_neurons < 1:
            raise ValueError(f"min_neurons={self.min_neurons} must be >= 1")
        if self.criterion not in NEURON_CRITERIA:
            raise ValueError(f"criterion={self.criterion!r}: choose {', '.join(NEURON_CRITERIA)}")

    @property
    def fidelity(self) -> Fidelity | None:
        """Pruning changes outputs on purpose: no bound against the source (the report measures the drift)."""
        if not self.keep and self.ratio == 0.0:
            return None
        return Fidelity(reason=f"{self.spec()} removes FFN neurons on purpose; the outputs' change from the "
                               "unpruned model is measured on calibration data in the pass report")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if not self.keep and self.ratio == 0.0:
            return False
        saved = dict(graph.analyses)
        structure = analyze_structure(graph)
        widths = layer_widths(structure)
        if not widths:
            problems = [p for layer in structure.layers for p in layer.problems]
            raise PruneError("prune_neurons found no feed-forward block to prune: " + "; ".join(problems[:3]))
        scores: Scores | None = None
        notes: list[str] = []
        if self.keep:
            kept = {layer: list(range(n)) for layer, n in widths.items()}
            kept.update(parse_keep(self.keep, widths, unit="neuron"))
            empty = [layer for layer, k in kept.items() if not k]
            if empty:
                raise PruneError(f"keep={self.keep!r} leaves layer(s) {empty} without neurons.")
        else:
            ratio = DEFAULT_RATIO if self.ratio is None else self.ratio
            scores = neuron_scores(graph, structure, self.criterion, ctx, self.batch_size)
            kept, notes = select_units(scores.per_layer, None, ratio, self.per_layer, self.min_neurons,
                                       self.normalize)
        if all(len(kept[layer]) == widths[layer] for layer in widths):
            graph.analyses.clear()
            graph.analyses.update(saved)  # an unchanged graph stays byte-identical
            self._report(ctx, widths, kept, scores, notes + ["nothing to remove"], None, None)
            return False
        seqs = report_seqs(ctx.calib)
        before = cost(graph, seqs)
        drift = OutputDrift(graph, ctx)
        reference = copy_graph(graph) if self.reconstruct else None
        edits: list[Edit] = []
        for layer in structure.layers:
            if layer.ffn is not None:
                edits += prune_ffn(graph, layer.ffn, kept[layer.index], layer_where(layer))
        finish(graph, edits)
        refit = reconstruct(graph, reference, ctx.calib, self.batch_size) if reference is not None else None
        self._report(ctx, widths, kept, scores, notes, cost_change(before, cost(graph, seqs)), drift.measure(graph),
                     refit)
        return True

    def _report(self, ctx, widths, kept, scores, notes, change, drift, refit=None) -> None:
        rep: dict[str, Any] = {
            "spec": self.spec(),
            "criterion": "explicit keep list" if self.keep else self.criterion,
            "data": scores.data if scores is not None else "none",
            "loss": scores.loss if scores is not None else "",
            "selection": ("keep=" + self.keep) if self.keep else
            (f"{'per layer' if self.per_layer else 'global'}: "
             f"ratio {DEFAULT_RATIO if self.ratio is None else self.ratio}"
             + ("" if self.per_layer or not self.normalize else ", scores L2-normalised per layer")),
            "neurons_before": {str(k): n for k, n in widths.items()},
            "neurons_after": {str(k): len(kept[k]) for k in widths},
            "kept": {str(k): kept[k] for k in widths},
            "removed": int(sum(widths.values()) - sum(len(kept[k]) for k in widths)),
        }
        if change is not None:
            rep.update(change)
        if drift is not None:
            rep["output_change"] = drift
        if refit is not None:
            rep["reconstruction"] = refit
        rep["notes"] = (scores.notes if scores is not None else []) + notes
        ctx.report[self.name] = rep
