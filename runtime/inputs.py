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

from ..ir.graph import Graph


def input_role(name: str) -> str:
    """ids, mask, segment or positions (``position_ids``: 0, 1, ... per row), by the input's name."""
    low = name.lower()
    if "position" in low:
        return "positions"
    if "mask" in low:
        return "mask"
    if "type" in low or "segment" in low:
        return "segment"
    return "ids"


# Ops the ids pass through on their way to the embedding gather (padded, sliced, reshaped …).
_ID_MOVES = ("cast", "where", "add", "reshape", "unsqueeze", "squeeze", "pad", "slice", "concat", "transpose",
             "expand", "tile", "identity")


def vocab_size(graph: Graph, input_name: str, default: int = 100) -> int:
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


def max_sequence_length(graph: Graph) -> int | None:
    """The longest input the position-embedding table allows, or None when there is none.

    The table is a 2-D constant whose name says "position", gathered or sliced (keras-hub
    slices it); two rows are kept in reserve for models that offset position ids past a
    padding id (RoBERTa, MPNet: ids start at padding_idx + 1).
    """
    rows = [int(op.result.shape[0]) for op in graph.ops_of("const")
            if op.result.type.rank == 2 and "position" in op.attrs["name"].lower()
            and any(user.kind in ("gather", "slice") for user in op.result.users)]
    return max(1, min(rows) - 2) if rows else None


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
    from ..ir.types import np_dtype

    return [(v.name, np_dtype(v.dtype).name) for v in graph.inputs]


def random_graph_inputs(graph: Graph, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid random feeds; an input with dims past [batch, seq] (a bbox) is all zeros."""
    rng = np.random.default_rng(seed)
    vocab = {v.name: vocab_size(graph, v.name) for v in graph.inputs}
    feeds = random_inputs(graph_input_specs(graph), batch, seq, rng, vocab, lengths_inputs=lengths_inputs(graph))
    return with_extra_dims(graph, feeds, rng)


def with_extra_dims(graph: Graph, feeds: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``feeds`` with each input that has dims past [batch, seq] given them: an integer one (a bbox,
    TAPAS' token types) all zeros, a float one (inputs_embeds [batch, seq, hidden]) standard normal."""
    for v in graph.inputs:
        if v.type.rank > 2 and v.name in feeds:
            batch, seq = np.shape(feeds[v.name])[:2]
            extra = [int(d) if isinstance(d, int) else 1 for d in v.shape[2:]]
            dtype = feeds[v.name].dtype
            fill = rng.standard_normal((batch, seq, *extra)) if dtype.kind == "f" else np.zeros((batch, seq, *extra))
            feeds[v.name] = fill.astype(dtype)
    return feeds
