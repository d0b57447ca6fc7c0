"""Remove attention heads for real: smaller Q/K/V/O matrices and every head count rewritten.

    prune_heads{ratio=0.3}                      the 30% least important heads, ranked across layers
    prune_heads{heads=4,per_layer=true}         4 heads from every layer
    prune_heads{keep="0:0,1,5;3:2"}             layer 0 keeps heads 0, 1, 5; layer 3 keeps head 2
    prune_heads{ratio=0.5,criterion=magnitude}  no calibration data needed

Removing head h of a layer is exactly masking it (zeroing its rows of the
output projection): the other heads' Q/K/V columns, biases and O rows are
kept, so every remaining product is computed as before.  What carries the
head count comes from ``bertc.analysis.structure``: the Q/K/V kernels'
output axes and biases, the O kernel's input axes (one axis of
heads*head_size, or a heads axis in Keras' einsum kernels, sliced there), and
every reshape between them, each with the axis that holds the heads
(``bertc.analysis.layout``): [0,0,4,16] -> [0,0,3,16], [0,-1,64] ->
[0,-1,48], the flattened form of Google's modeling.py ([batch*seq, 64] split
by a target packed from tf.shape at run time, merged by [-1, 64]) alike.
``bertc.analysis.prune_edit`` rewrites the constant that carries the count
wherever the target keeps it and checks every reshape after re-inference; a
target it cannot rewrite is an error at that reshape, naming the layer.  Layers may end up with different head counts.  A layer left with
no head has its attention sublayer replaced by its output bias (the residual
adds just that), only with ``allow_empty=true``.

``ratio`` (the default, 0.3, when neither ``heads`` nor ``keep`` is given) and
``heads`` (a number of heads to remove) rank heads across all layers, each
layer's scores divided by their L2 norm first (Michel et al. 2019;
``normalize=false`` ranks raw scores), or within each layer with
``per_layer=true``.  Criteria: see ``bertc.analysis.importance``.  The pass
writes what it kept, parameters and matmul FLOPs before and after (batch 1, at
the calibration sequence lengths), the criterion, the data it used, and how
far the pruned model's outputs moved on calibration data, into the report.

``reconstruct=true`` then refits, layer by layer on the calibration data, the
kept rows (and bias) of every attention output projection and FFN down
projection by ridge least squares so that each sublayer's residual sum
matches the unpruned model's (``bertc.analysis.reconstruct``; Kwon et al.
2022; no gradient training).  It keeps a refit only where it lowers the error
on held-out calibration sequences, and reports the error before and after
per sublayer under ``reconstruction``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bertc.analysis.cost import cost, cost_change, report_seqs
from bertc.analysis.drift import OutputDrift
from bertc.analysis.importance import HEAD_CRITERIA, Scores, head_scores
from bertc.analysis.prune_edit import (Edit, PruneError, apply_reshapes, finish, plan_reshapes, privatize,
                                       slice_projection, slice_table)
from bertc.analysis.reconstruct import reconstruct
from bertc.analysis.structure import Attention, analyze_structure
from bertc.analysis.units import layer_counts, layer_where, parse_keep, select_units
from bertc.fidelity import Fidelity
from bertc.ir import Graph
from bertc.ir.parser import copy_graph
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

DEFAULT_RATIO = 0.3


# ------------------------------------------------------------------ the rewrite
def _drop_attention(graph: Graph, att: Attention) -> None:
    """No head left: the sublayer's output is its output bias (or zero)."""
    o = att.o
    if o.bias is not None:
        value = o.bias
    else:
        value = graph.const(np.zeros(o.out_features, dtype=np.float32), "attention_output/zero", o.op.loc,
                            before=o.op)
    o.out.replace_all_uses_with(value)


def prune_attention(graph: Graph, att: Attention, keep: list[int], where: str) -> list[Edit]:
    """Keep heads ``keep`` (sorted) of ``att``; types are stale until ``finish``, which checks the returned edits.

    Besides Q/K/V/O, every side term the structure analysis found carrying the heads is sliced the same
    way: constant tables (copied first when other layers share them) and position projections.
    """
    h, d = att.heads, att.head_size
    if len(keep) == h:
        return []
    if not keep:
        _drop_attention(graph, att)
        return []
    region = att.region
    copies = privatize(graph, region) if region is not None else {}
    paths = [(copies.get(id(op), op), u) for op, u in att.head_paths]
    edits = plan_reshapes(paths, len(keep), where)  # every target, before anything changes
    for p in att.projections:
        outer, size = att.split(p)
        slice_projection(graph, p, "out", h, size, keep, outer)
    slice_projection(graph, att.o, "in", h, d, keep)
    for p, _ in (region.sources if region is not None else []):
        slice_projection(graph, p, "out", h, p.out_features // h, keep)
    for user, index, u in (region.tables if region is not None else []):
        slice_table(graph, copies.get(id(user), user), index, u, keep, where)
    apply_reshapes(graph, edits, h, len(keep))
    return edits


@register_pass
@dataclass(frozen=True)
class PruneHeads(Pass):
    """Remove attention heads physically (Q/K/V/O shrink, head counts rewritten)."""

    ratio: float | None = None
    heads: int | None = None
    keep: str = ""
    criterion: Literal["taylor", "ablation", "magnitude"] = "taylor"
    min_heads: int = 1
    per_layer: bool = False
    allow_empty: bool = False
    normalize: bool = True
    batch_size: int = 8
    reconstruct: bool = False

    @property
    def uses_calibration(self) -> bool:
        """Importance from data (taylor, ablation) reads calibration; magnitude and keep= do not."""
        return not self.keep and self.criterion != "magnitude"

    def __post_init__(self) -> None:
        given = [k for k in ("ratio", "heads") if getattr(self, k) is not None] + (["keep"] if self.keep else [])
        if len(given) > 1:
            raise ValueError(f"give one of ratio, heads and keep, not {' and '.join(given)}")
        if self.ratio is not None and not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"ratio={self.ratio} must be between 0 and 1")
        if self.heads is not None and self.heads < 0:
            raise ValueError(f"heads={self.heads} must be >= 0 (the number of heads to remove)")
        if self.min_heads < 0 or (self.min_heads == 0 and not self.allow_empty):
            raise ValueError("min_heads=0 empties layers: it needs allow_empty=true")
        if self.criterion not in HEAD_CRITERIA:
            raise ValueError(f"criterion={self.criterion!r}: choose {', '.join(HEAD_CRITERIA)}")

    @property
    def removes_nothing(self) -> bool:
        return not self.keep and (self.heads == 0 or self.ratio == 0.0)

    @property
    def fidelity(self) -> Fidelity | None:
        """Pruning changes outputs on purpose: no bound against the source (the report measures the drift)."""
        if self.removes_nothing:
            return None
        return Fidelity(reason=f"{self.spec()} removes attention heads on purpose; the outputs' change from "
                               "the unpruned model is measured on calibration data in the pass report")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        if self.removes_nothing:
            return False
        saved = dict(graph.analyses)
        structure = analyze_structure(graph)
        counts = layer_counts(structure)
        problems = [p for layer in structure.layers for p in layer.problems]
        if not counts:
            raise PruneError("prune_heads found no attention layer to prune: " + "; ".join(problems[:3]))
        scores: Scores | None = None
        notes: list[str] = []
        if self.keep:
            kept = {layer: list(range(n)) for layer, n in counts.items()}
            kept.update(parse_keep(self.keep, counts))
        else:
            min_keep = self.min_heads if self.allow_empty else max(1, self.min_heads)
            ratio = DEFAULT_RATIO if self.ratio is None and self.heads is None else self.ratio
            scores = head_scores(graph, structure, self.criterion, ctx, self.batch_size)
            kept, notes = select_units(scores.per_layer, self.heads, ratio, self.per_layer, min_keep, self.normalize)
        empty = [layer for layer, k in kept.items() if not k]
        if empty and not self.allow_empty:
            raise PruneError(f"prune_heads would leave layer(s) {empty} without heads.",
                             "Pass allow_empty=true to reduce such a layer's attention to its output bias.")
        if all(len(kept[layer]) == counts[layer] for layer in counts):
            graph.analyses.clear()
            graph.analyses.update(saved)  # an unchanged graph stays byte-identical
            self._report(ctx, counts, kept, scores, notes + ["nothing to remove"], None, None)
            return False
        seqs = report_seqs(ctx.calib)
        before = cost(graph, seqs)
        drift = OutputDrift(graph, ctx)
        reference = copy_graph(graph) if self.reconstruct else None
        edits: list[Edit] = []
        for layer in structure.layers:
            if layer.attention is not None:
                edits += prune_attention(graph, layer.attention, kept[layer.index], layer_where(layer))
        finish(graph, edits)
        refit = reconstruct(graph, reference, ctx.calib, self.batch_size) if reference is not None else None
        if scores is not None:
            graph.analyses["head_importance"] = scores.to_json()
        self._report(ctx, counts, kept, scores, notes + [p for p in problems], cost_change(before, cost(graph, seqs)),
                     drift.measure(graph), refit)
        return True

    def _report(self, ctx, counts, kept, scores, notes, change, drift, refit=None) -> None:
        rep: dict[str, Any] = {
            "spec": self.spec(),
            "criterion": "explicit keep list" if self.keep else self.criterion,
            "data": scores.data if scores is not None else "none",
            "loss": scores.loss if scores is not None else "",
            "selection": ("keep=" + self.keep) if self.keep else
            (f"{'per layer' if self.per_layer else 'global'}: "
             + (f"remove {self.heads} heads" if self.heads is not None else
                f"ratio {DEFAULT_RATIO if self.ratio is None else self.ratio}")
             + ("" if self.per_layer or not self.normalize else ", scores L2-normalised per layer")),
            "heads_before": {str(k): n for k, n in counts.items()},
            "heads_after": {str(k): len(kept[k]) for k in counts},
            "kept": {str(k): kept[k] for k in counts},
            "removed": int(sum(counts.values()) - sum(len(kept[k]) for k in counts)),
        }
        if scores is not None:
            rep["scores"] = scores.to_json()["scores"]
            notes = scores.notes + notes
        if change is not None:
            rep.update(change)
        if drift is not None:
            rep["output_change"] = drift
        if refit is not None:
            rep["reconstruction"] = refit
        rep["notes"] = notes
        ctx.report[self.name] = rep
