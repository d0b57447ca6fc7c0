"""bertc end to end on a BERT that this script builds: the README's first command.

    python examples/quickstart.py [WORKDIR] [--base]

1. builds a randomly initialised BERT classifier in plain TensorFlow
   (examples/bert_tf.py; tiny by default, BERT-base sized with --base),
2. `bertc inspect`: inputs, op histogram, parameters, the layers it found,
3. `bertc compile --target all`: ONNX and TFLite, each verified against TF,
   with the IR dumped after every pass,
4. `bertc run` on both artifacts with the same token ids.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bertc.cli import main as bertc  # noqa: E402


def step(title: str, *argv: str) -> None:
    print(f"\n$ bertc {' '.join(argv)}    # {title}", flush=True)
    code = bertc(list(argv))
    if code != 0:
        sys.exit(code)


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", help="where to put the model and artifacts (default: a temp dir)")
    parser.add_argument("--base", action="store_true", help="BERT-base size (12 layers, hidden 768): ~420 MB")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bertc-quickstart-"))
    work.mkdir(parents=True, exist_ok=True)

    from examples.bert_tf import BertConfig, save_bert

    config = BertConfig(layers=12, hidden=768, heads=12, ffn=3072, vocab=30522, max_positions=512) \
        if args.base else BertConfig(layers=2, hidden=64, heads=4, ffn=128, vocab=1000)
    model = work / "saved_model"
    print(f"building a BERT classifier ({config.layers} layers, hidden {config.hidden}) in {model}", flush=True)
    save_bert(config, str(model))

    step("what is in the model", "inspect", str(model))
    step("to ONNX and TFLite, verified against TF", "compile", str(model), "--target", "all",
         "-o", str(work / "out"), "--dump-ir", str(work / "ir"))
    for artifact in ("model.onnx", "model.tflite"):
        step(f"poke at {artifact}", "run", str(work / "out" / artifact), "--ids", "101 592 88 102")
    print(f"\nartifacts and report.json: {work / 'out'}\nIR after each pass: {work / 'ir'}")


if __name__ == "__main__":
    run()
