"""Valid random inputs for BERT-family models: token ids, masks with padding, segments.

Verification and benchmarks feed every backend the same arrays.  Inputs are
recognised by name: ``*mask*`` gets ones with trailing padding, ``*type*`` and
``*segment*`` get two segments, anything else gets token ids below the
vocabulary size.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..ir.graph import Graph


def input_role(name: str) -> str:
    low = name.lower()
    if "mask" in low:
        return "mask"
    if "type" in low or "segment" in low:
        return "segment"
    return "ids"


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
                  vocab: int | dict[str, int] = 100, pad: bool = True) -> dict[str, np.ndarray]:
    """Feeds for inputs given as (name, numpy dtype name).

    Row ``i`` of the mask keeps ``seq - i`` tokens (at least 1), so a batch mixes
    lengths and padding is exercised; ids at padded positions are 0, as a
    tokenizer writes them.
    """
    lengths = np.array([max(1, seq - (i % max(seq, 1)) if pad else seq) for i in range(batch)])
    valid = np.arange(seq)[None, :] < lengths[:, None]
    feeds: dict[str, np.ndarray] = {}
    for name, dtype in specs:
        role = input_role(name)
        if role == "mask":
            arr = valid.astype(np.int64)
        elif role == "segment":
            arr = ((np.arange(seq)[None, :] >= (lengths[:, None] + 1) // 2) & valid).astype(np.int64)
        else:
            v = vocab[name] if isinstance(vocab, dict) else vocab
            arr = np.where(valid, rng.integers(1, max(v, 2), size=(batch, seq)), 0)
        feeds[name] = arr.astype(dtype)
    return feeds


def graph_input_specs(graph: Graph) -> list[tuple[str, str]]:
    from ..ir.types import np_dtype

    return [(v.name, np_dtype(v.dtype).name) for v in graph.inputs]


def random_graph_inputs(graph: Graph, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid random feeds; an input with dims past [batch, seq] (a bbox) is all zeros."""
    rng = np.random.default_rng(seed)
    vocab = {v.name: vocab_size(graph, v.name) for v in graph.inputs}
    feeds = random_inputs(graph_input_specs(graph), batch, seq, rng, vocab)
    for v in graph.inputs:
        if v.type.rank > 2:
            extra = [int(d) if isinstance(d, int) else 1 for d in v.shape[2:]]
            feeds[v.name] = np.zeros((batch, seq, *extra), feeds[v.name].dtype)
    return feeds
