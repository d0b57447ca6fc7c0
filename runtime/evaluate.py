"""``bertc eval``: macro-F1, accuracy and confusions of any artifact on labelled text.

    bertc eval out/model.tflite --data test.csv --vocab vocab.txt [--labels labels.txt] [-o report.json]

Any backend ``open_session`` runs (ONNX, TFLite, a SavedModel, IR text) is
scored the same way, so a compressed artifact can be compared with its source
on the task, not only on logits.  The logit order comes from ``--labels``, else
from the artifact (``bertc.runtime.metadata``).  Metrics are computed here with
numpy, with scikit-learn's semantics: macro-F1 averages over every class that
occurs in the truth or in the predictions.

Top-level imports stay light (stdlib, numpy): the CLI imports this module to
build its parser.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..diagnostics import BertcError

log = logging.getLogger(__name__)

TOP_N = 5  # confused pairs and worst classes shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help=".onnx, .tflite, .bir or a SavedModel directory")
    parser.add_argument("--data", required=True, help="labelled text: .csv (text,label columns) or .jsonl")
    parser.add_argument("--vocab", required=True, help="the model's tokenizer: WordPiece vocab.txt or tokenizer.json")
    parser.add_argument("--labels", help="labels in logit order, one per line (default: from the artifact)")
    parser.add_argument("--max-length", type=int, default=64,
                        help="tokens per text, [CLS] and [SEP] included (default 64)")
    parser.add_argument("--batch", type=int, default=32, help="texts per run (default 32)")
    parser.add_argument("-o", "--output", help="write the full report (per-class scores, predictions) as JSON")


# ------------------------------------------------------------------ metrics
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[true, predicted] for integer class ids in [0, n_classes)."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def class_scores(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 (2TP / (2TP + FP + FN); 0 where undefined) and support."""
    tp = np.diag(counts).astype(np.float64)
    predicted, support = counts.sum(axis=0), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = predicted + support  # = 2TP + FP + FN
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support,
            "present": (predicted + support) > 0}


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Mean F1 over the classes found in ``y_true`` or ``y_pred`` (sklearn's average="macro")."""
    classes, ids = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]), return_inverse=True)
    if len(classes) == 0:
        return 0.0
    n = len(y_true)
    scores = class_scores(confusion_matrix(ids[:n], ids[n:], len(classes)))
    return float(scores["f1"].mean())


# ------------------------------------------------------------------ evaluation
@dataclass
class Evaluation:
    labels: list[str]
    y_true: np.ndarray  # class ids
    y_pred: np.ndarray

    def report(self) -> dict:
        """Accuracy, macro-F1, per-class scores, the worst classes and the most confused pairs."""
        counts = confusion_matrix(self.y_true, self.y_pred, len(self.labels))
        s = class_scores(counts)
        present = np.flatnonzero(s["present"])
        per_class = {self.labels[i]: {"precision": round(float(s["precision"][i]), 4),
                                      "recall": round(float(s["recall"][i]), 4),
                                      "f1": round(float(s["f1"][i]), 4), "support": int(s["support"][i])}
                     for i in present}
        in_truth = [i for i in present if s["support"][i] > 0]
        worst = sorted(in_truth, key=lambda i: (s["f1"][i], -s["support"][i], self.labels[i]))[:TOP_N]
        off = counts.copy()
        np.fill_diagonal(off, 0)
        pairs = [(int(t), int(p)) for t, p in zip(*np.nonzero(off))]
        pairs.sort(key=lambda tp: (-off[tp], self.labels[tp[0]], self.labels[tp[1]]))
        return {
            "examples": int(len(self.y_true)),
            "accuracy": round(float((self.y_true == self.y_pred).mean()) if len(self.y_true) else 0.0, 4),
            "macro_f1": round(float(s["f1"][present].mean()) if len(present) else 0.0, 4),
            "worst_classes": [{"label": self.labels[i], **per_class[self.labels[i]]} for i in worst],
            "confused_pairs": [{"true": self.labels[t], "predicted": self.labels[p], "count": int(off[t, p])}
                               for t, p in pairs[:TOP_N]],
            "per_class": per_class,
            "predictions": [self.labels[i] for i in self.y_pred],
        }


def logits_output(session, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The [batch, classes] output: the one named ``logits``, else the only 2-D one."""
    if "logits" in outputs:
        return outputs["logits"]
    two_d = [name for name in session.output_names if np.ndim(outputs[name]) == 2]
    if len(two_d) != 1:
        raise BertcError(f"cannot tell which output holds the logits among {session.output_names}.",
                         "Name the classifier output 'logits'.")
    return outputs[two_d[0]]


def predict(session, encoder, texts: Sequence[str], max_length: int, batch: int,
            n_classes: int | None = None, progress=None, limits=None) -> np.ndarray:
    """Argmax class id of every text, ``batch`` texts per run; checks the logits' width when given,
    and every batch's ids against ``limits`` (read from the session when not given)."""
    from .bench import brief
    from .limits import check_ids, model_limits
    from .tokenize import as_feeds

    limits = limits if limits is not None else model_limits(session)
    preds = []
    for start in range(0, len(texts), batch):
        end = min(start + batch, len(texts))
        feeds = as_feeds(encoder.encode(texts[start:end], max_length), session.input_names)
        check_ids(feeds, limits, "the model", f"--vocab: texts {start}..{end - 1}")
        try:
            logits = logits_output(session, session.run(feeds))
        except BertcError:
            raise
        except Exception as e:  # the runtime refused the inputs: ids past the vocabulary, too long a text
            hint = "Check that --vocab is the model's tokenizer and --max-length fits its positions."
            raise BertcError(f"running the model on texts {start}..{end - 1} failed: {brief(e)}", hint) from None
        if n_classes is not None and np.shape(logits)[-1] != n_classes:
            raise BertcError(f"the model gives {np.shape(logits)[-1]} logits per text but {n_classes} labels "
                             "were given.", "Pass the model's own labels (--labels FILE, in logit order).")
        preds.append(np.asarray(logits).argmax(axis=-1))
        if progress is not None:
            progress(len(logits))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def resolve_labels(artifact: Path, labels_file: str | None) -> list[str]:
    from .metadata import read_labels, read_labels_file

    if labels_file:
        return read_labels_file(labels_file)
    labels = read_labels(artifact)
    if labels is None:
        raise BertcError(f"{artifact}: no labels stored in it and no labels.txt beside it, so the order of "
                         "its logits is unknown.",
                         "Pass --labels FILE (one label per line, in logit order).")
    return labels


def label_ids(labels: list[str], names: list[str], data: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise BertcError(f"--data {data}: {len(unknown)} label(s) the model does not have: {shown}.",
                         f"The model's {len(labels)} labels are: {', '.join(labels[:20])}"
                         + (" …" if len(labels) > 20 else "") + ".")
    return np.array([index[n] for n in names], dtype=np.int64)


def command(args: argparse.Namespace) -> int:
    from .tokenize import load_tokenizer, read_labelled

    if args.batch < 1 or args.max_length < 2:
        raise BertcError("--batch must be at least 1 and --max-length at least 2.")
    artifact = Path(args.artifact)
    if not artifact.exists():
        raise BertcError(f"{artifact}: no such file or directory.")
    texts, names = read_labelled(args.data)
    if names is None:
        raise BertcError(f"--data {args.data}: no labels (a 'label' column or key) to score against.")
    if not texts:
        raise BertcError(f"--data {args.data}: no examples.")
    labels = resolve_labels(artifact, args.labels)
    y_true = label_ids(labels, names, args.data)
    encoder = load_tokenizer(args.vocab)
    session = _open(artifact)
    from .limits import model_limits

    limits = model_limits(session)
    if limits.positions is not None and args.max_length > limits.positions:
        raise BertcError(f"--max-length {args.max_length}: the position-embedding table of {artifact} has "
                         f"{limits.positions} rows, so it takes at most {limits.positions} tokens.",
                         f"Pass --max-length {limits.positions} or less.")
    y_pred = _predict_with_progress(session, encoder, texts, args.max_length, args.batch, len(labels), limits)
    report = {"artifact": str(artifact), "data": str(args.data), "max_length": args.max_length,
              **Evaluation(labels, y_true, y_pred).report()}
    if args.output:
        _write_json(Path(args.output), report)
    sys.stdout.write(format_summary(report))
    return 0


def _open(artifact: Path):
    from .bench import brief
    from .session import open_session

    try:
        return open_session(artifact)
    except BertcError:
        raise
    except Exception as e:  # a corrupt file: the runtime's own words
        raise BertcError(f"{artifact}: cannot load it: {brief(e)}") from None


def _predict_with_progress(session, encoder, texts, max_length: int, batch: int, n_classes: int,
                           limits=None) -> np.ndarray:
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("evaluating", total=len(texts))
        return predict(session, encoder, texts, max_length, batch, n_classes, lambda n: bar.advance(task, n),
                       limits)


def _write_json(path: Path, report: dict) -> None:
    try:
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as e:
        raise BertcError(f"-o {path}: cannot write it ({e.strerror}).") from None
    log.info("wrote %s", path)


def format_summary(report: dict) -> str:
    """The human-readable part of a report: headline numbers, worst classes, confused pairs."""
    lines = [f"{report['artifact']} on {report['data']} ({report['examples']} examples)",
             f"  macro-F1 {report['macro_f1']:.4f}   accuracy {report['accuracy']:.4f}"]
    if report["worst_classes"]:
        lines.append("  worst classes (F1, support):")
        lines += [f"    {c['label']:<28} {c['f1']:.3f}  {c['support']}" for c in report["worst_classes"]]
    if report["confused_pairs"]:
        lines.append("  most confused (true -> predicted: count):")
        lines += [f"    {p['true']} -> {p['predicted']}: {p['count']}" for p in report["confused_pairs"]]
    return "\n".join(lines) + "\n"
