"""Bad input, one table: every case must exit 2 with one clear message that names the culprit
(the file, the option or the op), print no traceback, and leave nothing half-written.

Each case is a command line with placeholders (``{onnx}``, ``{out}`` …) filled from the
shared broken and healthy files below, and the words its message must contain.  Cases run
in-process through ``bertc.cli.main``; the signal cases, which need a process to kill, are
in tests/test_signals.py.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bertc.cli import main


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # "{placeholders}" filled from the files fixture and the test's own paths
    needles: tuple[str, ...]  # words the message must contain (placeholders filled the same way)


def case(name: str, argv: str, *needles: str) -> Case:
    return Case(name, tuple(shlex.split(argv)), needles)


CORRUPT_FILES = [
    case("run truncated onnx", "run {bad}/trunc.onnx --ids '1 2'", "{bad}/trunc.onnx", "corrupt or truncated"),
    case("run random onnx", "run {bad}/rand.onnx --ids 1", "{bad}/rand.onnx", "not an ONNX model"),
    case("run empty onnx", "run {bad}/empty.onnx --ids 1", "{bad}/empty.onnx", "0 bytes"),
    case("run random tflite", "run {bad}/rand.tflite --ids 1", "{bad}/rand.tflite", "not a TFLite model"),
    case("run truncated tflite", "run {bad}/trunc.tflite --ids 1", "{bad}/trunc.tflite", "corrupt or truncated"),
    case("eval truncated onnx", "eval {bad}/trunc.onnx --data {text}/data.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt", "{bad}/trunc.onnx", "corrupt or truncated"),
    case("eval random tflite", "eval {bad}/rand.tflite --data {text}/data.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt", "{bad}/rand.tflite", "not a TFLite model"),
    case("bench truncated onnx", "bench {bad}/trunc.onnx --seq 4 --batch 1 -o {out}", "{bad}/trunc.onnx",
         "corrupt or truncated"),
    case("bench random tflite", "bench {bad}/rand.tflite --seq 4 --batch 1 -o {out}", "{bad}/rand.tflite",
         "not a TFLite model"),
    case("import random pb", "import {bad}/rand.pb", "{bad}/rand.pb", "not a TensorFlow GraphDef"),
    case("inspect pb that parses to nothing", "inspect {bad}/tiny.pb", "{bad}/tiny.pb", "not a TensorFlow GraphDef"),
    case("compile random pb", "compile {bad}/rand.pb -o {out}", "{bad}/rand.pb", "not a TensorFlow GraphDef"),
    case("check text as pb", "check {bad}/text.pb", "{bad}/text.pb", "not a TensorFlow GraphDef"),
    case("import saved_model.pb alone", "import {bad}/saved_model_alone.pb -o {out}/m.bir",
         "{bad}/saved_model_alone.pb", "SavedModel's saved_model.pb", "directory"),
    case("import keras that is not a zip", "import {bad}/notzip.keras", "{bad}/notzip.keras", "not a .keras file"),
    case("compile keras that is not a zip", "compile {bad}/notzip.keras -o {out}", "{bad}/notzip.keras",
         "zip archive"),
    case("inspect saved model without variables", "inspect {bad}/novars", "{bad}/novars", "no variables/"),
    case("compile saved model without variables", "compile {bad}/novars -o {out}", "{bad}/novars", "variables/"),
    case("run saved model without variables", "run {bad}/novars --ids 1", "{bad}/novars", "variables/"),
    case("run bir without npz", "run {bad}/nonpz.bir --ids 1", "{bad}/nonpz.bir", "{bad}/nonpz.npz",
         "does not exist"),
    case("opt bir without npz", "opt {bad}/nonpz.bir -p dce -o {out}.bir", "{bad}/nonpz.npz", "does not exist"),
    case("compile bir without npz", "compile {bad}/nonpz.bir -o {out}", "{bad}/nonpz.npz", "does not exist"),
    case("run bir with corrupt npz", "run {bad}/badnpz.bir --ids 1", "{bad}/badnpz.npz", "corrupt or truncated"),
    case("inspect bir with corrupt npz", "inspect {bad}/badnpz.bir", "{bad}/badnpz.npz", "corrupt"),
    case("run bir with another model's npz", "run {bad}/other.bir --ids 1", "{bad}/other.npz",
         "another model"),
    case("compile bir with another model's npz", "compile {bad}/other.bir -o {out}", "{bad}/other.npz",
         "another model"),
    case("run a file bertc does not run", "run {bad}/rand.pb --ids 1", "{bad}/rand.pb", ".onnx, .tflite, .bir"),
]

CALIB = "--calib {text}/calib.csv --vocab {text}/vocab.txt"
OPTIONS = [
    case("negative tolerance", "compile {bir} -o {out} --tolerance -1", "--tolerance -1", ">= 0"),
    case("nan tolerance", "compile {bir} -o {out} --tolerance nan", "--tolerance nan"),
    case("max-drop above one", "compile {bir} -o {out} --max-drop 2", "--max-drop 2", "[0, 1]"),
    case("negative max-drop", "compile {bir} -o {out} --max-drop -0.1", "--max-drop -0.1"),
    case("kmeans with a million clusters", "compile {bir} -o {out} --passes kmeans{{clusters=1000000}}",
         "kmeans", "clusters=1000000", "65536"),
    case("kmeans with no clusters", "compile {bir} -o {out} --passes kmeans{{clusters=0}}", "clusters=0"),
    case("kmeans with more clusters than weights", "compile {bir} -o {out} --passes kmeans{{clusters=5000}}",
         "kmeans{{clusters=5000}}", "4096 weights", "min_size"),
    case("opt kmeans with more clusters than weights", "opt {bir} -p kmeans{{clusters=4096}} -o {out}.bir",
         "kmeans{{clusters=4096}}", "bert_classifier/"),
    case("calib max length past the position table", f"compile {{bir}} -o {{out}} {CALIB} --calib-max-length 1000",
         "--calib-max-length 1000", "position-embedding table has 64 rows", "!vocabulary"),
    case("opt calib max length past the position table", f"opt {{bir}} -p calibrate {CALIB} --calib-max-length 65",
         "--calib-max-length 65", "64 rows"),
    case("calib sentence past the position table", "compile {bir} -o {out} --calib {text}/long.csv "
         "--vocab {text}/vocab.txt", "--calib {text}/long.csv", "64 rows", "--calib-max-length 64"),
    case("calib max length of one", f"compile {{bir}} -o {{out}} {CALIB} --calib-max-length 1",
         "--calib-max-length 1", "at least 2"),
    case("calib samples of zero", f"compile {{bir}} -o {{out}} {CALIB} --calib-samples 0", "--calib-samples 0"),
    case("calib file missing", "compile {bir} -o {out} --calib {text}/none.csv --vocab {text}/vocab.txt",
         "--calib {text}/none.csv", "no such file", "!--data"),
    case("calib csv without a text column", "compile {bir} -o {out} --calib {text}/notext.csv "
         "--vocab {text}/vocab.txt", "--calib {text}/notext.csv", "no 'text' column", "!--data"),
    case("calib jsonl that is not json", "opt {bir} -p calibrate --calib {text}/bad.jsonl --vocab {text}/vocab.txt",
         "--calib {text}/bad.jsonl:1", "not JSON", "!--data"),
    case("calib not utf-8", "compile {bir} -o {out} --calib {text}/latin1.csv --vocab {text}/vocab.txt",
         "--calib {text}/latin1.csv", "not UTF-8", "!--data"),
    case("calib text without vocab", "compile {bir} -o {out} --calib {text}/calib.csv", "--calib", "--vocab"),
    case("eval data not utf-8", "eval {onnx} --data {text}/latin1.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt", "--data {text}/latin1.csv", "not UTF-8"),
    case("calib with a vocab file that is missing", "compile {bir} -o {out} --calib {text}/calib.csv "
         "--vocab {text}/none.txt", "--vocab {text}/none.txt"),
]

PLUGINS = [
    case("plugin pass named like a built-in (opt)", "opt {bir} -p dce --plugin {plugins}/clash.py -o {out}.bir",
         "plugin {plugins}/clash.py", "'dce'", "bertc.passes.dce", "--override dce"),
    case("plugin pass named like a built-in (compile)", "compile {bir} -o {out} --plugin {plugins}/clash.py",
         "{plugins}/clash.py", "'dce'"),
    case("plugin pass named like a built-in (passes)", "passes --plugin {plugins}/clash.py", "{plugins}/clash.py",
         "'dce'"),
    case("two plugins with one pass name", "opt {bir} -p twin --plugin {plugins}/twin_a.py "
         "--plugin {plugins}/twin_b.py -o {out}.bir", "{plugins}/twin_b.py", "'twin'", "bertc_plugin_twin_a"),
    case("override of a pass that does not exist", "opt {bir} -p dce --plugin {plugins}/clash.py "
         "--override dcx -o {out}.bir", "--override dcx", "Did you mean 'dce'"),
    case("override without a plugin", "compile {bir} -o {out} --override dce", "--override dce", "--plugin"),
    case("plugin that does not import", "opt {bir} -p dce --plugin {plugins}/broken.py -o {out}.bir",
         "plugin {plugins}/broken.py failed to import", "NameError"),
    case("plugin file missing", "compile {bir} -o {out} --plugin {plugins}/none.py", "{plugins}/none.py",
         "does not exist"),
]

CASES = CORRUPT_FILES + OPTIONS + PLUGINS

PLUGIN_PASS = """
from dataclasses import dataclass
from bertc.pass_manager import Pass, register_pass


@register_pass
@dataclass(frozen=True)
class {cls}(Pass):
    \"\"\"A plugin pass that changes nothing.\"\"\"
    name = "{name}"

    def run(self, graph, ctx):
        return False
"""


@pytest.fixture(autouse=True)
def _registry(monkeypatch):
    """Each case gets the pass registry as it was, whatever a plugin did to it."""
    from bertc import pass_manager

    monkeypatch.setattr(pass_manager, "_PASSES", dict(pass_manager.all_passes()))


@pytest.fixture(scope="module")
def files(tf_bert_artifacts, tmp_path_factory) -> dict[str, Path]:
    """Broken copies of the tiny BERT's files, and valid text data for eval."""
    bad = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    onnx, tflite = tf_bert_artifacts["onnx"].read_bytes(), tf_bert_artifacts["tflite"].read_bytes()
    (bad / "trunc.onnx").write_bytes(onnx[: len(onnx) // 3])
    (bad / "rand.onnx").write_bytes(rng.bytes(3000))
    (bad / "empty.onnx").write_bytes(b"")
    (bad / "rand.tflite").write_bytes(rng.bytes(3000))
    (bad / "trunc.tflite").write_bytes(tflite[: len(tflite) // 3])
    (bad / "rand.pb").write_bytes(rng.bytes(3000))
    (bad / "tiny.pb").write_bytes(b"\x08\x01")  # parses as a GraphDef with one unknown field
    (bad / "text.pb").write_text("hello world\n")
    shutil.copy(tf_bert_artifacts["saved_model"] / "saved_model.pb", bad / "saved_model_alone.pb")
    (bad / "notzip.keras").write_text("not a zip\n")
    shutil.copytree(tf_bert_artifacts["saved_model"], bad / "novars")
    shutil.rmtree(bad / "novars" / "variables")
    bir = tf_bert_artifacts["bir"]
    for name in ("nonpz", "badnpz", "other"):
        shutil.copy(bir, bad / f"{name}.bir")
    (bad / "badnpz.npz").write_bytes(bir.with_suffix(".npz").read_bytes()[:1000])
    np.savez(bad / "other.npz", unrelated=np.zeros(3))

    text = tmp_path_factory.mktemp("text")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
    (text / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (text / "data.csv").write_text("text,label\nw1 w2,a\nw3,b\n")
    (text / "labels.txt").write_text("a\nb\nc\n")
    (text / "calib.csv").write_text("text\nw1 w2 w3\nw4 w5\n")
    (text / "long.csv").write_text("text\n" + " ".join(["w7"] * 80) + "\nw1\n")
    (text / "notext.csv").write_text("sentence\nw1 w2\n")
    (text / "bad.jsonl").write_text("{not json\n")
    (text / "latin1.csv").write_bytes("text,label\ncaf\xe9,a\n".encode("latin-1"))
    plugins = tmp_path_factory.mktemp("plugins")
    (plugins / "clash.py").write_text(PLUGIN_PASS.format(cls="MyDce", name="dce"))
    (plugins / "twin_a.py").write_text(PLUGIN_PASS.format(cls="TwinA", name="twin"))
    (plugins / "twin_b.py").write_text(PLUGIN_PASS.format(cls="TwinB", name="twin"))
    (plugins / "broken.py").write_text("undefined_name\n")
    return {"bad": bad, "text": text, "plugins": plugins, **tf_bert_artifacts}


def _fill(template: str, paths: dict[str, Path]) -> str:
    return template.format(**{k: str(v) for k, v in paths.items()})


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_bad_input(c: Case, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = {**files, "out": tmp_path / "out", "tmp": tmp_path}
    argv = [_fill(a, paths) for a in c.argv]
    before = {name: _snapshot(files[name]) for name in ("bad", "text", "plugins")}
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err
    assert err.startswith("bertc: error: "), err
    for needle in c.needles:  # "!words": must not be said (the wrong flag, the wrong table)
        if needle.startswith("!"):
            assert _fill(needle[1:], paths) not in err, f"{_fill(needle[1:], paths)!r} in: {err}"
        else:
            assert _fill(needle, paths) in err, f"{_fill(needle, paths)!r} not in: {err}"
    # Nothing written, nothing half-written: no output, no temporaries, the inputs untouched.
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.bir").exists()
    assert [p.name for p in tmp_path.rglob("*")] == [], sorted(tmp_path.rglob("*"))
    assert {name: _snapshot(files[name]) for name in ("bad", "text", "plugins")} == before


def test_the_table_is_large_and_names_are_unique():
    assert len({c.name for c in CASES}) == len(CASES)


def test_calibration_without_calib_says_so_on_the_console(files, tmp_path, capsys):
    """Not an error, but not silent either: one line on stderr, not only a note in report.json."""
    code = main(["opt", str(files["bir"]), "-p", "calibrate", "-o", str(tmp_path / "c.bir")])
    err = capsys.readouterr().err
    assert code == 0, err
    said = [line for line in err.splitlines() if "random token ids" in line]
    assert len(said) == 1 and "--calib" in said[0] and "calibrate" in said[0]
    code = main(["opt", str(files["bir"]), "-p", "calibrate", "-o", str(tmp_path / "c.bir"),
                 "--calib", str(files["text"] / "calib.csv"), "--vocab", str(files["text"] / "vocab.txt")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "random token ids" not in err


def test_override_lets_a_plugin_replace_a_pass(files, tmp_path, capsys, caplog):
    from bertc.pass_manager import all_passes

    builtin = all_passes()["dce"]
    code = main(["opt", str(files["bir"]), "-p", "dce", "--plugin", str(files["plugins"] / "clash.py"),
                 "--override", "dce", "-o", str(tmp_path / "x.bir")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert all_passes()["dce"] is not builtin and all_passes()["dce"].__name__ == "MyDce"
    assert "replaces the pass 'dce'" in caplog.text


def test_a_refused_plugin_leaves_the_registry_as_it_was(files):
    from bertc.diagnostics import BertcError
    from bertc.pass_manager import all_passes, load_plugin

    before = all_passes()
    with pytest.raises(BertcError, match="'dce'"):
        load_plugin(files["plugins"] / "clash.py")
    assert all_passes() == before
