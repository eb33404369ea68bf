"""select_spikes: spikes first, gradient-only entries near threshold, exact overflow counts."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_snns.surrogates import Surrogate
from sparse_snns.format import to_dense
from sparse_snns.selection import select_spikes


def membrane(rng, shape):
    return tf.constant(rng.normal(-0.3, 0.5, shape).astype(np.float32))


def test_full_capacity_reproduces_dense_spikes_and_gradient(rng):
    x = membrane(rng, (3, 4, 10))
    weights = tf.constant(rng.normal(size=(3, 4, 10)).astype(np.float32))
    fn = Surrogate("triangle", 2.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        sparse, dropped = select_spikes(x, capacity=10, spike_fn=fn)
        dense = fn(x)
        loss_sparse = tf.reduce_sum(to_dense(sparse, 10) * weights)
        loss_dense = tf.reduce_sum(dense * weights)
    np.testing.assert_array_equal(to_dense(sparse, 10).numpy(), dense.numpy())
    np.testing.assert_array_equal(dropped.numpy(), 0)
    np.testing.assert_allclose(tape.gradient(loss_sparse, x).numpy(), tape.gradient(loss_dense, x).numpy(), rtol=1e-6)


def test_second_threshold_gives_masked_dense_gradient(rng):
    x = tf.constant([[0.3, -0.05, -0.5, 0.1, -0.15, -0.9]], dtype=tf.float32)
    fn = Surrogate("superspike")
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        sparse, dropped = select_spikes(x, capacity=4, second_threshold=-0.2, spike_fn=fn)
        loss = tf.reduce_sum(to_dense(sparse, 6) * tf.range(1.0, 7.0))
        dense_loss = tf.reduce_sum(fn(x) * tf.range(1.0, 7.0))
    assert sparse.ids.numpy().tolist() == [[0, 3, 1, 4]]  # spikes in index order, then near ones
    assert sparse.values.numpy().tolist() == [[1.0, 1.0, 0.0, 0.0]]
    assert sparse.count.numpy().tolist() == [4] and dropped.numpy().tolist() == [0]
    selected = np.array([[1, 1, 0, 1, 1, 0]], dtype=np.float32)
    np.testing.assert_allclose(
        tape.gradient(loss, x).numpy(), tape.gradient(dense_loss, x).numpy() * selected, rtol=1e-6
    )


def test_overflow_counts_exactly_and_strict_names_capacity():
    x = tf.constant([[1.0, 1.0, 1.0, -1.0, 1.0], [-1.0] * 5], dtype=tf.float32)
    sparse, dropped = select_spikes(x, capacity=2, second_threshold=-2.0)
    assert dropped.numpy().tolist() == [2, 0]
    assert sparse.ids.numpy()[0].tolist() == [0, 1]
    assert sparse.count.numpy().tolist() == [2, 2]  # the second row: two gradient-only entries
    assert select_spikes(x, capacity=2, second_threshold=-0.5)[0].count.numpy().tolist() == [2, 0]
    with pytest.raises(ValueError, match="capacity=2"):
        select_spikes(x, capacity=2, strict=True)


def test_under_xla_and_errors(rng):
    x = membrane(rng, (2, 8))
    eager, eager_dropped = select_spikes(x, 3, second_threshold=-0.1)
    compiled = tf.function(lambda v: select_spikes(v, 3, second_threshold=-0.1), jit_compile=True)
    result, dropped = compiled(x)
    for a, b in zip(result, eager):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(dropped.numpy(), eager_dropped.numpy())
    with pytest.raises(ValueError, match="capacity"):
        select_spikes(x, 0)
    with pytest.raises(ValueError, match="second_threshold"):
        select_spikes(x, 3, second_threshold=0.5)
    with pytest.raises(TypeError, match="floating"):
        select_spikes(tf.zeros([2, 3], tf.int32), 3)
    with pytest.raises(ValueError, match="name='nope'"):
        select_spikes(x, 3, spike_fn="nope")


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 4), n=st.integers(1, 12), k=st.integers(1, 14), seed=st.integers(0, 10_000))
def test_dropped_is_spikes_beyond_capacity(batch, n, k, seed):
    x = tf.constant(np.random.default_rng(seed).normal(size=(batch, n)).astype(np.float32))
    sparse, dropped = select_spikes(x, k)
    spiking = x.numpy() > 0
    spikes = spiking.sum(axis=-1)
    np.testing.assert_array_equal(dropped.numpy(), np.maximum(spikes - min(k, n), 0))
    np.testing.assert_array_equal(sparse.count.numpy(), np.full(batch, min(k, n)))  # free slots: gradient-only
    dense = to_dense(sparse, n).numpy()
    np.testing.assert_array_equal(dense, spiking * (dense > 0))  # values are 1 exactly at selected spikes
    np.testing.assert_array_equal((dense > 0).sum(axis=-1), np.minimum(spikes, k))
    ids = sparse.ids.numpy()
    for row in range(batch):  # spikes in index order, then the other neurons in index order
        chosen = ids[row, : sparse.count.numpy()[row]].tolist()
        spiking_ids = np.flatnonzero(spiking[row]).tolist()
        expected = (spiking_ids + [i for i in range(n) if not spiking[row, i]])[: min(k, n)]
        assert chosen == expected
