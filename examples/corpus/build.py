"""Build the foreign-model corpus: one SavedModel (or frozen .pb) per model, plus manifest.json.

    python -m examples.corpus.build OUT_DIR [--only NAME,...]

The corpus has four parts, each built by its own module in a child process
(Hugging Face needs Keras 2 selected before TensorFlow loads, keras-hub needs
Keras 3, the TF1 model needs graph mode), and the children run side by side:

- ``hf_*``        every BERT-family TF encoder of transformers 4.57.6 (examples/corpus/hf.py)
- ``kh_*``        keras-hub 0.32's BERT-family text backbones (examples/corpus/keras_hub_models.py)
- ``tf1_bert_*``  Google's original TF1 modeling.py style, as a SavedModel and as a frozen .pb
                  (examples/tf1_bert.py; skipped with a note when that module is absent)
- op families     small plain-TF graphs, one op family each (examples/corpus/op_families.py)
- graph forms     small plain-TF graphs with ordinary ops written in other people's forms: spelled-out
                  softmax and activations, pre-norm, tf-keras' fused layer norm, XLA, fixed or
                  lengths signatures (examples/corpus/graph_forms.py)

``manifest.json`` is a list of entries: ``name``, ``kind``, ``path``,
``source``, ``inputs`` (name -> dtype and shape, ``null`` for a dynamic dim),
``outputs``, and where they apply ``verify_data`` (an .npz of valid inputs),
``expect_refusal`` (a fragment of the message bertc must refuse with),
``compile_args`` (extra ``bertc compile`` arguments, e.g. a frozen graph's
``--inputs``/``--outputs``) and ``build_error`` (the model's builder broke: a
result in itself, and nothing else is known about it).  Skipped parts are
listed under ``skipped`` in ``manifest.json``'s sibling ``manifest_notes.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARTS = {"hf": "examples.corpus.hf", "keras_hub": "examples.corpus.keras_hub_models",
         "op_family": "examples.corpus.op_families", "graph_form": "examples.corpus.graph_forms"}
# The plain-TF parts: kind -> the file whose MODELS table names their models.
PLAIN_TF = {"op_family": "op_families.py", "graph_form": "graph_forms.py"}
TF1_NAMES = ("tf1_bert_saved_model", "tf1_bert_frozen_pb")

# Builds the TF1 model's two forms (at tf1_bert's own tiny defaults) in a child process and prints
# their manifest entries.
_TF1_SCRIPT = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from examples import tf1_bert
out, names = Path(sys.argv[2]), sys.argv[3].split(",")
inputs = list(getattr(tf1_bert, "INPUT_NAMES", ["input_ids", "input_mask", "segment_ids"]))
sink = list(getattr(tf1_bert, "OUTPUT_NAMES", ["logits"]))[0]
spec = {k: {"dtype": "int32", "shape": [None, None]} for k in inputs}
entries = []
for name in names:
    try:
        if name == "tf1_bert_saved_model":
            path = out / name
            tf1_bert.save_saved_model(str(path))
            entries.append({"name": name, "kind": "tf1", "path": str(path), "inputs": spec, "outputs": ["logits"],
                            "source": "examples.tf1_bert.save_saved_model"})
        else:
            path = out / (name + ".pb")
            tf1_bert.save_frozen_pb(str(path))
            entries.append({"name": name, "kind": "tf1", "path": str(path), "inputs": spec, "outputs": [sink],
                            "source": "examples.tf1_bert.save_frozen_pb",
                            "compile_args": ["--inputs", ",".join(inputs), "--outputs", sink]})
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        entries.append({"name": name, "kind": "tf1", "build_error": f"{type(e).__name__}: {first}"[:300]})
json.dump(entries, sys.stdout)
"""


def all_names() -> dict[str, str]:
    """Every model name the corpus can build -> its kind (imports only the plain-TF part's table lazily)."""
    from . import hf, keras_hub_models  # these modules import TF lazily, inside their builders

    names = {n: "hf" for n in hf.SPECS}
    names.update({n: "keras_hub" for n in keras_hub_models.SPECS})
    names.update({n: "tf1" for n in TF1_NAMES})
    return names


def _op_family_names(file: str = "op_families.py") -> list[str]:
    """A plain-TF part's model table without importing TensorFlow here (the module defines one function
    per model)."""
    import ast

    tree = ast.parse((Path(__file__).parent / file).read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "MODELS":
            return [e.id for e in node.value.generators[0].iter.elts]  # {fn.__name__: fn for fn in (...)}
    raise RuntimeError(f"{file}: MODELS not found")


def plain_tf_names() -> dict[str, str]:
    """Every plain-TF model name -> its kind (op_family, graph_form)."""
    return {n: kind for kind, file in PLAIN_TF.items() for n in _op_family_names(file)}


def _has_tf1() -> bool:
    return (ROOT / "examples" / "tf1_bert.py").is_file()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def build_corpus(out_dir: str | Path, only: list[str] | None = None, timeout: float = 900) -> dict:
    """Build the corpus into ``out_dir``; returns {"models": [entries], "skipped": [notes]}.

    Writes ``manifest.json`` (the entries) and ``manifest_notes.json`` (what was skipped and why).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kinds = all_names()
    kinds.update(plain_tf_names())
    unknown = sorted(set(only or ()) - set(kinds))
    if unknown:
        raise ValueError(f"unknown corpus models: {', '.join(unknown)}")
    wanted = only or list(kinds)
    skipped = []
    children = []
    for kind, module in PARTS.items():
        names = [n for n in wanted if kinds[n] == kind]
        if kind == "hf" and names and not (_importable("transformers") and _importable("tf_keras")):
            skipped.append(f"Hugging Face models: transformers/tf-keras not installed ({len(names)} models)")
            continue
        if kind == "keras_hub" and names and not _importable("keras_hub"):
            skipped.append(f"keras-hub models: keras-hub not installed ({len(names)} models)")
            continue
        if names:
            cmd = [sys.executable, "-m", module, str(out), "--only", ",".join(names)]
            children.append((kind, _spawn(cmd)))
    tf1 = [n for n in wanted if kinds[n] == "tf1"]
    if tf1 and not _has_tf1():
        skipped.append("TF1 modeling.py-style BERT: examples/tf1_bert.py does not exist yet")
    elif tf1:
        cmd = [sys.executable, "-c", _TF1_SCRIPT, str(ROOT), str(out), ",".join(tf1)]
        children.append(("tf1", _spawn(cmd)))
    entries = []
    for kind, proc in children:
        stdout, stderr = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"building the {kind} models failed (exit {proc.returncode}):\n{stderr[-3000:]}")
        entries.extend(json.loads(stdout))
    order = {n: i for i, n in enumerate(wanted)}
    entries.sort(key=lambda e: order[e["name"]])
    (out / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    (out / "manifest_notes.json").write_text(json.dumps({"skipped": skipped}, indent=1) + "\n")
    return {"models": entries, "skipped": skipped}


def _spawn(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=_child_env())


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the foreign-model corpus (SavedModels + manifest.json).")
    parser.add_argument("out_dir")
    parser.add_argument("--only", help="comma-separated model names (default: all)")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        result = build_corpus(args.out_dir, only)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    broken = [e["name"] for e in result["models"] if "build_error" in e]
    print(f"{len(result['models'])} models in {args.out_dir}/manifest.json"
          + (f"; builder errors: {', '.join(broken)}" if broken else ""))
    for note in result["skipped"]:
        print(f"skipped: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
