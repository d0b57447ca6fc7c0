"""Writing a TFLite flatbuffer by hand: tensors, buffers, operator codes, operators.

``ModelBuilder`` knows the file format and nothing about the IR; ``Lowering``
maps IR values to its tensors and offers the small emitters that the op
lowerings in ``tflite.py`` share (casts, run-time shape vectors, helper
constants).  We write the flatbuffer with TF's generated object API
(``schema_py_generated``) instead of running the TFLite converter, so every
op, layout and quantization parameter is ours.

Conventions kept here:

* buffer 0 is the empty sentinel that every non-constant tensor points at;
* constant data is 16-byte aligned inside the file (XNNPACK and mmap readers
  like aligned weights);
* a symbolic dim is written as 1 in ``shape`` and -1 in ``shape_signature``,
  so the user can resize inputs without rebuilding;
* helper constants with equal contents (perm vectors, axes …) are shared;
* output is deterministic: the same calls give the same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import flatbuffers
import numpy as np
# LiteRT ships the same generated schema as pure Python; TF's copy would import all of TF (4 s).
from ai_edge_litert import schema_py_generated as schema

from ..ir.graph import Graph, Op, Value
from ..ir.names import UniqueNames
from ..ir.printer import Namer
from ..ir.types import DTYPES, UNKNOWN
from .base import LoweringError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"
WEIGHT_ALIGNMENT = 16
MAX_WEIGHT_BYTES = 2**31 - 2**24  # flatbuffers' 2 GiB limit, less room for the graph itself
# Builtin codes above this are stored in ``builtin_code`` only; the deprecated
# int8 field holds this placeholder (TFLite schema rule).
PLACEHOLDER_FOR_GREATER_OP_CODES = 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

BuiltinOperator = B = schema.BuiltinOperator

# Operator versions: LiteRT's builtin resolver registers every builtin from
# version 1 except these (BROADCAST_TO v1 was a Flex op).  Kernels do not read
# the version, so the lowest registered one is what we write.
MIN_VERSION: dict[int, int] = {B.BROADCAST_TO: 2}

# IR dtype name -> TFLite TensorType.
TENSOR_TYPES: dict[str, int] = {
    "f16": schema.TensorType.FLOAT16,
    "f32": schema.TensorType.FLOAT32,
    "f64": schema.TensorType.FLOAT64,
    "i8": schema.TensorType.INT8,
    "u8": schema.TensorType.UINT8,
    "i16": schema.TensorType.INT16,
    "i32": schema.TensorType.INT32,
    "i64": schema.TensorType.INT64,
    "bool": schema.TensorType.BOOL,
}

# Options class name -> BuiltinOptions union tag, e.g. "AddOptionsT" -> BuiltinOptions.AddOptions.
_OPTION_TAGS: dict[type, int] = {
    getattr(schema, name + "T"): tag
    for name, tag in vars(schema.BuiltinOptions).items()
    if not name.startswith("_") and hasattr(schema, name + "T")
}


def signature_dim(dim: Any) -> int:
    """-1 for a symbolic or unknown dim, the number otherwise."""
    return int(dim) if isinstance(dim, (int, np.integer)) else -1


class AlignedBuffer(schema.BufferT):
    """A buffer whose data starts on a ``WEIGHT_ALIGNMENT`` boundary of the file."""

    def __init__(self, array: np.ndarray | None = None) -> None:
        super().__init__()
        # Little-endian, C order; kept as an array so the weights are copied once, into the file.
        if array is not None:
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        self.array = array

    @property
    def nbytes(self) -> int:
        return 0 if self.array is None else self.array.nbytes

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (flatbuffers' name)
        data = None
        n = self.nbytes
        if n:
            builder.StartVector(1, n, WEIGHT_ALIGNMENT)
            builder.head = builder.head - n
            builder.Bytes[builder.head:builder.head + n] = memoryview(self.array).cast("B")
            builder.vectorNumElems = n
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


@dataclass
class ModelBuilder:
    """Accumulates the main subgraph (and the branch subgraphs of IF ops) and serialises them
    as a TFLite model.  ``tensors`` and ``operators`` are those of the subgraph being written."""

    description: str = "bertc"
    tensors: list[schema.TensorT] = field(default_factory=list)
    buffers: list[schema.BufferT] = field(default_factory=lambda: [AlignedBuffer()])
    operators: list[schema.OperatorT] = field(default_factory=list)
    opcodes: list[schema.OperatorCodeT] = field(default_factory=list)
    _opcode_index: dict[int, int] = field(default_factory=dict)
    _names: UniqueNames = field(default_factory=UniqueNames)
    _const_cache: dict[tuple, int] = field(default_factory=dict)
    weight_bytes: int = 0
    branches: list[schema.SubGraphT] = field(default_factory=list)  # subgraphs 1, 2, … in order

    # ------------------------------------------------------------ subgraphs
    def begin_subgraph(self) -> tuple:
        """Start writing a new subgraph; returns what ``end_subgraph`` restores."""
        saved = (self.tensors, self.operators, self._const_cache)
        self.tensors, self.operators, self._const_cache = [], [], {}
        return saved

    def end_subgraph(self, saved: tuple, inputs: Sequence[int], outputs: Sequence[int], name: str) -> int:
        """Finish the subgraph begun by ``begin_subgraph``; returns its index in the model."""
        sub = schema.SubGraphT()
        sub.tensors, sub.operators, sub.name = self.tensors, self.operators, name
        sub.inputs, sub.outputs = list(inputs), list(outputs)
        self.branches.append(sub)
        self.tensors, self.operators, self._const_cache = saved
        return len(self.branches)

    # ------------------------------------------------------------ tensors
    def unique_name(self, name: str) -> str:
        return self._names.claim(name)

    def tensor(self, name: str, dtype: str, dims: Sequence[Any], buffer: int = 0) -> int:
        """A tensor of IR dtype ``dtype`` whose dims may be symbolic; returns its index."""
        t = schema.TensorT()
        t.name = self.unique_name(name)
        t.type = TENSOR_TYPES[dtype]
        sig = [signature_dim(d) for d in dims]
        t.shape = [1 if d < 0 else d for d in sig]
        if any(d < 0 for d in sig):
            t.shapeSignature = sig
        t.buffer = buffer
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, array: np.ndarray, dtype: str) -> int:
        """A constant tensor holding ``array`` (little-endian, C order) in its own buffer."""
        arr = np.asarray(array, order="C")  # (ascontiguousarray would make scalars 1-D)
        self.buffers.append(AlignedBuffer(arr))
        self.weight_bytes += arr.nbytes
        return self.tensor(name, dtype, arr.shape, buffer=len(self.buffers) - 1)

    def shared_const(self, name: str, array: np.ndarray, dtype: str) -> int:
        """A small helper constant (perm, axes, shape …), shared with equal ones."""
        arr = np.asarray(array, order="C")  # (ascontiguousarray would make scalars 1-D)
        key = (dtype, arr.shape, arr.tobytes())
        if key not in self._const_cache:
            self._const_cache[key] = self.const(name, arr, dtype)
        return self._const_cache[key]

    def is_const(self, index: int) -> bool:
        return self.tensors[index].buffer != 0

    # ------------------------------------------------------------ operators
    def opcode(self, code: int) -> int:
        if code not in self._opcode_index:
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = MIN_VERSION.get(code, 1)
            self._opcode_index[code] = len(self.opcodes)
            self.opcodes.append(oc)
        return self._opcode_index[code]

    def op(self, code: int, inputs: Sequence[int], outputs: Sequence[int], options: Any = None) -> None:
        """Append one builtin operator; ``options`` is a ``*OptionsT`` instance or None.

        An input of -1 marks an omitted optional input (e.g. FULLY_CONNECTED's bias).
        """
        o = schema.OperatorT()
        o.opcodeIndex = self.opcode(code)
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = _OPTION_TAGS[type(options)]
            o.builtinOptions = options
        self.operators.append(o)

    # ------------------------------------------------------------ output
    def finish(self, inputs: Sequence[tuple[str, int]], outputs: Sequence[tuple[str, int]],
               signature_key: str = "serving_default", subgraph_name: str = "main") -> bytes:
        """Serialise the model; ``inputs``/``outputs`` are (signature name, tensor index)."""
        sub = schema.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = [i for _, i in inputs]
        sub.outputs = [i for _, i in outputs]
        sub.operators = self.operators
        sub.name = subgraph_name

        sig = schema.SignatureDefT()
        sig.signatureKey = signature_key
        sig.subgraphIndex = 0
        sig.inputs = [_tensor_map(n, i) for n, i in inputs]
        sig.outputs = [_tensor_map(n, i) for n, i in outputs]

        model = schema.ModelT()
        model.version = SCHEMA_VERSION
        model.description = self.description
        model.operatorCodes = self.opcodes
        model.subgraphs = [sub, *self.branches]
        model.buffers = self.buffers
        model.signatureDefs = [sig]

        if self.weight_bytes > MAX_WEIGHT_BYTES:
            raise ValueError(f"{self.weight_bytes / 2**30:.2f} GiB of constants do not fit a TFLite "
                             "flatbuffer (2 GiB at most)")
        builder = flatbuffers.Builder(self.weight_bytes + 256 * len(self.tensors) + (1 << 16))
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        out = bytes(memoryview(builder.Bytes)[builder.Head():])
        log.debug("tflite model: %d tensors, %d operators, %d bytes", len(self.tensors),
                  len(self.operators), len(out))
        return out


def _tensor_map(name: str, index: int) -> schema.TensorMapT:
    m = schema.TensorMapT()
    m.name = name
    m.tensorIndex = index
    return m


def options(cls_name: str, **fields: Any) -> Any:
    """An options object by class name: ``options("SoftmaxOptionsT", beta=1.0)``."""
    obj = getattr(schema, cls_name)()
    for key, value in fields.items():
        if not hasattr(obj, key):
            raise AttributeError(f"{cls_name} has no field {key!r}")
        setattr(obj, key, value)
    return obj


def read_model(data: bytes) -> schema.ModelT:
    """Parse a .tflite file back into the object API (tests and tools inspect it)."""
    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def builtin_name(code: int) -> str:
    """"FULLY_CONNECTED" for its code (diagnostics and tests)."""
    for name, value in vars(BuiltinOperator).items():
        if value == code and not name.startswith("_"):
            return name
    return f"BUILTIN_{code}"


# --------------------------------------------------------------------------- lowering state
class Lowering:
    """Maps IR values to TFLite tensors while one graph is lowered."""

    def __init__(self, graph: Graph, mb: ModelBuilder | None = None) -> None:
        self.graph = graph
        self.mb = mb or ModelBuilder(description=f"bertc: {graph.name}")  # a branch shares the model's
        self.names = Namer()
        for v in graph.inputs:  # the printer's naming order, so names match the text form
            self.names.name(v)
        for op in graph.ops:
            for r in op.results:
                self.names.name(r)
        self.tensors: dict[int, int] = {}  # id(Value) -> tensor index
        self.dtypes: dict[int, str] = {}  # tensor index -> IR dtype
        self.op: Op | None = None  # the op being lowered: names helper tensors
        self._transposed: dict[int, int] = {}  # id(const Value) -> tensor of its transpose
        # symbolic shape -> its run-time int32 vector: a symbol is one value everywhere, so
        # every reshape to [batch, seq, 7, 32] can share one (Q, K and V; layers alike)
        self.shape_vectors: dict[tuple, int] = {}

    # ------------------------------------------------------------ tensors of IR values
    def tensor(self, v: Value) -> int:
        """The tensor of ``v``; a constant is written on first use (unused ones never are)."""
        if id(v) not in self.tensors:
            if not v.is_const():
                raise LoweringError(self.op or v.producer, f"value %{v.name} is used before it is defined")
            arr = np.asarray(v.const_value(), dtype=DTYPES[v.dtype])
            self.bind(v, self._track(self.mb.const(self.names.name(v), arr, v.dtype), v.dtype))
        return self.tensors[id(v)]

    def result(self, v: Value) -> int:
        """A new tensor for the result ``v``, named and typed as in the IR."""
        idx = self._track(self.mb.tensor(self.names.name(v), v.dtype, v.shape), v.dtype)
        self.bind(v, idx)
        return idx

    def transposed_weight(self, w: Value) -> int:
        """The 2-D constant ``w`` stored transposed ([N, K] for FULLY_CONNECTED), once per weight."""
        if id(w) not in self._transposed:
            arr = np.asarray(w.const_value(), dtype=DTYPES[w.dtype]).T
            idx = self.mb.const(f"{self.names.name(w)}/transposed", np.ascontiguousarray(arr), w.dtype)
            self._transposed[id(w)] = self._track(idx, w.dtype)
        return self._transposed[id(w)]

    def bind(self, v: Value, idx: int) -> None:
        self.tensors[id(v)] = idx

    def _track(self, idx: int, dtype: str) -> int:
        self.dtypes[idx] = dtype
        return idx

    # ------------------------------------------------------------ helper tensors
    def tmp(self, suffix: str, dtype: str, dims) -> int:
        """An intermediate tensor named after the op being lowered."""
        base = self.names.name(self.op.results[0]) if self.op and self.op.results else "tmp"
        return self._track(self.mb.tensor(f"{base}/{suffix}", dtype, dims), dtype)

    def const(self, value, dtype: str, suffix: str = "const") -> int:
        """A small shared constant of IR dtype ``dtype``."""
        arr = np.asarray(value, dtype=DTYPES[dtype])
        base = self.names.name(self.op.results[0]) if self.op and self.op.results else "const"
        return self._track(self.mb.shared_const(f"{base}/{suffix}", arr, dtype), dtype)

    def i32(self, values, suffix: str = "const") -> int:
        return self.const(np.asarray(values, dtype=np.int32), "i32", suffix)

    def emit(self, code: int, inputs, outputs, opts=None) -> None:
        self.mb.op(code, inputs, outputs, opts)

    def unary(self, code: int, x: int, suffix: str, dtype: str, dims, opts=None) -> int:
        out = self.tmp(suffix, dtype, dims)
        self.emit(code, [x], [out], opts)
        return out

    def binary(self, code: int, x: int, y: int, suffix: str, dtype: str, dims, opts=None) -> int:
        out = self.tmp(suffix, dtype, dims)
        self.emit(code, [x, y], [out], opts)
        return out

    def cast(self, idx: int, to: str, suffix: str = "cast", dims=(UNKNOWN,)) -> int:
        """``idx`` converted to IR dtype ``to`` (no op when it already is)."""
        if self.dtypes[idx] == to:
            return idx
        out = self.tmp(suffix, to, dims)
        self.emit(B.CAST, [idx], [out], cast_options(self.dtypes[idx], to))
        return out

    def shape_of(self, x: Value) -> int:
        """The run-time shape of ``x`` as an int32 vector (SHAPE)."""
        out = self.tmp("shape", "i32", [x.type.rank])
        self.emit(B.SHAPE, [self.tensor(x)], [out], options("ShapeOptionsT", outType=TENSOR_TYPES["i32"]))
        return out

    def gather_vector(self, parts: list[tuple[int, int]], literals: list[int], picks: list[tuple[str, int]],
                      suffix: str, dtype: str = "i32") -> int:
        """A 1-D integer vector assembled at run time.

        ``parts`` are (tensor, length) vectors of ``dtype``; ``picks`` name each
        output element as ("part", position over all parts concatenated) or
        ("lit", a value in ``literals``).  One CONCATENATION, then one GATHER.
        """
        offset = sum(n for _, n in parts)
        idx = [k if kind == "part" else offset + literals.index(k) for kind, k in picks]
        pieces = [t for t, _ in parts]
        if literals:
            pieces.append(self.const(literals, dtype, f"{suffix}_literals"))
        table = pieces[0]
        if len(pieces) > 1:
            table = self.tmp(f"{suffix}_table", dtype, [offset + len(literals)])
            self.emit(B.CONCATENATION, pieces, [table], options("ConcatenationOptionsT", axis=0))
        out = self.tmp(suffix, dtype, [len(picks)])
        self.emit(B.GATHER, [table, self.i32(idx, f"{suffix}_index")], [out],
                  options("GatherOptionsT", axis=0))
        return out

    def pad_ones(self, vec: int, length: int, n: int, suffix: str) -> int:
        """An int32 vector of ``length`` padded to ``n`` with leading ones (broadcast alignment)."""
        if length >= n:
            return vec
        out = self.tmp(suffix, "i32", [n])
        self.emit(B.CONCATENATION, [self.i32([1] * (n - length), "ones"), vec], [out],
                  options("ConcatenationOptionsT", axis=0))
        return out

    def clamp(self, idx: int, lo: int, hi: int, dims, suffix: str) -> int:
        """min(max(x, lo), hi) in x's own dtype."""
        dt = self.dtypes[idx]
        opts = options("MaximumMinimumOptionsT")
        low = self.binary(B.MAXIMUM, idx, self.const(lo, dt, "lower_bound"), f"{suffix}_lo", dt, dims, opts)
        high = self.const(hi, dt, "upper_bound")
        return self.binary(B.MINIMUM, low, high, f"{suffix}_clamped", dt, dims, opts)

    def copy(self, src: int, name: str, dtype: str, dims) -> int:
        """A new tensor equal to ``src`` (a same-type CAST: LiteRT has no IDENTITY builtin).
        Graph outputs that are inputs, constants or repeats get one."""
        out = self._track(self.mb.tensor(name, dtype, dims), dtype)
        self.emit(B.CAST, [src], [out], cast_options(dtype, dtype))
        return out


def cast_options(src: str, dst: str) -> Any:
    """CAST's options: source and destination TFLite types."""
    return options("CastOptionsT", inDataType=TENSOR_TYPES[src], outDataType=TENSOR_TYPES[dst])


# --------------------------------------------------------------------------- quantization (issue 6)
def quantization(scale, zero_point, axis: int | None = None) -> Any:
    """TFLite quantization parameters: per tensor (``axis`` None) or along ``axis``."""
    qp = schema.QuantizationParametersT()
    qp.scale = [float(s) for s in np.atleast_1d(np.asarray(scale, np.float32))]
    qp.zeroPoint = [int(z) for z in np.atleast_1d(np.asarray(zero_point))]
    qp.quantizedDimension = 0 if axis is None else int(axis)
    return qp


def _same_quantization(a: Any, b: Any) -> bool:
    return (list(a.scale or []) == list(b.scale or []) and list(a.zeroPoint or []) == list(b.zeroPoint or [])
            and a.quantizedDimension == b.quantizedDimension)


def set_quantization(ctx: Lowering, idx: int, qp: Any) -> None:
    """Attach ``qp`` to tensor ``idx``.  A TFLite tensor has one set of parameters, so a
    second, different set (one int8 tensor dequantized two ways) is refused."""
    t = ctx.mb.tensors[idx]
    if t.quantization is not None and t.quantization.scale and not _same_quantization(t.quantization, qp):
        raise LoweringError(ctx.op, f"tensor {t.name} already carries other quantization parameters")
    t.quantization = qp


def quantized_weight(ctx: Lowering, w: Value, scale: Value, zero_point: Value, axis: int | None) -> int:
    """The int8 kernel ``w`` [K, N] stored as [N, K] (FULLY_CONNECTED's layout) with its
    scales per output channel (quantized_dimension 0) or per tensor; written once per weight."""
    idx = ctx.transposed_weight(w)
    set_quantization(ctx, idx, quantization(scale.const_value(), zero_point.const_value(),
                                            None if axis is None else 0))
    return idx


Lower = Callable[[Lowering, Op], None]  # one IR op -> TFLite operators, through the Lowering context


def lowering_table() -> tuple[dict[str, Lower], Callable]:
    """A module's own table of lowerings and the decorator that fills it: ``@lowers("kind", ...)``.
    tflite.py merges the modules' tables into the target's one table."""
    table: dict[str, Lower] = {}

    def lowers(*kinds: str):
        def deco(fn: Lower) -> Lower:
            for k in kinds:
                table[k] = fn
            return fn
        return deco

    return table, lowers
