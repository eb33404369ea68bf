"""Stream a trained randman network over 100,000 samples, one after another, in constant memory.

The main job's model (`train_randman.py`; trained here first unless ``--model`` names a saved
one) classifies a sample of 100 steps by the max over time of its readout. Here the held-out
test samples, reshuffled on every pass, are concatenated into ``--lanes`` parallel streams of
``--samples / --lanes`` samples each, and delivered in chunks of ``--chunk`` steps that do not
align with the samples (as a sensor would deliver them). A stateful copy of the model
(`stateful_copy`) runs over the chunks with `run_stream`, which keeps only the neuron states
and the running max of the readout: when a window of 100 steps (one sample per lane) is
complete, its predictions are written to ``predictions.csv`` and counted. Memory does not
grow with the length of the stream.

With ``--reset window`` (default) the states are zeroed at the start of every sample, and the
first pass over the test set is checked against ``model.predict`` on the same samples: the
predictions must be identical. With ``--reset none`` the stream is continuous: every sample
starts from the states the previous one left (what a sensor stream gives), so the accuracy
shows how much that carry-over costs. Measured with the defaults (Keras 3, 2 CPU cores):
100.00% of 100,000 streamed samples right, identical to ``model.predict`` on all 2000 checked,
about 7000 samples (700,000 sample-steps) per second; ``--reset none``: 96.2%.

Outputs, in `--out` (default ``runs/stream/``): ``predictions.csv`` (sample, lane, label,
prediction) and ``summary.json`` (accuracy, agreement with ``model.predict``, samples and
steps per second, peak resident memory).

Run from the repository root::

    python examples/stream_inference.py                       # 1e5 samples (trains first)
    python examples/stream_inference.py --model runs/randman/model.keras
    python examples/stream_inference.py --quick               # smoke test
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _common as common  # noqa: E402
import train_randman  # noqa: E402
from dense_snns import KERAS_VERSION, compat, keras  # noqa: E402
from dense_snns.data import randman_dataset  # noqa: E402
from dense_snns.streaming import run_stream, stateful_copy  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a saved main-job model (.keras); default: train one first")
    parser.add_argument("--samples", type=int, default=100_000, help="samples in the stream (all lanes)")
    parser.add_argument("--lanes", type=int, default=100, help="parallel streams (the batch size)")
    parser.add_argument("--chunk", type=int, default=250, help="steps per chunk delivered")
    parser.add_argument("--reset", choices=["window", "none"], default="window", help="zero states per sample?")
    parser.add_argument("--loop", choices=["auto", "steps", "chunks"], default="auto", help="see run_stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "stream"))
    parser.add_argument("--quick", action="store_true", help="smoke test: quick training, 1000 samples")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.lanes = min(args.samples, 1000), min(args.lanes, 50)
    if args.samples % args.lanes:
        parser.error(f"--samples ({args.samples}) must be a multiple of --lanes ({args.lanes})")
    return args


def trained_model(args):
    """(model, test inputs [n, T, U], test labels [n]): loaded, or trained by train_randman."""
    path = args.model
    if path is None:
        path = os.path.join(args.out, "trained")
        train_argv = ["--out", path, "--verbose", "0", "--seed", str(args.seed)]
        print("training the main job's model first (examples/train_randman.py) ...", flush=True)
        train_randman.main(train_argv + (["--quick"] if args.quick else []))
        path = os.path.join(path, "model.keras")
    model = keras.models.load_model(path)
    config = train_randman.CONFIG
    _, test = randman_dataset(
        nb_classes=config["nb_classes"],
        nb_units=config["nb_units"],
        nb_steps=config["nb_steps"],
        nb_samples=50 if args.quick else 1000,
        seed=args.seed,
        batch_size=256,
        test_fraction=config["test_fraction"],
    )
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in test])
    return model, np.concatenate(xs), np.concatenate(ys)


def sample_order(n_test: int, samples: int, lanes: int, seed: int) -> np.ndarray:
    """Test-set index of every sample of the stream, [samples_per_lane, lanes]: passes over
    the test set, each in a fresh random order."""
    rng = np.random.default_rng(seed)
    passes = -(-samples // n_test)
    order = np.concatenate([rng.permutation(n_test) for _ in range(passes)])[:samples]
    return order.reshape(samples // lanes, lanes)


def chunks(x_test: np.ndarray, order: np.ndarray, chunk: int):
    """The stream, [lanes, chunk, units] at a time: lane b is the samples order[:, b] one
    after another. Built as it is consumed; never held whole."""
    per_lane, steps = order.shape[0], x_test.shape[1]
    total = per_lane * steps
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        first, last = start // steps, (stop - 1) // steps
        window = x_test[order[first : last + 1]]  # [samples, lanes, T, U]
        window = np.swapaxes(window, 0, 1).reshape(order.shape[1], -1, x_test.shape[2])
        offset = start - first * steps
        yield window[:, offset : offset + stop - start]


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    compat.set_random_seed(args.seed)
    model, x_test, y_test = trained_model(args)
    stream_model = stateful_copy(model, batch_size=args.lanes)
    order = sample_order(len(x_test), args.samples, args.lanes, args.seed)
    steps = x_test.shape[1]

    # The first pass over the test set, predicted one sample at a time by the trained model.
    first_pass = min(len(x_test) // args.lanes, order.shape[0])
    reference = model.predict(x_test[order[:first_pass].ravel()], batch_size=256, verbose=0)
    reference = reference.max(axis=1).argmax(axis=-1).reshape(first_pass, args.lanes)

    correct = agree = done = 0
    start = time.time()
    reset = "window" if args.reset == "window" else "stream"
    stream = run_stream(
        stream_model, chunks(x_test, order, args.chunk), reduce="max", window=steps, reset=reset, loop=args.loop
    )
    path = os.path.join(args.out, "predictions.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample", "lane", "label", "prediction"])
        for row, readout_max in enumerate(stream):  # [lanes, classes], one sample per lane
            predicted = readout_max.argmax(axis=-1)
            labels = y_test[order[row]]
            for lane in range(args.lanes):
                writer.writerow([done + lane, lane, int(labels[lane]), int(predicted[lane])])
            correct += int((predicted == labels).sum())
            if row < first_pass:
                agree += int((predicted == reference[row]).sum())
            done += args.lanes
            if done % max(args.samples // 10, args.lanes) < args.lanes:
                rate = done / (time.time() - start)
                print(f"{done:>7} samples  accuracy {100 * correct / done:6.2f}%  {rate:8.0f} samples/s", flush=True)
    elapsed = time.time() - start
    checked = first_pass * args.lanes
    summary = {
        "samples": done,
        "steps_per_lane": order.shape[0] * steps,
        "lanes": args.lanes,
        "chunk_steps": args.chunk,
        "reset": args.reset,
        "loop": args.loop,
        "accuracy": correct / done,
        "agreement_with_predict": agree / checked,
        "samples_checked_against_predict": checked,
        "stream_time_s": round(elapsed, 1),
        "samples_per_s": round(done / elapsed, 1),
        "steps_per_s": round(done * steps / elapsed, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "keras_version": KERAS_VERSION,
    }
    json_path = common.write_summary(args.out, summary)
    print(f"accuracy over {done} streamed samples: {100 * summary['accuracy']:.2f}%")
    print(f"agreement with model.predict on the first {checked}: {100 * summary['agreement_with_predict']:.2f}%")
    print(f"{summary['samples_per_s']:.0f} samples/s, peak memory {summary['peak_rss_mb']:.0f} MB")
    print(f"predictions: {path}\nsummary: {json_path}")
    return summary


if __name__ == "__main__":
    main()
