"""Bad input, one table: every case must exit 2 with one clear message that names the culprit
(the file, the option or the op), print no traceback, and leave nothing half-written.

Each case is a command line with placeholders (``{onnx}``, ``{out}`` …) filled from the
shared broken and healthy files below, and the words its message must contain.  Cases run
in-process through ``bertc.cli.main``, except the signal cases, which need a process to kill:
each runs bertc in a child that stalls once its temporaries exist (``DRIVER`` patches the
step after them to wait), so the signal always lands while they are on disk.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bertc.cli import main


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # "{placeholders}" filled from the files fixture and the test's own paths
    needles: tuple[str, ...]  # words the message must contain ("!words": must not); placeholders filled
    setup: tuple[str, ...] = ()  # files made in the test's directory first ("afile", "dir/x.txt")


def case(name: str, argv: str, *needles: str, setup: tuple[str, ...] = ()) -> Case:
    return Case(name, tuple(shlex.split(argv)), needles, setup)


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
    case("three numbers for tolerance", "compile {bir} -o {out} --tolerance 1e-5,1e-6,1", "--tolerance 1e-5,1e-6,1",
         "RTOL,ATOL"),
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

MISLEADING = [
    case("ids past the position table (onnx)", "run {onnx} --ids '" + " ".join(["5"] * 65) + "'",
         "65 tokens", "position-embedding table", "64 rows", "!vocabulary"),
    case("ids past the position table (bir)", "run {bir} --ids '" + " ".join(["5"] * 65) + "'",
         "position-embedding table", "!vocabulary"),
    case("eval max length past the position table", "eval {onnx} --data {text}/data.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt --max-length 65", "--max-length 65", "64 rows"),
    case("run a compile output directory", "run {compiled} --ids 1", "{compiled}", "pass one of its files",
         "{compiled}/model.onnx", "{compiled}/model.tflite", "!saved_model.pb"),
    case("eval a compile output directory", "eval {compiled} --data {text}/data.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt", "{compiled}/model.onnx"),
    case("negative id on onnx", "run {onnx} --ids '2 -1 3'", "token id -1", "100 ids", "{onnx}"),
    case("negative id on tflite", "run {tflite} --ids '-5'", "token id -5", "100 ids"),
    case("negative id on bir", "run {bir} --ids '2 -1'", "token id -1", "100 ids"),
    case("negative id on a saved model", "run {saved_model} --ids '-1'", "token id -1", "100 ids"),
    case("id past the vocabulary", "run {onnx} --ids '2 100'", "token id 100", "0..99"),
    case("eval with a vocabulary larger than the model's", "eval {onnx} --data {text}/data_big.csv "
         "--vocab {text}/vocab_big.txt --labels {text}/labels.txt", "--vocab", "token id 105", "100 ids"),
    case("inputs on a saved model", "compile {saved_model} -o {out} --inputs input_ids", "--inputs",
         "frozen GraphDef", "--signature"),
    case("outputs on ir text", "inspect {bir} --outputs logits", "--outputs", "{bir}"),
]

PATHS_AND_OUTPUTS = [
    case("missing model", "compile {tmp}/nope -o {out}", "{tmp}/nope", "no such file"),
    case("directory that is not a saved model", "inspect {text}", "{text}", "not a SavedModel"),
    case("unknown extension", "import {text}/labels.txt", "{text}/labels.txt", "not a model bertc can read"),
    case("unknown target", "compile {bir} -o {out} --target coreml", "coreml", "onnx, tflite"),
    case("check unknown target", "check {bir} --target onnx,tpu", "tpu"),
    case("unknown signature", "inspect {saved_model} --signature serving", "serving", "serving_default"),
    case("unknown pass", "opt {bir} -p fold_constant", "fold_constant", "fold_constants"),
    case("unknown pass option", "compile {bir} -o {out} --passes cse{{aggressive=true}}", "cse", "aggressive"),
    case("run ids that are not integers", "run {onnx} --ids '1 x'", "--ids", "integers"),
    case("run empty ids", "run {onnx} --ids ''", "--ids", "empty"),
    case("verify data missing", "compile {bir} -o {out} --verify-data {tmp}/none.npz", "--verify-data",
         "{tmp}/none.npz"),
    case("labels file missing", "compile {bir} -o {out} --labels {tmp}/none.txt", "--labels {tmp}/none.txt"),
    case("labels of the wrong count", "compile {bir} -o {out} --target onnx --labels {text}/labels2.txt",
         "--labels {text}/labels2.txt", "2 labels", "3 logits"),
    case("output is a file", "compile {bir} -o {tmp}/afile", "-o {tmp}/afile", "is a file", setup=("afile",)),
    case("output under a file", "compile {bir} -o {tmp}/afile/sub", "{tmp}/afile", setup=("afile",)),
    case("dump-ir is a file", "compile {bir} -o {out} --dump-ir {tmp}/afile", "--dump-ir {tmp}/afile",
         setup=("afile",)),
    case("import into a missing directory", "import {saved_model} -o {tmp}/nodir/m.bir", "{tmp}/nodir",
         "does not exist"),
    case("opt into a missing directory", "opt {bir} -p dce -o {tmp}/nodir/x.bir", "{tmp}/nodir"),
    case("eval report into a missing directory", "eval {onnx} --data {text}/data.csv --vocab {text}/vocab.txt "
         "--labels {text}/labels.txt -o {tmp}/nodir/r.json", "{tmp}/nodir/r.json"),
    case("analyze json into a missing directory", "analyze {bir} --json {tmp}/nodir/r.json", "--json",
         "{tmp}/nodir"),
    case("bench output is a file", "bench {onnx} --seq 4 --batch 1 --runs 1 -o {tmp}/afile", "-o {tmp}/afile",
         setup=("afile",)),
    case("bench sequence of zero", "bench {onnx} --seq 0", "--seq"),
    case("eval batch of zero", "eval {onnx} --data {text}/data.csv --vocab {text}/vocab.txt --batch 0",
         "--batch"),
    case("eval data missing", "eval {onnx} --data {tmp}/none.csv --vocab {text}/vocab.txt", "--data {tmp}/none.csv"),
]

CASES = CORRUPT_FILES + OPTIONS + PLUGINS + MISLEADING + PATHS_AND_OUTPUTS

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
    (text / "labels2.txt").write_text("a\nb\n")
    big = tokens + [f"x{i}" for i in range(20)]
    (text / "vocab_big.txt").write_text("\n".join(big) + "\n")
    (text / "data_big.csv").write_text("text,label\nw1,a\nx5,b\n")
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
    return {"bad": bad, "text": text, "plugins": plugins, "compiled": tf_bert_artifacts["out"],
            **{k: v for k, v in tf_bert_artifacts.items() if k != "out"}}


def _fill(template: str, paths: dict[str, Path]) -> str:
    return template.format(**{k: str(v) for k, v in paths.items()})


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_bad_input(c: Case, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = {**files, "out": tmp_path / "out", "tmp": tmp_path}
    argv = [_fill(a, paths) for a in c.argv]
    for rel in c.setup:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    made = _snapshot(tmp_path)
    before = {name: _snapshot(files[name]) for name in ("bad", "text", "plugins", "compiled")}
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
    assert _snapshot(tmp_path) == made and len(list(tmp_path.rglob("*"))) == len(made), \
        sorted(tmp_path.rglob("*"))
    assert {name: _snapshot(files[name]) for name in ("bad", "text", "plugins", "compiled")} == before


def test_the_table_is_large_and_names_are_unique():
    assert len(CASES) >= 60
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



# ------------------------------------------------------------------ signals, in a child process
DRIVER = """
import sys, time
import bertc.driver, bertc.ir.serialize

def stall(*args, **kwargs):
    print("READY", flush=True)
    time.sleep(300)

bertc.driver.verify_artifacts = stall   # compile: the artifacts are in the staging dir
bertc.ir.serialize._publish = stall      # import -o: the .bir and .npz temporaries are written
from bertc.cli import main
sys.exit(main(sys.argv[1:]))
"""

SIGNALS = [  # (name, signal, argv, the directory watched, what it holds before)
    ("SIGTERM during compile", signal.SIGTERM, "compile {saved_model} --target onnx -o {tmp}/out", "out",
     ("keep.txt",)),
    ("SIGHUP during compile", signal.SIGHUP, "compile {bir} --target onnx -o {tmp}/out", "out",
     ("keep.txt",)),
    ("SIGINT during compile", signal.SIGINT, "compile {bir} --target tflite -o {tmp}/out", "out", ("keep.txt",)),
    ("SIGTERM during compile into a new directory", signal.SIGTERM,
     "compile {bir} --target onnx -o {tmp}/new/out", "new/out", ()),
    ("SIGTERM during import -o", signal.SIGTERM, "import {saved_model} -o {tmp}/ir/model.bir", "ir", ("model.bir",)),
    ("SIGHUP during import -o", signal.SIGHUP, "import {bir} -o {tmp}/ir/model.bir", "ir", ("model.bir",)),
]


def _watched(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("name,sig,argv,watch,before", SIGNALS, ids=[s[0] for s in SIGNALS])
def test_signal_leaves_nothing_half_written(name, sig, argv, watch, before, files, tmp_path):
    for rel in before:
        (tmp_path / watch / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / watch / rel).write_text("old")
    (tmp_path / "driver.py").write_text(DRIVER)
    paths = {**files, "tmp": tmp_path}
    argv = [_fill(a, paths) for a in shlex.split(argv)]
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.communicate()[1][-2000:]
        assert set(_watched(tmp_path / watch)) - set(before), "the temporaries exist when the signal is sent"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and err.startswith("bertc: ")
    assert signal.Signals(sig).name in err or "interrupted" in err
    assert _watched(tmp_path / watch) == sorted(before)  # no temporaries, no half of a pair, no new files
    assert all((tmp_path / watch / rel).read_text() == "old" for rel in before)
    if not before:
        assert not (tmp_path / watch).exists()  # the directory this compile created goes too
