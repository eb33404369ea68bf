"""The dense-to-events kernel lists every nonzero entry of each row, in column order, with
K the largest count; the event product equals x @ W with a dense input gradient."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_snns.ops import events

pytestmark = pytest.mark.skipif(not events.op_available(), reason=f"C++ ops unavailable: {events.load_error()}")


@settings(max_examples=25, deadline=None, database=None)
@given(
    rows=st.integers(0, 9),
    columns=st.integers(1, 40),
    activity=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_dense_to_events_lists_every_nonzero_entry(rows, columns, activity, seed, dtype):
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((rows, columns)) < activity, rng.normal(size=(rows, columns)), 0).astype(dtype)
    ids, values, count = (t.numpy() for t in events.events_of(tf.constant(x)))
    counts = (x != 0).sum(axis=1)
    np.testing.assert_array_equal(count, counts)
    assert ids.shape == values.shape == (rows, max(1, counts.max(initial=0)))
    assert values.dtype == dtype
    for m in range(rows):
        np.testing.assert_array_equal(ids[m, : counts[m]], np.flatnonzero(x[m]))
        np.testing.assert_array_equal(values[m, : counts[m]], x[m][x[m] != 0])
        assert not ids[m, counts[m] :].any() and not values[m, counts[m] :].any()


def test_event_matmul_equals_the_dense_product_and_its_gradients(rng):
    x = np.where(rng.random((40, 30)) < 0.1, rng.normal(size=(40, 30)), 0).astype(np.float32)
    x[5] = 0  # a row without events
    kernel = tf.Variable(rng.normal(size=(30, 7)).astype(np.float32))
    xs = tf.constant(x)
    weights = tf.constant(rng.normal(size=(40, 7)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xs)
        got = events.event_matmul(xs, kernel)
        want = tf.matmul(xs, kernel)
        got_loss, want_loss = tf.reduce_sum(got * weights), tf.reduce_sum(want * weights)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    for got_grad, want_grad in zip(tape.gradient(got_loss, [xs, kernel]), tape.gradient(want_loss, [xs, kernel])):
        np.testing.assert_allclose(got_grad.numpy(), want_grad.numpy(), rtol=1e-5, atol=1e-5)


def test_the_kernel_checks_the_rank():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`x` must have rank 2 \[M, N_in\], got shape \[2,3,4\]"):
        events.load().dense_snns_dense_to_events(tf.zeros([2, 3, 4]))


def test_nonzero_fraction_counts_all_rows_or_an_even_sample(rng):
    x = np.where(rng.random((100, 50)) < 0.3, rng.normal(size=(100, 50)), 0).astype(np.float32)
    x[0, :3] = [-0.0, np.nan, 0.0]  # -0 is zero, NaN is not
    assert events.nonzero_fraction(tf.constant(x)).numpy() == pytest.approx((x != 0).mean())  # NaN != 0
    every_tenth = x[::10]  # 5000 entries, sample 500: stride 10
    assert events.nonzero_fraction(tf.constant(x), sample=500).numpy() == pytest.approx((every_tenth != 0).mean())
    assert events.nonzero_fraction(tf.zeros([0, 4])).numpy() == 0
