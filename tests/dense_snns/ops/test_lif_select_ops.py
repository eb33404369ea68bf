"""The selecting kernels (dense_snns.ops.lif.select_recurrence: the LIF / CuBa-LIF recurrence
with each step's spikes selected into K slots inside the kernel) against what they replace:
the compiled loop's pre-spike values selected by `sparse_snns.select_spikes`. Same ids,
values, counts and overflow; gradients equal; every model, reset and surrogate of the table."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dense_snns import fused, neurons, surrogates
from dense_snns.ops import lif as lif_ops
from sparse_snns.selection import select_spikes

pytestmark = pytest.mark.skipif(
    not lif_ops.op_available(), reason=f"C++ LIF kernels unavailable: {lif_ops.load_error()}"
)

SELECTING = [m for m in lif_ops.KERNEL_TABLE.models if neurons.get(m).spiking]


def problem(rng, model, shape, dtype):
    """currents [B, T, N], initial states, parameter values, bias."""
    batch, _, units = shape
    currents = tf.constant(rng.normal(0.1, 0.6, shape).astype(dtype))
    states = [tf.constant(rng.normal(0.0, 0.3, (batch, units)).astype(dtype)) for _ in model.state_names]
    values = {"beta": tf.constant(rng.uniform(0.6, 0.95, units).astype(dtype))}
    values["threshold"] = tf.constant(rng.uniform(0.3, 0.9, units).astype(dtype))
    if "alpha" in model.param_specs:
        values["alpha"] = tf.constant(rng.uniform(0.5, 0.9, units).astype(dtype))
    bias = tf.constant(rng.normal(0.0, 0.2, units).astype(dtype))
    return currents, states, values, bias


def both(model, currents, states, values, bias, capacity, second_threshold=None, **kwargs):
    """(kernel, reference): each [ids, values, count, spike total, final states...,
    gradients of currents, states, parameters, bias] of a loss on the values and final states."""
    spike_fn = surrogates.Surrogate(kwargs.pop("surrogate", "superspike"), 2.0)
    params = model.params_from(dict(values, reset=kwargs.pop("reset", "subtract")), spike_fn=spike_fn, **kwargs)
    watched = [currents, *states, *values.values(), bias]
    results = []
    for in_kernel in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(watched)
            if in_kernel:
                selected, finals = lif_ops.select_recurrence(
                    model, currents, states, params, bias, capacity, second_threshold
                )
                ids, vals, count, total = selected
            else:
                x, finals = fused.fused_recurrence(
                    model,
                    currents,
                    states,
                    params,
                    time_axis=1,
                    bias=bias,
                    jit_compile=False,
                    implementation="compiled",
                    output="pre_spike",
                )
                spikes, dropped = select_spikes(x, capacity, second_threshold, spike_fn, implementation="compiled")
                ids, vals, count = spikes
                total = tf.reduce_sum(tf.cast(tf.logical_not(x <= 0), tf.int32), axis=-1)  # spikes and NaNs
                np.testing.assert_array_equal(dropped, np.maximum(total - min(capacity, x.shape[-1]), 0))
            weights = tf.cos(tf.cast(ids, vals.dtype) + tf.range(vals.shape[-1], dtype=vals.dtype))
            loss = tf.reduce_sum(vals * weights) + sum(tf.reduce_sum(f * tf.sin(f)) for f in finals)
        results.append([ids, vals, count, total, *finals] + tape.gradient(loss, watched))
    return results


def assert_equal_selection(kernel, reference, capacity, rtol):
    """The kernel's Ke = min(K, N) slots equal the reference's first Ke (the rest of the K
    slots are padding there); the same spike counts; gradients close."""
    ids, vals, count, total = (t.numpy() for t in kernel[:4])
    r_ids, r_vals, r_count, r_total = (t.numpy() for t in reference[:4])
    assert ids.shape[-1] == min(capacity, kernel[4].shape[-1])
    k = ids.shape[-1]
    np.testing.assert_array_equal(count, r_count)
    np.testing.assert_array_equal(ids, r_ids[..., :k])
    np.testing.assert_array_equal(vals, r_vals[..., :k])
    assert not r_ids[..., k:].any() and not r_vals[..., k:].any()
    np.testing.assert_array_equal(total, r_total)
    for i, (got, want) in enumerate(zip(kernel[4:], reference[4:])):
        want = want.numpy()
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=rtol * (np.abs(want).max() + 1.0), err_msg=str(i))


@settings(max_examples=25, deadline=None)
@given(
    model=st.sampled_from(SELECTING),
    batch=st.integers(1, 3),
    steps=st.integers(1, 7),
    units=st.integers(1, 150),
    capacity=st.integers(1, 160),
    second_threshold=st.sampled_from([None, -0.2, -1.0]),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    stop_reset_grad=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example("cuba_lif", 2, 5, 130, 3, None, "subtract", True, 0)  # overflow; rows of more than 2 words
def test_selecting_kernel_equals_loop_and_selection(
    model, batch, steps, units, capacity, second_threshold, reset, stop_reset_grad, seed
):
    rng = np.random.default_rng(seed)
    model = neurons.get(model)
    args = problem(rng, model, (batch, steps, units), np.float64)
    kernel, reference = both(model, *args, capacity, second_threshold, reset=reset, stop_reset_grad=stop_reset_grad)
    assert_equal_selection(kernel, reference, capacity, 1e-10)


@pytest.mark.parametrize("model", SELECTING)
@pytest.mark.parametrize("surrogate", surrogates.SURROGATE_NAMES)
def test_every_surrogate_in_float32(rng, model, surrogate):
    model = neurons.get(model)
    args = problem(rng, model, (3, 20, 70), np.float32)
    kernel, reference = both(model, *args, 12, surrogate=surrogate)
    assert_equal_selection(kernel, reference, 12, 1e-5)
    assert kernel[3].numpy().max() > 0  # some spikes


@pytest.mark.parametrize("model, scale, capacity", [("lif", 0.3, 60), ("cuba_lif", 0.15, 140)])
def test_gradient_of_long_rows_in_tiles(rng, model, scale, capacity):
    """600 steps of 1100 units: the gradient kernel walks tiles narrower than the row (448
    units for LIF in float64, 224 for CuBa-LIF), each filling its part of a step's spike
    gradient from the slots of the whole row. Currents scaled so that selected ids reach the
    last tile and some steps overflow."""
    model = neurons.get(model)
    currents, states, values, bias = problem(rng, model, (2, 600, 1100), np.float64)
    kernel, reference = both(model, currents * scale, states, values, bias * scale, capacity)
    assert_equal_selection(kernel, reference, capacity, 1e-10)
    ids, total = kernel[0].numpy(), kernel[3].numpy()
    assert (ids >= 896).any() and (total > capacity).any() and (total < capacity).any()  # 896: the last tile


def test_overflow_is_counted_and_nan_is_selected(rng):
    """spike_total counts every spike, also those that do not fit; a NaN membrane takes a slot
    as a spike with value NaN, in index order."""
    model = neurons.get("lif")
    currents, states, values, bias = problem(rng, model, (2, 6, 40), np.float32)
    currents = tf.tensor_scatter_nd_update(currents + 1.5, [[0, 3, 1]], [np.nan])  # nearly every unit fires
    params = model.params_from(dict(values, reset="zero"), spike_fn=surrogates.get("superspike"))
    selected, _ = lif_ops.select_recurrence(model, currents, states, params, bias, 5)
    assert selected.ids.shape == (2, 6, 5)
    assert (selected.count.numpy() == 5).all() and (selected.spike_total.numpy() > 5).any()
    x, _ = fused.fused_recurrence(
        model, currents, states, params, time_axis=1, bias=bias, implementation="compiled", output="pre_spike"
    )
    np.testing.assert_array_equal(selected.spike_total.numpy(), np.sum(~(x.numpy() <= 0), axis=-1))
    row, row_values = selected.ids.numpy()[0, 3], selected.values.numpy()[0, 3]
    firing_before = [unit for unit in range(1) if not x.numpy()[0, 3, unit] <= 0]
    assert row[len(firing_before)] == 1 and np.isnan(row_values[len(firing_before)])
    assert np.isnan(row_values).sum() == 1 and not np.isnan(selected.values.numpy()[1]).any()


def test_a_layer_of_no_units_selects_nothing():
    library = lif_ops.load()
    none = tf.zeros([0])
    ids, values, count, total, final_v = library.dense_snns_lif_select(
        tf.zeros([2, 3, 0]), tf.zeros([2, 0]), none, none, none, 0.0, reset="zero", capacity=4
    )
    assert ids.shape == values.shape == (2, 3, 0) and final_v.shape == (2, 0)
    np.testing.assert_array_equal(count.numpy(), np.zeros((2, 3)))
    np.testing.assert_array_equal(total.numpy(), np.zeros((2, 3)))


def test_raw_op_checks_its_arguments():
    library = lif_ops.load()
    c, v0, ones, none = tf.zeros([2, 5, 4]), tf.zeros([2, 4]), tf.ones([4]), tf.zeros([0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 3 \\[batch, time, units\\]"):
        library.dense_snns_lif_select(
            tf.zeros([2, 5, 2, 2]),
            tf.zeros([2, 2, 2]),
            tf.ones([2]),
            tf.ones([2]),
            tf.zeros([0]),
            0.0,
            reset="zero",
            capacity=2,
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="`second_threshold` must be a scalar"):
        library.dense_snns_lif_select(c, v0, ones, ones, none, [0.0], reset="zero", capacity=2)
    grad_attrs = dict(reset="zero", stop_reset_grad=True, surrogate="superspike")

    def select_grad(ids, count, d_values):
        v0 = tf.zeros([1, 4])
        return library.dense_snns_lif_select_grad(
            tf.zeros([1, 1, 4]), v0, ones, ones, none, ids, count, d_values, v0, 1.0, **grad_attrs
        )

    with pytest.raises(tf.errors.InvalidArgumentError, match="`ids` out of range: 9 is not in \\[0, 4\\)"):
        select_grad(tf.fill([1, 1, 2], 9), tf.fill([1, 1], 2), tf.ones([1, 1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`count` must be in \\[0, 2\\], got 3"):
        select_grad(tf.zeros([1, 1, 2], tf.int32), tf.fill([1, 1], 3), tf.ones([1, 1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`ids` must have shape \\[batch, time, K\\]"):
        select_grad(tf.zeros([2, 1, 2], tf.int32), tf.fill([2, 1], 1), tf.ones([2, 1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`d_values` must have the shape of `ids`"):
        select_grad(tf.zeros([1, 1, 2], tf.int32), tf.fill([1, 1], 1), tf.ones([1, 1, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`count` must have shape \\[batch, time\\]"):
        select_grad(tf.zeros([1, 1, 2], tf.int32), tf.fill([1, 2], 1), tf.ones([1, 1, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`currents` must have rank 3"):
        library.dense_snns_lif_select_grad(
            tf.zeros([1, 1, 2, 2]),
            tf.zeros([1, 2, 2]),
            tf.ones([2]),
            tf.ones([2]),
            none,
            tf.zeros([1, 1, 2], tf.int32),
            tf.fill([1, 1], 1),
            tf.ones([1, 1, 2]),
            tf.zeros([1, 2, 2]),
            1.0,
            **grad_attrs,
        )
    with pytest.raises(ValueError, match="currents \\[batch, time, units\\]"):
        model = neurons.get("lif")
        params = model.params_from({}, spike_fn=surrogates.get("superspike"))
        lif_ops.select_recurrence(model, tf.zeros([2, 5, 2, 2]), [tf.zeros([2, 2, 2])], params, None, 2)
    with pytest.raises(ValueError, match="capacity must be a positive integer, got capacity=0"):
        lif_ops.select_recurrence(model, c, [v0], params, None, 0)
