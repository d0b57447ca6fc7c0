"""Record an activation range for every float value, for quantization passes to read.

    calibrate                                    minmax over 256 samples
    calibrate{method=entropy,samples=512}
    calibrate{method=percentile,percentile=99.9}

The calibration data (``--calib``, or random valid token ids when there is
none; the report says which) runs through the reference interpreter batch by
batch; its ``observe`` hook feeds every f32 op result (constants excluded) into
a streaming histogram (``bertc.analysis.ranges``), so memory does not grow with
the data.  Batches are padded per batch to their longest sentence, and only
real-token positions are counted where a tensor's layout shows them (see
``real_token_selector``): padded rows, and the -10000 that the attention mask
adds to scores of padded keys, would otherwise widen the ranges.

The result is ``graph.analyses["calibration"]``:

    #calibration = {"key": "loc:index", "method": "entropy", "samples": 256, "tokens": 31744,
                    "ranges": {"bert/encoder/layer_0/attention/self/query/MatMul:0": [-4.1, 3.9], ...}}

keyed as ``bertc.analysis.ranges.value_keys`` describes (location primary name
and result index; ``lookup_range(graph, value)`` reads it back).  It prints and
parses with the IR text.

The computation is unchanged, but the pass returns True: the graph's text (its
analysis line) differs afterwards, and "changed" in the pass manager means
"the IR differs" (dumps and the text oracle see the new line).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from bertc.analysis.ranges import METHODS, RangeObserver, real_token_selector
from bertc.ir import Graph
from bertc.ir.interpreter import run_graph
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

MANY_BATCHES = 8  # show a progress bar from this many batches on (on a terminal)


@register_pass
@dataclass(frozen=True)
class Calibrate(Pass):
    """Record an activation range per float value (minmax, percentile, entropy or mse)."""

    method: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    samples: int = 256
    percentile: float = 99.99
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: one of {', '.join(METHODS)}")
        if self.samples < 1 or self.batch_size < 1:
            raise ValueError("samples and batch_size must be >= 1")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile={self.percentile} must be in (0, 100]")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        from bertc.runtime.calib import random_calibration

        t0 = time.perf_counter()
        if ctx.calib is not None:
            data = ctx.calib.bind(graph)
        else:
            data = random_calibration(graph, n=min(self.samples, 32), seq=64)
        sequences = data.sequences[:self.samples]
        data = replace(data, sequences=sequences)
        observer = RangeObserver(graph)
        n_batches = data.num_batches(self.batch_size)
        tokens = 0
        for i, feeds in enumerate(_progress(data.batches(self.batch_size), n_batches)):
            chunk = sequences[i * self.batch_size:(i + 1) * self.batch_size]
            lengths = [len(s["ids"]) for s in chunk]
            width = max(lengths)
            observer.select = real_token_selector(lengths, width)
            tokens += sum(lengths)
            run_graph(graph, feeds, observe=observer)
        ranges = observer.ranges(self.method, self.percentile)
        graph.analyses["calibration"] = {"key": "loc:index", "method": self.method, "samples": len(sequences),
                                         "tokens": int(tokens), "ranges": ranges,
                                         **({"percentile": self.percentile} if self.method == "percentile" else {})}
        seconds = time.perf_counter() - t0
        ctx.report[self.name] = self._report(data, len(sequences), tokens, len(ranges), seconds)
        log.info("calibrate: %d ranges (%s) from %d sequences in %.1fs", len(ranges), self.method,
                 len(sequences), seconds)
        return True

    def _report(self, data, n: int, tokens: int, values: int, seconds: float) -> dict[str, Any]:
        rep: dict[str, Any] = {"spec": self.spec(), "method": self.method, "data": data.source,
                               "random_data": bool(getattr(data, "random", False)), "samples": n,
                               "tokens": int(tokens), "values": values, "seconds": round(seconds, 3)}
        if rep["random_data"]:
            rep["notes"] = ["no calibration data given (--calib): ranges come from random valid token ids, "
                            "which exercise the model differently from real text"]
        return rep


def _progress(batches, total: int):
    """``batches`` with a rich progress bar on a terminal when there are many of them."""
    if total < MANY_BATCHES or not sys.stderr.isatty():
        yield from batches
        return
    try:
        from rich.progress import Progress
    except ImportError:
        yield from batches
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("calibrating", total=total)
        for b in batches:
            yield b
            bar.advance(task)
