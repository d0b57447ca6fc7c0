"""Calibration data for passes that look at activations: pruning criteria (and quantization ranges).

``--calib FILE`` is one of:

* a ``.csv`` / ``.tsv`` / ``.jsonl`` with a ``text`` column (and optionally
  ``label``), tokenised with ``--vocab`` (a WordPiece ``vocab.txt`` or a
  ``tokenizer.json``, through ``bertc.runtime.tokenize``);
* an ``.npz`` of token ids: arrays named after the model's inputs or their roles
  (``input_ids`` / ``attention_mask`` / ``token_type_ids``; only the ids are
  required, the mask then marks non-zero ids), optionally ``labels``.

Sequences are kept unpadded and padded per batch to the batch's longest, so a
short calibration set costs what its tokens cost.  Without ``--calib``,
``random_calibration`` makes random valid token ids, and ``source`` says so:
criteria that need data still run, but on data that says little about the task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..diagnostics import BertcError
from ..ir.graph import Graph
from .inputs import input_role, positions_like

log = logging.getLogger(__name__)

ROLES = ("ids", "mask", "segment")
ROLE_NAMES = {"ids": "input_ids", "mask": "attention_mask", "segment": "token_type_ids"}


@dataclass
class CalibrationData:
    """Token sequences (unpadded, per role), optional labels, and where they came from."""

    sequences: list[dict[str, np.ndarray]]  # role -> int64 [length] per sample
    labels: list[str] | None = None
    source: str = ""
    random: bool = False  # True: random tokens, not real text
    input_names: list[str] = field(default_factory=lambda: [ROLE_NAMES[r] for r in ROLES])
    input_dtypes: dict[str, str] = field(default_factory=dict)  # input name -> numpy dtype name
    # Inputs with more than [batch, seq] dims (LayoutLM's bbox [.., 4], TAPAS' token types [.., 7]):
    # name -> the trailing dims.  They are fed zeros (no box, no table cell), valid for every such model.
    input_extra_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)
    label_names: list[str] | None = None  # logit order, when known
    # Inputs of rank 1 ([batch]): each row's valid length, which the model turns into its mask.
    length_inputs: tuple[str, ...] = ()
    # The batch size and sequence length the signature fixes (a model exported at [1, 128]), if any.
    fixed_batch: int | None = None
    fixed_seq: int | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def bind(self, graph: Graph) -> "CalibrationData":
        """The same data, keyed by ``graph``'s input names (by role) in its dtypes."""
        from ..ir.types import np_dtype
        from .inputs import lengths_inputs

        roles = [input_role(v.name) for v in graph.inputs if v.type.rank <= 2]
        if "ids" not in roles:
            raise BertcError(f"calibration: the model's inputs {[v.name for v in graph.inputs]} have no token ids.")
        return replace(self, input_names=[v.name for v in graph.inputs],
                       input_dtypes={v.name: np_dtype(v.dtype).name for v in graph.inputs},
                       input_extra_dims={v.name: extra_dims(v) for v in graph.inputs if v.type.rank > 2},
                       length_inputs=tuple(lengths_inputs(graph)),
                       fixed_batch=_fixed_dim(graph, 0), fixed_seq=_fixed_dim(graph, 1))

    def lengths(self) -> np.ndarray:
        return np.array([int(s["mask"].sum()) for s in self.sequences], dtype=np.int64)

    def seq_lengths(self) -> list[int]:
        """Representative sequence lengths for cost reports: the median and the longest."""
        if not self.sequences:
            return []
        lens = self.lengths()
        return sorted({int(np.median(lens)), int(lens.max())})

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Feeds (input name -> [batch, longest in batch] ints), in file order."""
        for feeds, _ in self.labelled_batches(batch_size):
            yield feeds

    def labelled_batches(self, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], list[str] | None]]:
        """(feeds, the batch's labels or None).  A signature's fixed batch size and sequence length
        win: the last batch is then topped up from the first sequences, and longer ones are cut."""
        batch_size = self._batch_size(batch_size)
        for start in range(0, len(self.sequences), batch_size):
            rows = [(start + i) % len(self.sequences) for i in range(batch_size)] if self.fixed_batch else \
                list(range(start, min(start + batch_size, len(self.sequences))))
            chunk = [self.sequences[i] for i in rows]
            width = self.fixed_seq or max(len(s["ids"]) for s in chunk)
            arrays = {}
            for role in ROLES:
                arr = np.zeros((len(chunk), width), dtype=np.int64)
                for i, s in enumerate(chunk):
                    arr[i, :len(s[role])] = s[role][:width]
                arrays[role] = arr
            feeds = {}
            for name in self.input_names:
                extra = self.input_extra_dims.get(name)
                if name in self.length_inputs:
                    arr = arrays["mask"].sum(axis=1)
                elif input_role(name) == "positions":
                    arr = positions_like(arrays["ids"])
                elif extra is not None:
                    arr = np.zeros((len(chunk), width, *extra), np.int64)
                else:
                    arr = arrays[input_role(name)]
                dtype = self.input_dtypes.get(name)
                feeds[name] = arr.astype(dtype) if dtype else arr
            labels = [self.labels[i] for i in rows] if self.labels is not None else None
            yield feeds, labels

    def _batch_size(self, batch_size: int) -> int:
        return self.fixed_batch or max(1, int(batch_size))

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self.sequences) // self._batch_size(batch_size))

    def label_ids(self, num_classes: int) -> tuple[np.ndarray | None, str]:
        """Labels as logit indices, and how they were mapped (or why they could not be).

        In order: the known label names (logit order); integer labels as they
        are; otherwise the sorted distinct names (a guess the report states).
        """
        if self.labels is None:
            return None, "no labels"
        if self.label_names is not None:
            index = {n: i for i, n in enumerate(self.label_names)}
            unknown = sorted({x for x in self.labels if x not in index})
            if unknown or len(self.label_names) != num_classes:
                return None, f"labels do not match the model's {num_classes} classes ({unknown[:3]} unknown)"
            return np.array([index[x] for x in self.labels]), "label names in logit order"
        try:
            ids = np.array([int(x) for x in self.labels])
        except ValueError:
            names = sorted(set(self.labels))
            if len(names) > num_classes:
                return None, f"{len(names)} distinct labels for {num_classes} logits"
            index = {n: i for i, n in enumerate(names)}
            return np.array([index[x] for x in self.labels]), "label names sorted alphabetically (no label order given)"
        if ids.min() < 0 or ids.max() >= num_classes:
            return None, f"integer labels outside 0..{num_classes - 1}"
        return ids, "integer labels as logit indices"


def _sequence(ids: np.ndarray, mask: np.ndarray | None = None, segment: np.ndarray | None = None,
              max_length: int = 128) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    mask = (ids != 0).astype(np.int64) if mask is None else np.asarray(mask, dtype=np.int64)
    n = int(mask.sum()) if mask.any() else len(ids)
    n = max(1, min(n, max_length))
    segment = np.zeros_like(ids) if segment is None else np.asarray(segment, dtype=np.int64)
    return {"ids": ids[:n], "mask": mask[:n], "segment": segment[:n]}


def load_calibration(path: str | Path, vocab: str | Path | None = None, max_length: int = 128,
                     samples: int = 256, label_names: Sequence[str] | None = None) -> CalibrationData:
    """Read ``--calib``: text (with ``vocab``) or an .npz of token ids; ``samples`` rows spread over the file."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"--calib {path}: no such file.")
    if samples < 1:
        raise BertcError(f"--calib-samples {samples}: give at least 1.")
    if path.suffix == ".npz":
        data = _load_npz(path, max_length, samples)
    elif path.suffix in (".csv", ".tsv", ".txt", ".jsonl", ".ndjson"):
        data = _load_text(path, vocab, max_length, samples)
    else:
        raise BertcError(f"--calib {path}: read .csv/.tsv/.jsonl text (with --vocab) or an .npz of token ids.")
    if not data.sequences:
        raise BertcError(f"--calib {path}: no samples in it.")
    data.label_names = list(label_names) if label_names is not None else None
    log.info("calibration: %s", data.source)
    return data


def spread(total: int, samples: int) -> list[int]:
    """``samples`` row indices spread evenly over ``total`` rows (all rows when there are fewer).

    Not the first rows: data sets are often sorted by label (Sara's train.csv is), and the
    first 256 rows of it hold 15 of 67 intents, 165 of them "affirm"."""
    if total <= samples:
        return list(range(total))
    return np.linspace(0, total - 1, samples).round().astype(int).tolist()


def _load_text(path: Path, vocab, max_length: int, samples: int) -> CalibrationData:
    from .tokenize import load_tokenizer, read_labelled

    if vocab is None:
        raise BertcError(f"--calib {path} is text: pass --vocab vocab.txt (or a tokenizer.json) to tokenise it.")
    texts, labels = read_labelled(path, "--calib")
    rows = spread(len(texts), samples)
    texts = [texts[i] for i in rows]
    labels = [labels[i] for i in rows] if labels is not None else None
    encoder = load_tokenizer(vocab)
    sequences = []
    for start in range(0, len(texts), 64):  # tokenise in chunks: padding is per chunk, then dropped
        enc = encoder.encode(texts[start:start + 64], max_length)
        for ids, mask, seg in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]):
            n = int(mask.sum())
            sequences.append({"ids": ids[:n], "mask": mask[:n], "segment": seg[:n]})
    lens = [len(s["ids"]) for s in sequences]
    src = (f"{path.name}: {len(sequences)} texts{' with labels' if labels else ''}, tokenised with "
           f"{Path(vocab).name} (max length {max_length}; {min(lens)}-{max(lens)} tokens)")
    return CalibrationData(sequences, labels, src)


def _load_npz(path: Path, max_length: int, samples: int) -> CalibrationData:
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BertcError(f"--calib {path}: cannot read it as .npz ({e}).") from None
    labels_arr = arrays.pop("labels", arrays.pop("label", None))
    by_role: dict[str, np.ndarray] = {}
    for name, arr in arrays.items():
        role = input_role(name)
        if role in by_role:
            raise BertcError(f"--calib {path}: two arrays ({name} and another) look like the {role}.")
        by_role[role] = arr
    ids = by_role.get("ids")
    if ids is None or ids.ndim != 2:
        raise BertcError(f"--calib {path}: needs a 2-D array of token ids ([samples, seq]); it holds "
                         f"{', '.join(f'{k}{list(v.shape)}' for k, v in arrays.items()) or 'nothing'}.")
    rows = spread(len(ids), samples)
    sequences = [_sequence(ids[i], by_role["mask"][i] if "mask" in by_role else None,
                           by_role["segment"][i] if "segment" in by_role else None, max_length)
                 for i in rows]
    labels = [str(labels_arr[i]) for i in rows] if labels_arr is not None else None
    src = f"{path.name}: {len(rows)} token-id sequences{' with labels' if labels else ''} (max length {max_length})"
    return CalibrationData(sequences, labels, src)


def _fixed_dim(graph: Graph, axis: int) -> int | None:
    """The size a signature fixes for dim ``axis`` (0: batch, 1: sequence) of its inputs, if any."""
    for v in graph.inputs:
        if v.type.rank > axis and isinstance(v.shape[axis], int):
            return int(v.shape[axis])
    return None


def extra_dims(v) -> tuple[int, ...]:
    """An input's dims after [batch, seq], static ones as they are and symbolic ones as 1."""
    return tuple(int(d) if isinstance(d, int) else 1 for d in v.shape[2:])


def random_calibration(graph: Graph, n: int = 32, seq: int = 64, seed: int = 0) -> CalibrationData:
    """``n`` random but valid sequences of up to ``seq`` tokens (ragged, as real text is)."""
    from .inputs import max_sequence_length, random_graph_inputs

    seq = _fixed_dim(graph, 1) or min(seq, max_sequence_length(graph) or seq)  # never past the position table
    per_feed = _fixed_dim(graph, 0) or n  # a signature fixed at batch 1 gives one row per feed
    parts = [random_graph_inputs(graph, per_feed, seq, seed=seed + k) for k in range(-(-n // per_feed))]
    feeds = {name: np.concatenate([f[name] for f in parts])[:n] for name in parts[0]}
    by_role = {input_role(k): v for k, v in feeds.items() if v.ndim == 2}
    if "ids" not in by_role:
        raise BertcError(f"calibration: none of the model's inputs ({', '.join(feeds)}) is [batch, seq] token ids, "
                         "so bertc cannot make calibration batches for it.",
                         "Export a signature that takes input_ids (and attention_mask) as [batch, seq] tensors, "
                         "not packed together and not as embeddings.")
    ids = by_role["ids"]
    mask = by_role.get("mask", (ids != 0).astype(ids.dtype))  # random ids are 0 exactly where padded
    seg = by_role.get("segment", np.zeros_like(ids))
    sequences = [_sequence(ids[i], mask[i], seg[i], seq) for i in range(n)]
    data = CalibrationData(sequences, None, f"random valid token ids ({n} sequences of up to {seq} tokens; "
                                            "no --calib given)", random=True)
    return data.bind(graph)
