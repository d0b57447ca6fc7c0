"""Import a frozen TensorFlow graph into the IR, op by op, through one handler table.

Every TF op with no handler is collected and reported at once, each with its
node name, before anything is built.  Loops the inputs decide and string ops
are refused with a reason.  A ``tf.cond`` whose predicate the shapes decide is
imported as the branch it takes, one only the data decides as a ``cond`` op
holding both (``conditionals.py``); a loop over constants is run once at import
(``loops.py``).  Inputs keep their signature names and dtypes.

Unknown input dims become symbols, one per dim the graph ties together: BERT's
ids, mask and token types meet in the embeddings and the attention mask, so they
share ``batch`` (dim 0) and ``seq`` (dim 1).  Which dims are tied is found by
importing once with a symbol per input dim (``input_dim_symbols``); an input whose
dims the graph never relates to the others keeps its own (``batch_<input>``), so
that nothing downstream assumes two independent sizes are equal.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..diagnostics import BertcError
from ..ir.graph import Graph, Loc, Value
from ..ir.registry import OpError
from ..ir.types import TensorType, dtype_of, tying_dims
from .tf_loader import FrozenModel, load_model

log = logging.getLogger(__name__)

Handler = Callable[["ImportContext", Any, list[Value]], "Value | list[Value] | None"]
HANDLERS: dict[str, Handler] = {}

CONTROL_FLOW = {"While", "StatelessWhile", "If", "StatelessIf", "Switch", "Merge", "Enter", "Exit",
                "NextIteration", "LoopCond", "Case", "StatelessCase", "PartitionedCall",
                "StatefulPartitionedCall"}
# tf.cond: imported when its predicate is decided by the shapes (conditionals.py).
CONDITIONALS = {"If", "StatelessIf"}
DIM_SYMBOLS = {0: "batch", 1: "seq"}
RESOURCE = 20  # tf.resource's DataType enum: a variable handle


def handler(*tf_ops: str):
    """Register a function as the handler of one or more TF op types."""
    def deco(fn: Handler) -> Handler:
        for name in tf_ops:
            HANDLERS[name] = fn
        return fn
    return deco


_CALL_PREFIX = re.compile(r"^((Stateful)?PartitionedCall(_\d+)?/)+")


def clean_name(node_name: str) -> str:
    """A TF node name without the call-op prefixes that function inlining adds."""
    return _CALL_PREFIX.sub("", node_name)


class ImportContext:
    """What a handler sees: the graph under construction and the current node."""

    def __init__(self, graph: Graph, weight_names: dict[str, str] | None = None,
                 variables: dict[str, tuple[str, Any]] | None = None, functions: dict[str, Any] | None = None,
                 source: str = "<graph>") -> None:
        self.graph = graph
        self.node: Any = None
        self.weight_names = weight_names or {}
        self.variables = variables or {}
        self.functions = functions or {}  # FunctionDefs by name: the branches of tf.cond
        self.source = source

    def variable(self, input_name: str) -> Value:
        """The constant holding the weights behind a captured variable placeholder."""
        node = input_name.split(":")[0].lstrip("^")
        if node not in self.variables:
            raise OpError(f"{self.node.op} '{self.name}' reads '{node}', which is not a captured variable")
        name, value = self.variables[node]
        return self.graph.const(np.asarray(value), name, Loc.of(name))

    @property
    def name(self) -> str:
        return clean_name(self.node.name)

    @property
    def loc(self) -> Loc:
        return Loc.of(self.name)

    def emit(self, kind: str, operands: list[Value], attrs: dict | None = None, name: str | None = None) -> Value:
        op = self.graph.add(kind, operands, attrs, self.loc, name or _hint(self.name))
        return op.results[0]

    def const(self, value, name: str | None = None) -> Value:
        """A constant; frozen weights keep their variable's name, as name and location."""
        weight = self.weight_names.get(self.node.name)
        loc = Loc.of(weight) if weight and name is None else self.loc
        return self.graph.const(value, name or weight or self.name, loc)

    def attr(self, key: str, default: Any = None) -> Any:
        if key not in self.node.attr:
            return default
        a = self.node.attr[key]
        kind = a.WhichOneof("value")
        if kind == "list":
            lst = a.list
            return list(lst.i) or list(lst.f) or [x.decode() for x in lst.s] or list(lst.type)
        if kind == "s":
            return a.s.decode()
        if kind == "type":
            return _dtype_name(a.type)
        return getattr(a, kind) if kind else default

    def const_of(self, v: Value) -> np.ndarray:
        """The compile-time value of an operand that TF semantics need constant (axes, perms …)."""
        c = v.const_value()
        if c is None and v.sym is not None and all(isinstance(d, int) for d in v.sym):
            c = np.asarray(v.sym)
            if v.type.rank == 0:
                c = c.reshape(())
        if c is None:
            c = self.folded(v)
        if c is None:
            raise OpError(f"{self.node.op} '{self.name}' needs operand %{v.name} to be a constant, "
                          "but it depends on the inputs")
        return c

    def folded(self, v: Value, limit: int = 1 << 20) -> np.ndarray | None:
        """The value of ``v`` when it is computed from constants only (a kernel reshaped by
        Keras, strides from ones_like), evaluated with the reference kernels; else None."""
        from ..ir.registry import get_op_def

        c = v.const_value()
        if c is not None:
            return c
        if v.producer is None:
            return None
        ops, stack, seen = [], [v.producer], set()
        while stack:  # the producers of v, leaves first after the reverse below
            op = stack.pop()
            if id(op) in seen:
                continue
            seen.add(id(op))
            ops.append(op)
            for x in op.operands:
                if x.producer is None or not get_op_def(x.producer.kind).pure:
                    return None
                if x.producer.kind != "const":
                    stack.append(x.producer)
        values: dict[int, np.ndarray] = {}
        for op in sorted(ops, key=self.graph.ops.index):
            args = [x.const_value() if x.is_const() else values[id(x)] for x in op.operands]
            for r, out in zip(op.results, get_op_def(op.kind).run(op, args)):
                if np.asarray(out).size > limit:
                    return None
                values[id(r)] = np.asarray(out)
        return values[id(v)]


def _hint(node_name: str) -> str:
    parts = node_name.split("/")
    return parts[-1] if len(parts) == 1 or not parts[-2] else f"{parts[-2]}_{parts[-1]}"


def _dtype_name(tf_enum: int) -> str:
    import tensorflow as tf

    return dtype_of(np.dtype(tf.dtypes.as_dtype(tf_enum).as_numpy_dtype))


def _reachable(nodes: dict[str, Any], outputs: list[str]) -> list[str]:
    """Node names the outputs depend on (data edges only), in topological order."""
    order: list[str] = []
    state: dict[str, int] = {}
    for root in outputs:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(name)
                continue
            if state.get(name):
                continue
            state[name] = 1
            stack.append((name, True))
            for inp in nodes[name].input:
                if inp.startswith("^"):
                    continue
                src = inp.split(":")[0]
                if src not in nodes:
                    raise BertcError(f"node '{name}' reads '{src}', which is not in the graph.")
                if not state.get(src):
                    stack.append((src, False))
    return order


# Ops whose result is not a function of the inputs: dropout left on at inference, tf.random.
RANDOM = {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
          "RandomShuffle", "StatelessRandomUniformV2", "StatelessRandomNormalV2", "StatelessRandomUniform",
          "StatelessRandomNormal", "StatelessTruncatedNormalV2", "StatelessRandomUniformIntV2"}
PYTHON_CALLS = {"EagerPyFunc", "PyFunc", "PyFuncStateless"}


def _refuse(node) -> str | None:
    if node.op in RANDOM:
        return ("random ops are not supported: the model draws random numbers at inference (tf.nn.dropout "
                "or tf.random in the serving function); export it with dropout off (training=False)")
    if node.op in PYTHON_CALLS:
        return ("Python calls (tf.py_function, tf.numpy_function) are not supported: their code is not in the "
                "graph; write that step in TF ops")
    if node.op in CONTROL_FLOW:
        return ("control flow the inputs decide is not supported (a tf.while_loop whose loop variables "
                "depend on the inputs, or TF1 Switch/Merge on the data): bertc keeps a tf.cond as a cond op "
                "and runs a loop over constants at import, but has no loops; export the model without it")
    types = [a.type for k, a in node.attr.items() if k in ("T", "dtype", "DstT", "SrcT", "out_type", "Tparams")]
    if 7 in types:  # DT_STRING
        return "string ops are not supported: export a model that takes token ids, not text"
    if BFLOAT16 in types:
        return ("bfloat16 tensors are not supported (no target here runs them): export the model computing "
                "in float32 (keras.mixed_precision.set_global_policy('float32') before building it)")
    return None


BFLOAT16 = 14  # tf.bfloat16's DataType enum


def import_frozen(model: FrozenModel) -> Graph:
    from . import tf_ops  # noqa: F401  (fills HANDLERS)

    from .switch_merge import resolve

    nodes = resolve({n.name: n for n in model.graph_def.node}, {i.node for i in model.inputs})
    order = _reachable(nodes, [o.node for o in model.outputs])
    model.variables = _forward_variables(nodes, order, dict(model.variables or {}))
    placeholder_names = {i.node for i in model.inputs} | set(model.variables or {})
    check_supported(model.source, nodes, order, placeholder_names)
    return _translate(model, nodes, order, input_dim_symbols(model, nodes, order))


def _free_dims(model: FrozenModel) -> list[tuple[int, int]]:
    """(input index, axis) of every input dim the signature leaves unknown."""
    return [(i, j) for i, spec in enumerate(model.inputs) for j, d in enumerate(spec.shape or []) if d is None]


def input_dim_symbols(model: FrozenModel, nodes: dict[str, Any], order: list[str]) -> dict[tuple[int, int], str]:
    """A symbol for each unknown input dim, shared by the dims the graph ties together.

    A trial import gives every unknown dim a symbol of its own and unites those that
    meet (``tying_dims``); each group is then named after its first dim: ``batch`` or
    ``seq`` for the first input's, ``batch_<input>`` for a later input's own.  When
    the trial import fails, every input shares ``batch`` and ``seq`` as before, and
    the log says so.
    """
    free = _free_dims(model)
    shared = {(i, j): DIM_SYMBOLS.get(j, f"d{j}") for i, j in free}
    if len({i for i, _ in free}) < 2:
        return shared
    trial = {(i, j): f"in{i}_d{j}" for i, j in free}
    try:
        with tying_dims(trial.values()) as ties:
            _translate(model, nodes, order, trial)
    except Exception as e:  # the real import below reports what is wrong, if anything is
        log.info("could not tell which input dims the graph ties (%s); every input shares batch and seq",
                 str(e).splitlines()[0] if str(e) else type(e).__name__)
        return shared
    by_trial = {sym: key for key, sym in trial.items()}
    names: dict[str, str] = {}
    out: dict[tuple[int, int], str] = {}
    for key in free:
        root = ties.find(trial[key])
        if root not in names:
            base = DIM_SYMBOLS.get(key[1], f"d{key[1]}")
            first = by_trial[root]
            names[root] = base if first[0] == free[0][0] or base not in names.values() else \
                f"{base}_{_symbol_part(model.inputs[first[0]].name)}"
        out[key] = names[root]
    return out


def _symbol_part(name: str) -> str:
    return re.sub(r"\W", "_", name).strip("_") or "input"


def _translate(model: FrozenModel, nodes: dict[str, Any], order: list[str],
               dim_symbols: dict[tuple[int, int], str]) -> Graph:
    """The IR graph of ``order``'s nodes, with ``dim_symbols`` for the inputs' unknown dims."""
    graph = Graph("main")
    env: dict[str, list[Value]] = {}
    for i, spec in enumerate(model.inputs):
        shape = spec.shape if spec.shape is not None else []
        dims = tuple(d if d is not None else dim_symbols[(i, j)] for j, d in enumerate(shape))
        env[spec.node] = [graph.add_input(spec.name, TensorType(dtype_of(np.dtype(spec.dtype)), dims))]
    ctx = ImportContext(graph, model.weight_names, model.variables,
                        {f.signature.name: f for f in model.graph_def.library.function}, model.source)
    reachable = set(order)
    for name in model.variables or {}:
        node = nodes.get(name)
        tf_type = node.attr["dtype"].type or node.attr["T"].type if node is not None else RESOURCE
        if name in reachable and tf_type != RESOURCE:
            ctx.node = node
            env[name] = [ctx.variable(name)]  # a captured constant tensor: its value, as a constant
        else:
            env[name] = [None]  # read through ReadVariableOp / ResourceGather, which ask ctx.variable()
    import_nodes(ctx, nodes, order, env)
    for spec in model.outputs:
        out = env[spec.node][spec.index]
        if not isinstance(out, Value):
            raise BertcError(f"{model.source}: output '{spec.name}' is complex; bertc's artifacts return real "
                             "tensors (take tf.math.real of it)")
        graph.outputs[spec.name] = out
    return graph


def check_supported(source: str, nodes: dict[str, Any], order: list[str], placeholders: set[str]) -> None:
    """Every node in ``order`` has a handler: else one error listing all that lack one.
    A tf.cond is imported (conditionals.py), and so is a loop over constants (loops.py)."""
    from .loops import LOOPS, from_constants

    problems: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name in order:
        node = nodes[name]
        if node.op == "Placeholder" and name in placeholders:
            continue
        if node.op in CONDITIONALS or (node.op in LOOPS and from_constants(nodes, name, placeholders)):
            continue
        why = _refuse(node) or (None if node.op in HANDLERS else NO_HANDLER)
        if why:
            problems[why][node.op].append(clean_name(name))
    if problems:
        raise BertcError(_unsupported_message(source, problems),
                         "Re-export the model without these ops, or add a handler for each to "
                         "bertc.frontend.tf_ops (docs/user-guide.md, 'Importing a new TF op').")


def import_nodes(ctx: ImportContext, nodes: dict[str, Any], order: list[str], env: dict[str, list]) -> None:
    """Translate ``order``'s nodes into ``ctx.graph``; ``env`` maps node names to their values."""
    from .conditionals import import_cond
    from .loops import LOOPS, import_loop

    for name in order:
        if name in env:
            continue
        node = nodes[name]
        ctx.node = node
        ins = []
        for inp in node.input:
            if inp.startswith("^"):
                continue
            src, _, idx = inp.partition(":")
            ins.append(env[src][int(idx or 0)])
        try:
            fn = HANDLERS.get(node.op)
            if any(not isinstance(v, Value) and v is not None for v in ins) and not getattr(fn, "complex_aware", False):
                raise OpError("it reads a complex value; bertc imports complex tensors only from Complex "
                              "through FFT/FFT2D to Real/Imag")
            if node.op in CONDITIONALS:
                out = import_cond(ctx, node, ins)
            elif node.op in LOOPS:
                out = import_loop(ctx, node, ins)
            else:
                out = fn(ctx, node, ins)
        except OpError as e:
            raise BertcError(f"{ctx.source}: cannot import {node.op} '{clean_name(name)}': {e}") from None
        env[name] = out if isinstance(out, list) else [out]


NO_HANDLER = "no handler in bertc"


def _forward_variables(nodes: dict[str, Any], order: list[str], variables: dict) -> dict:
    """Inlining passes variable handles through Identity nodes; they name the same variable."""
    for name in order:
        node = nodes[name]
        if node.op == "Identity" and node.input and node.input[0].split(":")[0] in variables:
            variables[name] = variables[node.input[0].split(":")[0]]
    return variables


def _unsupported_message(source: str, problems: dict[str, dict[str, list[str]]]) -> str:
    """All unimportable ops at once: grouped by reason, then by op, with node names."""
    lines = [f"{source}: the model uses TensorFlow ops bertc cannot import:"]
    for why, ops in problems.items():
        lines.append(f"  {why}:")
        for op, names in sorted(ops.items()):
            shown = ", ".join(f"'{n}'" for n in sorted(names)[:5])
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            lines.append(f"    {op} ({len(names)}x): {shown}{more}")
    return "\n".join(lines)


def import_model(path: str | Path, signature: str = "serving_default", inputs: list[str] | None = None,
                 outputs: list[str] | None = None, *, canonicalize: bool = True) -> tuple[Graph, FrozenModel]:
    """Load, freeze and import a model; by default also run the canonical cleanup passes."""
    model = load_model(path, signature, inputs, outputs)
    graph = import_frozen(model)
    if canonicalize:
        from ..pass_manager import PassManager, parse_pipeline

        PassManager(parse_pipeline(CANONICALIZE)).run(graph)
    return graph, model


def import_function(fn, *, canonicalize: bool = True) -> tuple[Graph, FrozenModel]:
    """Import a concrete ``tf.function`` (tests and notebooks build models this way)."""
    from .tf_loader import freeze_function

    model = freeze_function(fn)
    graph = import_frozen(model)
    if canonicalize:
        from ..pass_manager import PassManager, parse_pipeline

        PassManager(parse_pipeline(CANONICALIZE)).run(graph)
    return graph, model


# What every import runs after translation: fold the shape arithmetic, merge
# duplicates, and recognise layer norm and GELU.
CANONICALIZE = ("fold_constants,remove_identity,simplify_shapes,fold_constants,cse,fuse_layer_norm,fuse_gelu,"
                "fuse_softmax,dce")
