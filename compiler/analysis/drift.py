"""How far a rewrite moved a model's outputs: a before/after sanity figure for pass reports."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bertc.ir import Graph
from bertc.pass_manager import PassContext

log = logging.getLogger(__name__)


class OutputDrift:
    """The unpruned model's outputs on a few calibration sequences, to say later how far pruning moved them.

    Four sequences keep it cheap (two interpreter runs of BERT-base cost seconds);
    it is a sanity figure for the report, not an evaluation.
    """

    def __init__(self, graph: Graph, ctx: PassContext, batch_size: int = 4) -> None:
        from bertc.ir.interpreter import run_graph

        self.feeds = self.ref = None
        self.source = ""
        try:
            data = ctx.calibration(graph, n=batch_size, seq=16)
            self.feeds = next(iter(data.batches(batch_size)))
            self.ref = run_graph(graph, self.feeds)
            self.source = data.source
        except Exception as e:  # best effort: a graph without token inputs (IR tests) has no such data
            log.debug("no output drift measurement: %s", e)

    def measure(self, graph: Graph) -> dict[str, Any] | None:
        from bertc.ir.interpreter import run_graph

        if self.ref is None:
            return None
        out = run_graph(graph, self.feeds)
        res: dict[str, Any] = {"data": self.source, "rows": int(len(next(iter(self.feeds.values()))))}
        for name, want in self.ref.items():
            got = np.asarray(out[name], dtype=np.float64)
            want = np.asarray(want, dtype=np.float64)
            entry = {"max_abs_change": float(np.abs(got - want).max()) if want.size else 0.0,
                     "max_abs_output": float(np.abs(want).max()) if want.size else 0.0}
            if want.ndim == 2 and want.shape[1] > 1:
                entry["argmax_agreement"] = float((got.argmax(1) == want.argmax(1)).mean())
            res[name] = entry
        return res
