"""C++ selection / gather / scatter ops against the pure-TF path (values, gradients, errors)."""

import numpy as np
import pytest
import tensorflow as tf

from dense_snns.implementation import ImplementationError

import sparse_snns
from sparse_snns import rowops
from sparse_snns.format import SparseSpikes, from_dense_with_overflow, to_dense
from sparse_snns.selection import select_spikes

pytestmark = pytest.mark.skipif(
    not sparse_snns.ops.op_available(), reason=f"C++ op unavailable: {sparse_snns.ops.load_error()}"
)

RULES = [
    ("positive", None),
    ("positive", "all"),
    ("positive", "above"),
    ("nonzero", None),
    ("nonzero", "all"),
    ("nonzero", "above"),
]


def data(rng, shape, dtype=np.float32, zeros=0.5):
    x = rng.normal(-0.3, 0.6, shape)
    x[rng.random(shape) < zeros] = 0.0
    return tf.constant(x.astype(dtype))


@pytest.mark.parametrize("first,second", RULES)
@pytest.mark.parametrize("n,capacity", [(1, 1), (5, 3), (63, 70), (64, 10), (65, 64), (130, 17), (200, 200)])
def test_select_indices_op_equals_tf(rng, first, second, n, capacity):
    x = data(rng, (3, 4, n))
    op = rowops.select_indices(x, capacity, first, second, -0.4, implementation="kernel")
    ref = rowops.select_indices(x, capacity, first, second, -0.4, implementation="compiled")
    for a, b in zip(op, ref):
        assert a.shape == b.shape and a.dtype == b.dtype == tf.int32
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_select_indices_nan_float64_and_rank1(rng):
    x = rng.normal(size=(6, 70))
    x[0, 3] = np.nan
    x[2, :] = np.nan
    x = tf.constant(x)  # float64
    for first, second in RULES:
        op = rowops.select_indices(x, 50, first, second, -0.5, implementation="kernel")
        ref = rowops.select_indices(x, 50, first, second, -0.5, implementation="compiled")
        for a, b in zip(op, ref):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    vector = x[1]
    for a, b in zip(
        rowops.select_indices(vector, 7, implementation="kernel"),
        rowops.select_indices(vector, 7, implementation="compiled"),
    ):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("first,second", [("positive", "all"), ("nonzero", "above"), ("positive", None)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_select_with_gather_equals_gather_rows(rng, first, second, dtype):
    """gather=True: x at the selected ids (0 at unused slots), with the gradient of gather_rows
    (a scatter to the selected neurons), on both paths and for a second-order gradient."""
    x = data(rng, (3, 5, 70), dtype)
    upstream = tf.constant(rng.normal(size=(3, 5, 20)).astype(dtype))
    results = {}
    for impl in ("kernel", "compiled"):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(x)
            with tf.GradientTape() as tape:
                tape.watch(x)
                ids, count, total, selected = rowops.select_indices(
                    x, 20, first, second, -0.4, implementation=impl, gather=True
                )
                loss = tf.reduce_sum(upstream * selected**2)
            d_x = tape.gradient(loss, x)
            second_order = tf.reduce_sum(d_x * x)
        dd_x = outer.gradient(second_order, x)
        reference = rowops.gather_rows(x, ids, count, implementation="compiled")
        np.testing.assert_array_equal(selected.numpy(), reference.numpy())
        expected = rowops.scatter_rows(ids, count, 2.0 * upstream * reference, 70, implementation="compiled")
        np.testing.assert_allclose(d_x.numpy(), expected.numpy(), rtol=1e-6)
        results[impl] = (ids, count, total, selected, d_x, dd_x)
    for a, b in zip(results["kernel"], results["compiled"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_overflow_counts_are_exact(rng):
    x = tf.constant(rng.normal(0.5, 1.0, (50, 100)).astype(np.float32))
    ids, count, total = rowops.select_indices(x, 10, implementation="kernel")
    np.testing.assert_array_equal(total.numpy(), (x.numpy() > 0).sum(-1))
    np.testing.assert_array_equal(count.numpy(), np.minimum(total.numpy(), 10))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_and_scatter_rows_with_gradients(rng, dtype):
    x = data(rng, (2, 3, 40), dtype)
    ids, count, _ = rowops.select_indices(x, 12, "nonzero", "above", -0.2, implementation="compiled")
    updates = tf.constant(rng.normal(size=ids.shape).astype(dtype))
    weights = tf.constant(rng.normal(size=(2, 3, 40)).astype(dtype))
    results = {}
    for impl in ("kernel", "compiled"):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, updates])
            gathered = rowops.gather_rows(x, ids, count, implementation=impl)
            scattered = rowops.scatter_rows(ids, count, updates, 40, implementation=impl)
            loss = tf.reduce_sum(gathered * updates) + tf.reduce_sum(scattered * weights)
        results[impl] = [gathered, scattered] + tape.gradient(loss, [x, updates])
    for a, b in zip(results["kernel"], results["compiled"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-12)
    valid = np.arange(12) < count.numpy()[..., None]
    assert np.all(results["kernel"][0].numpy()[~valid] == 0)


@pytest.mark.parametrize("second_threshold", [None, -0.3])
def test_select_spikes_op_equals_tf_with_gradient(rng, second_threshold):
    x = tf.constant(rng.normal(-0.4, 0.5, (4, 6, 90)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(4, 6, 90)).astype(np.float32))
    results = {}
    for impl in ("kernel", "compiled"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            spikes, dropped = select_spikes(x, 20, second_threshold, "triangle", implementation=impl)
            loss = tf.reduce_sum(to_dense(spikes, 90, implementation=impl) * weights)
        results[impl] = list(spikes) + [dropped, tape.gradient(loss, x)]
    for a, b in zip(results["kernel"], results["compiled"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    assert results["kernel"][3].numpy().sum() > 0  # overflow happened and is counted alike


def test_from_dense_op_equals_tf(rng):
    raster = rng.random((3, 5, 80)) < 0.2
    for spikes in (raster, raster.astype(np.int32) * 3, raster.astype(np.float64) * 0.5):
        x = tf.constant(spikes)
        op, op_dropped = from_dense_with_overflow(x, 12, implementation="kernel")
        ref, ref_dropped = from_dense_with_overflow(x, 12, implementation="compiled")
        for a, b in zip(list(op) + [op_dropped], list(ref) + [ref_dropped]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="capacity=2"):
        from_dense_with_overflow(tf.constant(raster), 2, strict=True, implementation="kernel")


def test_errors_and_xla():
    x = tf.constant([[0.5, -1.0, 2.0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="ids"):
        rowops.gather_rows(x, tf.constant([[5]]), tf.constant([1]), implementation="kernel")
    with pytest.raises(tf.errors.InvalidArgumentError, match="count"):
        rowops.scatter_rows(tf.constant([[0]]), tf.constant([2]), tf.constant([[1.0]]), 3, implementation="kernel")
    with pytest.raises(ImplementationError, match="float32 and float64"):
        rowops.select_indices(tf.constant([[1.0]], tf.float16), 1, implementation="kernel")
    with pytest.raises(ValueError, match="implementation"):
        rowops.select_indices(x, 1, implementation="fast")
    with pytest.raises(ValueError, match="XLA"):
        tf.function(lambda v: rowops.select_indices(v, 2, implementation="kernel"), jit_compile=True)(x)
    auto = tf.function(lambda v: select_spikes(v, 2, -0.5), jit_compile=True)(x)  # auto: the pure-TF path
    for a, b in zip(auto[0], select_spikes(x, 2, -0.5)[0]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def linear_on_both_paths(spikes, kernel, dy):
    """{"kernel"|"compiled": [sparse_linear(spikes, kernel), d values, d kernel]} for upstream gradient dy."""
    from sparse_snns import sparse_linear

    results = {}
    for impl in ("kernel", "compiled"):
        with tf.GradientTape() as tape:
            tape.watch([spikes.values, kernel])
            y = sparse_linear(spikes, kernel, implementation=impl)
        results[impl] = [y] + tape.gradient(y, [spikes.values, kernel], output_gradients=dy)
    return results


def test_sparse_linear_op_with_zero_valued_entries_equals_tf(rng):
    """Selections put gradient-only entries (value 0) after the spikes: the op skips them in
    the forward sum and the weight gradient, with the same results as the pure-TF path."""
    x = tf.constant(rng.normal(-0.3, 0.5, (40, 90)).astype(np.float32))
    spikes, _ = select_spikes(x, 30, implementation="kernel")
    values = spikes.values * tf.constant(rng.uniform(0.5, 1.5, (40, 30)).astype(np.float32))
    assert 0 < np.count_nonzero(values.numpy()) < np.count_nonzero(spikes.count.numpy()[:, None] > np.arange(30))
    kernel = tf.constant(rng.normal(size=(90, 21)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(40, 21)).astype(np.float32))
    results = linear_on_both_paths(SparseSpikes(spikes.ids, values, spikes.count), kernel, dy)
    dense = to_dense(SparseSpikes(spikes.ids, values, spikes.count), 90)
    np.testing.assert_allclose(results["kernel"][0].numpy(), (dense @ kernel).numpy(), rtol=1e-5, atol=1e-5)
    for a, b in zip(results["kernel"], results["compiled"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    assert np.all(results["kernel"][1].numpy() != 0)  # gradient-only entries still get a values gradient


@pytest.mark.parametrize("implementation", ["kernel", "compiled"])
def test_index_arguments_checked_alike_on_both_paths(implementation):
    """int32 ids/count (TypeError naming them) and count in [0, K] on the op and the TF path."""
    x = tf.constant([[0.5, -1.0, 2.0]])
    ids, count, updates = tf.constant([[2]]), tf.constant([1]), tf.constant([[1.0]])
    with pytest.raises(TypeError, match="`ids` must be int32"):
        rowops.gather_rows(x, tf.constant([[2]], tf.int64), count, implementation=implementation)
    with pytest.raises(TypeError, match="`count` must be int32"):
        rowops.scatter_rows(ids, tf.constant([1], tf.int64), updates, 3, implementation=implementation)
    with pytest.raises(ValueError, match="`count` must have the shape"):
        rowops.gather_rows(x, ids, tf.constant([[1]]), implementation=implementation)
    for bad in ([2], [-1]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="count"):
            rowops.gather_rows(x, ids, tf.constant(bad), implementation=implementation)
        with pytest.raises(tf.errors.InvalidArgumentError, match="count"):
            rowops.scatter_rows(ids, tf.constant(bad), updates, 3, implementation=implementation)
    with pytest.raises(tf.errors.InvalidArgumentError, match="ids"):
        rowops.scatter_rows(tf.constant([[3]]), count, updates, 3, implementation=implementation)
    graph = tf.function(lambda c: rowops.gather_rows(x, ids, c, implementation=implementation))
    with pytest.raises(tf.errors.InvalidArgumentError, match="count"):
        graph(tf.constant([2]))
    np.testing.assert_array_equal(graph(tf.constant([1])).numpy(), [[2.0]])


def test_select_indices_argument_errors():
    x = tf.constant([[0.5, -1.0, 2.0]])
    for capacity in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="capacity"):
            rowops.select_indices(x, capacity)
    with pytest.raises(ValueError, match="rank"):
        rowops.select_indices(tf.constant(1.0), 1)
    with pytest.raises(TypeError, match="floating"):
        rowops.select_indices(tf.constant([[1, 0]]), 1)
    with pytest.raises(ValueError, match="last dimension"):
        tf.function(
            lambda v: rowops.select_indices(v, 1), input_signature=[tf.TensorSpec([2, None])]
        ).get_concrete_function()


def test_second_order_gradients_op_equals_tf(rng):
    """Gather and scatter are each other's gradient on the op path too, to any order."""
    x = tf.constant(rng.normal(size=(3, 20)).astype(np.float64))
    ids, count, _ = rowops.select_indices(x, 8, "nonzero", "all", implementation="compiled")
    updates = tf.constant(rng.normal(size=(3, 8)))
    results = {}
    for impl in ("kernel", "compiled"):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([x, updates])
            with tf.GradientTape(persistent=True) as inner:
                inner.watch([x, updates])
                gathered = rowops.gather_rows(x * x, ids, count, implementation=impl)
                scattered = rowops.scatter_rows(ids, count, updates * updates, 20, implementation=impl)
                loss = tf.reduce_sum(gathered**2) + tf.reduce_sum(tf.sin(scattered))
            dx, du = inner.gradient(loss, [x, updates])
            second = tf.reduce_sum(dx * tf.cos(x)) + tf.reduce_sum(du**2)
        results[impl] = [dx, du] + outer.gradient(second, [x, updates])
    for a, b in zip(results["kernel"], results["compiled"]):
        assert a is not None and b is not None
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_multithreaded_ops_equal_tf(rng):
    """Large enough for the kernels to split rows over the intra-op threads (at least 2**15
    units of work: rows * (N / 4 + K) for the selection, rows * (K + 1) for the gather)."""
    x = data(rng, (2000, 300), zeros=0.3)
    for first, second in RULES:
        op = rowops.select_indices(x, 40, first, second, -0.4, implementation="kernel")
        ref = rowops.select_indices(x, 40, first, second, -0.4, implementation="compiled")
        for a, b in zip(op, ref):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    ids, count, _ = ref
    assert 2000 * (300 // 4 + 40) >= 1 << 15 and 2000 * (40 + 1) >= 1 << 15
    updates = tf.constant(rng.normal(size=ids.shape).astype(np.float32))
    for impl_results in zip(
        *[
            (
                rowops.gather_rows(x, ids, count, implementation=impl),
                rowops.scatter_rows(ids, count, updates, 300, implementation=impl),
            )
            for impl in ("kernel", "compiled")
        ]
    ):
        np.testing.assert_array_equal(impl_results[0].numpy(), impl_results[1].numpy())


def test_select_indices_nan_float32(rng):
    """The vector compares of the float32 kernel treat NaN as the scalar code: NaN > t false,
    NaN != 0 true (rows of 64 neurons and more take the vector path)."""
    x = rng.normal(size=(5, 150)).astype(np.float32)
    x[0, [3, 64, 100]] = np.nan
    x[2, :] = np.nan
    x[4, :70] = np.nan
    x = tf.constant(x)
    for first, second in RULES:
        op = rowops.select_indices(x, 60, first, second, -0.5, implementation="kernel")
        ref = rowops.select_indices(x, 60, first, second, -0.5, implementation="compiled")
        for a, b in zip(op, ref):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_scatter_duplicate_ids_sum_like_tf(rng):
    ids = tf.constant([[3, 3, 1, 3, 0], [2, 2, 2, 2, 2], [4, 0, 4, 0, 1]], tf.int32)
    count = tf.constant([5, 4, 3], tf.int32)
    updates = tf.constant(rng.normal(size=(3, 5)))
    op = rowops.scatter_rows(ids, count, updates, 6, implementation="kernel")
    ref = rowops.scatter_rows(ids, count, updates, 6, implementation="compiled")
    np.testing.assert_allclose(op.numpy(), ref.numpy(), rtol=1e-12)
    u = updates.numpy()
    np.testing.assert_allclose(op.numpy()[0, 3], u[0, 0] + u[0, 1] + u[0, 3], rtol=1e-12)
    np.testing.assert_allclose(op.numpy()[1, 2], u[1, :4].sum(), rtol=1e-12)


def test_sparse_linear_zero_values_anywhere_and_all_zero_rows(rng):
    """Entries of value 0 in the middle of a row, rows of only zeros and empty rows: the op
    (which skips zeros) equals the pure-TF path, forward and gradients."""
    ids = tf.constant(rng.integers(0, 50, (6, 8)).astype(np.int32))
    values = rng.uniform(0.5, 1.5, (6, 8)).astype(np.float32)
    values[0, [1, 4]] = 0.0  # interior zeros
    values[1, :] = 0.0  # all zero, full count
    values[2, [0, 7]] = 0.0  # leading and trailing zeros
    values[3, 2:] = 0.0  # zeros after two events
    values = tf.constant(values)
    count = tf.constant([8, 8, 8, 5, 0, 3], tf.int32)
    kernel = tf.constant(rng.normal(size=(50, 13)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(6, 13)).astype(np.float32))
    results = linear_on_both_paths(SparseSpikes(ids, values, count), kernel, dy)
    for a, b in zip(results["kernel"], results["compiled"]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(results["kernel"][0].numpy()[[1, 4]], 0.0)


def test_sparse_linear_zero_values_skip_non_finite_kernel_rows():
    """The documented difference: an entry of value 0 contributes nothing on the op path even
    where its kernel row is Inf/NaN (the op skips it); the pure-TF path computes 0 * Inf = NaN."""
    from sparse_snns import sparse_linear

    kernel = tf.constant([[1.0, 2.0], [np.inf, np.nan], [3.0, 4.0]])
    spikes = SparseSpikes(tf.constant([[0, 2, 1]]), tf.constant([[1.0, 1.0, 0.0]]), tf.constant([3]))
    np.testing.assert_array_equal(sparse_linear(spikes, kernel, implementation="kernel").numpy(), [[4.0, 6.0]])
    assert np.all(np.isnan(sparse_linear(spikes, kernel, implementation="compiled").numpy()))
    with tf.GradientTape() as tape:  # the kernel gradient skips the entry of value 0 as well
        tape.watch(kernel)
        y = sparse_linear(spikes, kernel, implementation="kernel")
    d_kernel = tape.gradient(y, kernel, output_gradients=tf.constant([[np.inf, 1.0]]))
    np.testing.assert_array_equal(d_kernel.numpy()[1], [0.0, 0.0])


def test_format_functions_under_xla(rng):
    raster = tf.constant((rng.random((3, 4, 70)) < 0.2).astype(np.float32) * 2.0)
    eager = from_dense_with_overflow(raster, 9)
    compiled = tf.function(lambda r: from_dense_with_overflow(r, 9), jit_compile=True)(raster)
    for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(compiled)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    spikes = eager[0]
    dense = tf.function(lambda s: to_dense(s, 70), jit_compile=True)(spikes)
    np.testing.assert_array_equal(dense.numpy(), to_dense(spikes, 70).numpy())
    with pytest.raises(ValueError, match="XLA"):
        tf.function(lambda s: to_dense(s, 70, implementation="kernel"), jit_compile=True)(spikes)
