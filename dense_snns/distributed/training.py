"""Training and evaluation loops that run a compiled Keras model under any `tf.distribute`
strategy, on Keras 3 and Keras 2 alike.

Keras 3's `Model.fit` and `Model.evaluate` do not run under `MultiWorkerMirroredStrategy`
(keras-team/keras issue 20585: building the model from a distributed batch fails), so
multi-worker training on Keras 3 goes through `fit` here: each step runs the model's own
`train_step` in every replica (`strategy.run`), which computes the compiled loss, averages the
gradients over all replicas and updates the compiled metrics, as `Model.fit` would. The
metrics of an epoch are read once at its end (their variables sum over the replicas).

`backup_dir` plays the part of `keras.callbacks.BackupAndRestore`: the model, the optimizer
and the epoch are saved there after every epoch (by the chief; the other workers write to a
temporary directory that they delete), a run that finds a backup resumes after its epoch,
and the backup is deleted when training ends. With several workers `backup_dir` must be on a
file system all of them see.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf

from ..compat import KERAS_3


def _strategy(model):
    return model.distribute_strategy


def _is_chief(strategy) -> bool:
    """Whether this process writes shared files: the chief of a cluster (its "chief" task, or
    worker 0 without one), and any process outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return True
    jobs = resolver.cluster_spec().as_dict()
    if not jobs or resolver.task_type is None:
        return True
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _metrics(model) -> Dict[str, float]:
    """The model's loss and compiled metrics so far, as floats (summed over the replicas)."""
    results = model.get_metrics_result() if KERAS_3 else {m.name: m.result() for m in model.metrics}
    return {name: float(value) for name, value in results.items() if np.ndim(value) == 0}


def _check(model, dataset, what: str) -> None:
    if getattr(model, "optimizer", None) is None and what == "fit":
        raise ValueError(f"{what}: compile the model first (model.compile(optimizer, loss, metrics))")
    if not model.built:
        raise ValueError(f"{what}: build the model first (give it a keras.Input, or call it on a batch)")
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"{what}: dataset must be a tf.data.Dataset of global batches, got {type(dataset).__name__}")


def fit(
    model,
    dataset: tf.data.Dataset,
    epochs: int,
    backup_dir: Optional[str] = None,
    on_epoch_begin: Optional[Callable[[int], None]] = None,
    on_batch_end: Optional[Callable[[int, int], None]] = None,
) -> Dict[str, List[float]]:
    """Train a compiled `model` for `epochs` epochs over `dataset` under the strategy the model
    was built in (``model.distribute_strategy``).

    Args:
        model: a built, compiled Keras model, created under ``strategy.scope()``.
        dataset: global batches (each worker reads the same dataset; its auto-shard policy
            decides what each one takes, e.g. ``AutoShardPolicy.DATA``: its share of every
            batch).
        epochs: number of epochs (>= 1), counted from the first: a run resumed from a backup
            does only the epochs left.
        backup_dir: save the model, the optimizer and the epoch there after every epoch and
            resume from it (see the module docstring); None: no backup.
        on_epoch_begin: ``f(epoch)`` before every epoch (0-based).
        on_batch_end: ``f(epoch, batch)`` after every step.

    Returns: the loss and the metrics of every epoch run, ``{name: [value per epoch]}``.
    """
    _check(model, dataset, "fit")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be an integer >= 1, got {epochs!r}")
    strategy = _strategy(model)
    with strategy.scope():
        if KERAS_3 and not model.optimizer.built:  # its variables must exist to be restored
            model.optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch)
    chief = _is_chief(strategy)
    if backup_dir is not None:
        latest = tf.train.latest_checkpoint(backup_dir)
        if latest is not None:
            checkpoint.restore(latest)
        manager = tf.train.CheckpointManager(checkpoint, backup_dir, max_to_keep=1) if chief else None

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    history: Dict[str, List[float]] = {}
    distributed = strategy.experimental_distribute_dataset(dataset)
    for e in range(int(epoch.numpy()), epochs):
        if on_epoch_begin is not None:
            on_epoch_begin(e)
        model.reset_metrics()
        for b, batch in enumerate(distributed):
            train_step(batch)
            if on_batch_end is not None:
                on_batch_end(e, b)
        for name, value in _metrics(model).items():
            history.setdefault(name, []).append(value)
        epoch.assign(e + 1)
        if backup_dir is not None:
            if chief:
                manager.save()
            else:  # the others save too (a save may need every replica), to a folder they delete
                scratch = tempfile.mkdtemp(prefix="dense_snns_backup_")
                checkpoint.write(os.path.join(scratch, "backup"))
                shutil.rmtree(scratch, ignore_errors=True)
    if backup_dir is not None and chief:
        shutil.rmtree(backup_dir, ignore_errors=True)  # done: a new run starts afresh
    return history


def evaluate(model, dataset: tf.data.Dataset) -> Dict[str, float]:
    """The loss and compiled metrics of `model` over `dataset` (global batches), computed under
    the strategy the model was built in, as `Model.evaluate` gives them."""
    _check(model, dataset, "evaluate")
    strategy = _strategy(model)

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    model.reset_metrics()
    for batch in strategy.experimental_distribute_dataset(dataset):
        test_step(batch)
    return _metrics(model)
