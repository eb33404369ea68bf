"""The C++ LIF kernels (dense_snns.ops.lif) against the compiled TensorFlow loops that run
`neurons.lif_step`: identical spikes, equal gradients, every reset / surrogate / layout."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_snns as ds
from dense_snns import fused, keras, neurons, surrogates
from dense_snns.layers import SNNConv2D, SNNDense
from dense_snns.ops import lif as lif_ops

import helpers
from conftest import compile_kwargs

pytestmark = pytest.mark.skipif(
    not lif_ops.op_available(), reason=f"C++ LIF kernels unavailable: {lif_ops.load_error()}"
)


def problem(rng, shape, dtype=np.float32, per_channel=True, with_bias=True):
    """currents [B, T, ..., C], v0, beta, threshold, bias (tensors) for a LIF layer."""
    channels = shape[-1]
    currents = tf.constant(rng.normal(0.15, 0.6, shape).astype(dtype))
    v0 = tf.constant(rng.normal(0.0, 0.3, shape[:1] + shape[2:]).astype(dtype))
    beta = tf.constant(rng.uniform(0.6, 0.95, channels if per_channel else ()).astype(dtype))
    threshold = tf.constant(rng.uniform(0.3, 0.8, channels if per_channel else ()).astype(dtype))
    bias = tf.constant(rng.normal(0.0, 0.2, channels).astype(dtype)) if with_bias else None
    return currents, v0, beta, threshold, bias


def run(
    implementation,
    currents,
    v0,
    beta,
    threshold,
    bias,
    reset="subtract",
    stop_reset_grad=True,
    surrogate="superspike",
    scale=None,
    jit_compile=False,
):
    """[spikes, final v, then the gradients of currents, v0, beta, threshold (and bias)] of a
    loss weighting every spike and final membrane differently."""
    params = neurons.LIFParams(beta, threshold, reset, stop_reset_grad, surrogates.Surrogate(surrogate, scale))
    watched = [currents, v0, beta, threshold] + ([bias] if bias is not None else [])
    with tf.GradientTape() as tape:
        tape.watch(watched)
        spikes, (final_v,) = fused.fused_recurrence(
            neurons.lif_step,
            neurons.LIFState,
            currents,
            [v0],
            params,
            None,
            time_axis=1,
            bias=bias,
            jit_compile=jit_compile,
            implementation=implementation,
        )
        w_spikes = tf.reshape(tf.cos(tf.range(tf.size(spikes), dtype=spikes.dtype)), tf.shape(spikes))
        w_final = tf.reshape(tf.sin(tf.range(tf.size(final_v), dtype=spikes.dtype)), tf.shape(final_v))
        loss = tf.reduce_sum(spikes * w_spikes) + tf.reduce_sum(final_v * w_final)
    return [spikes, final_v] + tape.gradient(loss, watched)


def assert_same(result, reference, rtol):
    """Identical spikes; final membranes and gradients to round-off. A parameter gradient
    (after those of the currents and the initial state) sums n = B*T*M / its size terms of
    the size of the current gradient, in another order than the loops: its rounding error
    scales with sqrt(n) times the current gradient, not with its own (possibly cancelled)
    value."""
    np.testing.assert_array_equal(result[0].numpy(), reference[0].numpy())
    d_currents = reference[2].numpy()
    for i, (got, want) in enumerate(zip(result[1:], reference[1:])):
        want = want.numpy()
        scale = np.abs(want).max() + 1e-12
        if i >= 3:
            scale = max(scale, np.abs(d_currents).max() * np.sqrt(d_currents.size / want.size))
        np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=rtol * scale)


def check(rng, shape, dtype=np.float32, per_channel=True, with_bias=True, **kwargs):
    args = problem(rng, shape, dtype, per_channel, with_bias)
    reference = run("compiled", *args, **kwargs)
    result = run("kernel", *args, **kwargs)
    spikes = reference[0].numpy()
    assert_same(result, reference, 1e-5 if dtype == np.float32 else 1e-12)
    return spikes


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("stop_reset_grad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_reset_with_and_without_stopped_reset_gradient(rng, reset, stop_reset_grad, dtype):
    spikes = check(rng, (3, 9, 21), dtype=dtype, reset=reset, stop_reset_grad=stop_reset_grad)
    assert 0 < spikes.sum() < spikes.size


@pytest.mark.parametrize("surrogate", surrogates.SURROGATE_NAMES)
def test_every_surrogate(rng, surrogate):
    check(rng, (2, 7, 19), surrogate=surrogate, scale=3.0)
    check(rng, (2, 7, 19), surrogate=surrogate, reset="zero", stop_reset_grad=False)


def test_float64_scalar_parameters_no_bias_and_a_scale_float32_cannot_hold(rng):
    check(rng, (2, 8, 13), dtype=np.float64, per_channel=False, with_bias=False, surrogate="arctan", scale=0.3)


def test_against_the_xla_loops(rng):
    """The XLA-compiled loops (the default without the kernels) give the same spikes."""
    args = problem(rng, (3, 11, 37))
    assert_same(run("kernel", *args), run("compiled", *args, jit_compile=True), 1e-5)


def test_long_rows_are_split_into_tiles(rng):
    """600 steps of 1100 units: the gradient works on tiles of 1024 units (each tile's
    membranes stay in cache), and on several threads."""
    spikes = check(rng, (2, 600, 1100))
    assert 0 < spikes.sum() < spikes.size


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 6),
    spatial=st.sampled_from([(), (3,), (2, 3)]),
    channels=st.integers(1, 19),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    stop_reset_grad=st.booleans(),
    per_channel=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_shape_and_configuration(
    batch, steps, spatial, channels, reset, stop_reset_grad, per_channel, with_bias, seed
):
    """Rank 3 to 5 sequences (the parameters repeat along the last axis, as a convolution's
    channels), any length including the vector tails."""
    check(
        np.random.default_rng(seed),
        (batch, steps) + spatial + (channels,),
        per_channel=per_channel,
        with_bias=with_bias,
        reset=reset,
        stop_reset_grad=stop_reset_grad,
    )


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _cpu_has_avx2(), reason="the default is the SSE2 build too on a CPU without AVX2")
def test_generic_instruction_set_in_a_child_process(tmp_path):
    """DENSE_SNNS_ISA=generic runs the SSE2 loops: the same arithmetic as the AVX2 default
    (no fused multiply-adds in either), so bit-identical results."""
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from dense_snns.ops import lif\n"
        "rng = np.random.default_rng(5)\n"
        "c = tf.constant(rng.normal(0.2, 0.6, (2, 30, 45)).astype(np.float32))\n"
        "v0 = tf.zeros([2, 45]); beta = tf.fill([45], 0.9); th = tf.fill([45], 0.5); b = tf.zeros([0])\n"
        "s, v = lif.load().dense_snns_lif_forward(c, v0, beta, th, b, reset='subtract')\n"
        "g = lif.load().dense_snns_lif_grad(c, v0, beta, th, b, tf.ones_like(c), tf.ones_like(v0), tf.constant(2.0),"
        " reset='subtract', stop_reset_grad=True, surrogate='arctan')\n"
        "np.save(sys.argv[1], np.concatenate([s.numpy().ravel(), v.numpy().ravel()] + [x.numpy().ravel() for x in g]))\n"
    )
    results = []
    for isa in ("generic", "default"):
        out = tmp_path / f"{isa}.npy"
        env = dict(os.environ, DENSE_SNNS_ISA=isa, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(
            [sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(np.load(out))
    np.testing.assert_array_equal(results[0], results[1])


def run_integrator(implementation, currents, v0, beta, bias, jit_compile=False):
    """[outputs, final v, gradients of currents, v0, beta (and bias)] of a weighted loss."""
    params = neurons.LeakyIntegratorParams(beta)
    watched = [currents, v0, beta] + ([bias] if bias is not None else [])
    with tf.GradientTape() as tape:
        tape.watch(watched)
        outputs, (final_v,) = fused.fused_recurrence(
            neurons.leaky_integrator_step,
            neurons.LeakyIntegratorState,
            currents,
            [v0],
            params,
            None,
            time_axis=1,
            bias=bias,
            jit_compile=jit_compile,
            implementation=implementation,
        )
        w_out = tf.reshape(tf.cos(tf.range(tf.size(outputs), dtype=outputs.dtype)), tf.shape(outputs))
        loss = tf.reduce_sum(outputs * w_out) + tf.reduce_sum(final_v * tf.sin(tf.cast(tf.size(final_v), v0.dtype)))
    return [outputs, final_v] + tape.gradient(loss, watched)


def assert_close(result, reference, rtol):
    """As `assert_same`, for outputs that are not spikes (compared to round-off too)."""
    np.testing.assert_allclose(
        result[0].numpy(), reference[0].numpy(), rtol=rtol, atol=rtol * np.abs(reference[0].numpy()).max()
    )
    assert_same([reference[0]] + list(result[1:]), reference, rtol)


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 7),
    spatial=st.sampled_from([(), (2,), (2, 3)]),
    channels=st.integers(1, 21),
    per_channel=st.booleans(),
    with_bias=st.booleans(),
    float64=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_leaky_integrator_any_shape(batch, steps, spatial, channels, per_channel, with_bias, float64, seed):
    """The readout's leaky integrator: outputs and gradients equal the compiled loops'."""
    dtype = np.float64 if float64 else np.float32
    currents, v0, beta, _, bias = problem(
        np.random.default_rng(seed), (batch, steps) + spatial + (channels,), dtype, per_channel, with_bias
    )
    reference = run_integrator("compiled", currents, v0, beta, bias)
    assert_close(run_integrator("kernel", currents, v0, beta, bias), reference, 1e-5 if dtype == np.float32 else 1e-12)


def test_leaky_integrator_of_a_long_sequence(rng):
    currents, v0, beta, _, bias = problem(rng, (3, 400, 45))
    assert_close(
        run_integrator("kernel", currents, v0, beta, bias),
        run_integrator("compiled", currents, v0, beta, bias, jit_compile=True),
        1e-5,
    )


def kernel_calls(monkeypatch, name="lif_recurrence"):
    """The shapes of the currents of every call of `lif_ops.<name>` during the test."""
    calls = []
    original = getattr(lif_ops, name)

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(lif_ops, name, spy)
    return calls


def outputs_and_gradients(models, x):
    """For each model: [outputs, d loss/d x, d loss/d each trainable weight] (`helpers`)."""
    return [helpers.outputs_and_gradients(model, x) for model in models]


def test_leaky_readout_uses_the_kernel_and_matches_its_cell(rng, monkeypatch):
    calls = kernel_calls(monkeypatch, "leaky_integrator_recurrence")
    x = tf.constant(rng.normal(size=(3, 9, 5)).astype(np.float32))
    layer = ds.LeakyReadout(4, beta=[0.5, 0.7, 0.9, 0.95])
    reference = keras.layers.RNN(ds.LeakyReadoutCell(4, beta=[0.5, 0.7, 0.9, 0.95]), return_sequences=True)
    layer(x)
    reference(x)
    reference.set_weights(layer.get_weights())
    calls.clear()
    results = outputs_and_gradients((layer, reference), x)
    assert len(calls) == 1
    assert_close(results[0], results[1], 1e-5)
    loops = ds.LeakyReadout(4, beta=[0.5, 0.7, 0.9, 0.95], implementation="compiled")
    loops(x)
    loops.set_weights(layer.get_weights())
    np.testing.assert_allclose(loops(x).numpy(), results[0][0].numpy(), rtol=1e-6, atol=1e-6)
    assert len(calls) == 1  # "compiled": the compiled loop, no kernel
    ds.LeakyReadout(4, implementation="kernel")(x)
    assert len(calls) == 2
    assert ds.LeakyReadout.from_config(loops.get_config()).implementation == "compiled"
    step_by_step = ds.LeakyReadout(4, beta=[0.5, 0.7, 0.9, 0.95], implementation="reference")
    step_by_step(x)
    step_by_step.set_weights(layer.get_weights())
    np.testing.assert_allclose(step_by_step(x).numpy(), results[0][0].numpy(), rtol=1e-6, atol=1e-6)
    assert len(calls) == 2
    with pytest.raises(ds.ImplementationError, match="implementation must be one of"):
        ds.LeakyReadout(4, implementation="bogus")


# --------------------------------------------------------------------------------------------
# when the kernels run, and when they refuse
# --------------------------------------------------------------------------------------------


def test_op_refuses_what_it_cannot_run(rng):
    currents, v0, beta, threshold, bias = problem(rng, (2, 5, 4))
    params = neurons.LIFParams(beta, threshold, "subtract", True, surrogates.Surrogate())

    def call(**kwargs):
        args = dict(
            model=neurons.get("lif"),
            currents=currents,
            initial_states=[v0],
            params=params,
            time_axis=1,
            implementation="kernel",
        )
        args.update(kwargs)
        return fused.fused_recurrence(**args)

    with pytest.raises(ValueError, match="a mask is given"):
        call(mask=tf.ones([2, 5], tf.bool))
    with pytest.raises(ValueError, match="recurrent kernel"):
        call(recurrent_kernel=tf.zeros([4, 4]), initial_states=[v0, tf.zeros_like(v0)])
    with pytest.raises(ValueError, match="time-major"):
        call(currents=tf.transpose(currents, [1, 0, 2]), time_axis=0)
    with pytest.raises(ValueError, match="float16"):
        call(currents=tf.cast(currents, tf.float16), initial_states=[tf.cast(v0, tf.float16)])
    with pytest.raises(ds.ImplementationError, match="the kernels implement the models .* not 'alif'"):
        alif = neurons.ALIFParams(0.9, 0.9, 0.5, 0.1, "subtract", True, surrogates.Surrogate())
        call(model=neurons.get("alif"), params=alif, initial_states=[v0, tf.zeros_like(v0)])
    with pytest.raises(ValueError, match="not a dense_snns.surrogates.Surrogate"):
        call(params=params._replace(spike_fn=surrogates.heaviside))
    with pytest.raises(ValueError, match="compiled by XLA"):
        tf.function(lambda c: call(currents=c)[0], jit_compile=True)(currents)
    with pytest.raises(ValueError, match="implementation must be one of"):
        call(implementation="cpp")
    with pytest.raises(ValueError, match="last dimension of the currents is not static"):
        tf.function(lambda c: call(currents=c)[0], input_signature=[tf.TensorSpec([2, 5, None])])(currents)
    # "auto" takes the compiled loops for all of these: XLA included
    spikes = tf.function(lambda c: call(currents=c, implementation="auto")[0], jit_compile=True)(currents)
    np.testing.assert_array_equal(spikes.numpy(), call()[0].numpy())


def test_raw_kernels_check_their_arguments(rng):
    library = lif_ops.load()
    c, v0 = tf.zeros([2, 5, 4]), tf.zeros([2, 4])
    ones = tf.ones([4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="`beta` must have shape \\[4\\]"):
        library.dense_snns_lif_forward(c, v0, tf.ones([3]), ones, tf.zeros([0]), reset="subtract")
    with pytest.raises(tf.errors.InvalidArgumentError, match="`bias` must have shape \\[4\\].* or \\[0\\]"):
        library.dense_snns_lif_forward(c, v0, ones, ones, tf.ones([2]), reset="subtract")
    with pytest.raises(tf.errors.InvalidArgumentError, match="`initial_v` must have shape \\[2,4\\]"):
        library.dense_snns_lif_forward(c, tf.zeros([2, 5]), ones, ones, tf.zeros([0]), reset="subtract")
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank >= 3"):
        library.dense_snns_lif_forward(tf.zeros([2, 4]), v0, ones, ones, tf.zeros([0]), reset="subtract")
    grad_attrs = dict(reset="zero", stop_reset_grad=True, surrogate="boxcar")
    with pytest.raises(tf.errors.InvalidArgumentError, match="`d_spikes` must have the shape of `currents`"):
        library.dense_snns_lif_grad(c, v0, ones, ones, tf.zeros([0]), tf.zeros([2, 4, 4]), v0, 1.0, **grad_attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`scale` must be > 0"):
        library.dense_snns_lif_grad(c, v0, ones, ones, tf.zeros([0]), c, v0, 0.0, **grad_attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`scale` must be a scalar"):
        library.dense_snns_lif_grad(c, v0, ones, ones, tf.zeros([0]), c, v0, tf.ones([1]), **grad_attrs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`d_outputs` must have the shape of `outputs`"):
        library.dense_snns_leaky_grad(c, v0, ones, tf.zeros([2, 4, 4]), v0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`beta` must have shape \\[4\\]"):
        library.dense_snns_leaky_forward(c, v0, tf.ones([2]), tf.zeros([0]))


def test_empty_batch_and_empty_sequence(rng):
    library = lif_ops.load()
    for shape in ((0, 5, 4), (2, 0, 4)):
        c, v0 = tf.zeros(shape), tf.fill([shape[0], 4], 0.3)
        ones = tf.ones([4])
        spikes, final_v = library.dense_snns_lif_forward(c, v0, ones, ones, tf.zeros([0]), reset="subtract")
        assert spikes.shape == shape
        np.testing.assert_array_equal(final_v.numpy(), v0.numpy())  # no step: the state is unchanged
        grads = library.dense_snns_lif_grad(
            c, v0, ones, ones, tf.zeros([4]), c, v0, 1.0, reset="subtract", stop_reset_grad=True, surrogate="superspike"
        )
        assert grads[0].shape == shape
        np.testing.assert_array_equal(grads[1].numpy(), v0.numpy())  # dL/dv0 = dL/dv_final
        for g in grads[2:]:
            np.testing.assert_array_equal(g.numpy(), np.zeros(4))


def test_loss_on_the_spikes_only_or_the_final_state_only(rng):
    """An output that the loss does not use has no gradient (None): the kernels take zeros."""
    currents, v0, beta, threshold, bias = problem(rng, (2, 6, 9))
    params = neurons.LIFParams(beta, threshold, "subtract", True, surrogates.Surrogate())
    for pick in (0, 1):
        results = []
        for implementation in ("kernel", "compiled"):
            with tf.GradientTape() as tape:
                tape.watch([currents, v0])
                spikes, (final_v,) = fused.fused_recurrence(
                    neurons.lif_step,
                    neurons.LIFState,
                    currents,
                    [v0],
                    params,
                    None,
                    time_axis=1,
                    bias=bias,
                    jit_compile=False,
                    implementation=implementation,
                )
                loss = tf.reduce_sum(spikes * tf.cos(currents)) if pick == 0 else tf.reduce_sum(final_v**2)
            results.append(tape.gradient(loss, [currents, v0]))
        for got, want in zip(*results):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        assert np.abs(results[0][0].numpy()).max() > 0


def test_layers_use_the_kernels_and_match_the_reference_rnn(rng, monkeypatch):
    """SNNDense and SNNConv2D of LIF neurons run the kernels under "auto", with trainable
    decays and thresholds; spikes and gradients equal the RNN-cell / loop reference."""
    calls = kernel_calls(monkeypatch)
    x = tf.constant((rng.random((3, 10, 7)) < 0.4).astype(np.float32))
    lif = dict(threshold=0.5, trainable_decays=True, trainable_threshold=True)
    reference = keras.layers.RNN(
        ds.SNNBlock(
            6,
            neuron=ds.LIF(6, **lif),
            kernel_initializer=keras.initializers.RandomNormal(0.2, 0.6, seed=3),
            bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=4),
        ),
        return_sequences=True,
    )
    layer = SNNDense(6, neuron=ds.LIF(6, **lif))
    reference(x)
    layer(x)
    layer.set_weights(reference.get_weights())
    calls.clear()
    results, expected = outputs_and_gradients((layer, reference), x)
    assert len(calls) == 1  # the layer, not the reference cell
    assert 0 < results[0].numpy().sum() < results[0].numpy().size
    assert len(layer.trainable_weights) == 4  # kernel, bias, decay, threshold
    assert_same(results, expected, 1e-5)

    frames = tf.constant((rng.random((2, 6, 8, 8, 2)) < 0.4).astype(np.float32))
    conv_kwargs = dict(strides=2, padding="same", neuron=ds.LIF(3, **lif))
    conv, conv_loop = SNNConv2D(3, 3, **conv_kwargs), SNNConv2D(3, 3, implementation="reference", **conv_kwargs)
    conv(frames)
    conv_loop(frames)
    conv_loop.set_weights(conv.get_weights())
    calls.clear()
    results = outputs_and_gradients((conv, conv_loop), frames)
    assert calls == [tf.TensorShape([2, 6, 4, 4, 3])]
    assert 0 < results[0][0].numpy().sum() < results[0][0].numpy().size
    assert_same(results[0], results[1], 1e-5)


def test_fit_runs_the_kernels_and_outer_xla_the_loops(rng, monkeypatch):
    calls = kernel_calls(monkeypatch)
    x = (rng.random((16, 12, 7)) < 0.4).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = keras.Sequential([keras.Input((12, 7)), SNNDense(6, neuron=ds.LIF(6, threshold=0.5)), ds.LeakyReadout(3)])
    model.compile(keras.optimizers.Adam(0.01), ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and calls
    if ds.KERAS_3:  # the whole train step compiled by XLA: the compiled loops run inside it
        model.compile(keras.optimizers.Adam(0.01), ds.MaxOverTimeCrossEntropy(), jit_compile=True)
        calls.clear()
        assert np.isfinite(model.fit(x, y, epochs=1, batch_size=8, verbose=0).history["loss"][0])
        assert not calls


def test_inference_may_reuse_the_currents_buffer_safely(rng):
    """The forward kernel writes the spikes into the currents' buffer when TensorFlow hands it
    over; a currents tensor still used afterwards must keep its values."""
    currents, v0, beta, threshold, bias = problem(rng, (2, 6, 5))
    library = lif_ops.load()

    @tf.function
    def both(c):
        doubled = c * 2.0
        spikes, _ = library.dense_snns_lif_forward(doubled, v0, beta, threshold, bias, reset="subtract")
        return spikes, doubled + 0.0

    @tf.function
    def only_spikes(c):
        return library.dense_snns_lif_forward(c * 2.0, v0, beta, threshold, bias, reset="subtract")[0]

    spikes, doubled = both(currents)
    np.testing.assert_array_equal(doubled.numpy(), currents.numpy() * 2.0)
    np.testing.assert_array_equal(only_spikes(currents).numpy(), spikes.numpy())
    assert set(np.unique(spikes.numpy())) <= {0.0, 1.0}


def test_layer_implementation_chooses_kernel_or_loops(rng, monkeypatch):
    """ "kernel" demands the kernels (ImplementationError naming the reason), "compiled" never uses them."""
    calls = kernel_calls(monkeypatch)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    SNNDense(4, neuron=ds.LIF(4), implementation="kernel")(x)
    assert len(calls) == 1
    SNNDense(4, neuron=ds.LIF(4), implementation="compiled")(x)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="recurrent kernel"):
        SNNDense(4, neuron=ds.LIF(4), self_recurrent=True, implementation="kernel")(x)
    with pytest.raises(ds.ImplementationError, match="cannot run SNNDense .* not 'alif'"):
        SNNDense(4, neuron=ds.ALIF(4), implementation="kernel")(x)
    with pytest.raises(ds.ImplementationError, match="implementation must be one of"):
        SNNDense(4, implementation="cpp")
    assert SNNDense.from_config(SNNDense(4, implementation="kernel").get_config()).implementation == "kernel"


def test_op_without_the_library_says_why(rng, monkeypatch):
    monkeypatch.setattr(lif_ops, "op_available", lambda: False)
    monkeypatch.setattr(lif_ops, "load_error", lambda: "no C++ compiler found (test)")
    currents, v0, beta, threshold, bias = problem(rng, (2, 4, 3))
    with pytest.raises(ValueError, match="library is unavailable: no C\\+\\+ compiler found \\(test\\)"):
        run("kernel", currents, v0, beta, threshold, bias)
    auto = run("auto", currents, v0, beta, threshold, bias)  # the loops instead
    assert_same(auto, run("compiled", currents, v0, beta, threshold, bias), 1e-6)


def test_python_float_parameters_stay_exact_in_float64(rng):
    """beta = 0.9 given as a Python float reaches the float64 kernels as the float64 0.9, not
    as float32 0.9 widened (which moves every membrane by about 1e-8)."""
    currents, v0, _, threshold, bias = problem(rng, (2, 30, 7), dtype=np.float64)
    params = neurons.LIFParams(0.9, threshold, "subtract", True, surrogates.Surrogate())
    results = []
    for implementation in ("kernel", "compiled"):
        with tf.GradientTape() as tape:
            tape.watch([currents, v0])
            spikes, (final_v,) = fused.fused_recurrence(
                neurons.get("lif"), currents, [v0], params, time_axis=1, bias=bias, implementation=implementation
            )
            loss = tf.reduce_sum(spikes * tf.cos(currents)) + tf.reduce_sum(final_v)
        results.append([spikes, final_v] + tape.gradient(loss, [currents, v0]))
    for got, want in zip(*results):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
