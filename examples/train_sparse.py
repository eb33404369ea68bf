"""Train the randman SNN with sparse spikes everywhere, next to the same dense model.

Randman is made with the library's defaults (as in `train_randman.py`, 80/20 split). The input
rasters are converted to `SparseSpikes` inside the tf.data pipeline, so the first layer is
sparse too. The sparse model is ``SparseSNNDense -> SparseSNNDense -> SparseLeakyReadout``:
every block computes its synaptic current with `SparseLinear` (cost O(active inputs)) and
emits at most K spikes per step, selected with gradient-only entries near threshold (sparse
BPTT); the readout takes the sparse spikes directly. The dense model is the same network of
`SNNDense` layers and a `LeakyReadout`.

Printed and written to ``summary.json``: test accuracy of both models, measured spike
densities, capacities, spikes dropped by overflow, wall times.

Run from the repository root::

    python examples/train_sparse.py            # full run
    python examples/train_sparse.py --quick    # smoke test
"""

from __future__ import annotations

import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _common as common  # noqa: E402
import tensorflow as tf  # noqa: E402

import dense_snns as snn  # noqa: E402
import sparse_snns as sparse  # noqa: E402
from dense_snns import compat, keras  # noqa: E402
from dense_snns.data import randman_dataset  # noqa: E402

CONFIG = {
    "nb_classes": 10,
    "nb_units": 100,
    "nb_steps": 100,
    "test_fraction": 0.2,
    "hidden": [128, 128],
    "neuron": {"class_name": "CubaLIF", "config": {"alpha": 0.8, "beta": 0.9, "threshold": 1.0}},
    # Expected density of the hidden layers (spikes per neuron per step), for their capacity
    # (the second hidden layer of the trained model fires at about 18%).
    "hidden_density": 0.2,
    "second_threshold": -0.5,
    "learning_rate": 2e-3,
}


def _init(fan_in):
    return keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(fan_in))


def _compile(model, config):
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        loss=snn.MaxOverTimeCrossEntropy(),
        metrics=[snn.TimeReducedAccuracy("max", name="acc")],
        **({"jit_compile": False} if snn.KERAS_3 else {}),
    )
    return model


def build_sparse_model(config, input_capacity, capacities):
    steps, n_in = config["nb_steps"], config["nb_units"]
    ids = keras.Input((steps, input_capacity), dtype="int32", name="ids")
    values = keras.Input((steps, input_capacity), name="values")
    count = keras.Input((steps,), dtype="int32", name="count")
    x, fan_in = [ids, values, count], n_in
    for i, (units, capacity) in enumerate(zip(config["hidden"], capacities), start=1):
        x = sparse.SparseSNNDense(
            units,
            input_dim=fan_in,
            capacity=capacity,
            neuron=config["neuron"],
            second_threshold=config["second_threshold"],
            kernel_initializer=_init(fan_in),
            name=f"sparse{i}",
        )(x)
        fan_in = units
    outputs = sparse.SparseLeakyReadout(config["nb_classes"], input_dim=fan_in, name="readout")(x)
    return _compile(keras.Model([ids, values, count], outputs, name="sparse_snn"), config)


def build_dense_model(config):
    inputs = keras.Input((config["nb_steps"], config["nb_units"]))
    x, fan_in = inputs, config["nb_units"]
    for i, units in enumerate(config["hidden"], start=1):
        x = snn.SNNDense(units, neuron=config["neuron"], kernel_initializer=_init(fan_in), name=f"hidden{i}")(x)
        x = snn.SpikeMonitor(name=f"h{i}")(x)
        fan_in = units
    outputs = snn.LeakyReadout(config["nb_classes"], name="readout")(x)
    return _compile(keras.Model(inputs, outputs, name="dense_snn"), config)


def spike_densities(model, dataset, layer_names, sizes):
    """Mean fraction of neurons spiking per step, per sparse layer, over `dataset`."""
    probe = keras.Model(model.inputs, [model.get_layer(name).output[2] for name in layer_names])
    totals = [0.0] * len(layer_names)
    batches = 0
    for inputs, _ in dataset:
        counts = probe(inputs)
        # count includes gradient-only entries: measure real spikes through the values.
        batches += 1
        for i, (c, size) in enumerate(zip(counts, sizes)):
            totals[i] += float(tf.reduce_mean(tf.cast(c, tf.float32))) / size
    return [t / max(batches, 1) for t in totals]


def fired_densities(model, dataset, layer_names, sizes):
    probe = keras.Model(model.inputs, [model.get_layer(name).output[1] for name in layer_names])
    totals, batches = [0.0] * len(layer_names), 0
    for inputs, _ in dataset:
        batches += 1
        for i, (values, size) in enumerate(zip(probe(inputs), sizes)):
            totals[i] += float(tf.reduce_mean(tf.reduce_sum(values, axis=-1))) / size
    return [t / max(batches, 1) for t in totals]


def parse_args(argv=None):
    parser = common.argument_parser(
        __doc__, os.path.join("runs", "sparse"), "smoke test: 50 samples per class, 32+32 neurons, 1 epoch"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config = dict(CONFIG)
    if common.apply_quick(args):
        config["hidden"] = [32, 32]
    os.makedirs(args.out, exist_ok=True)
    data_kwargs = common.randman_kwargs(config, args)
    # Input capacity: the most events in one step of the training set (randman's spike times
    # cluster, so this is well above 1% of the units).
    input_capacity = sparse.max_events_per_step(randman_dataset(**data_kwargs)[0])
    capacities = [sparse.default_capacity(units, config["hidden_density"]) for units in config["hidden"]]

    results = {}
    for kind in ("dense", "sparse"):
        compat.set_random_seed(args.seed)
        train, test = randman_dataset(**data_kwargs)
        if kind == "sparse":
            # Exact conversion in the pipeline: strict, input events are never dropped.
            train, test = (sparse.sparse_dataset(ds, input_capacity) for ds in (train, test))
            model = build_sparse_model(config, input_capacity, capacities)
        else:
            model = build_dense_model(config)
        start = time.time()
        history = common.fit(model, train, test, args)
        logs = model.evaluate(test, verbose=0, return_dict=True)
        results[kind] = {
            "test_accuracy": float(logs["acc"]),
            "train_time_s": round(time.time() - start, 1),
            "history": common.history_dict(history),
        }
        if kind == "sparse":
            names = [f"sparse{i}" for i in range(1, len(config["hidden"]) + 1)]
            results[kind]["hidden_spike_density"] = fired_densities(model, test, names, config["hidden"])
            results[kind]["selected_per_step"] = spike_densities(model, test, names, config["hidden"])
            results[kind]["dropped_spikes_per_step"] = {k: float(v) for k, v in logs.items() if k.endswith("_dropped")}
        else:
            results[kind]["hidden_spike_density"] = [
                float(logs[f"h{i}_rate"]) for i in range(1, len(config["hidden"]) + 1)
            ]

    summary = {
        "dense": results["dense"],
        "sparse": results["sparse"],
        "accuracy_gap_points": round(100 * (results["dense"]["test_accuracy"] - results["sparse"]["test_accuracy"]), 2),
        "input_capacity": input_capacity,
        "hidden_capacities": capacities,
        "config": config,
        "seed": args.seed,
        "epochs": args.epochs,
        "keras_version": snn.KERAS_VERSION,
    }
    path = common.write_summary(args.out, summary)
    print(
        f"dense  test accuracy: {100 * results['dense']['test_accuracy']:.2f}%  ({results['dense']['train_time_s']} s)"
    )
    print(
        f"sparse test accuracy: {100 * results['sparse']['test_accuracy']:.2f}%  ({results['sparse']['train_time_s']} s)"
    )
    print(
        f"capacities: input K={input_capacity}, hidden K={capacities}; "
        f"hidden spike densities (sparse model): {[round(d, 4) for d in results['sparse']['hidden_spike_density']]}; "
        f"dropped spikes per step: {results['sparse']['dropped_spikes_per_step']}"
    )
    print(f"summary: {path}")
    return summary


if __name__ == "__main__":
    main()
