"""Run an IR graph on onnxruntime with its intermediates exposed: the fast ``run_graph``.

``run_graph`` walks the graph in numpy, one kernel at a time: exact by
definition, but BERT-base takes seconds per small batch, far too slow to push a
calibration set through.  ``OrtGraphRunner`` keeps ``run_graph``'s contract
(returns the graph outputs; calls ``observe(value, array)`` for every op result,
constants included) and computes on onnxruntime:

* The graph is lowered once with ``bertc.targets.onnx.lower``, which also says
  which ONNX tensor holds each IR value; every wanted intermediate becomes an
  output of the model.
* A value whose op the lowering folded into another node's (quant_full's
  dequantize + matmul inside MatMulIntegerToFloat) or re-typed (its u8-shifted
  activations) has no tensor of its own, or not one of its dtype: its op runs
  on the reference kernel, on operands fetched from onnxruntime.  Sound
  because such tensors are read by no ONNX node (the lowering only folds a
  value into its readers).
* Every intermediate of BERT-base at [16, 128] is gigabytes, so the model is cut
  into consecutive sessions of about ``outputs_per_session`` exposed values
  each (cut only where every tensor crossing the cut is an IR value, so its type
  is known).  Values are observed and dropped session by session: peak memory
  is one session's share, not the whole graph's.
* Graph optimizations are off by default (``optimization="disable"``): every
  node's output is exposed anyway, so fusions could not apply; "basic" (also
  exact) ran no faster on a 2-layer BERT-base-wide model (~0.5 s per [16, 32]
  batch, observing included, either way).
* Memory: large constants reach onnxruntime as external initializers over
  the IR's own arrays (no copy of the weights; a 2-layer BERT-base-wide model,
  [16, 32]: peak RSS 983 -> 640 MB), and the per-session memory arena is off,
  since each session's arena would keep its own peak ([16, 128]: 1172 -> 1003 MB).

Results equal ``run_graph``'s up to float rounding: onnxruntime's kernels sum in
another order and use other exp/erf approximations (measured on BERT: within
~1e-5 of each tensor's range, see tests/test_ort_runner.py).  Graphs that
cannot be lowered, or whose lowering is deliberately not exact (a ``qmatmul``
whose activation scheme is not onnxruntime's u8 per tensor), run on the
reference interpreter instead; ``engine`` and ``reason`` say which and why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping

import numpy as np

from ..ir.graph import Graph, Op, Value
from ..ir.interpreter import _check_input, run_graph
from ..ir.registry import get_op_def

log = logging.getLogger(__name__)

Observe = Callable[[Value, np.ndarray], None]
OUTPUTS_PER_SESSION = 48  # BERT-base [16, 128]: a few hundred MB of outputs per session
SHARED_MIN_SIZE = 1024  # constants this large are handed to onnxruntime without a copy


def inexact_reason(graph: Graph) -> str | None:
    """Why onnxruntime would not compute this graph as the reference interpreter does, or None."""
    for op in graph.ops:
        if op.kind == "qmatmul" and (op.attrs["act_dtype"], op.attrs["act_symmetric"],
                                     op.attrs["act_per_row"]) != ("u8", False, False):
            return (f"qmatmul at {op.loc} quantizes its activation {op.attrs['act_dtype']}"
                    f"{' per row' if op.attrs['act_per_row'] else ''}; onnxruntime quantizes u8 per tensor")
    return None


@dataclass
class _Session:
    """One onnxruntime session over a run of consecutive ONNX nodes."""

    session: object
    inputs: list[str]
    outputs: list[str]


@dataclass
class _Plan:
    """What to do after each session: which IR ops to observe or run on the reference kernel."""

    sessions: list[_Session] = field(default_factory=list)
    ops_after: list[list[Op]] = field(default_factory=list)  # per session, in graph order
    host_ops: set[int] = field(default_factory=set)  # id(op) of ops computed by the reference kernels
    drop_after: list[list[str]] = field(default_factory=list)  # per session: fetched tensors no longer needed
    host_drop_after: list[list[int]] = field(default_factory=list)  # likewise, id(value) of host results
    keep_alive: list = field(default_factory=list)  # OrtValues over the IR's weights, which sessions read


class OrtGraphRunner:
    """Builds onnxruntime sessions for ``graph`` once; ``run(feeds, observe)`` per batch.

    ``values``: the op results to observe (None: all, as ``run_graph`` does); fewer
    values mean fewer exposed tensors.  ``outputs_per_session``: how many exposed
    values one session may hold (memory vs. number of sessions).
    """

    def __init__(self, graph: Graph, values: Iterable[Value] | None = None, *,
                 outputs_per_session: int = OUTPUTS_PER_SESSION,
                 optimization: Literal["disable", "basic"] = "disable",
                 threads: int | None = None) -> None:
        if outputs_per_session < 1:
            raise ValueError(f"outputs_per_session={outputs_per_session} must be >= 1")
        if optimization not in ("disable", "basic"):
            raise ValueError(f"optimization={optimization!r}: 'disable' or 'basic'")
        self._setup(graph, values)
        try:
            self._plan = self._build(outputs_per_session, optimization, threads)
        except _Unsupported as e:
            self.reason = str(e)
        except Exception as e:  # a lowering or session failure: the reference still runs it
            self.reason = f"onnxruntime could not take the graph: {type(e).__name__}: {e}"
        if self._plan is None:
            log.warning("running %s on the reference interpreter: %s", graph.name, self.reason)
            return
        self.engine = "onnxruntime"
        self.reason = (f"lowered to ONNX: {len(self._plan.sessions)} onnxruntime session(s), "
                       f"{len(self._plan.host_ops)} op(s) on reference kernels")
        log.info("%s: %s", graph.name, self.reason)

    @classmethod
    def reference(cls, graph: Graph, values: Iterable[Value] | None = None,
                  reason: str = "asked for") -> "OrtGraphRunner":
        """A runner with the same API that runs the reference interpreter (no sessions built)."""
        runner = cls.__new__(cls)
        runner._setup(graph, values)
        runner.reason = reason
        return runner

    def host_ops(self) -> set[int]:
        """id() of the ops run on reference kernels (their values have no tensor of their own)."""
        return set(self._plan.host_ops) if self._plan is not None else {id(op) for op in self.graph.ops}

    def _setup(self, graph: Graph, values: Iterable[Value] | None) -> None:
        self.graph = graph
        self.wanted = None if values is None else {id(v) for v in values}
        self.engine: Literal["onnxruntime", "reference"] = "reference"
        self.reason = ""
        self._names: dict[int, str] = {}
        self._plan: _Plan | None = None

    # ---------------------------------------------------------------- building
    def _build(self, per_session: int, optimization: str, threads: int | None) -> _Plan:
        from onnx import shape_inference

        from ..targets.base import LoweringError
        from ..targets.onnx import lower

        reason = inexact_reason(self.graph)
        if reason:
            raise _Unsupported(reason)
        try:
            model = lower(self.graph, names=self._names)
        except LoweringError as e:
            raise _Unsupported(str(e)) from e
        nodes = list(model.graph.node)
        produced_at = {o: i for i, n in enumerate(nodes) for o in n.output if o}
        inferred = _elem_types(model, shape_inference)
        ort_values: dict[int, Value] = {}  # id -> value onnxruntime computes 1:1
        host: list[Op] = []
        for op in self.graph.ops:
            if op.kind == "const":
                continue
            if all(self._same_tensor(r, produced_at, inferred) for r in op.results):
                ort_values.update((id(r), r) for r in op.results)
            else:
                host.append(op)
        host_ids = {id(op) for op in host}
        # ONNX tensors to fetch: wanted values, operands of host ops, graph outputs
        fetch = {self._names[k] for k, v in ort_values.items() if self._wants(v)}
        fetch |= {self._names[id(v)] for op in host for v in op.operands if id(v) in ort_values}
        fetch |= {self._names[id(v)] for v in self.graph.outputs.values() if id(v) in ort_values}
        typed = {self._names[k]: v for k, v in ort_values.items()}
        bounds = _cut(nodes, produced_at, fetch, set(typed), [o.name for o in model.graph.output], per_session)
        return self._sessions(model, nodes, bounds, fetch, typed, host, host_ids, produced_at,
                              optimization, threads)

    def _wants(self, v: Value) -> bool:
        return self.wanted is None or id(v) in self.wanted

    def _same_tensor(self, v: Value, produced_at: dict[str, int], inferred: dict[str, int]) -> bool:
        """onnxruntime computes ``v`` itself: a node writes its tensor, in its dtype."""
        from ..targets.onnx import onnx_dtype

        name = self._names.get(id(v))
        if name is None or name not in produced_at:
            return False
        return inferred.get(name, onnx_dtype(v.dtype)) == onnx_dtype(v.dtype)

    def _sessions(self, model, nodes, bounds, fetch, typed, host, host_ids, produced_at,
                  optimization, threads) -> _Plan:
        import onnxruntime as ort
        from onnx import helper

        from ..targets.onnx import value_info

        def options() -> "ort.SessionOptions":  # one per session: external initializers accumulate
            opts = ort.SessionOptions()
            opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if optimization == "disable"
                                             else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.inter_op_num_threads = 1
            opts.enable_cpu_mem_arena = False  # an arena per session would keep each one's peak
            if threads is not None:
                opts.intra_op_num_threads = int(threads)
            return opts

        inits = {t.name: t for t in model.graph.initializer}
        shared = self._shared_weights(inits)
        graph_inputs = {v.name: v for v in self.graph.inputs}
        segment_of = {name: next(s for s, (a, b) in enumerate(bounds) if a <= i < b)
                      for name, i in produced_at.items()}
        plan = _Plan(host_ops=host_ids)
        last_use: dict[str, int] = {}
        for s, (a, b) in enumerate(bounds):
            seg = nodes[a:b]
            made = {o for n in seg for o in n.output if o}
            read = {i for n in seg for i in n.input if i}
            ins = sorted(t for t in read - made if t not in inits)
            later = {i for n in nodes[b:] for i in n.input} | {o.name for o in model.graph.output}
            outs = sorted(t for t in made if t in fetch or t in later)
            for t in ins + outs:  # sessions run in order: the last assignment is the last use
                last_use[t] = s
            weights = sorted(read & set(inits))
            opts = options()
            external = [t for t in weights if t in shared]
            if external:  # onnxruntime reads the IR's own arrays: no copy of the weights
                values = [ort.OrtValue.ortvalue_from_numpy(shared[t]) for t in external]
                opts.add_external_initializers(external, values)
                plan.keep_alive.extend(values)
            g = helper.make_graph(seg, f"{model.graph.name}_{s}",
                                  [value_info(t, (graph_inputs.get(t) or typed[t]).type) for t in ins],
                                  [value_info(t, typed[t].type) if t in typed else _untyped(t) for t in outs],
                                  initializer=[_placeholder(inits[t]) if t in shared else inits[t] for t in weights])
            m = helper.make_model(g, opset_imports=model.opset_import, ir_version=model.ir_version)
            sess = ort.InferenceSession(m.SerializeToString(), sess_options=opts,
                                        providers=["CPUExecutionProvider"])
            plan.sessions.append(_Session(sess, ins, outs))
        # when each op's results are ready: its node's session, or after its operands (host ops)
        ready: dict[int, int] = {}
        host_last: dict[int, int] = {}  # id(host result) -> last step a host op reads it
        plan.ops_after = [[] for _ in bounds]
        for op in self.graph.ops:
            if op.kind == "const":
                continue
            if id(op) in host_ids:
                step = max([ready.get(id(v), 0) for v in op.operands], default=0)
                for v in op.operands:
                    name = self._names.get(id(v))
                    if name in segment_of:
                        last_use[name] = max(last_use.get(name, 0), step)
                    if id(v) in host_last:
                        host_last[id(v)] = step
                host_last.update((id(r), step) for r in op.results)
            else:
                step = max(segment_of[self._names[id(r)]] for r in op.results)
            ready.update((id(r), step) for r in op.results)
            plan.ops_after[step].append(op)
        outputs = {id(v) for v in self.graph.outputs.values()}
        keep = {self._names.get(k) for k in outputs}
        plan.drop_after = [[] for _ in bounds]
        plan.host_drop_after = [[] for _ in bounds]
        for name, s in last_use.items():
            if name not in keep:
                plan.drop_after[s].append(name)
        for k, s in host_last.items():
            if k not in outputs:
                plan.host_drop_after[s].append(k)
        return plan

    def _shared_weights(self, inits: dict) -> dict[str, np.ndarray]:
        """ONNX initializer name -> the IR constant it copies, for the large ones (weights)."""
        from ..targets.onnx import onnx_dtype

        shared = {}
        for op in self.graph.ops:
            name, value = self._names.get(id(op.result)) if op.kind == "const" else None, op.attrs.get("value")
            t = inits.get(name)
            if t is None or value.size < SHARED_MIN_SIZE or t.data_type != onnx_dtype(op.result.dtype) \
                    or list(t.dims) != list(value.shape):
                continue
            shared[name] = np.ascontiguousarray(value)
        return shared

    # ---------------------------------------------------------------- running
    def run(self, feeds: Mapping[str, np.ndarray], observe: Observe | None = None) -> dict[str, np.ndarray]:
        """The graph's outputs on ``feeds``; ``observe(value, array)`` for each wanted op result."""
        if self._plan is None:
            wanted = self.wanted
            inner = observe if observe is None or wanted is None else \
                (lambda v, a: observe(v, a) if id(v) in wanted else None)
            return run_graph(self.graph, feeds, observe=inner)
        env: dict[str, np.ndarray] = {}
        for v in self.graph.inputs:
            if v.name not in feeds:
                raise ValueError(f"missing input '{v.name}' (the graph takes {[i.name for i in self.graph.inputs]})")
            env[v.name] = _check_input(v, np.asarray(feeds[v.name]))
        host_env: dict[int, np.ndarray] = {}
        if observe is not None:
            for op in self.graph.ops:
                if op.kind == "const" and self._wants(op.result):
                    observe(op.result, op.attrs["value"])
        for s, sess in enumerate(self._plan.sessions):
            arrays = sess.session.run(sess.outputs, {t: env[t] for t in sess.inputs})
            env.update(zip(sess.outputs, arrays))
            del arrays
            for op in self._plan.ops_after[s]:
                if id(op) in self._plan.host_ops:
                    args = [self._operand(v, env, host_env) for v in op.operands]
                    out = get_op_def(op.kind).run(op, args)
                    host_env.update((id(r), a) for r, a in zip(op.results, out))
                if observe is not None:
                    for r in op.results:
                        if self._wants(r):
                            observe(r, host_env[id(r)] if id(op) in self._plan.host_ops else env[self._names[id(r)]])
            for name in self._plan.drop_after[s]:
                env.pop(name, None)
            for k in self._plan.host_drop_after[s]:
                host_env.pop(k, None)
        return {name: self._operand(v, env, host_env) for name, v in self.graph.outputs.items()}

    def _operand(self, v: Value, env: dict[str, np.ndarray], host_env: dict[int, np.ndarray]) -> np.ndarray:
        if id(v) in host_env:
            return host_env[id(v)]
        if v.producer is not None and v.producer.kind == "const":
            return v.producer.attrs["value"]
        return env[self._names.get(id(v), v.name)]


def run_graph_ort(graph: Graph, feeds: Mapping[str, np.ndarray], observe: Observe | None = None,
                  **options) -> dict[str, np.ndarray]:
    """One run of ``graph`` on onnxruntime (``run_graph``'s contract); builds the sessions each
    call, so for many batches build one ``OrtGraphRunner`` and call its ``run``."""
    return OrtGraphRunner(graph, **options).run(feeds, observe)


class _Unsupported(Exception):
    """The graph cannot run exactly on onnxruntime; the message says why."""


def _elem_types(model, shape_inference) -> dict[str, int]:
    """ONNX element type of every tensor that onnx's type inference can tell (contrib ops: not)."""
    from onnx import helper

    g = model.graph
    light = helper.make_graph(g.node, g.name,  # initializers as typed inputs: no weight bytes copied
                              list(g.input) + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                               for t in g.initializer], g.output)
    m = helper.make_model(light, opset_imports=model.opset_import, ir_version=model.ir_version)
    inferred = shape_inference.infer_shapes(m, strict_mode=False)
    return {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info
            if vi.type.tensor_type.elem_type}


def _placeholder(t):
    """An initializer with ``t``'s name, type and shape but no data: onnxruntime takes the data
    from the array given to ``add_external_initializers``."""
    from onnx import TensorProto

    p = TensorProto(name=t.name, data_type=t.data_type, dims=t.dims, data_location=TensorProto.EXTERNAL)
    p.external_data.add(key="location", value="bertc-shared-weight")  # never read
    return p


def _untyped(name: str):
    from onnx import helper

    return helper.make_empty_tensor_value_info(name)


def _cut(nodes, produced_at: dict[str, int], fetch: set[str], typed: set[str], model_outputs: list[str],
         per_session: int) -> list[tuple[int, int]]:
    """[start, end) node ranges of about ``per_session`` fetched tensors each, cut only where every
    tensor crossing the cut is in ``typed`` (an IR value, whose type is known)."""
    last = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            if t in produced_at:
                last[t] = i
    for t in model_outputs:
        if t in produced_at:
            last[t] = len(nodes)
    bounds, start, count = [], 0, 0
    live: dict[str, int] = {}  # produced so far and read at or after the current node
    for i, n in enumerate(nodes):
        live = {t: e for t, e in live.items() if e >= i}
        if count >= per_session and all(t in typed for t in live):
            bounds.append((start, i))
            start, count = i, 0
        for t in n.output:
            if t in last:
                live[t] = last[t]
            count += t in fetch
    bounds.append((start, len(nodes)))
    return bounds
