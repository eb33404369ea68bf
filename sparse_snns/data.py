"""Sparse input pipelines: dense spike rasters or event streams -> `SparseSpikes` in tf.data.

The conversion runs in the input pipeline, so the first layer of a model is sparse too.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from ._checks import check_implementation
from .format import from_dense_with_overflow


def to_sparse_inputs(raster, capacity: int, strict: bool = False, implementation: str = "auto"):
    """A raster [..., N] -> ``(ids, values, count)`` with K = `capacity` (see `from_dense`).

    With ``strict=True`` a vector with more than K events raises (eagerly: ValueError naming
    the capacity; in tf.data: InvalidArgumentError at iteration). `implementation`: of the
    conversion (``"auto"``, ``"kernel"``, ``"compiled"``; see `from_dense`).
    """
    spikes, _ = from_dense_with_overflow(raster, capacity, strict=strict, implementation=implementation)
    return spikes.ids, spikes.values, spikes.count


def max_events_per_step(dataset: tf.data.Dataset) -> int:
    """Largest number of events in one step of one sample of ``(raster, label)`` batches:
    the smallest input capacity that converts `dataset` without overflow."""
    largest = 0
    for raster, _ in dataset:
        events = tf.math.count_nonzero(raster, axis=-1, dtype=tf.int32)
        largest = max(largest, int(tf.reduce_max(events)))
    return largest


def sparse_dataset(
    dataset: tf.data.Dataset, capacity: Optional[int] = None, strict: bool = True, implementation: str = "auto"
) -> tf.data.Dataset:
    """Map a dataset of ``(raster [batch, time, N], label)`` to ``((ids, values, count), label)``.

    Args:
        dataset: yields (raster, label) with a static last dimension N.
        capacity: K per time step; None takes N (exact, no overflow possible).
        strict: raise when a step has more than K input events (default True: input events are
            never dropped silently).
        implementation: of the conversion: ``"auto"``, ``"kernel"`` (C++) or ``"compiled"``; see
            `from_dense`.
    Returns: a dataset whose first element is the tuple ``(ids int32 [batch, time, K],
    values float32 [batch, time, K], count int32 [batch, time])``, to feed a model with three
    inputs or a sparse layer.
    """
    check_implementation(implementation)
    n = dataset.element_spec[0].shape[-1]
    if n is None:
        raise ValueError("the rasters of `dataset` need a static last dimension (number of input neurons)")
    capacity = int(n) if capacity is None else capacity

    def convert(raster, label):
        return to_sparse_inputs(raster, capacity, strict=strict, implementation=implementation), label

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
