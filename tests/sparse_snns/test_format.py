"""Tests for the sparse spike format (sparse_snns.format): conversion, overflow, validation."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import sparse_snns
from sparse_snns import (
    SparseSpikes,
    default_capacity,
    describe,
    from_dense,
    from_dense_with_overflow,
    to_dense,
    validate,
)


def random_spikes(rng, shape, density):
    return (rng.random(shape) < density).astype(np.float32)


def reference_ids(row, capacity):
    """Indices of the first `capacity` nonzero entries of a 1-D row, in increasing order."""
    return np.flatnonzero(row)[:capacity]


def check_against_reference(dense, sparse, dropped, capacity):
    """Every row of `dense` [..., N] against its SparseSpikes and dropped count."""
    n = dense.shape[-1]
    rows = dense.reshape(-1, n)
    ids = sparse.ids.numpy().reshape(-1, capacity)
    values = sparse.values.numpy().reshape(-1, capacity)
    count = sparse.count.numpy().reshape(-1)
    dropped = dropped.numpy().reshape(-1)
    for r, row in enumerate(rows):
        expected = reference_ids(row, capacity)
        events = np.count_nonzero(row)
        assert count[r] == len(expected)
        assert dropped[r] == max(0, events - capacity)
        np.testing.assert_array_equal(ids[r, : count[r]], expected)
        np.testing.assert_array_equal(values[r, : count[r]], row[expected])
        np.testing.assert_array_equal(ids[r, count[r] :], 0)
        np.testing.assert_array_equal(values[r, count[r] :], 0)


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 4, 7)])
def test_round_trip_exact_when_capacity_suffices(rng, shape):
    dense = random_spikes(rng, shape, 0.4)
    capacity = int(np.count_nonzero(dense, axis=-1).max())
    sparse, dropped = from_dense_with_overflow(dense, max(capacity, 1))
    assert sparse.ids.shape == shape[:-1] + (max(capacity, 1),)
    assert sparse.count.shape == shape[:-1]
    assert sparse.ids.dtype == tf.int32 and sparse.count.dtype == tf.int32
    assert sparse.values.dtype == tf.float32
    np.testing.assert_array_equal(dropped.numpy(), 0)
    np.testing.assert_array_equal(sparse.to_dense(shape[-1]).numpy(), dense)
    np.testing.assert_array_equal(to_dense(sparse, shape[-1]).numpy(), dense)


def test_ordering_and_padding():
    dense = np.array([[0, 0, 1, 0, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 1]], np.float32)
    sparse = from_dense(dense, 5)
    np.testing.assert_array_equal(sparse.ids.numpy(), [[2, 4, 5, 7, 0], [0, 0, 0, 0, 0], [0, 7, 0, 0, 0]])
    np.testing.assert_array_equal(sparse.values.numpy(), [[1, 1, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(sparse.count.numpy(), [4, 0, 2])


def test_overflow_keeps_first_capacity_spikes_and_counts_dropped():
    dense = np.array([[1, 1, 0, 1, 1, 1, 0, 1], [0, 1, 0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]], np.float32)
    sparse, dropped = from_dense_with_overflow(dense, 3)
    np.testing.assert_array_equal(sparse.ids.numpy(), [[0, 1, 3], [1, 3, 0], [0, 1, 2]])
    np.testing.assert_array_equal(sparse.count.numpy(), [3, 2, 3])
    np.testing.assert_array_equal(dropped.numpy(), [3, 0, 0])
    assert dropped.dtype == tf.int32
    np.testing.assert_array_equal(
        sparse.to_dense(8).numpy(),
        [[1, 1, 0, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]],
    )


def test_capacity_larger_than_num_neurons_pads():
    dense = np.array([[1, 0, 1], [1, 1, 1]], np.float32)
    sparse, dropped = from_dense_with_overflow(dense, 5)
    np.testing.assert_array_equal(sparse.ids.numpy(), [[0, 2, 0, 0, 0], [0, 1, 2, 0, 0]])
    np.testing.assert_array_equal(sparse.values.numpy(), [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(dropped.numpy(), [0, 0])
    np.testing.assert_array_equal(sparse.to_dense(3).numpy(), dense)
    assert sparse.capacity == 5


def test_classmethods_match_functions(rng):
    dense = random_spikes(rng, (4, 9), 0.5)
    a, da = SparseSpikes.from_dense_with_overflow(dense, 3)
    b, db = from_dense_with_overflow(dense, 3)
    c = SparseSpikes.from_dense(dense, 3)
    for x, y in zip(a + (da,), b + (db,)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64, np.uint8])
def test_bool_and_int_inputs(dtype):
    dense = np.array([[0, 1, 0, 1], [1, 0, 0, 0]]).astype(dtype)
    sparse = from_dense(dense, 2)
    assert sparse.values.dtype == tf.float32
    np.testing.assert_array_equal(sparse.ids.numpy(), [[1, 3], [0, 0]])
    np.testing.assert_array_equal(sparse.to_dense(4).numpy(), dense.astype(np.float32))


def test_values_dtype_and_graded_values_kept():
    dense64 = tf.constant([[0.0, 2.0, 0.0, -1.5]], tf.float64)
    sparse = from_dense(dense64, 2)
    assert sparse.values.dtype == tf.float64
    np.testing.assert_array_equal(sparse.values.numpy(), [[2.0, -1.5]])
    np.testing.assert_array_equal(sparse.to_dense(4).numpy(), dense64.numpy())
    sparse16 = from_dense(np.array([[True, False]]), 1, dtype=tf.float16)
    assert sparse16.values.dtype == tf.float16


def test_gradient_flows_from_values_to_kept_spikes():
    dense = tf.constant([[1.0, 0.0, 1.0, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(dense)
        sparse = from_dense(dense, 2)
        loss = tf.reduce_sum(sparse.values * tf.constant([[3.0, 5.0]]))
    np.testing.assert_array_equal(tape.gradient(loss, dense).numpy(), [[3.0, 0.0, 5.0, 0.0]])


def test_stop_gradient_through_nest():
    dense = tf.constant([[1.0, 0.0, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(dense)
        sparse = tf.nest.map_structure(tf.stop_gradient, from_dense(dense, 2))
        loss = tf.reduce_sum(sparse.values)
    assert isinstance(sparse, SparseSpikes)
    assert sparse.ids.dtype == tf.int32
    assert tape.gradient(loss, dense) is None
    flat = tf.nest.flatten(sparse)
    assert len(flat) == 3
    assert isinstance(tf.nest.pack_sequence_as(sparse, flat), SparseSpikes)


# --------------------------------------------------------------------------------------------
# graph mode and XLA
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,capacity", [((3, 10), 4), ((2, 3, 10), 4), ((2, 6), 9)])
def test_xla_matches_eager(rng, shape, capacity):
    dense = random_spikes(rng, shape, 0.5)

    @tf.function(jit_compile=True)
    def convert(x):
        sparse, dropped = from_dense_with_overflow(x, capacity)
        return sparse, dropped, sparse.to_dense(shape[-1])

    sparse, dropped, back = convert(tf.constant(dense))
    assert isinstance(sparse, SparseSpikes)
    eager_sparse, eager_dropped = from_dense_with_overflow(dense, capacity)
    for x, y in zip(sparse + (dropped,), eager_sparse + (eager_dropped,)):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    np.testing.assert_array_equal(back.numpy(), eager_sparse.to_dense(shape[-1]).numpy())
    check_against_reference(dense, sparse, dropped, capacity)


def test_sparse_spikes_as_tf_function_argument_and_dynamic_batch(rng):
    dense = random_spikes(rng, (5, 8), 0.3)

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])
    def convert(x):
        sparse = from_dense(x, 8)
        assert sparse.ids.shape.as_list() == [None, 8]
        return sparse.to_dense(8)

    np.testing.assert_array_equal(convert(tf.constant(dense)).numpy(), dense)

    @tf.function(jit_compile=True)
    def densify(sparse):
        return to_dense(sparse, 8)

    np.testing.assert_array_equal(densify(from_dense(dense, 8)).numpy(), dense)


def test_while_loop_carries_sparse_spikes(rng):
    frames = random_spikes(rng, (4, 2, 6), 0.5)  # [time, batch, N]

    @tf.function(jit_compile=True)
    def accumulate(frames):
        def body(t, sparse, total):
            total = total + sparse.to_dense(6)
            return t + 1, from_dense(frames[t], 6), total

        init = from_dense(tf.zeros([2, 6]), 6)
        _, _, total = tf.while_loop(lambda t, *_: t < 4, body, (0, init, tf.zeros([2, 6])))
        return total + 0.0

    # the loop adds frames 0..2 (frame 3 is converted on the last iteration, not added)
    np.testing.assert_array_equal(accumulate(tf.constant(frames)).numpy(), frames[:3].sum(0))


# --------------------------------------------------------------------------------------------
# strict mode
# --------------------------------------------------------------------------------------------


def test_strict_raises_eagerly_naming_capacity():
    dense = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], np.float32)
    with pytest.raises(ValueError, match=r"capacity=2.*1 event"):
        from_dense(dense, 2, strict=True)
    with pytest.raises(ValueError, match="capacity=2"):
        from_dense_with_overflow(dense, 2, strict=True)
    sparse = from_dense(dense, 3, strict=True)  # fits: no error
    np.testing.assert_array_equal(sparse.to_dense(4).numpy(), dense)


def test_strict_asserts_in_graph_mode():
    dense = tf.constant([[1.0, 1.0, 1.0, 0.0]])
    convert = tf.function(lambda x: from_dense(x, 2, strict=True))
    with pytest.raises(tf.errors.InvalidArgumentError, match="capacity=2"):
        convert(dense)
    np.testing.assert_array_equal(tf.function(lambda x: from_dense(x, 3, strict=True))(dense).count.numpy(), [3])


def test_strict_under_xla_still_reports_dropped():
    # XLA compiles assertions out (documented); the dropped count is the reliable signal.
    convert = tf.function(lambda x: from_dense_with_overflow(x, 2, strict=True), jit_compile=True)
    _, dropped = convert(tf.constant([[1.0, 1.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(dropped.numpy(), [1])


# --------------------------------------------------------------------------------------------
# argument errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -3, 2.5, True, "4", None])
def test_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        from_dense(np.ones((2, 4), np.float32), capacity)


def test_numpy_integer_capacity_accepted():
    assert from_dense(np.ones((1, 4), np.float32), np.int64(2)).capacity == 2


def test_bad_spikes():
    with pytest.raises(TypeError, match="spikes"):
        from_dense(tf.constant([["a", "b"]]), 2)
    with pytest.raises(TypeError, match="spikes"):
        from_dense(object(), 2)
    with pytest.raises(ValueError, match="spikes.*rank"):
        from_dense(tf.constant(1.0), 2)
    with pytest.raises(ValueError, match="spikes.*at least one neuron"):
        from_dense(tf.zeros([3, 0]), 2)
    with pytest.raises(TypeError, match="dtype"):
        from_dense(tf.ones([1, 3]), 2, dtype=tf.int32)


def test_bad_spikes_static_last_dim_in_graph():
    convert = tf.function(lambda x: from_dense(x, 2), input_signature=[tf.TensorSpec([2, None], tf.float32)])
    with pytest.raises(ValueError, match="spikes.*static last dimension"):
        convert.get_concrete_function()


@pytest.mark.parametrize("num_neurons", [0, -1, 3.0, None])
def test_to_dense_bad_num_neurons(num_neurons):
    with pytest.raises(ValueError, match="num_neurons"):
        from_dense(np.ones((1, 3), np.float32), 2).to_dense(num_neurons)


def test_to_dense_rejects_non_sparse():
    with pytest.raises(TypeError, match="spikes.*SparseSpikes"):
        to_dense(np.ones((2, 3)), 3)


# --------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------


def good_spikes():
    return from_dense(np.array([[0, 1, 1, 0], [1, 0, 0, 0]], np.float32), 3)


def test_validate_accepts_good_spikes_and_returns_them():
    sparse = good_spikes()
    checked = validate(sparse, 4)
    assert isinstance(checked, SparseSpikes)
    for x, y in zip(checked, sparse):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert isinstance(sparse.validate(4), SparseSpikes)
    validate(tuple(sparse), 4)  # a plain 3-tuple is accepted


def replace(sparse, **fields):
    return sparse._replace(**{k: tf.constant(v) for k, v in fields.items()})


@pytest.mark.parametrize(
    "fields,error,match",
    [
        ({"ids": np.array([[1, 2, 0], [0, 0, 0]], np.int64)}, TypeError, "ids.*int32"),
        ({"count": np.array([2, 1], np.int64)}, TypeError, "count.*int32"),
        ({"values": np.array([[1, 1, 0], [1, 0, 0]], np.int32)}, TypeError, "values.*floating"),
        ({"ids": np.array([[1, 4, 0], [0, 0, 0]], np.int32)}, ValueError, "ids.*out of range"),
        ({"ids": np.array([[1, -1, 0], [0, 0, 0]], np.int32)}, ValueError, "ids.*out of range"),
        ({"count": np.array([4, 1], np.int32)}, ValueError, r"count.*> K \(capacity=3\)"),
        ({"count": np.array([-1, 1], np.int32)}, ValueError, "count.*>= 0"),
        ({"values": np.array([[1, 1, 0.5], [1, 0, 0]], np.float32)}, ValueError, "values.*padding"),
        ({"values": np.array([[1, np.nan, 0], [1, 0, 0]], np.float32)}, ValueError, "values.*NaN"),
        ({"values": np.zeros((2, 4), np.float32)}, ValueError, "values.*shape"),
        ({"count": np.array([2, 1, 0], np.int32)}, ValueError, "count.*shape"),
        (
            {"ids": np.zeros((2, 0), np.int32), "values": np.zeros((2, 0), np.float32)},
            ValueError,
            "capacity",
        ),
    ],
)
def test_validate_errors(fields, error, match):
    with pytest.raises(error, match=match):
        validate(replace(good_spikes(), **fields), 4)


def test_validate_errors_outside_structure():
    with pytest.raises(TypeError, match="spikes.*SparseSpikes"):
        validate(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="num_neurons"):
        validate(good_spikes(), 0)
    with pytest.raises(TypeError, match="ids"):
        validate(SparseSpikes(ids=object(), values=np.zeros(2, np.float32), count=0), 4)


def test_validate_in_graph_mode_asserts():
    bad = replace(good_spikes(), ids=np.array([[1, 4, 0], [0, 0, 0]], np.int32))
    check = tf.function(lambda s: validate(s, 4).values)
    with pytest.raises(tf.errors.InvalidArgumentError, match="ids.*out of range"):
        check(bad)
    too_many = replace(good_spikes(), count=np.array([4, 1], np.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="count.*capacity=3"):
        check(too_many)
    np.testing.assert_array_equal(check(good_spikes()).numpy(), good_spikes().values.numpy())


# --------------------------------------------------------------------------------------------
# default_capacity and describe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_neurons,density,expected",
    [
        (100, 0.1, 27),  # 10 + 4*sqrt(10) + 4 = 26.65
        (100, 0.04, 16),  # 4 + 8 + 4, exact integer
        (1000, 0.01, 27),
        (10000, 0.05, 594),  # 500 + 4*sqrt(500) + 4 = 593.44
        (10, 0.5, 10),  # capped at N
        (7, 1.0, 7),
        (1, 0.001, 1),
    ],
)
def test_default_capacity_values(num_neurons, density, expected):
    assert default_capacity(num_neurons, density) == expected
    mean = density * num_neurons
    assert expected >= min(num_neurons, mean + 4 * math.sqrt(mean))


@pytest.mark.parametrize("density", [0, 0.0, -0.1, 1.5, float("nan"), "0.1", None, True])
def test_default_capacity_bad_density(density):
    with pytest.raises(ValueError, match="density"):
        default_capacity(100, density)


@pytest.mark.parametrize("num_neurons", [0, -5, 2.5, None])
def test_default_capacity_bad_num_neurons(num_neurons):
    with pytest.raises(ValueError, match="num_neurons"):
        default_capacity(num_neurons, 0.1)


def test_describe_and_repr_show_shapes_not_values():
    sparse = from_dense(np.ones((2, 3, 50), np.float32), 40)
    text = repr(sparse)
    assert text == describe(sparse)
    assert "batch_shape=(2, 3)" in text and "capacity=40" in text and "float32" in text and "int32" in text
    assert "[[" not in text and len(text) < 200
    specs = tf.nest.map_structure(tf.TensorSpec.from_tensor, sparse)
    assert repr(specs) == text
    shapes = tf.nest.map_structure(lambda t: t.shape, sparse)
    assert "batch_shape=(2, 3), capacity=40" in repr(shapes)
    assert "capacity=?" in repr(SparseSpikes(None, None, None))


def test_package_exports():
    for name in sparse_snns.__all__:
        assert hasattr(sparse_snns, name)
    assert sparse_snns.__doc__ and "static" in sparse_snns.__doc__


# --------------------------------------------------------------------------------------------
# property test
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    leading=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    n=st.integers(1, 12),
    density=st.floats(0.0, 1.0),
    capacity=st.integers(1, 14),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_overflow_and_round_trip(leading, n, density, capacity, seed):
    rng = np.random.default_rng(seed)
    dense = random_spikes(rng, tuple(leading) + (n,), density)
    sparse, dropped = from_dense_with_overflow(dense, capacity)
    events = np.count_nonzero(dense, axis=-1)
    np.testing.assert_array_equal(dropped.numpy(), np.maximum(0, events - capacity))
    np.testing.assert_array_equal(sparse.count.numpy(), np.minimum(events, capacity))
    check_against_reference(dense, sparse, dropped, capacity)
    validate(sparse, n)
    if capacity >= events.max(initial=0):
        np.testing.assert_array_equal(sparse.to_dense(n).numpy(), dense)


def test_from_dense_bfloat16_to_float16_counts_underflowing_events():
    """bfloat16 values below the float16 range become 0 in float16: the events are still
    selected (on the bfloat16 input) and counted, with value 0."""
    x = tf.constant([[0.0, 1e-10, 1.0, 0.0, 3e-9]], tf.bfloat16)
    spikes, dropped = from_dense_with_overflow(x, 2, dtype=tf.float16)
    np.testing.assert_array_equal(spikes.count.numpy(), [2])
    np.testing.assert_array_equal(spikes.ids.numpy(), [[1, 2]])
    np.testing.assert_array_equal(spikes.values.numpy(), np.array([[0.0, 1.0]], np.float16))
    np.testing.assert_array_equal(dropped.numpy(), [1])  # the third event is counted, not lost
    from sparse_snns.format import _exact_cast

    assert not _exact_cast(tf.bfloat16, tf.float16)
    assert not _exact_cast(tf.float32, tf.float16)
    assert _exact_cast(tf.bfloat16, tf.float32) and _exact_cast(tf.float16, tf.float16)
    assert _exact_cast(tf.int64, tf.float16) and _exact_cast(tf.bool, tf.float32)


def test_to_dense_rejects_non_integer_ids_and_count():
    values = tf.constant([[1.0, 0.0]])
    with pytest.raises(TypeError, match="`ids`"):
        to_dense(SparseSpikes(tf.constant([[1.0, 0.0]]), values, tf.constant([1])), 3)
    with pytest.raises(TypeError, match="`count`"):
        to_dense(SparseSpikes(tf.constant([[1, 0]]), values, tf.constant([1.0])), 3)
    dense = to_dense(SparseSpikes(tf.constant([[1, 0]], tf.int64), values, tf.constant([1], tf.int64)), 3)
    np.testing.assert_array_equal(dense.numpy(), [[0.0, 1.0, 0.0]])
