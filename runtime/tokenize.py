"""Text -> model feeds: a BERT tokenizer on the ``tokenizers`` library, and labelled-text readers.

``bertc eval`` (and calibration) turn sentences into the three arrays a BERT
takes.  A tokenizer is either a WordPiece ``vocab.txt`` (built here exactly as
``BertWordPieceTokenizer`` builds it: BERT normalisation with lowercasing,
[CLS] ... [SEP]) or a ``tokenizer.json`` saved by the library.  Padding and
truncation are ours, not the file's: a tokenizer.json often pads every text to
a fixed length, which wastes time on short sentences.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..diagnostics import BertcError
from .inputs import input_role, positions_like

log = logging.getLogger(__name__)

FEED_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class TextEncoder:
    """A ``tokenizers.Tokenizer`` with BERT's special tokens, padding to the longest text of a batch."""

    tokenizer: object  # tokenizers.Tokenizer
    pad_id: int
    source: Path

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
        """``input_ids``, ``attention_mask``, ``token_type_ids`` as int64 [len(texts), longest].

        Texts longer than ``max_length`` tokens (special tokens included) are cut;
        shorter ones are padded with the pad id, mask 0, up to the batch's longest.
        """
        if max_length < 2:
            raise BertcError(f"max length {max_length}: a BERT input needs at least 2 tokens ([CLS] and [SEP]).")
        self.tokenizer.enable_truncation(max_length)
        encodings = self.tokenizer.encode_batch(list(texts))
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = e.attention_mask
            types[row, :n] = e.type_ids
        return dict(zip(FEED_NAMES, (ids, mask, types)))


def load_tokenizer(vocab_or_tokenizer_json: str | Path) -> TextEncoder:
    """A ``TextEncoder`` from a WordPiece ``vocab.txt`` or a ``tokenizer.json``."""
    path = Path(vocab_or_tokenizer_json)
    if not path.is_file():
        raise BertcError(f"--vocab {path}: no such file.", "Pass a WordPiece vocab.txt or a tokenizer.json.")
    tokenizer = _from_json(path) if path.suffix == ".json" else _from_vocab(path)
    tokenizer.no_padding()
    pad = tokenizer.padding["pad_id"] if tokenizer.padding else tokenizer.token_to_id("[PAD]")
    log.debug("tokenizer %s: %d tokens, pad id %s", path, tokenizer.get_vocab_size(), pad)
    return TextEncoder(tokenizer, int(pad or 0), path)


def _from_json(path: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises plain Exceptions for malformed files
        raise BertcError(f"--vocab {path}: not a tokenizers tokenizer.json ({str(e).splitlines()[0][:200]}).") from None


def _from_vocab(path: Path):
    """BertWordPieceTokenizer(vocab, lowercase=True), spelled out so errors name the file."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    try:
        vocab = WordPiece.read_file(str(path))
    except Exception as e:
        raise BertcError(f"--vocab {path}: cannot read a WordPiece vocabulary ({e}).") from None
    missing = [t for t in ("[CLS]", "[SEP]", "[UNK]") if t not in vocab]
    if missing:
        raise BertcError(f"--vocab {path}: the vocabulary lacks {', '.join(missing)}.",
                         "A BERT vocab.txt has one token per line, the special tokens among them.")
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=None, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def as_feeds(encoded: Mapping[str, np.ndarray], input_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Map encoded arrays onto a model's input names by role (ids, mask, segment)."""
    by_role = {"ids": encoded["input_ids"], "mask": encoded["attention_mask"],
               "segment": encoded["token_type_ids"], "positions": positions_like(encoded["input_ids"])}
    return {name: by_role[input_role(name)] for name in input_names}


# ------------------------------------------------------------------ labelled text
def read_labelled(path: str | Path, flag: str = "--data") -> tuple[list[str], list[str] | None]:
    """(texts, labels) from a CSV with a ``text`` (and ``label``) column, or JSONL objects.

    Labels are strings (a JSON number 3 becomes "3"); they are ``None`` when the
    file has no label column at all.  ``flag`` is the option that named the file
    (``--data``, ``--calib``), so every message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"{flag} {path}: no such file.")
    try:
        if path.suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path, flag)
        if path.suffix in (".csv", ".tsv", ".txt"):
            return _read_csv(path, flag)
    except UnicodeDecodeError as e:
        raise BertcError(f"{flag} {path}: not UTF-8 text (byte {e.start}: {e.reason}).",
                         "Save the file as UTF-8.") from None
    except csv.Error as e:
        raise BertcError(f"{flag} {path}: not a readable CSV ({e}).") from None
    raise BertcError(f"{flag} {path}: read .csv (text,label columns) or .jsonl ({{\"text\": ..., \"label\": ...}}).")


def _read_csv(path: Path, flag: str) -> tuple[list[str], list[str] | None]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        columns = reader.fieldnames or []
        if "text" not in columns:
            raise BertcError(f"{flag} {path}: no 'text' column (columns: {', '.join(columns) or 'none'}).",
                             "The first line must name the columns, e.g. text,label.")
        has_label = "label" in columns
        texts, labels = [], []
        for row in reader:
            if row["text"] is None:
                continue  # a blank line
            texts.append(row["text"])
            if has_label:
                if not row["label"]:
                    raise BertcError(f"{flag} {path}:{reader.line_num}: the label is empty.")
                labels.append(row["label"].strip())
    return texts, (labels if has_label else None)


def _read_jsonl(path: Path, flag: str) -> tuple[list[str], list[str] | None]:
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise BertcError(f"{flag} {path}:{line_no}: not JSON ({e.msg}).") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise BertcError(f"{flag} {path}:{line_no}: expected an object with a string \"text\".")
            texts.append(obj["text"])
            if "label" in obj:
                labels.append(str(obj["label"]))
    if labels and len(labels) != len(texts):
        raise BertcError(f"{flag} {path}: {len(texts) - len(labels)} of {len(texts)} lines have no \"label\".")
    return texts, (labels or None)
