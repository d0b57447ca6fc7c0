"""Token ids outside [0, vocab) and sequences past the position table: refused on every path.

onnxruntime's Gather wraps a negative index, so without a check `-1` would read the
last embedding row; bertc refuses such ids before running, and the ONNX files it
writes refuse them too when run on onnxruntime directly.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bertc.cli import main

VOCAB, POSITIONS = 100, 64  # the tiny BERT of examples/bert_tf.py
KINDS = ["onnx", "tflite", "bir", "saved_model"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ids,bad", [("2 -1 3", "-1"), ("2 100 3", "100"), ("-100 5", "-100")])
def test_run_refuses_ids_outside_the_vocabulary(capsys, tf_bert_artifacts, kind, ids, bad):
    code, out, err = run(capsys, "run", tf_bert_artifacts[kind], "--ids", ids)
    assert code == 2, err
    assert "Traceback" not in err and out == ""
    assert f"token id {bad} is outside the vocabulary" in err
    assert f"{VOCAB} ids" in err and str(tf_bert_artifacts[kind]) in err


@pytest.mark.parametrize("kind", KINDS)
def test_run_accepts_the_last_id(capsys, tf_bert_artifacts, kind):
    code, out, err = run(capsys, "run", tf_bert_artifacts[kind], "--ids", f"2 {VOCAB - 1} 0")
    assert code == 0, err
    assert "logits [1, 3]" in out


@pytest.mark.parametrize("kind", KINDS)
def test_too_long_a_sequence_names_the_position_table(capsys, tf_bert_artifacts, kind):
    code, _, err = run(capsys, "run", tf_bert_artifacts[kind], "--ids", " ".join(["5"] * (POSITIONS + 1)))
    assert code == 2, err
    assert f"{POSITIONS + 1} tokens" in err and "position-embedding table" in err and f"{POSITIONS} rows" in err
    assert "vocabulary" not in err


def _feeds(ids: list[int]) -> dict[str, np.ndarray]:
    a = np.array([ids], np.int32)
    return {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}


def test_the_onnx_artifact_itself_refuses_a_negative_id(tf_bert_artifacts):
    """Raw onnxruntime, no bertc in between: -1 must not read the last embedding row."""
    session = ort.InferenceSession(str(tf_bert_artifacts["onnx"]), providers=["CPUExecutionProvider"])
    session.run(None, _feeds([2, VOCAB - 1, 3]))
    with pytest.raises(Exception, match="out of data bounds"):
        session.run(None, _feeds([2, -1, 3]))
    with pytest.raises(Exception, match="out of data bounds"):
        session.run(None, {**_feeds([2, 5, 3]), "token_type_ids": np.array([[0, -1, 0]], np.int32)})


def test_eval_refuses_a_vocabulary_larger_than_the_model(capsys, tmp_path, tf_bert_artifacts):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(VOCAB + 20)]
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (tmp_path / "data.csv").write_text("text,label\nw1 w2,a\nw110,b\n")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    code, _, err = run(capsys, "eval", tf_bert_artifacts["onnx"], "--data", tmp_path / "data.csv",
                       "--vocab", tmp_path / "vocab.txt", "--labels", tmp_path / "labels.txt")
    assert code == 2, err
    assert "Traceback" not in err
    assert "--vocab" in err and "token id 115 is outside the vocabulary" in err and f"{VOCAB} ids" in err


def test_limits_follow_the_ids_not_their_shape():
    """The vocabulary is the table the ids index, not one reached through shape(ids) -> range
    (the position table); an integer "position_ids" buffer is not a position table."""
    from bertc.runtime.limits import _Net

    nodes = [("Shape", ["input_ids"], ["s"]), ("Range", ["zero", "s", "one"], ["pos"]),
             ("Gather", ["position_embeddings", "pos"], ["p"]),
             ("Slice", ["position_ids", "zero", "s"], ["pid"]),
             ("Cast", ["input_ids"], ["ids64"]), ("Unsqueeze", ["ids64"], ["ids3"]),
             ("Reshape", ["ids3"], ["ids2"]), ("Gather", ["word_embeddings", "ids2"], ["w"])]
    shapes = {"position_embeddings": (512, 8), "word_embeddings": (30522, 8), "position_ids": (1, 512)}
    limits = _Net(nodes, shapes, int_tables={"position_ids"}).limits({"input_ids": "input_ids"})
    assert limits.vocab == {"input_ids": 30522}
    assert limits.positions == 512
