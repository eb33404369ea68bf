"""Sparse input pipelines: rasters become SparseSpikes inside tf.data, exactly."""

import numpy as np
import pytest
import tensorflow as tf

from sparse_snns import SparseSpikes, max_events_per_step, sparse_dataset, to_dense, to_sparse_inputs


def rasters(rng, n=6, time=5, units=8, p=0.3):
    x = (rng.random((n, time, units)) < p).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype=np.int32))).batch(4), x


def test_sparse_dataset_is_exact_and_keeps_labels(rng):
    dataset, x = rasters(rng)
    capacity = max_events_per_step(dataset)
    assert capacity == int((x != 0).sum(-1).max())
    converted = list(sparse_dataset(dataset, capacity))
    dense = np.concatenate([to_dense(SparseSpikes(*inputs), 8).numpy() for inputs, _ in converted])
    labels = np.concatenate([label.numpy() for _, label in converted])
    np.testing.assert_array_equal(dense, x)
    np.testing.assert_array_equal(labels, np.arange(6))
    ids, values, count = converted[0][0]
    assert ids.dtype == tf.int32 and count.dtype == tf.int32 and ids.shape[-1] == capacity


def test_overflow_in_the_pipeline_is_an_error_by_default(rng):
    dataset, x = rasters(rng, p=0.9)
    with pytest.raises(tf.errors.InvalidArgumentError, match="capacity=1"):
        list(sparse_dataset(dataset, 1))
    ids, values, count = to_sparse_inputs(x, 1, strict=False)
    assert count.numpy().max() == 1


def test_unknown_feature_size_is_rejected():
    dataset = tf.data.Dataset.from_generator(
        lambda: iter([(np.zeros((2, 3), np.float32), 0)]),
        output_signature=(tf.TensorSpec([2, None], tf.float32), tf.TensorSpec([], tf.int32)),
    )
    with pytest.raises(ValueError, match="static last dimension"):
        sparse_dataset(dataset, 2)


def test_sparse_dataset_implementations_agree(rng):
    dataset, _ = rasters(rng)
    results = [
        list(sparse_dataset(dataset, capacity=5, strict=False, implementation=impl)) for impl in ("auto", "compiled")
    ]
    for (a, _), (b, _) in zip(*results):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    with pytest.raises(ValueError, match="implementation"):
        sparse_dataset(dataset, implementation="fast")
