"""Record an activation range for every float value, for quantization passes to read.

    calibrate                                    minmax over 256 samples
    calibrate{method=entropy,samples=512}
    calibrate{method=percentile,percentile=99.9}

    calibrate{engine=reference}                  the numpy reference interpreter

The calibration data (``--calib``, or random valid token ids when there is
none; the report says which) runs through the graph batch by batch; every f32
op result (constants excluded) is fed into a streaming histogram
(``bertc.analysis.ranges``), so memory does not grow with the data.

``engine`` says what computes the activations.  ``onnxruntime``
(``bertc.runtime.ort_runner``, handed in by the pass context) lowers the graph to ONNX once, exposes every f32
intermediate as an output (in a few consecutive sessions, so only one
session's share of the activations is in memory at a time) and runs each batch
there.  Measured (benchmarks/calibration.py, BERT-base, entropy, 256 SARA
sentences of 3-60 tokens, 2 shared cores): 34 s on onnxruntime (4 s of it the
range search) vs ~114 s on ``reference``, the numpy interpreter (extrapolated
from 2 batches); the histograms themselves now cost about as much as the
model.  The two
agree up to float rounding (onnxruntime sums matmuls in another order): minmax
ranges within ~1e-5 relative, histogram thresholds within a bin.  ``auto``
(default) takes onnxruntime when the graph lowers to it exactly, else the
reference; the report's ``engine`` and ``engine_reason`` say which ran and why.
``engine=onnxruntime`` on a graph that does not lower is an error.

Batches are padded per batch to their longest sentence, and only real-token
positions are counted where a tensor's layout shows them (see
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
from typing import Any, ClassVar, Literal

from bertc.analysis.ranges import METHODS, RangeObserver, real_token_selector
from bertc.diagnostics import BertcError
from bertc.ir import Graph
from bertc.pass_manager import Pass, PassContext, register_pass

log = logging.getLogger(__name__)

ENGINES = ("auto", "onnxruntime", "reference")
MANY_BATCHES = 8  # show a progress bar from this many batches on (on a terminal)


@register_pass
@dataclass(frozen=True)
class Calibrate(Pass):
    """Record an activation range per float value (minmax, percentile, entropy or mse)."""

    method: Literal["minmax", "percentile", "entropy", "mse"] = "minmax"
    samples: int = 256
    percentile: float = 99.99
    batch_size: int = 16
    engine: Literal["auto", "onnxruntime", "reference"] = "auto"

    uses_calibration: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}: one of {', '.join(ENGINES)}")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: one of {', '.join(METHODS)}")
        if self.samples < 1 or self.batch_size < 1:
            raise ValueError("samples and batch_size must be >= 1")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile={self.percentile} must be in (0, 100]")

    def run(self, graph: Graph, ctx: PassContext) -> bool:
        t0 = time.perf_counter()
        data = ctx.calibration(graph, n=min(self.samples, 32), seq=64)
        sequences = data.sequences[:self.samples]
        data = replace(data, sequences=sequences)
        observer = RangeObserver(graph)
        runner = self._runner(graph, observer, ctx)
        t_setup = time.perf_counter()
        n_batches = data.num_batches(self.batch_size)
        tokens = 0
        for i, feeds in enumerate(_progress(data.batches(self.batch_size), n_batches)):
            chunk = sequences[i * self.batch_size:(i + 1) * self.batch_size]
            lengths = [len(s["ids"]) for s in chunk]
            width = max(lengths)
            observer.select = real_token_selector(lengths, width)
            tokens += sum(lengths)
            runner.run(feeds, observe=observer)
        t_ranges = time.perf_counter()
        ranges = observer.ranges(self.method, self.percentile)
        graph.analyses["calibration"] = {"key": "loc:index", "method": self.method, "samples": len(sequences),
                                         "tokens": int(tokens), "ranges": ranges,
                                         **({"percentile": self.percentile} if self.method == "percentile" else {})}
        seconds = time.perf_counter() - t0
        ctx.report[self.name] = {**self._report(data, len(sequences), tokens, len(ranges), seconds),
                                 "engine": runner.engine, "engine_reason": runner.reason,
                                 "seconds_engine_setup": round(t_setup - t0, 3),
                                 "seconds_batches": round(t_ranges - t_setup, 3),
                                 "seconds_ranges": round(time.perf_counter() - t_ranges, 3)}
        log.info("calibrate: %d ranges (%s) from %d sequences in %.1fs on %s", len(ranges), self.method,
                 len(sequences), seconds, runner.engine)
        return True

    def _runner(self, graph: Graph, observer: RangeObserver, ctx: PassContext):
        """What runs the batches: onnxruntime with the observed values exposed, or the reference
        (the pass context's ``graph_runner``)."""
        observed = [r for op in graph.ops for r in op.results if id(r) in observer.keys]
        runner = ctx.graph_runner(graph, observed, reference=self.engine == "reference")
        if self.engine == "onnxruntime" and runner.engine != "onnxruntime":
            raise BertcError(f"calibrate{{engine=onnxruntime}}: {runner.reason}. Use engine=auto or "
                             "engine=reference to calibrate on the reference interpreter.")
        return runner

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
