"""The C++ CuBa-LIF kernels (dense_snns.ops.lif.cuba_lif_recurrence) against the compiled
TensorFlow loops that run `neurons.cuba_lif_step`: identical spikes, equal final states and
gradients (currents, both initial states, alpha, beta, threshold, bias), every reset /
surrogate / layout; the default layers run them."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_snns as ds
from dense_snns import fused, keras, neurons, surrogates
from dense_snns.layers import SNNConv1D, SNNDense
from dense_snns.ops import lif as lif_ops

pytestmark = pytest.mark.skipif(
    not lif_ops.op_available(), reason=f"C++ LIF kernels unavailable: {lif_ops.load_error()}"
)

MODEL = neurons.get("cuba_lif")


def problem(rng, shape, dtype=np.float32, per_channel=True, with_bias=True):
    """currents [B, T, ..., C], [i0, v0], {alpha, beta, threshold}, bias for a CuBa-LIF layer."""
    channels = shape[-1]
    state_shape = shape[:1] + shape[2:]
    currents = tf.constant(rng.normal(0.1, 0.5, shape).astype(dtype))
    states = [tf.constant(rng.normal(0.0, 0.3, state_shape).astype(dtype)) for _ in range(2)]
    per = channels if per_channel else ()
    values = {
        "alpha": tf.constant(rng.uniform(0.5, 0.9, per).astype(dtype)),
        "beta": tf.constant(rng.uniform(0.6, 0.95, per).astype(dtype)),
        "threshold": tf.constant(rng.uniform(0.4, 1.0, per).astype(dtype)),
    }
    bias = tf.constant(rng.normal(0.0, 0.2, channels).astype(dtype)) if with_bias else None
    return currents, states, values, bias


def run(implementation, currents, states, values, bias, reset="subtract", stop_reset_grad=True, surrogate="superspike"):
    """[spikes, final i, final v, then the gradients of currents, i0, v0, alpha, beta,
    threshold (and bias)] of a loss weighting every spike and final state differently."""
    spike_fn = surrogates.Surrogate(surrogate, 2.0)
    params = MODEL.params_from(dict(values, reset=reset), spike_fn=spike_fn, stop_reset_grad=stop_reset_grad)
    watched = [currents, *states, values["alpha"], values["beta"], values["threshold"]]
    watched += [bias] if bias is not None else []
    with tf.GradientTape() as tape:
        tape.watch(watched)
        spikes, finals = fused.fused_recurrence(
            MODEL, currents, states, params, time_axis=1, bias=bias, jit_compile=False, implementation=implementation
        )
        loss = tf.reduce_sum(spikes * tf.cos(currents * 3.0))
        for k, final in enumerate(finals):
            loss += tf.reduce_sum(final * tf.sin(final + float(k)))
    return [spikes, *finals] + tape.gradient(loss, watched)


def check(rng, shape, dtype=np.float32, per_channel=True, with_bias=True, **kwargs):
    args = problem(rng, shape, dtype, per_channel, with_bias)
    reference = run("compiled", *args, **kwargs)
    result = run("kernel", *args, **kwargs)
    np.testing.assert_array_equal(result[0].numpy(), reference[0].numpy())
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    d_currents = reference[3].numpy()
    for i, (got, want) in enumerate(zip(result[1:], reference[1:])):
        want = want.numpy()
        scale = np.abs(want).max() + 1e-12
        if i >= 5:  # parameter gradients: sums of many current-gradient-sized terms
            scale = max(scale, np.abs(d_currents).max() * np.sqrt(d_currents.size / want.size))
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=rtol * scale, err_msg=f"output {i + 1}")
    return reference[0].numpy()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("stop_reset_grad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_reset_with_and_without_stopped_reset_gradient(rng, reset, stop_reset_grad, dtype):
    spikes = check(rng, (3, 12, 21), dtype=dtype, reset=reset, stop_reset_grad=stop_reset_grad)
    assert 0 < spikes.sum() < spikes.size


@pytest.mark.parametrize("surrogate", surrogates.SURROGATE_NAMES)
def test_every_surrogate(rng, surrogate):
    check(rng, (2, 9, 19), surrogate=surrogate)


def test_long_rows_are_split_into_tiles(rng):
    """300 steps of 1100 units: the gradient's tiles (membranes and currents of a tile in
    scratch) are narrower than the row."""
    spikes = check(rng, (2, 300, 1100))
    assert 0 < spikes.sum() < spikes.size


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 6),
    spatial=st.sampled_from([(), (3,), (2, 3)]),
    channels=st.integers(1, 19),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    per_channel=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_shape_and_configuration(batch, steps, spatial, channels, reset, per_channel, with_bias, seed):
    """Rank 3 to 5 sequences (parameters repeat along the last axis), vector tails, scalar
    parameters, float64."""
    check(
        np.random.default_rng(seed),
        (batch, steps) + spatial + (channels,),
        dtype=np.float64,
        per_channel=per_channel,
        with_bias=with_bias,
        reset=reset,
    )


def test_nan_current_surfaces_as_nan_spikes(rng):
    currents, states, values, bias = problem(rng, (2, 5, 9))
    currents = tf.tensor_scatter_nd_update(currents, [[1, 2, 3]], [np.nan])
    kernel = run("kernel", currents, states, values, bias)[0].numpy()
    compiled = run("compiled", currents, states, values, bias)[0].numpy()
    np.testing.assert_array_equal(kernel, compiled)  # NaN where the compiled loop has NaN
    assert np.isnan(kernel[1, 2:, 3]).all() and not np.isnan(kernel[0]).any()


def test_raw_kernels_check_their_arguments():
    library = lif_ops.load()
    c, s = tf.zeros([2, 5, 4]), tf.zeros([2, 4])
    ones, none = tf.ones([4]), tf.zeros([0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="`initial_i` must have shape \\[2,4\\]"):
        library.dense_snns_cuba_lif_forward(c, tf.zeros([2, 3]), s, ones, ones, ones, none, reset="zero")
    with pytest.raises(tf.errors.InvalidArgumentError, match="`alpha` must have shape \\[4\\]"):
        library.dense_snns_cuba_lif_forward(c, s, s, tf.ones([2]), ones, ones, none, reset="zero")
    grad_attrs = dict(reset="zero", stop_reset_grad=True, surrogate="boxcar")
    with pytest.raises(tf.errors.InvalidArgumentError, match="`d_final_i` must have the shape of `initial_i`"):
        library.dense_snns_cuba_lif_grad(c, s, s, ones, ones, ones, none, c, tf.zeros([2, 5]), s, 1.0, **grad_attrs)


def test_empty_sequence_keeps_the_states():
    library = lif_ops.load()
    c, i0, v0, ones = tf.zeros([2, 0, 4]), tf.fill([2, 4], 0.2), tf.fill([2, 4], 0.3), tf.ones([4])
    spikes, final_i, final_v = library.dense_snns_cuba_lif_forward(c, i0, v0, ones, ones, ones, ones, reset="subtract")
    assert spikes.shape == (2, 0, 4)
    np.testing.assert_array_equal(final_i.numpy(), i0.numpy())
    np.testing.assert_array_equal(final_v.numpy(), v0.numpy())


def kernel_calls(monkeypatch):
    calls = []
    original = lif_ops.cuba_lif_recurrence

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(lif_ops, "cuba_lif_recurrence", spy)
    return calls


def test_default_layers_run_the_kernels_and_equal_the_compiled_loops(rng, monkeypatch):
    """SNNDense and SNNConv1D with the default neuron (CuBa-LIF, trainable decays and
    threshold) run the kernels under "auto": same spikes and gradients as "compiled"."""
    calls = kernel_calls(monkeypatch)
    dense_x = tf.constant(rng.normal(0.3, 1.0, (3, 12, 6)).astype(np.float32))
    conv_x = tf.constant(rng.normal(0.3, 1.0, (3, 12, 6, 2)).astype(np.float32))
    for x, make in (
        (
            dense_x,
            lambda impl: SNNDense(
                8,
                neuron=ds.CubaLIF(8, trainable_params=["alpha", "beta", "threshold"]),
                implementation=impl,
                kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=3),
            ),
        ),
        (
            conv_x,
            lambda impl: SNNConv1D(
                5, 3, implementation=impl, kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=4)
            ),
        ),
    ):
        layers = [make("auto"), make("compiled")]
        for layer in layers:
            layer(x[:, :1])
        layers[1].set_weights(layers[0].get_weights())
        results = []
        for layer in layers:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(y * tf.reshape(tf.cos(tf.range(tf.size(y), dtype=y.dtype)), tf.shape(y)))
            results.append([y] + tape.gradient(loss, [x] + layer.trainable_weights))
        np.testing.assert_array_equal(results[0][0].numpy(), results[1][0].numpy())
        assert 0 < results[0][0].numpy().sum() < results[0][0].numpy().size
        for got, want in zip(results[0][1:], results[1][1:]):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5 * np.abs(want.numpy()).max())
    assert [c[1] for c in calls] == [1, 12, 1, 12]  # the building calls of "auto", then the measured ones
