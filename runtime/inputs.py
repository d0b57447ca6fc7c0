"""Valid random inputs for BERT-family models: token ids, masks with padding, segments.

Verification and benchmarks feed every backend the same arrays.  Inputs are
recognised by name: ``*mask*`` gets ones with trailing padding, ``*type*`` and
``*segment*`` get two segments, anything else gets token ids below the
vocabulary size.  An input of rank 1 ([batch]) is the valid length of each row,
from which the model builds its own mask (``tf.sequence_mask(lengths)``).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..analysis.input_roles import input_role  # noqa: F401  (re-exported)
from ..ir.graph import Graph




# Ops the ids pass through on their way to the embedding gather (padded, sliced, reshaped …).
_ID_MOVES = ("cast", "where", "add", "reshape", "unsqueeze", "squeeze", "pad", "slice", "concat", "transpose",
             "expand", "tile", "identity")


def vocab_size(graph: Graph, input_name: str, default: int | None = 100) -> int | None:
    """Rows of the embedding table that the ids input indexes (a gather's data)."""
    for v in graph.inputs:
        if v.name != input_name:
            continue
        stack = [v]
        seen = set()
        while stack:
            cur = stack.pop()
            for op, i in cur.uses:
                if op.kind == "gather" and i == 1 and op.operands[0].is_const():
                    return int(op.operands[0].shape[op.attrs["axis"]])
                if op.kind in _ID_MOVES and id(op) not in seen:
                    seen.add(id(op))
                    stack.extend(op.results)
    return default


def position_table_rows(graph: Graph) -> int | None:
    """Rows of the position-embedding table (a 2-D constant named "position", gathered or sliced)."""
    rows = [int(op.result.shape[0]) for op in graph.ops_of("const")
            if op.result.type.rank == 2 and op.result.dtype not in ("i32", "i64")
            and "position" in op.attrs["name"].lower()
            and any(user.kind in ("gather", "slice") for user in op.result.users)]
    return min(rows) if rows else None


def max_sequence_length(graph: Graph) -> int | None:
    """The longest input the position-embedding table allows, or None when there is none.

    The table is a 2-D constant whose name says "position", gathered or sliced (keras-hub
    slices it); two rows are kept in reserve for models that offset position ids past a
    padding id (RoBERTa, MPNet: ids start at padding_idx + 1).
    """
    rows = position_table_rows(graph)
    return max(1, rows - 2) if rows else None


def random_inputs(specs: Iterable[tuple[str, str]], batch: int, seq: int, rng: np.random.Generator,
                  vocab: int | dict[str, int] = 100, pad: bool = True,
                  lengths_inputs: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Feeds for inputs given as (name, numpy dtype name).

    Row ``i`` of the mask keeps ``seq - i`` tokens (at least 1), so a batch mixes
    lengths and padding is exercised; ids at padded positions are 0, as a
    tokenizer writes them.
    """
    lengths = np.array([max(1, seq - (i % max(seq, 1)) if pad else seq) for i in range(batch)])
    valid = np.arange(seq)[None, :] < lengths[:, None]
    feeds: dict[str, np.ndarray] = {}
    lengths_inputs = set(lengths_inputs)
    for name, dtype in specs:
        role = input_role(name)
        if name in lengths_inputs:
            arr = lengths
        elif role == "positions":
            arr = positions_like(valid)
        elif role == "mask":
            arr = valid.astype(np.int64)
        elif role == "segment":
            arr = ((np.arange(seq)[None, :] >= (lengths[:, None] + 1) // 2) & valid).astype(np.int64)
        else:
            v = vocab[name] if isinstance(vocab, dict) else vocab
            arr = np.where(valid, rng.integers(1, max(v, 2), size=(batch, seq)), 0)
        feeds[name] = arr.astype(dtype)
    return feeds


def positions_like(ids: np.ndarray) -> np.ndarray:
    """Position ids 0, 1, ..., seq - 1 in every row of a [batch, seq] array."""
    return np.broadcast_to(np.arange(ids.shape[1]), ids.shape).astype(np.int64)


def lengths_inputs(graph: Graph) -> list[str]:
    """The integer inputs of rank 1: one valid length per row."""
    return [v.name for v in graph.inputs if v.type.rank == 1 and v.dtype.startswith(("i", "u"))]


def graph_input_specs(graph: Graph) -> list[tuple[str, str]]:
    return [(v.name, np_dtype_name(v.dtype)) for v in graph.inputs]


def random_graph_inputs(graph: Graph, batch: int, seq: int, seed: int = 0,
                        independent: bool = False) -> dict[str, np.ndarray]:
    """Valid random feeds for ``graph``'s inputs; dims past [batch, seq] are zeros for an integer
    input (a bbox) and standard normal for a float one (inputs_embeds).

    Every batch-like dim symbol gets ``batch`` and every sequence-like one ``seq``, as a
    tokenizer feeds a BERT.  With ``independent=True`` (verification), an input with dims
    of its own (``batch_<name>``: the graph never relates them to the others) gets other
    sizes, so that a compile which wrongly assumed them equal is caught.
    """
    rng = np.random.default_rng(seed)
    vocab = {v.name: vocab_size(graph, v.name) for v in graph.inputs}
    sizes = symbol_sizes(graph, batch, seq, independent)
    lengths = set(lengths_inputs(graph))
    groups: dict[tuple[int, int], list] = {}
    for v in graph.inputs:
        groups.setdefault(_leading_sizes(v.shape, sizes, batch, seq), []).append(v)
    feeds: dict[str, np.ndarray] = {}
    for (b, s), values in groups.items():
        specs = [(v.name, np_dtype_name(v.dtype)) for v in values]
        feeds.update(random_inputs(specs, b, s, rng, vocab, lengths_inputs=lengths))
        for v in values:
            if v.type.rank != 2 and v.name not in lengths:
                extra = [d if isinstance(d, int) else sizes.get(d, 1) for d in v.shape[2:]]
                lead = [b, s][:v.type.rank]
                dtype = feeds[v.name].dtype
                fill = rng.standard_normal((*lead, *extra)) if dtype.kind == "f" else np.zeros((*lead, *extra))
                feeds[v.name] = fill.astype(dtype)  # a bbox all zeros; inputs_embeds standard normal
    return feeds


def symbol_sizes(graph: Graph, batch: int, seq: int, independent: bool = False) -> dict[str, int]:
    """A size for every dim symbol of the graph's inputs: ``batch`` and ``seq`` as given,
    each other symbol a size of its own (batch + k for batch-like dims, seq - k, at least 1,
    for sequence-like ones), so independent dims are fed unequal sizes; or, with
    ``independent=False``, the same ``batch`` or ``seq`` as their names say."""
    sizes = {"batch": batch, "seq": seq}
    k = 0
    for v in graph.inputs:
        for d in v.shape:
            if isinstance(d, str) and "*" not in d and d not in sizes:
                k += independent
                sizes[d] = max(1, seq - k) if d.startswith("seq") else batch + k
    return sizes


def _leading_sizes(shape, sizes: dict[str, int], batch: int, seq: int) -> tuple[int, int]:
    dims = [d if isinstance(d, int) else sizes.get(d, 1) for d in shape]
    return (dims[0] if dims else batch, dims[1] if len(dims) > 1 else seq)


def np_dtype_name(ir_dtype: str) -> str:
    from ..ir.types import np_dtype

    return np_dtype(ir_dtype).name
