"""Train the main job (randman, two SNN blocks and a readout) data-parallel on several worker
processes with `tf.distribute.MultiWorkerMirroredStrategy`, surviving a worker that dies.

By default the script is the supervisor: it starts ``--workers`` copies of itself on this
machine (`dense_snns.distributed.run_workers`: each with its ``TF_CONFIG`` on free localhost
ports), waits for them, and restarts the job up to ``--max-restarts`` times when a worker
dies; every worker trains with `dense_snns.distributed.fit`, which backs the job up after
every epoch, so a restarted job resumes from the last completed epoch and nothing trained
before it is lost. The global batch
is ``--batch-size``: every worker reads the same seeded batches and takes its share of each
(``AutoShardPolicy.DATA``); gradients are averaged over all workers each step, so the weights
equal those of one process training on the same batches (``--single``), up to float round-off.

The workers run the Keras of the supervisor (Keras 3, or Keras 2 with
``TF_USE_LEGACY_KERAS=1``): `dense_snns.distributed.fit` runs the model's own training step
in every replica, where Keras 3's ``Model.fit`` does not run under
MultiWorkerMirroredStrategy (keras-team/keras issue 20585). ``--single`` trains with the same
function in one process.

On real hosts, run the worker part on each with its own ``TF_CONFIG`` (see the README's
"Several devices and machines"): ``python examples/train_multiworker.py --worker``.

Outputs, in `--out` (default ``runs/multiworker/``): ``summary.json`` (accuracies, attempts)
and ``weights.npz`` (the trained weights, from worker 0), and ``backup/`` while training.

Run from the repository root::

    python examples/train_multiworker.py                 # 2 local workers
    python examples/train_multiworker.py --quick         # smoke test
    python examples/train_multiworker.py --single        # the same training in one process
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import numpy as np  # noqa: E402

import _common as common  # noqa: E402
import train_randman  # noqa: E402
import dense_snns as snn  # noqa: E402
from dense_snns import compat, keras  # noqa: E402
from dense_snns.data import randman_dataset  # noqa: E402
from dense_snns.distributed import evaluate, fit, run_workers  # noqa: E402


def print_epoch(epoch):
    """``progress epoch E begins`` (0-based), for supervisors."""
    print(f"progress epoch {epoch} begins", flush=True)


def print_batch(epoch, batch):
    """``progress epoch E batch B`` after every batch (0-based), for supervisors."""
    print(f"progress epoch {epoch} batch {batch}", flush=True)


def datasets(config, args, sharded):
    """(train, test) of global batches; with `sharded` each worker takes its share of a batch.

    The training set is shuffled once, by its seed, and read in that order every epoch: the
    same batches in one process, on every worker, and after a restart (a reshuffling
    dataset draws its next order from a state that a cloned or restarted pipeline does not
    share)."""
    import tensorflow as tf

    kwargs = common.randman_kwargs(config, args)
    train, test = randman_dataset(**dict(kwargs, batch_size=1), shuffle=False)
    samples = int(train.cardinality())
    train = train.unbatch().shuffle(samples, seed=args.seed, reshuffle_each_iteration=False)
    train = train.batch(args.batch_size, drop_remainder=True)
    test = test.unbatch().batch(args.batch_size, drop_remainder=True)
    if not sharded:
        return train, test
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train.with_options(options), test.with_options(options)


def train(args, config, strategy=None):
    """Train in this process (under `strategy` if given); returns (summary, weights)."""
    compat.set_random_seed(args.seed)
    if args.float64:
        keras.backend.set_floatx("float64")
    start = time.time()
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = train_randman.build_model(config)
        if args.optimizer == "sgd":  # no per-weight normalisation: round-off stays round-off
            model.compile(
                optimizer=keras.optimizers.SGD(args.learning_rate or 0.05),
                loss=model.loss,
                metrics=[snn.TimeReducedAccuracy(config["loss"], name="acc")],
            )
    train_data, test_data = datasets(config, args, sharded=strategy is not None)
    if strategy is not None:  # a worker: progress lines in its log, a backup every epoch
        history = fit(model, train_data, args.epochs, os.path.join(args.out, "backup"), print_epoch, print_batch)
    else:
        history = fit(model, train_data, args.epochs, on_epoch_begin=print_epoch if args.verbose else None)
    test_logs = evaluate(model, test_data)
    summary = {
        "test_accuracy": test_logs["acc"],
        "test_loss": test_logs["loss"],
        "history": history,
        **common.run_fields(args, start, time.time() - start),
        "config": config,
    }
    return summary, model.get_weights()


def save(out, summary, weights):
    os.makedirs(out, exist_ok=True)
    np.savez(os.path.join(out, "weights.npz"), *weights)
    return common.write_summary(out, summary)


def parse_args(argv=None):
    parser = common.argument_parser(
        __doc__,
        os.path.join("runs", "multiworker"),
        "smoke test: 50 samples per class, 32+32 neurons, 1 epoch unless --epochs is given",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes on this machine")
    parser.add_argument("--max-restarts", type=int, default=2, help="restarts of the job after a worker died")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--worker", action="store_true", help="run as one worker (TF_CONFIG names the task)")
    parser.add_argument("--single", action="store_true", help="train in this process, without workers")
    parser.add_argument(
        "--optimizer",
        choices=["adam", "sgd"],
        default="adam",
        help="Adam (the main job's) or plain SGD (weights comparable across runs to round-off)",
    )
    parser.add_argument("--learning-rate", type=float, default=None, help="of SGD (default 0.05)")
    parser.add_argument(
        "--float64", action="store_true", help="compute in float64 (runs then compare to far below a spike's effect)"
    )
    parser.add_argument(
        "--rate-strength",
        type=float,
        default=train_randman.CONFIG["rate_strength"],
        help="strength of the firing-rate penalty (a statistic of each worker's share of the batch)",
    )
    return parser.parse_args(argv)


def main(argv=None, monitor=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    config = dict(train_randman.CONFIG, rate_strength=args.rate_strength)
    if args.quick:  # as the other examples' --quick, but an explicit --epochs is kept
        epochs = args.epochs
        common.apply_quick(args)
        args.epochs = epochs if any(a == "--epochs" or a.startswith("--epochs=") for a in argv) else args.epochs
        config["hidden"] = [32, 32]
    if args.worker:
        import tensorflow as tf

        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        summary, weights = train(args, config, strategy)
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
        if task == 0:
            summary["workers"] = strategy.num_replicas_in_sync
            save(args.out, summary, weights)
        return summary
    if args.single:
        summary, weights = train(args, config)
        summary["workers"] = 1
        path = save(args.out, summary, weights)
        print(f"test accuracy: {100 * summary['test_accuracy']:.2f}%\nsummary: {path}")
        return summary
    start = time.time()
    shutil.rmtree(os.path.join(args.out, "backup"), ignore_errors=True)  # a new run, not a resumed one
    run = run_workers(
        [sys.executable, os.path.abspath(__file__), "--worker"] + argv,
        num_workers=args.workers,
        max_restarts=args.max_restarts,
        timeout=args.timeout,
        log_dir=os.path.join(args.out, "logs"),
        monitor=monitor,
    )
    with open(os.path.join(args.out, "summary.json")) as f:
        summary = json.load(f)
    summary["attempts"] = run.attempts
    summary["wall_time_s"] = round(time.time() - start, 1)
    path = common.write_summary(args.out, summary)
    restarts = len(run.attempts) - 1
    print(f"{args.workers} workers, {restarts} restart(s); test accuracy: {100 * summary['test_accuracy']:.2f}%")
    print(f"summary: {path}")
    return summary


if __name__ == "__main__":
    main()
    if "--worker" in sys.argv[1:]:
        # TensorFlow's collective runtime can abort a worker at interpreter exit, after its
        # work is done and saved ("terminate called without an active exception", seen on
        # TensorFlow 2.6): leave without that teardown, so the supervisor sees exit code 0.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
