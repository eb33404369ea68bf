"""SparseLinear: the C++ op and the pure-TF path against each other and against to_dense @ W.

Covers forward and all gradients (kernel, bias, values) for several leading shapes, a
hypothesis property over shapes/capacities/densities, exactness with K >= N, XLA, dense
weight gradients, argument errors, the fallback without a compiler, and the Keras layer
(config, save/load, fit). Op-dependent tests skip (with the reason) if the op cannot be built.
"""

import os
import numpy as np
import pytest
import tensorflow as tf

from dense_snns.implementation import ImplementationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparse_snns
from dense_snns import KERAS_3, keras
from sparse_snns import SparseLinear, SparseSpikes, from_dense, linear, sparse_linear, to_dense
from dense_snns.ops import events as event_ops
from sparse_snns.ops import _loader

from conftest import compile_kwargs


_OP = event_ops.op_available()
needs_op = pytest.mark.skipif(not _OP, reason=f"the C++ op could not be built: {event_ops.load_error()}")
IMPLEMENTATIONS = [pytest.param("kernel", marks=needs_op), "compiled"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def random_spikes(rng, batch_shape, n_in, capacity, density, dtype=np.float32, binary=False):
    """SparseSpikes with random values, padding (count < K) and junk ids at padding entries."""
    dense = (rng.random(tuple(batch_shape) + (n_in,)) < density).astype(dtype)
    if not binary:
        dense *= rng.normal(size=dense.shape).astype(dtype)
        dense[dense == 0] = 0.0
    spikes = from_dense(tf.constant(dense), capacity)
    ids = spikes.ids.numpy()
    count = spikes.count.numpy()
    padding = np.arange(capacity) >= count[..., None]
    # padding entries are ignored whatever their id: put junk there (out of range too)
    ids[padding] = rng.integers(-5, n_in + 5, size=int(padding.sum()))
    return SparseSpikes(tf.constant(ids), spikes.values, spikes.count)


def dense_reference(spikes, kernel, bias, upstream):
    """Forward and gradients of sum(upstream * (to_dense(spikes) @ kernel + bias))."""
    ids, values, count = (t.numpy() for t in spikes)
    capacity = ids.shape[-1]
    valid = np.arange(capacity) < count[..., None]
    clean = SparseSpikes(tf.constant(np.where(valid, ids, 0)), tf.constant(values), tf.constant(count))
    n_in = int(kernel.shape[0])
    kernel = tf.constant(kernel)
    bias_t = tf.constant(bias) if bias is not None else None
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(kernel)
        dense = to_dense(clean, n_in)
        tape.watch(dense)
        flat = tf.reshape(dense, [-1, n_in])
        y = tf.matmul(flat, kernel)
        if bias_t is not None:
            tape.watch(bias_t)
            y = y + bias_t
        y = tf.reshape(y, tuple(ids.shape[:-1]) + (int(kernel.shape[1]),))
        loss = tf.reduce_sum(y * upstream)
    d_dense, d_kernel = tape.gradient(loss, [dense, kernel])
    d_bias = tape.gradient(loss, bias_t) if bias_t is not None else None
    d_values = np.take_along_axis(d_dense.numpy(), np.where(valid, ids, 0), axis=-1)
    d_values[~valid] = 0.0
    return y.numpy(), d_kernel.numpy(), (d_bias.numpy() if d_bias is not None else None), d_values


def sparse_forward_backward(spikes, kernel, bias, upstream, implementation, wrap=None):
    kernel = tf.constant(kernel)
    bias_t = tf.constant(bias) if bias is not None else None

    def run(ids, values, count, kernel, bias_t):
        with tf.GradientTape() as tape:
            tape.watch([values, kernel] + ([bias_t] if bias_t is not None else []))
            y = sparse_linear(SparseSpikes(ids, values, count), kernel, bias_t, implementation=implementation)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [kernel, values] + ([bias_t] if bias_t is not None else []))
        return [y] + grads

    fn = wrap(run) if wrap is not None else run
    out = fn(spikes.ids, spikes.values, spikes.count, kernel, bias_t)
    y, d_kernel, d_values = out[0], out[1], out[2]
    d_bias = out[3] if bias is not None else None
    return y, d_kernel, d_bias, d_values


def assert_close(actual, expected, dtype=np.float32):
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol * 10, atol=tol * 10)


def check_against_dense(
    rng, batch_shape, n_in, n_out, capacity, density, implementation, dtype=np.float32, use_bias=True, wrap=None
):
    spikes = random_spikes(rng, batch_shape, n_in, capacity, density, dtype)
    kernel = rng.normal(size=(n_in, n_out)).astype(dtype)
    bias = rng.normal(size=(n_out,)).astype(dtype) if use_bias else None
    upstream = tf.constant(rng.normal(size=tuple(batch_shape) + (n_out,)).astype(dtype))
    expected = dense_reference(spikes, kernel, bias, upstream)
    actual = sparse_forward_backward(spikes, kernel, bias, upstream, implementation, wrap)
    for name, a, e in zip(("output", "d_kernel", "d_bias", "d_values"), actual, expected):
        if e is None:
            assert a is None
            continue
        assert isinstance(a, tf.Tensor), f"{name} is {type(a).__name__}, expected a dense tf.Tensor"
        assert a.shape == e.shape, name
        assert_close(a.numpy(), e, dtype)
    return actual


# --------------------------------------------------------------------------------------------
# agreement: op vs pure TF vs dense matmul
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("batch_shape", [(), (7,), (3, 4), (2, 3, 2)])
def test_forward_and_gradients_match_dense(rng, implementation, batch_shape):
    check_against_dense(rng, batch_shape, n_in=37, n_out=45, capacity=9, density=0.2, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_graph_mode_and_no_bias(rng, implementation):
    check_against_dense(rng, (5, 6), 50, 33, 12, 0.15, implementation, use_bias=False, wrap=tf.function)


@needs_op
@pytest.mark.parametrize("n_out", [1, 15, 16, 17, 20, 33, 40, 64, 80, 200, 257])
def test_op_and_tf_agree_on_every_column_blocking(rng, n_out):
    """Widths that hit the 4-line blocks, single lines and the zero-padded remainders of 1, 2
    and 4 lines (20, 33, 40: narrow layers such as a readout)."""
    spikes = random_spikes(rng, (40,), 300, 24, 0.05)
    kernel = tf.constant(rng.normal(size=(300, n_out)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(40, n_out)).astype(np.float32))
    results = [sparse_forward_backward(spikes, kernel.numpy(), None, upstream, impl) for impl in ("kernel", "compiled")]
    for a, b in zip(results[0], results[1]):
        if a is not None:
            assert_close(a.numpy(), b.numpy())


_ISA_SCRIPT = """
import sys
import numpy as np
from dense_snns.ops import events
lib = events.load()
assert lib is not None, events.load_error()
data = dict(np.load(sys.argv[1]))
out = {}
for key in sorted(k[len("kernel_"):] for k in data if k.startswith("kernel_")):
    ids, values, count = data["ids_" + key], data["values_" + key], data["count_" + key]
    kernel, grad = data["kernel_" + key], data["grad_" + key]
    out["y_" + key] = lib.dense_snns_sparse_linear(ids, values, count, kernel).numpy()
    out["dw_" + key] = lib.dense_snns_sparse_linear_grad_weights(ids, values, count, grad, kernel).numpy()
    out["dv_" + key] = lib.dense_snns_sparse_linear_grad_values(ids, count, kernel, grad).numpy()
    packed = events.pack_kernel(kernel)
    n_out = kernel.shape[1]
    out["yp_" + key] = lib.dense_snns_sparse_linear_packed(ids, values, count, packed, n_out=n_out).numpy()
    out["dvp_" + key] = lib.dense_snns_sparse_linear_packed_grad_values(ids, count, packed, grad).numpy()
np.savez(sys.argv[2], **out)
"""


@needs_op
def test_every_instruction_set_matches_dense(rng, tmp_path):
    """The kernels are compiled once per instruction set (SSE2, AVX2, AVX-512) and the best one
    runs: each one the CPU has is run in a child process (DENSE_SNNS_ISA) against the dense
    product, for widths with whole lines, padded remainders and the unpacked scalar tail; the
    products with a packed kernel too."""
    import subprocess
    import sys

    cases = {}
    for n_in, n_out, rows, density, dtype in [
        (300, 20, 40, 0.05, np.float32),
        (300, 45, 40, 0.05, np.float32),
        (300, 200, 40, 0.05, np.float32),
        (300, 33, 20, 0.2, np.float64),
        (400, 37, 3, 0.01, np.float32),
    ]:  # few events: no packing
        spikes = random_spikes(rng, (rows,), n_in, 24, density, dtype=dtype)
        values = spikes.values.numpy()
        values[:, -3:] = 0.0  # gradient-only entries
        kernel = rng.normal(size=(n_in, n_out)).astype(dtype)
        upstream = rng.normal(size=(rows, n_out)).astype(dtype)
        key = f"{n_in}x{n_out}x{np.dtype(dtype).name}"
        cases[key] = (SparseSpikes(spikes.ids, tf.constant(values), spikes.count), kernel, upstream)
    inputs = {}
    for key, (spikes, kernel, upstream) in cases.items():
        inputs.update(
            {
                "ids_" + key: spikes.ids.numpy(),
                "values_" + key: spikes.values.numpy(),
                "count_" + key: spikes.count.numpy(),
                "kernel_" + key: kernel,
                "grad_" + key: upstream,
            }
        )
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for isa in ("generic", "avx2", "avx512"):
        env["DENSE_SNNS_ISA"] = isa  # a request above what the CPU has runs the best it has
        result = tmp_path / f"{isa}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", _ISA_SCRIPT, str(tmp_path / "inputs.npz"), str(result)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = np.load(result)
        for key, (spikes, kernel, upstream) in cases.items():
            y, d_kernel, _, d_values = dense_reference(spikes, kernel, None, upstream)
            tol = 1e-4 if kernel.dtype == np.float32 else 1e-10
            np.testing.assert_allclose(out["y_" + key], y, rtol=tol, atol=tol, err_msg=f"{isa} {key}")
            np.testing.assert_allclose(out["dw_" + key], d_kernel, rtol=tol, atol=tol, err_msg=f"{isa} {key}")
            np.testing.assert_allclose(out["dv_" + key], d_values, rtol=tol, atol=tol, err_msg=f"{isa} {key}")
            np.testing.assert_allclose(out["yp_" + key], y, rtol=tol, atol=tol, err_msg=f"{isa} {key} packed")
            np.testing.assert_allclose(out["dvp_" + key], d_values, rtol=tol, atol=tol, err_msg=f"{isa} {key} packed")


@needs_op
def test_op_float64(rng):
    check_against_dense(rng, (6, 3), 30, 20, 8, 0.2, "kernel", dtype=np.float64)


@needs_op
def test_op_multithreaded_matches_large_layer(rng):
    """Large enough to split over threads, pack column blocks and use every block width."""
    spikes = random_spikes(rng, (300,), 2100, 64, 0.02)
    kernel = rng.normal(size=(2100, 530)).astype(np.float32)
    upstream = tf.constant(rng.normal(size=(300, 530)).astype(np.float32))
    expected = dense_reference(spikes, kernel, None, upstream)
    actual = sparse_forward_backward(spikes, kernel, None, upstream, "kernel")
    for a, e in zip(actual, expected):
        if e is not None:
            np.testing.assert_allclose(a.numpy(), e, rtol=1e-4, atol=1e-4)
    packed, plain = packed_and_plain_products(spikes, tf.constant(kernel), upstream)
    for a, b in zip(packed, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def packed_and_plain_products(spikes, kernel, upstream):
    """(output, d_values, d_kernel) of sum(upstream * product) with the kernel packed
    (`PackedKernel`, its gradient back through `pack_kernel`) and plain, both on the C++ ops."""
    results = []
    for packed in (True, False):
        with tf.GradientTape() as tape:
            tape.watch([spikes.values, kernel])
            argument = linear.PackedKernel(event_ops.pack_kernel(kernel), int(kernel.shape[1])) if packed else kernel
            y = linear.linear_product(spikes, argument, None, "kernel")
            loss = tf.reduce_sum(upstream * y)
        results.append([y] + tape.gradient(loss, [spikes.values, kernel]))
    return results


@needs_op
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 9),
    n_in=st.sampled_from([1, 7, 40, 300, 4097, 8193]),
    n_out=st.integers(1, 140),
    capacity=st.integers(1, 10),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_products_with_a_packed_kernel_equal_the_plain_ones(rows, n_in, n_out, capacity, density, dtype, seed):
    """Every block width (4 lines, 2 above 4096 inputs, 1 above 8192, float32 and float64), a
    padded last block, rows without events: output, values gradient and the kernel's gradient
    through the packing equal those of the plain kernel."""
    rng = np.random.default_rng(seed)
    spikes = random_spikes(rng, (rows,), n_in, capacity, density, dtype)
    kernel = tf.constant(rng.normal(size=(n_in, n_out)).astype(dtype))
    upstream = tf.constant(rng.normal(size=(rows, n_out)).astype(dtype))
    packed, plain = packed_and_plain_products(spikes, kernel, upstream)
    for a, b in zip(packed, plain):
        assert a.shape == b.shape
        assert_close(a.numpy(), b.numpy(), dtype)


@needs_op
def test_pack_kernel_layout_and_width():
    kernel = np.arange(5 * 70, dtype=np.float32).reshape(5, 70)
    packed = event_ops.pack_kernel(tf.constant(kernel)).numpy()
    assert packed.shape == (2, 5, 64)  # 4 lines of 16 floats; 70 columns: 2 blocks, the last padded
    np.testing.assert_array_equal(packed[0], kernel[:, :64])
    np.testing.assert_array_equal(packed[1, :, :6], kernel[:, 64:])
    assert not packed[1, :, 6:].any()
    # a block of all N_in rows stays within 1 MiB: narrower blocks for more inputs
    assert [event_ops.packed_width(n, tf.float32) for n in (4096, 4097, 8193)] == [64, 32, 16]
    assert [event_ops.packed_width(n, tf.float64) for n in (4096, 4097, 8193)] == [32, 16, 8]


@needs_op
def test_packed_weight_gradient_alone_is_the_packed_gradient(rng):
    spikes = random_spikes(rng, (30,), 40, 6, 0.1)
    kernel = tf.constant(rng.normal(size=(40, 70)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(30, 70)).astype(np.float32))
    packed = linear.PackedKernel(event_ops.pack_kernel(kernel), 70)
    got = linear.linear_weight_gradient(spikes, upstream, packed, "kernel")
    want = event_ops.pack_kernel(linear.linear_weight_gradient(spikes, upstream, kernel, "kernel"))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.abs(want.numpy()).max() > 0.1


@needs_op
@pytest.mark.parametrize("packed", [False, True])
def test_values_gradient_alone_equals_the_products_gradient(rng, packed):
    """`linear_values_gradient` (what a replayed product's backward step uses) == autodiff of
    the product with respect to the values; 0 at padding entries."""
    spikes = random_spikes(rng, (12,), 40, 6, 0.1)
    kernel = tf.constant(rng.normal(size=(40, 70)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(12, 70)).astype(np.float32))
    argument = linear.PackedKernel(event_ops.pack_kernel(kernel), 70) if packed else kernel
    with tf.GradientTape() as tape:
        tape.watch(spikes.values)
        loss = tf.reduce_sum(upstream * linear.linear_product(spikes, kernel, None, "kernel"))
    want = tape.gradient(loss, spikes.values)
    got = linear.linear_values_gradient(spikes, upstream, argument)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want.numpy()).max() > 0.1


def test_loop_kernel_packs_only_for_the_kernels():
    kernel = tf.ones([6, 20])
    assert linear.loop_kernel(kernel, "compiled") is kernel
    assert linear.stepped_kernel(kernel, 20) is kernel
    if _OP:
        packed = linear.loop_kernel(kernel, "kernel")
        assert packed.shape == (1, 6, 64)
        assert linear.stepped_kernel(packed, 20) == linear.PackedKernel(packed, 20)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 12),
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    capacity=st.integers(1, 12),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_property_all_paths_agree(rows, n_in, n_out, capacity, density, seed):
    rng = np.random.default_rng(seed)
    implementations = ["compiled"] + (["kernel"] if _OP else [])
    for implementation in implementations:
        check_against_dense(rng, (rows,), n_in, n_out, capacity, density, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_full_capacity_reproduces_dense_exactly(rng, implementation):
    """K >= N, nothing dropped: outputs and gradients equal the dense block exactly
    (dyadic weights and upstream gradients make every sum exact in float32)."""
    n_in, n_out = 24, 19
    x = (rng.random((4, 5, n_in)) < 0.4).astype(np.float32)
    spikes, dropped = sparse_snns.from_dense_with_overflow(x, capacity=n_in + 3)
    assert int(tf.reduce_max(dropped)) == 0
    np.testing.assert_array_equal(to_dense(spikes, n_in).numpy(), x)
    kernel = rng.integers(-8, 9, size=(n_in, n_out)).astype(np.float32) / 8.0
    bias = rng.integers(-8, 9, size=(n_out,)).astype(np.float32) / 4.0
    upstream = tf.constant(rng.integers(-4, 5, size=(4, 5, n_out)).astype(np.float32) / 2.0)
    expected = dense_reference(spikes, kernel, bias, upstream)
    actual = sparse_forward_backward(spikes, kernel, bias, upstream, implementation)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a.numpy(), e)
    np.testing.assert_array_equal(actual[0].numpy(), x @ kernel + bias)


# --------------------------------------------------------------------------------------------
# pure-TF path: XLA, chunking, dense gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["compiled", "auto"])
def test_tf_path_under_xla_matches(rng, implementation):
    """Under jit_compile=True "auto" must pick the pure-TF path (the op has no XLA kernel)."""
    check_against_dense(rng, (4, 6), 33, 21, 10, 0.2, implementation, wrap=lambda f: tf.function(f, jit_compile=True))


def test_op_under_xla_is_a_clear_error(rng):
    spikes = random_spikes(rng, (3,), 10, 4, 0.3)

    @tf.function(jit_compile=True)
    def run(ids, values, count):
        return sparse_linear(SparseSpikes(ids, values, count), tf.ones([10, 4]), implementation="kernel")

    with pytest.raises(ValueError, match="XLA"):
        run(*spikes)


@pytest.mark.parametrize("wrap", ["eager", "graph_dynamic_rows", "xla"])
def test_tf_path_in_row_chunks(rng, monkeypatch, wrap):
    """Large inputs go through the chunked loop; the result does not depend on it."""
    monkeypatch.setattr(linear, "TF_CHUNK_ELEMENTS", 9 * 13 * 7)  # 7 rows per chunk
    spikes = random_spikes(rng, (45,), 30, 9, 0.2)
    kernel = rng.normal(size=(30, 13)).astype(np.float32)
    bias = rng.normal(size=(13,)).astype(np.float32)
    upstream = tf.constant(rng.normal(size=(45, 13)).astype(np.float32))
    expected = dense_reference(spikes, kernel, bias, upstream)
    if wrap == "eager":
        fn = None
    elif wrap == "xla":
        fn = lambda f: tf.function(f, jit_compile=True)  # noqa: E731
    else:

        def fn(f):
            signature = [
                tf.TensorSpec([None, 9], tf.int32),
                tf.TensorSpec([None, 9], tf.float32),
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([30, 13], tf.float32),
                tf.TensorSpec([13], tf.float32),
            ]
            return tf.function(f, input_signature=signature)

    actual = sparse_forward_backward(spikes, kernel, bias, upstream, "compiled", fn)
    for a, e in zip(actual, expected):
        assert_close(a.numpy(), e)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_kernel_gradient_is_dense_tensor_not_indexed_slices(rng, implementation):
    spikes = random_spikes(rng, (8,), 20, 5, 0.2)
    kernel = tf.Variable(rng.normal(size=(20, 6)).astype(np.float32))
    for wrap in (lambda f: f, tf.function):

        @wrap
        def grads():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(sparse_linear(spikes, kernel, implementation=implementation))
            return tape.gradient(loss, kernel)

        g = grads()
        assert isinstance(g, tf.Tensor) and not isinstance(g, tf.IndexedSlices)
        assert g.shape == (20, 6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("rows", [5, 2000])
def test_weight_gradient_alone_equals_the_products_gradient(rng, implementation, rows):
    """`linear_weight_gradient` (the kernel's gradient without the product, as the fused
    loops use it over many steps at once) == autodiff of the product; padding ignored; 2000
    rows are more than one row chunk of the pure-TF path."""
    spikes = random_spikes(rng, (rows,), 40, 6, 0.1)
    kernel = tf.constant(rng.normal(size=(40, 24)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(rows, 24)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        loss = tf.reduce_sum(upstream * sparse_linear(spikes, kernel, implementation=implementation))
    want = tape.gradient(loss, kernel)
    got = linear.linear_weight_gradient(spikes, upstream, kernel, implementation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want.numpy()).max() > 0.1


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_no_gradient_to_ids_and_count(rng, implementation):
    spikes = random_spikes(rng, (8,), 20, 5, 0.2)
    ids = tf.cast(spikes.ids, tf.float32)  # a float copy that could be watched
    with tf.GradientTape() as tape:
        tape.watch(ids)
        y = sparse_linear(
            SparseSpikes(tf.cast(ids, tf.int32), spikes.values, spikes.count),
            tf.ones([20, 3]),
            implementation=implementation,
        )
    assert tape.gradient(y, ids) is None


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def small_case():
    ids = tf.constant([[0, 3, 1], [2, 0, 0]], tf.int32)
    values = tf.constant([[1.0, 1.0, 0.5], [1.0, 0.0, 0.0]], tf.float32)
    count = tf.constant([3, 1], tf.int32)
    return ids, values, count, tf.ones([4, 5])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ids_out_of_range_eager(implementation):
    ids, values, count, kernel = small_case()
    bad = tf.tensor_scatter_nd_update(ids, [[0, 1]], [4])
    with pytest.raises(ValueError, match=r"`ids` out of range.*N_in=4"):
        sparse_linear(SparseSpikes(bad, values, count), kernel, implementation=implementation)
    negative = tf.tensor_scatter_nd_update(ids, [[1, 0]], [-1])
    with pytest.raises(ValueError, match="`ids` out of range"):
        sparse_linear(SparseSpikes(negative, values, count), kernel, implementation=implementation)
    # out-of-range ids at padding entries are ignored
    padding = tf.tensor_scatter_nd_update(ids, [[1, 2]], [99])
    sparse_linear(SparseSpikes(padding, values, count), kernel, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_count_greater_than_capacity(implementation):
    ids, values, count, kernel = small_case()
    with pytest.raises(ValueError, match=r"`count` > K \(capacity=3"):
        sparse_linear(SparseSpikes(ids, values, tf.constant([4, 1])), kernel, implementation=implementation)
    with pytest.raises(ValueError, match="`count` must be >= 0"):
        sparse_linear(SparseSpikes(ids, values, tf.constant([-1, 1])), kernel, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_value_errors_in_graph_mode(implementation):
    """Inside tf.function: InvalidArgumentError from the op's kernel or the TF assertions."""
    ids, values, count, kernel = small_case()
    run = tf.function(lambda i, v, c: sparse_linear(SparseSpikes(i, v, c), kernel, implementation=implementation))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`ids` out of range"):
        run(tf.constant([[0, 9, 1], [2, 0, 0]]), values, count)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`count`"):
        run(ids, values, tf.constant([5, 1]))


@needs_op
def test_raw_op_validates_arguments():
    lib = event_ops.load()
    ids, values, count, kernel = small_case()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`ids` out of range: ids\[0, 1\] = 7"):
        lib.dense_snns_sparse_linear(tf.constant([[0, 7, 1], [2, 0, 0]]), values, count, kernel)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`count` must be in \[0, K=3\].*count\[0\] = 4"):
        lib.dense_snns_sparse_linear_grad_values(ids, tf.constant([4, 1]), kernel, tf.ones([2, 5]))
    # the weight gradient checks while it counts the events of each input
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`ids` out of range: ids\[1, 0\] = -2"):
        lib.dense_snns_sparse_linear_grad_weights(
            tf.constant([[0, 1, 0], [-2, 0, 0]]), values, count, tf.ones([2, 5]), kernel
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`count` must be in \[0, K=3\].*count\[1\] = -1"):
        lib.dense_snns_sparse_linear_grad_weights(ids, values, tf.constant([2, -1]), tf.ones([2, 5]), kernel)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="values"):
        lib.dense_snns_sparse_linear(ids, tf.ones([2, 4]), count, kernel)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="count|rank"):
        lib.dense_snns_sparse_linear(ids, values, tf.constant([1, 1, 1]), kernel)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="grad|Dimensions"):
        lib.dense_snns_sparse_linear_grad_weights(ids, values, count, tf.ones([2, 6]), kernel)


@needs_op
def test_raw_packed_ops_validate_arguments():
    lib = event_ops.load()
    ids, values, count, kernel = small_case()
    packed = event_ops.pack_kernel(kernel)  # [1, 4, 64]
    grad = tf.ones([2, 5])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`ids` out of range: ids\[0, 1\] = 7"):
        lib.dense_snns_sparse_linear_packed(tf.constant([[0, 7, 1], [2, 0, 0]]), values, count, packed, n_out=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`count` must be in \[0, K=3\].*count\[0\] = 4"):
        lib.dense_snns_sparse_linear_packed_grad_values(ids, tf.constant([4, 1]), packed, grad)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"width 16, 32 or 64 \(1, 2 or 4 cache lines\), got \[1,4,48\]"
    ):
        lib.dense_snns_sparse_linear_packed(ids, values, count, tf.ones([1, 4, 48]), n_out=5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ceil\(N_out / width\) = 2 blocks for N_out = 70"):
        lib.dense_snns_sparse_linear_packed(ids, values, count, packed, n_out=70)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"ceil\(N_out / width\) = 2 blocks for N_out = 65"):
        lib.dense_snns_sparse_linear_packed_grad_values(ids, count, packed, tf.ones([2, 65]))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="grad|Dimensions"):
        lib.dense_snns_sparse_linear_packed_grad_values(ids, count, packed, tf.ones([3, 5]))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="values|Dimensions"):
        lib.dense_snns_sparse_linear_packed(ids, tf.ones([2, 4]), count, packed, n_out=5)
    with pytest.raises(
        (tf.errors.InvalidArgumentError, ValueError),
        match=r"`packed` must have shape \[blocks, N_in, width\].*got \[4,5\]|rank 3",
    ):
        lib.dense_snns_sparse_linear_packed(ids, values, count, kernel, n_out=5)


def test_dtype_and_structure_errors():
    ids, values, count, kernel = small_case()
    with pytest.raises(TypeError, match=r"`values` dtype float64 does not match the `kernel` dtype float32"):
        sparse_linear(SparseSpikes(ids, tf.cast(values, tf.float64), count), kernel)
    with pytest.raises(TypeError, match="`ids` must be int32"):
        sparse_linear(SparseSpikes(tf.cast(ids, tf.int64), values, count), kernel)
    with pytest.raises(TypeError, match="`count` must be int32"):
        sparse_linear(SparseSpikes(ids, values, tf.cast(count, tf.int64)), kernel)
    with pytest.raises(TypeError, match="`bias` dtype"):
        sparse_linear(SparseSpikes(ids, values, count), kernel, tf.zeros([5], tf.float64))
    with pytest.raises(ValueError, match="`bias` must have shape"):
        sparse_linear(SparseSpikes(ids, values, count), kernel, tf.zeros([6]))
    with pytest.raises(ValueError, match="`kernel` must have rank 2"):
        sparse_linear(SparseSpikes(ids, values, count), tf.ones([4]))
    with pytest.raises(ValueError, match="`values` must have the shape of `ids`"):
        sparse_linear(SparseSpikes(ids, values[:, :2], count), kernel)
    with pytest.raises(ValueError, match="`count` must have the shape"):
        sparse_linear(SparseSpikes(ids, values, count[:1]), kernel)
    with pytest.raises(TypeError, match="`spikes` must be a SparseSpikes"):
        sparse_linear(ids, kernel)
    with pytest.raises(ImplementationError, match="implementation must be one of"):
        sparse_linear(SparseSpikes(ids, values, count), kernel, implementation="cuda")
    if _OP:
        with pytest.raises(ImplementationError, match="implementation='kernel' cannot run .*float32 and float64"):
            sparse_linear(
                SparseSpikes(ids, tf.cast(values, tf.float16), count),
                tf.cast(kernel, tf.float16),
                implementation="kernel",
            )
    # float16 works through the pure-TF path with "auto"
    y = sparse_linear(SparseSpikes(ids, tf.cast(values, tf.float16), count), tf.cast(kernel, tf.float16))
    np.testing.assert_array_equal(y.numpy(), [[2.5] * 5, [1.0] * 5])
    # a list [ids, values, count] is accepted
    np.testing.assert_array_equal(sparse_linear([ids, values, count], kernel).numpy(), [[2.5] * 5, [1.0] * 5])


# --------------------------------------------------------------------------------------------
# building the op: cache key, failures, fallback
# --------------------------------------------------------------------------------------------


_FIRST_USE_IN_TRACE = """
import numpy as np
import tensorflow as tf
import sparse_snns

@tf.function
def step(x):  # the first use of the C++ ops happens while this is traced
    spikes, _ = sparse_snns.select_spikes(x, 4)
    return sparse_snns.sparse_linear(spikes, tf.ones([6, 3]))

print(step(tf.constant(np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(2, 6))).numpy().sum())
print("op:", sparse_snns.ops.op_available())
"""


@needs_op
def test_first_op_use_inside_a_traced_function_is_quiet(tmp_path):
    """The library may be loaded (or built) while Keras or tf.function traces a step: AutoGraph
    must leave the loader alone instead of trying to convert the standard library it calls."""
    import subprocess
    import sys

    script = tmp_path / "first_use.py"  # a file: AutoGraph converts only code whose source it can read
    script.write_text(_FIRST_USE_IN_TRACE)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "op: True" in proc.stdout
    assert "AutoGraph could not transform" not in proc.stderr, proc.stderr[-2000:]


def test_libraries_hold_the_selection_and_product_sources():
    """The build machinery is `dense_snns.ops.OpLibrary` (tested there): sparse_snns' library
    builds the selection source, SparseLinear runs dense_snns' event products; both include
    the spike-argument checks and the project's vector header."""
    assert [os.path.basename(p) for p in _loader.LIBRARY.source_paths()] == ["select_ops.cc"]
    assert [os.path.basename(p) for p in event_ops.LIBRARY.source_paths()] == ["event_linear_ops.cc"]
    for library in (_loader.LIBRARY, event_ops.LIBRARY):
        assert [os.path.basename(p) for p in library.header_paths()] == ["spikes_common.h", "simd.h"]
        assert all(os.path.exists(p) for p in library.source_paths() + library.header_paths())
    if sparse_snns.ops.op_available():
        assert os.path.basename(sparse_snns.ops.loaded_path()).startswith("sparse_snns_ops-tf")
    if _OP:
        assert os.path.basename(event_ops.LIBRARY.loaded_path()).startswith("dense_snns_event_ops-tf")


def test_no_compiler_falls_back_to_tf_with_one_warning(tmp_path, monkeypatch):
    """As in a fresh process without a usable compiler: one warning with the reason, correct results."""
    monkeypatch.setattr(
        event_ops.LIBRARY, "_state", {"tried": False, "module": None, "error": None, "path": None, "warned": False}
    )
    monkeypatch.setenv("DENSE_SNNS_CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("DENSE_SNNS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DENSE_SNNS_DISABLE_OP", raising=False)
    spikes = SparseSpikes(tf.constant([[1, 0], [2, 2]]), tf.constant([[1.0, 0.0], [1.0, 2.0]]), tf.constant([1, 2]))
    kernel = tf.reshape(tf.range(12, dtype=tf.float32), [3, 4])
    with pytest.warns(
        RuntimeWarning,
        match=r"event-driven products \(SparseLinear.*\) are unavailable.*no-such-compiler.*not found",
    ) as record:
        y = sparse_linear(spikes, kernel)
        y2 = sparse_linear(spikes, kernel)
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert not event_ops.op_available()
    assert "no-such-compiler" in event_ops.load_error()
    np.testing.assert_array_equal(y.numpy(), [[4, 5, 6, 7], [24, 27, 30, 33]])
    np.testing.assert_array_equal(y2.numpy(), y.numpy())
    with pytest.raises(
        ImplementationError, match="implementation='kernel' cannot run .*the C\\+\\+ ops are unavailable"
    ):
        sparse_linear(spikes, kernel, implementation="kernel")


# --------------------------------------------------------------------------------------------
# Keras layer
# --------------------------------------------------------------------------------------------


def sparse_inputs(capacity, time=None):
    lead = (time,) if time is not None else ()
    return [
        keras.Input(lead + (capacity,), dtype="int32", name="ids"),
        keras.Input(lead + (capacity,), dtype="float32", name="values"),
        keras.Input(lead, dtype="int32", name="count"),
    ]


def sparse_data(rng, samples, time, n_in, capacity, density):
    """([ids, values, count] arrays, dense spikes) of binary spikes."""
    dense = (rng.random((samples, time, n_in)) < density).astype(np.float32)
    return [t.numpy() for t in from_dense(dense, capacity)], dense


def test_layer_matches_function_and_config_round_trip(rng):
    layer = SparseLinear(
        7,
        input_dim=12,
        kernel_initializer="he_normal",
        bias_initializer="ones",
        implementation="compiled",
        name="sparse",
    )
    spikes = random_spikes(rng, (3, 4), 12, 5, 0.3)
    y = layer(spikes)
    assert y.shape == (3, 4, 7)
    np.testing.assert_allclose(y.numpy(), sparse_linear(spikes, layer.kernel, layer.bias).numpy(), rtol=1e-5, atol=1e-6)
    assert [w.shape for w in layer.weights] == [(12, 7), (7,)]
    np.testing.assert_allclose(layer([spikes.ids, spikes.values, spikes.count]).numpy(), y.numpy())
    config = layer.get_config()
    clone = SparseLinear.from_config(config)
    assert clone.get_config() == config
    assert (config["units"], config["input_dim"], config["implementation"]) == (7, 12, "compiled")
    no_bias = SparseLinear(3, input_dim=12, use_bias=False)
    no_bias(spikes)
    assert len(no_bias.weights) == 1


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="`input_dim`.*required"):
        SparseLinear(4)
    with pytest.raises(ValueError, match="units must be a positive integer"):
        SparseLinear(0, input_dim=3)
    with pytest.raises(ValueError, match="input_dim must be a positive integer"):
        SparseLinear(2, input_dim=-3)
    with pytest.raises(ImplementationError, match="implementation must be one of"):
        SparseLinear(2, input_dim=3, implementation="gpu")
    with pytest.raises((ValueError, TypeError), match="sparse spikes|SparseSpikes"):
        SparseLinear(2, input_dim=3)(tf.ones([4, 3]))


def build_model(capacity, n_in, time):
    inputs = sparse_inputs(capacity, time)
    hidden = SparseLinear(16, input_dim=n_in, name="sparse_linear")(inputs)
    hidden = keras.layers.Activation("tanh")(hidden)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(hidden))
    return keras.Model(inputs, outputs)


def test_functional_model_save_load_and_fit(rng, tmp_path):
    n_in, capacity, time = 30, 8, 5
    x, dense = sparse_data(rng, 64, time, n_in, capacity, 0.15)
    target = (dense[..., : n_in // 2].sum((1, 2)) - 2.0)[:, None].astype(np.float32)
    model = build_model(capacity, n_in, time)
    model.compile(keras.optimizers.Adam(0.02), "mse", **compile_kwargs())
    first = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=4, batch_size=16, verbose=0)
    last = model.evaluate(x, target, verbose=0)
    assert last < 0.5 * first, (first, last)

    path = str(tmp_path / "sparse_model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("sparse_linear"), SparseLinear)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.skipif(not KERAS_3, reason="Keras 3 only: explicit jit_compile=True training on CPU")
def test_keras3_fit_with_jit_compile_uses_tf_path(rng):
    n_in, capacity, time = 20, 6, 4
    x, _ = sparse_data(rng, 32, time, n_in, capacity, 0.2)
    target = rng.normal(size=(32, 1)).astype(np.float32)
    model = build_model(capacity, n_in, time)
    model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=True)
    history = model.fit(x, target, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_layer_gradients_flow_to_values_kernel_and_bias(rng, implementation):
    layer = SparseLinear(5, input_dim=10, implementation=implementation)
    spikes = random_spikes(rng, (6,), 10, 4, 0.3)
    values = tf.Variable(spikes.values)
    with tf.GradientTape() as tape:
        y = layer(SparseSpikes(spikes.ids, values, spikes.count))
        loss = tf.reduce_sum(y**2)
    d_values, d_kernel, d_bias = tape.gradient(loss, [values, layer.kernel, layer.bias])
    assert isinstance(d_kernel, tf.Tensor) and d_kernel.shape == (10, 5)
    assert d_bias.shape == (5,)
    padding = np.arange(4) >= spikes.count.numpy()[:, None]
    assert np.all(d_values.numpy()[padding] == 0)


def test_invalid_spikes_under_xla_are_harmless_and_counted():
    """XLA compiles the value checks out: an id out of range or a count outside [0, K] then
    contributes nothing (no read outside the kernel, no other row of it) and is counted."""
    kernel = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))
    ids = tf.constant([[1, 9, 2], [0, 1, 2], [3, -1, 0], [2, 2, 2]], tf.int32)
    values = tf.ones([4, 3])
    count = tf.constant([3, 5, 2, -1], tf.int32)
    layer = SparseLinear(3, input_dim=4, use_bias=False, implementation="compiled")
    layer.build()
    layer.kernel.assign(kernel)
    run = tf.function(lambda i, v, c: (layer([i, v, c]), layer.last_invalid), jit_compile=True)
    out, invalid = run(ids, values, count)
    np.testing.assert_array_equal(invalid.numpy(), [1, 2, 1, 1])  # id 9; count 5 > 3; id -1; count -1
    expected = np.stack([kernel[1] + kernel[2], kernel[0] + kernel[1] + kernel[2], kernel[3], np.zeros(3)])
    np.testing.assert_allclose(out.numpy(), expected)
    with pytest.raises(ValueError, match="`ids` out of range"):
        layer([ids, values, tf.constant([3, 3, 2, 0], tf.int32)])  # eagerly: an error, as before
