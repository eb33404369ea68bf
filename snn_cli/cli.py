"""``snn train``: data set and model by name, Keras' progress bar, and on finish the paths of
the saved model, the spike-raster plot, the TensorBoard logs and the JSON summary.
``snn export-nir MODEL.keras OUT.nir`` and ``snn import-nir IN.nir OUT.keras``: NIR files
(`dense_snns.nir`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional


DATA = ("randman", "digits", "shd", "nmnist")
MODELS = ("dense", "sparse", "graph", "conv")
#: Data sets whose samples are images, the only input of the conv model.
IMAGE_DATA = ("digits", "nmnist")


class UsageError(Exception):
    """A combination of options that cannot work; the message says what to use instead."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snn", description="Spiking neural networks in TensorFlow/Keras.")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    train = commands.add_parser("train", help="train a model on a data set", description=__doc__.split("\n")[0])
    train.add_argument("--data", choices=DATA, default="randman", help="data set (default randman)")
    train.add_argument("--model", choices=MODELS, default="dense", help="model kind (default dense)")
    train.add_argument(
        "--data-path",
        help="shd: the folder of shd_train.h5 and shd_test.h5; nmnist: the folder holding Train/ and Test/",
    )
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--hidden", type=int, default=128, help="neurons per hidden layer (graph: per node)")
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=os.path.join("runs", "snn"), help="output folder (default runs/snn)")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras fit verbosity")
    train.add_argument("--quick", action="store_true", help="a tiny run: few samples, 1 epoch, 16 neurons")
    export = commands.add_parser("export-nir", help="write a saved model as a NIR file")
    export.add_argument(
        "model", help="a saved model (.keras): SNNConv2D/SNNDense/sparse/GraphSNN layers and a LeakyReadout"
    )
    export.add_argument("out", help="the NIR file to write")
    export.add_argument("--dt", type=float, default=None, help="seconds per step (default 1e-4)")
    imported = commands.add_parser("import-nir", help="build a model from a NIR file and save it")
    imported.add_argument("nir_file", help="a NIR file (Conv2d/Affine (/Delay) -> LIF/CubaLIF ... -> Affine -> LI)")
    imported.add_argument("out", help="the model file to write (.keras)")
    imported.add_argument("--dt", type=float, default=None, help="seconds per step (default: the file's, else 1e-4)")
    return p


def _register_layers() -> None:
    """Import the packages whose layers a saved model or a NIR file may hold (a GraphSNN's
    NIR export and import register on import)."""
    import snns_as_gnn  # noqa: F401
    import sparse_snns  # noqa: F401


def export_nir_file(args) -> str:
    from dense_snns import keras
    from dense_snns.nir import DEFAULT_DT, export_nir, write_nir

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"model file not found: {args.model!r}")
    _register_layers()
    graph = export_nir(keras.models.load_model(args.model), dt=args.dt or DEFAULT_DT)
    write_nir(args.out, graph)
    print(f"NIR graph ({len(graph.nodes)} nodes, {len(graph.edges)} edges): {args.out}")
    return args.out


def import_nir_file(args) -> str:
    from dense_snns.nir import import_nir

    if not os.path.isfile(args.nir_file):
        raise FileNotFoundError(f"NIR file not found: {args.nir_file!r}")
    _register_layers()
    model = import_nir(args.nir_file, dt=args.dt)
    model.save(args.out)
    print(f"model ({len(model.layers) - 1} layers): {args.out}")
    return args.out


def load_data(args):
    """(train, test, classes): `tf.data` datasets of (spikes [batch, time, ...], labels)."""
    from dense_snns import data

    flatten = args.model != "conv"
    if args.model == "conv" and args.data not in IMAGE_DATA:
        raise UsageError(f"--model conv needs image data (--data {' or '.join(IMAGE_DATA)}), got --data {args.data}")
    if args.data in ("shd", "nmnist") and not args.data_path:
        raise UsageError(f"--data {args.data} needs --data-path (see `snn train --help`)")
    if args.data == "randman":
        train, test = data.randman_dataset(
            nb_samples=50 if args.quick else 1000, batch_size=args.batch_size, seed=args.seed
        )
        return train, test, 10
    if args.data == "digits":
        train, test = data.digits_dataset(
            20, "latency", args.batch_size, flatten=flatten, seed=args.seed, max_train=200 if args.quick else None
        )
        return train, test, 10
    if args.data == "shd":
        paths = [os.path.join(args.data_path, f"shd_{split}.h5") for split in ("train", "test")]
        train, test = (data.shd_dataset(p, batch_size=args.batch_size, seed=args.seed) for p in paths)
        if args.quick:
            train, test = train.take(2), test.take(1)
        return train, test, 20
    limit = 200 if args.quick else None
    train, test = (
        data.nmnist_dataset(
            args.data_path, split, downsample=2, flatten=flatten, batch_size=args.batch_size, seed=args.seed,
            max_samples=limit, shuffle=split == "train",
        )
        for split in ("train", "test")
    )  # fmt: skip
    return train, test, 10


def build_model(kind: str, input_shape, classes: int, hidden: int, learning_rate: float):
    """The compiled model of `kind` for inputs [time, ...] = `input_shape`."""
    import dense_snns as ds
    import snns_as_gnn
    import sparse_snns as sp
    from dense_snns import keras

    steps = input_shape[0]
    if kind == "sparse":
        n = int(input_shape[-1])
        inputs = [
            keras.Input((steps, n), dtype="int32", name="ids"),
            keras.Input((steps, n), name="values"),
            keras.Input((steps,), dtype="int32", name="count"),
        ]
        capacity = sp.default_capacity(hidden, 0.1)
        h = sp.SparseSNNDense(hidden, input_dim=n, capacity=capacity, name="hidden")(inputs)
        outputs = sp.SparseLeakyReadout(classes, input_dim=hidden, name="readout")(h)
    else:
        inputs = keras.Input(tuple(input_shape), name="spikes")
        if kind == "dense":
            h = ds.SNNDense(hidden, name="hidden1")(inputs)
            h = ds.SNNDense(hidden, name="hidden2")(h)
        elif kind == "graph":
            # four nodes: a ring with a shortcut, input at node 0, output at node 3
            graph = snns_as_gnn.SNNGraph.from_adjacency(
                [[3], [0], [1, 0], [2]], units=hidden, inputs=[0], outputs=[3], input_size=int(input_shape[-1])
            )
            h = snns_as_gnn.GraphSNN(graph, name="graph")(inputs)
        else:
            h = ds.SNNConv2D(16, 3, padding="same", name="conv1")(inputs)
            h = ds.SNNConv2D(32, 3, strides=2, padding="same", name="conv2")(h)
            h = keras.layers.Reshape((steps, -1), name="flatten")(h)
            h = ds.SNNDense(hidden, name="hidden")(h)
        outputs = ds.LeakyReadout(classes, name="readout")(h)
    model = keras.Model(inputs, outputs, name=f"{kind}_snn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=ds.MaxOverTimeCrossEntropy(),
        metrics=[ds.TimeReducedAccuracy("max", name="acc")],
        **({"jit_compile": False} if ds.KERAS_3 else {}),
    )
    return model


def save_raster(model, sample, path: str) -> str:
    """Spike rasters of every spiking layer for the first sample of `sample`."""
    from dense_snns.plotting import plot_rasters
    from dense_snns.tensorboard import layer_outputs_model, spikes_as_dense, spiking_layers

    layers = spiking_layers(model)
    outputs = layer_outputs_model(model, layers)(sample, training=False)
    rasters = [spikes_as_dense(layer, outputs[str(i)])[0] for i, layer in enumerate(layers)]
    return plot_rasters(rasters, path, titles=[layer.name for layer in layers])


def train(args) -> dict:
    import dense_snns as ds
    import sparse_snns as sp
    from dense_snns import keras
    from dense_snns.tensorboard import SpikeTensorBoard

    if args.quick:
        args.epochs, args.hidden = 1, 16
    ds.compat.set_random_seed(args.seed)
    train_data, test_data, classes = load_data(args)
    if args.model == "sparse":
        train_data, test_data = (sp.sparse_dataset(d) for d in (train_data, test_data))
    x_sample, _ = next(iter(test_data))
    sample = list(x_sample) if isinstance(x_sample, (tuple, list)) else x_sample
    input_shape = (sample[0] if isinstance(sample, list) else sample).shape[1:]
    if args.model == "sparse":
        input_shape = (input_shape[0], int(sample[0].shape[-1]))
    model = build_model(args.model, input_shape, classes, args.hidden, args.learning_rate)
    os.makedirs(args.out, exist_ok=True)
    logs = os.path.join(args.out, "logs")
    callbacks = [keras.callbacks.TensorBoard(logs), SpikeTensorBoard(logs, sample=sample)]
    start = time.time()
    history = model.fit(
        train_data, validation_data=test_data, epochs=args.epochs, verbose=args.verbose, callbacks=callbacks
    )
    train_time = time.time() - start
    result = model.evaluate(test_data, verbose=0, return_dict=True)
    model_path = os.path.join(args.out, "model.keras")
    model.save(model_path)
    plot_path = save_raster(model, sample, os.path.join(args.out, "raster.png"))
    summary = {
        "data": args.data,
        "model": args.model,
        "test_accuracy": float(result["acc"]),
        "test_loss": float(result["loss"]),
        "epochs": args.epochs,
        "hidden": args.hidden,
        "seed": args.seed,
        "train_time_s": round(train_time, 1),
        "keras_version": ds.KERAS_VERSION,
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "paths": {"model": model_path, "raster": plot_path, "tensorboard": logs},
    }
    summary_path = os.path.join(args.out, "summary.json")
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=2)
    summary["paths"]["summary"] = summary_path
    print(f"test accuracy: {100 * summary['test_accuracy']:.2f}%  ({args.model} on {args.data}, {train_time:.0f} s)")
    print(f"model:       {model_path}\nraster plot: {plot_path}\nTensorBoard: tensorboard --logdir {logs}")
    print(f"summary:     {summary_path}")
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    from dense_snns.ops import show_build_messages

    show_build_messages()  # the first use of the C++ kernels builds them (about a minute): say so
    command = {"train": train, "export-nir": export_nir_file, "import-nir": import_nir_file}[args.command]
    try:
        command(args)
    except (UsageError, FileNotFoundError, ValueError, ImportError) as err:
        print(f"snn {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
