"""Class labels stored inside an artifact, so ``bertc eval`` knows what each logit means.

An ONNX model keeps them under the ``metadata_props`` key ``bertc.labels``; a
TFLite model in a ``Metadata`` entry of that name whose buffer holds the same
JSON list.  A SavedModel (which has no place for them) or any artifact may
instead have a ``labels.txt`` beside or inside it: one label per line, in
logit order.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema  # pure Python; LiteRT itself is not loaded

from ..targets.tflite_builder import AlignedBuffer  # the same 16-byte-aligned packing as the target

from ..diagnostics import BertcError

log = logging.getLogger(__name__)

LABELS_KEY = "bertc.labels"
LABELS_FILE = "labels.txt"
TFLITE_IDENTIFIER = b"TFL3"


def _encode(labels: Sequence[str]) -> str:
    labels = [str(x) for x in labels]
    if not labels:
        raise ValueError("no labels to write")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
    return json.dumps(labels, ensure_ascii=False)


def _decode(text: str, where: str) -> list[str]:
    try:
        labels = json.loads(text)
    except json.JSONDecodeError:
        labels = None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise BertcError(f"{where}: the '{LABELS_KEY}' metadata is not a JSON list of strings.")
    return labels


# ------------------------------------------------------------------ ONNX
def write_labels_onnx(model_bytes: bytes, labels: Sequence[str]) -> bytes:
    """The model with ``metadata_props['bertc.labels']`` set (replaced if present)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    kept = [p for p in model.metadata_props if p.key != LABELS_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=LABELS_KEY, value=_encode(labels))
    return model.SerializeToString()


def _read_onnx(path: Path) -> list[str] | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise BertcError(f"{path}: not a readable ONNX model ({type(e).__name__}).") from None
    for prop in model.metadata_props:
        if prop.key == LABELS_KEY:
            return _decode(prop.value, str(path))
    return None


# ------------------------------------------------------------------ TFLite
def write_labels_tflite(model_bytes: bytes, labels: Sequence[str]) -> bytes:
    """The model with a ``bertc.labels`` Metadata entry (replaced if present).

    The flatbuffer is unpacked and packed again with the object API; constant
    buffers are re-packed on 16-byte boundaries as the TFLite target writes them.
    """
    data = np.frombuffer(_encode(labels).encode(), dtype=np.uint8)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    if any(b.offset for b in model.buffers or []):
        raise BertcError("this TFLite model keeps its weights outside the flatbuffer (over 2 GiB); "
                         "bertc cannot add metadata to it.")
    model.buffers = [AlignedBuffer(b.data if b.data is not None and len(b.data) else None) for b in model.buffers or []]
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if _name(m.name) == LABELS_KEY), None)
    if entry is None:  # a new entry and buffer; an old one keeps its buffer, refilled
        entry = schema.MetadataT()
        entry.name = LABELS_KEY
        entry.buffer = len(model.buffers)
        model.buffers.append(None)
        model.metadata.append(entry)
    model.buffers[entry.buffer] = AlignedBuffer(np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data)
    size = len(model_bytes) + 16 * len(model.buffers) + (1 << 16)
    builder = flatbuffers.Builder(size)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(memoryview(builder.Bytes)[builder.Head():])


def _name(name: bytes | str | None) -> str:
    return name.decode() if isinstance(name, bytes) else (name or "")


def _read_tflite(path: Path) -> list[str] | None:
    buf = path.read_bytes()
    if buf[4:8] != TFLITE_IDENTIFIER:
        raise BertcError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier).")
    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _name(entry.Name()) == LABELS_KEY:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return _decode(bytes(raw).decode(), str(path))
    return None


# ------------------------------------------------------------------ any artifact
def read_labels_file(path: str | Path) -> list[str]:
    """Labels from a text file, one per line (blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise BertcError(f"--labels {path}: no such labels file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise BertcError(f"--labels {path}: not UTF-8 text ({e.reason}).", "Save it as UTF-8.") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise BertcError(f"--labels {path}: the labels file is empty.")
    if len(set(labels)) != len(labels):
        raise BertcError(f"--labels {path}: labels repeat ({sorted({x for x in labels if labels.count(x) > 1})}).")
    return labels


def read_labels(path: str | Path) -> list[str] | None:
    """The artifact's labels: embedded metadata first, then a labels.txt inside (a directory) or beside it."""
    path = Path(path)
    embedded = None
    if path.is_file() and path.suffix == ".onnx":
        embedded = _read_onnx(path)
    elif path.is_file() and path.suffix == ".tflite":
        embedded = _read_tflite(path)
    if embedded is not None:
        return embedded
    for candidate in ([path / LABELS_FILE] if path.is_dir() else []) + [path.parent / LABELS_FILE]:
        if candidate.is_file():
            log.info("labels for %s from %s", path, candidate)
            return read_labels_file(candidate)
    return None
