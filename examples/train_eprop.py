"""Train a recurrent spiking network on randman online, by e-prop instead of BPTT.

The main job's data (randman: 10 classes, 100 input units, 100 steps; `train_randman.py`)
and a network of one self-recurrent hidden layer and a leaky readout, trained by
`dense_snns.EProp`: eligibility traces run forward with the neurons, a learning signal from
the readout error (symmetric or random feedback) multiplies them at every step, and nothing
of the past is stored, so memory does not depend on the sequence length.

Before and after training, the e-prop update of one training batch is compared with the
exact gradient of BPTT (same weights, same loss): their cosine similarity per weight matrix
is printed and saved. Without self-recurrence (``--no-recurrent``) e-prop with symmetric
feedback is exactly BPTT (cosine 1); with it, e-prop drops the paths through the recurrent
weights from the gradient.

Measured with the defaults (seed 0, Keras 3, 2 CPU cores, 10-15 minutes): 98.34% test
accuracy (99.15% train) after 10 epochs; the same network and loss trained by BPTT reach
99.8%. Cosine similarity of the e-prop update with the BPTT gradient: 0.98 over all weights
at initialisation (input 0.98, recurrent 0.98, readout 1.0), 0.57 after training (input 0.52,
recurrent 0.55, readout 1.0): in the trained network more of the gradient runs through the
recurrent weights, which e-prop leaves out.

Outputs, in `--out` (default ``runs/eprop/``): the model (``model.keras``, reloaded and
checked) and ``summary.json`` (accuracies, cosine similarities, history).

Run from the repository root::

    python examples/train_eprop.py                 # full run
    python examples/train_eprop.py --quick         # smoke test
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Dict

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _common as common  # noqa: E402
import dense_snns as snn  # noqa: E402
from dense_snns import compat, keras  # noqa: E402
from dense_snns.eprop import per_step_cross_entropy  # noqa: E402

#: Hyper-parameters of the default run (stored in the JSON summary).
CONFIG = {
    "nb_classes": 10,
    "nb_units": 100,
    "nb_steps": 100,
    "test_fraction": 0.2,
    "hidden": 128,
    "neuron": "cuba_lif",  # alpha 0.8, beta 0.9, threshold 1, reset by subtraction
    "recurrent": True,
    "feedback": "symmetric",
    "weight_scale": 1.0,  # std of the input kernel: weight_scale / sqrt(fan_in)
    "recurrent_scale": 0.1,  # std of the recurrent kernel: recurrent_scale / sqrt(hidden)
    "readout_beta": 0.9,
    "learning_rate": 2e-3,
}


def build_model(config=CONFIG, seed: int = 0):
    """The compiled e-prop trainer: one `SNNDense` hidden layer and a `LeakyReadout`."""
    units = config["hidden"]
    hidden = snn.SNNDense(
        units,
        neuron=config["neuron"],
        self_recurrent=config["recurrent"],
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=config["weight_scale"] / math.sqrt(config["nb_units"])
        ),
        recurrent_initializer=keras.initializers.RandomNormal(stddev=config["recurrent_scale"] / math.sqrt(units)),
        name="hidden",
    )
    readout = snn.LeakyReadout(config["nb_classes"], beta=config["readout_beta"], name="readout")
    model = snn.EProp([hidden], readout, feedback=config["feedback"], seed=seed, name="eprop_snn")
    model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"]))
    return model


def cosine_vs_bptt(model, x, labels) -> Dict[str, float]:
    """Cosine similarity of the e-prop update with the BPTT gradient of the same loss, per
    trained variable and over all of them."""
    with tf.GradientTape() as tape:
        loss = per_step_cross_entropy(model(x), labels)
    bptt = tape.gradient(loss, model.trained_variables)
    eprop = model.gradients(x, labels)

    def cosine(a, b):
        a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))

    owner = {}
    for layer in model.hidden + [model.readout]:
        for variable in layer.trainable_weights:
            owner[id(variable)] = f"{layer.name}/{variable.name.split('/')[-1].split(':')[0]}"
    names = [owner[id(v)] for v in model.trained_variables]
    result = {name: cosine(e, b) for name, e, b in zip(names, eprop, bptt)}
    result["all"] = cosine(np.concatenate([np.ravel(e) for e in eprop]), np.concatenate([np.ravel(b) for b in bptt]))
    return result


def print_cosines(title: str, cosines: Dict[str, float]) -> None:
    print(title)
    for name, value in cosines.items():
        print(f"  {name:40s} {value:.4f}")


def parse_args(argv=None):
    parser = common.argument_parser(
        __doc__, os.path.join("runs", "eprop"), "smoke test: 50 samples per class, 32 neurons, 1 epoch"
    )
    parser.set_defaults(epochs=10)
    parser.add_argument("--learning-rate", type=float, default=CONFIG["learning_rate"])
    parser.add_argument("--feedback", choices=["symmetric", "random"], default=CONFIG["feedback"])
    parser.add_argument("--neuron", default=CONFIG["neuron"], help="a spiking model of dense_snns.neurons")
    parser.add_argument("--no-recurrent", action="store_true", help="no self-recurrent weights")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config = dict(
        CONFIG,
        learning_rate=args.learning_rate,
        feedback=args.feedback,
        neuron=args.neuron,
        recurrent=not args.no_recurrent,
    )
    if common.apply_quick(args):
        config["hidden"] = 32
    compat.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    train, test = common.randman_data(config, args)
    model = build_model(config, args.seed)
    x_batch, y_batch = next(iter(train))
    model.build(x_batch.shape)
    before = cosine_vs_bptt(model, x_batch, y_batch)
    print_cosines("cosine similarity of the e-prop update with BPTT, at initialisation:", before)

    history = common.fit(model, train, test, args)
    train_time = time.time() - start
    train_logs = model.evaluate(train, verbose=0, return_dict=True)
    test_logs = model.evaluate(test, verbose=0, return_dict=True)
    after = cosine_vs_bptt(model, x_batch, y_batch)
    print_cosines("after training:", after)

    model_path, _ = common.save_and_check_reload(model, test, args.out)
    summary = {
        "test_accuracy": float(test_logs["acc"]),
        "train_accuracy": float(train_logs["acc"]),
        "test_loss": float(test_logs["loss"]),
        "cosine_vs_bptt_at_init": before,
        "cosine_vs_bptt_after_training": after,
        **common.run_fields(args, start, train_time),
        "config": config,
        "history": common.history_dict(history),
    }
    json_path = common.write_summary(args.out, summary)
    print(f"train accuracy: {100 * summary['train_accuracy']:.2f}%, wall time {summary['wall_time_s']:.0f} s")
    print(f"test accuracy: {100 * summary['test_accuracy']:.2f}%")
    print(f"summary: {json_path}\nmodel: {model_path}")
    return summary


if __name__ == "__main__":
    main()
