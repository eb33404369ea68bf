"""What the randman examples share: arguments, data, training, the reload check, the summary."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Dict

import numpy as np

import dense_snns as snn
from dense_snns import compat, keras
from dense_snns.data import randman_dataset
from dense_snns.ops import show_build_messages

show_build_messages()  # the first use of the C++ kernels builds them (about a minute): say so


def argument_parser(doc: str, out: str, quick_help: str) -> argparse.ArgumentParser:
    """The options every example takes; `out` is the default output directory."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set and the training")
    parser.add_argument("--out", default=out, help="output directory")
    parser.add_argument("--samples-per-class", type=int, default=1000)
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2], help="fit verbosity")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def apply_quick(args) -> bool:
    """--quick: 1 epoch, 50 samples per class, batch 16. Returns whether it was given."""
    if args.quick:
        args.epochs, args.samples_per_class, args.batch_size = 1, 50, 16
    return bool(args.quick)


def randman_kwargs(config: Dict[str, Any], args) -> Dict[str, Any]:
    """Arguments of `randman_dataset` from an example's CONFIG and its options."""
    return dict(
        nb_classes=config["nb_classes"],
        nb_units=config["nb_units"],
        nb_steps=config["nb_steps"],
        nb_samples=args.samples_per_class,
        seed=args.seed,
        batch_size=args.batch_size,
        test_fraction=config["test_fraction"],
    )


def randman_data(config: Dict[str, Any], args):
    """(train, test) tf.data datasets of randman."""
    return randman_dataset(**randman_kwargs(config, args))


def fit(model, train, test, args):
    """Train; the test set is only monitored (no early stopping or model selection on it)."""
    # The dataset reshuffles itself each epoch (shuffle=False only silences Keras 3).
    return model.fit(train, epochs=args.epochs, validation_data=test, verbose=args.verbose, shuffle=False)


def history_dict(history) -> Dict[str, list]:
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def save_and_check_reload(model, test, out: str):
    """Save to ``out/model.keras`` (see `dense_snns.compat.model_file`: a subclassed model on
    Keras 2.6 goes to the SavedModel directory ``out/model``), reload, and check that both
    predict the same on a test batch. Returns (path, that test batch's inputs)."""
    path = compat.model_file(os.path.join(out, "model.keras"), model)
    model.save(path)
    x_test, _ = next(iter(test))
    reloaded = keras.models.load_model(path)
    if not np.allclose(model.predict(x_test, verbose=0), reloaded.predict(x_test, verbose=0), atol=1e-5):
        raise RuntimeError("the reloaded model predicts differently from the trained one")
    return path, x_test


def run_fields(args, start: float, train_time: float) -> Dict[str, Any]:
    """Summary fields of a run: times, options, Keras version."""
    return {
        "train_time_s": round(train_time, 1),
        "wall_time_s": round(time.time() - start, 1),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "samples_per_class": args.samples_per_class,
        "seed": args.seed,
        "keras_version": snn.KERAS_VERSION,
    }


def write_summary(out: str, summary: Dict[str, Any]) -> str:
    path = os.path.join(out, "summary.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2)
    return path
