"""Fused sequence layers against the reference keras.layers.RNN(SNNBlock) and the loop path."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import compat, keras, neurons
from dense_snns.layers import SNNConv1D, SNNConv2D, SNNDense

from conftest import compile_kwargs

import helpers
from helpers import assert_same_spikes_and_close_gradients, ramp_loss, spike_raster

T, B, F, N = 12, 3, 7, 6

SPIKING = [model for model in neurons.MODELS.values() if model.spiking]
NEURON_CASES = helpers.spiking_model_cases()
DEFAULT_CASES = [(name, kwargs) for name, kwargs in NEURON_CASES if not kwargs]


def neuron(name, units=N, **kwargs):
    """A cell of model `name` with its thresholds lowered to 0.3, so that the test inputs
    make it fire."""
    defaults = {p.name: 0.3 for p in neurons.get(name).params if p.kind == "threshold"}
    return ds.NEURON_MODELS[name](units, **{**defaults, **kwargs})


def inputs(rng, shape=(B, T, F), p=0.4):
    return spike_raster(rng, shape, p)


def compare_with_reference(rng, name, kwargs, self_recurrent, jit_compile, mask=None, dtype="float32"):
    """Identical spikes; gradients equal to float round-off (1e-5 of the gradient's scale in
    float32: XLA sums in another order; 1e-10 in float64)."""
    x = tf.cast(inputs(rng), dtype)
    ref_cell = ds.SNNBlock(
        N,
        neuron=neuron(name, dtype=dtype, **kwargs),
        self_recurrent=self_recurrent,
        kernel_initializer=keras.initializers.RandomNormal(0.2, 0.6, seed=3),
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=4),
        dtype=dtype,
    )
    reference = keras.layers.RNN(ref_cell, return_sequences=True, zero_output_for_mask=True, dtype=dtype)
    layer = SNNDense(
        N,
        neuron=neuron(name, dtype=dtype, **kwargs),
        self_recurrent=self_recurrent,
        jit_compile=jit_compile,
        dtype=dtype,
    )
    reference(x)
    layer(x)
    layer.set_weights(reference.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out_ref = reference(x, mask=mask)
        out = layer(x, mask=mask)
        loss_ref, loss = ramp_loss(out_ref), ramp_loss(out)
    np.testing.assert_array_equal(out.numpy(), out_ref.numpy())
    assert 0 < out.numpy().sum() < out.numpy().size, "the case must exercise spiking and silence"
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    grads_ref = tape.gradient(loss_ref, [x] + reference.trainable_weights)
    assert len(grads) == len(grads_ref)
    tolerance = 1e-5 if dtype == "float32" else 1e-10
    for g, g_ref in zip(grads, grads_ref):
        scale = np.abs(g_ref.numpy()).max() + 1e-12
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("name,kwargs", NEURON_CASES)
@pytest.mark.parametrize("self_recurrent", [False, True])
def test_fused_matches_reference_rnn(rng, name, kwargs, self_recurrent):
    compare_with_reference(rng, name, kwargs, self_recurrent, jit_compile=True)


@pytest.mark.parametrize("name,kwargs", DEFAULT_CASES)
def test_fused_matches_reference_in_float64(rng, name, kwargs):
    compare_with_reference(rng, name, kwargs, True, jit_compile=True, dtype="float64")


@pytest.mark.parametrize("name,kwargs", DEFAULT_CASES)
def test_fused_without_xla_and_without_stopped_reset(rng, name, kwargs):
    compare_with_reference(rng, name, {**kwargs, "stop_reset_grad": False}, True, jit_compile=False)
    compare_with_reference(rng, name, {**kwargs, "stop_reset_grad": False}, False, jit_compile=True)


@pytest.mark.parametrize("name", [model.name for model in SPIKING])
def test_trainable_neuron_parameters_get_the_same_gradients(rng, name):
    trainable = [p.name for p in neurons.get(name).params if p.trainable]
    compare_with_reference(rng, name, {"trainable_params": trainable}, True, jit_compile=True)


def test_masked_steps_match_reference(rng):
    mask = tf.constant(np.arange(T)[None, :] < np.array([[T], [T - 4], [5]]))
    compare_with_reference(rng, "lif", {}, True, jit_compile=True, mask=mask)


def test_loop_implementation_equals_fused(rng):
    x = inputs(rng)
    fused_layer = SNNDense(N, neuron=neuron("alif"), self_recurrent=True, implementation="compiled")
    loop_layer = SNNDense(N, neuron=neuron("alif"), self_recurrent=True, implementation="reference")
    fused_layer(x)
    loop_layer(x)
    loop_layer.set_weights(fused_layer.get_weights())
    np.testing.assert_array_equal(fused_layer(x).numpy(), loop_layer(x).numpy())


def test_return_state_initial_state_and_last_step(rng):
    x = inputs(rng)
    layer = SNNDense(N, neuron=neuron("cuba_lif"), self_recurrent=True, return_state=True)
    out, *states = layer(x)
    assert len(states) == 3 and all(s.shape == (B, N) for s in states)
    # Splitting the sequence and passing the states on gives the same spikes.
    first, *mid = layer(x[:, :5])
    second, *_ = layer(x[:, 5:], initial_state=mid)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), out.numpy())
    last = SNNDense(N, neuron=neuron("cuba_lif"), self_recurrent=True, return_sequences=False)
    last(x)
    last.set_weights(layer.get_weights())
    np.testing.assert_array_equal(last(x).numpy(), out.numpy()[:, -1])
    with pytest.raises(ValueError, match="`initial_state` must hold 3 tensors, got 1"):
        layer(x, initial_state=states[:1])


def test_stateful_layer_continues_across_calls(rng):
    x = inputs(rng)
    whole = SNNDense(N, neuron=neuron("lif"))
    expected = whole(x).numpy()
    stream_in = keras.Input((None, F), batch_size=B)
    stateful = SNNDense(N, neuron=neuron("lif"), stateful=True)
    model = keras.Model(stream_in, stateful(stream_in))
    stateful.cell.set_weights(whole.cell.get_weights())
    assert len(stateful.non_trainable_weights) == 1  # the carried membrane, saved with the model
    chunks = [model(x[:, i : i + 4]).numpy() for i in range(0, T, 4)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), expected)
    stateful.reset_states()
    np.testing.assert_array_equal(model(x[:, :4]).numpy(), expected[:, :4])


def test_fit_under_default_strategy_and_outer_xla(rng):
    x = inputs(rng, (16, T, F)).numpy()
    y = rng.integers(0, 3, 16)
    strategy = tf.distribute.get_strategy()
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((T, F)), SNNDense(N, neuron=neuron("lif"), self_recurrent=True), ds.LeakyReadout(3)]
        )
        model.compile(keras.optimizers.Adam(0.01), ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    if ds.KERAS_3:  # the whole train step compiled by XLA, the fused loops inlined into it
        model.compile(keras.optimizers.Adam(0.01), ds.MaxOverTimeCrossEntropy(), jit_compile=True)
        assert np.isfinite(model.fit(x, y, epochs=1, batch_size=8, verbose=0).history["loss"][0])


def test_mixed_precision(rng):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = SNNDense(N, neuron=neuron("lif"), self_recurrent=True, return_state=True)
        x = inputs(rng)
        with tf.GradientTape() as tape:
            out, *states = layer(x)
            loss = tf.reduce_sum(tf.cast(out, tf.float32))
        assert out.dtype == tf.float16
        assert all(s.dtype == tf.float32 for s in states)  # neuron state kept in float32
        grads = tape.gradient(loss, layer.trainable_weights)
        assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize(
    "conv_class,shape,padding",
    [(SNNConv2D, (B, 6, 9, 9, 2), "same"), (SNNConv1D, (B, 6, 11, 3), "same"), (SNNConv1D, (B, 6, 11, 3), "causal")],
)
def test_conv_fused_matches_loop(rng, conv_class, shape, padding):
    x = inputs(rng, shape)
    kwargs = dict(filters=4, kernel_size=3, strides=2, padding=padding, neuron=neuron("lif", 4, threshold=0.3))
    fused_layer = conv_class(
        **kwargs,
        kernel_initializer=keras.initializers.RandomNormal(0.1, 0.5, seed=1),
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.2, seed=2),
    )
    loop_layer = conv_class(**{**kwargs, "neuron": neuron("lif", 4, threshold=0.3)}, implementation="reference")
    fused_layer(x)
    loop_layer(x)
    loop_layer.set_weights(fused_layer.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = fused_layer(x), loop_layer(x)
        la, lb = ramp_loss(a), ramp_loss(b)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    assert a.shape == fused_layer.compute_output_shape(x.shape)
    for g, g_ref in zip(
        tape.gradient(la, [x] + fused_layer.trainable_weights), tape.gradient(lb, [x] + loop_layer.trainable_weights)
    ):
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-5 * np.abs(g_ref.numpy()).max())


def test_save_load_fused_layers(tmp_path, rng):
    frames = keras.Input((6, 9, 9, 2))
    h = SNNConv2D(4, 3, strides=2, neuron=ds.LIF(4, trainable_decays=True))(frames)
    h = keras.layers.Reshape((6, -1))(h)
    h = SNNDense(5, neuron=ds.ALIF(5), self_recurrent=True)(h)
    model = keras.Model(frames, ds.LeakyReadout(2)(h))
    x = inputs(rng, (2, 6, 9, 9, 2))
    path = str(tmp_path / "fused.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    layer = model.layers[3]
    clone = SNNDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_bad_inputs_name_the_argument(rng):
    layer = SNNDense(N)
    with pytest.raises(ValueError, match="inputs.*rank 3"):
        layer(tf.zeros([B, F]))
    with pytest.raises(ValueError, match="time dimension of 0"):
        SNNDense(N)(tf.zeros([B, 0, F]))
    layer(tf.zeros([B, T, F]))
    with pytest.raises(
        ValueError, match=r"`inputs` of shape \(3, 12, 9\) have features \[9\], but the layer \(as built\) has \[7\]"
    ):
        layer(tf.zeros([B, T, 9]))
    with pytest.raises(TypeError, match="inputs.*numeric"):
        layer(tf.fill([B, T, F], "x"))
    with pytest.raises(ValueError, match="implementation"):
        SNNDense(N, implementation="cudnn")
    with pytest.raises(ValueError, match="batch_size"):
        keras.Sequential([keras.Input((T, F)), SNNDense(N, stateful=True)])
    with pytest.raises(ValueError, match="rank 5"):
        SNNConv2D(2, 3)(tf.zeros([B, T, 8, 8]))
    with pytest.raises(ValueError, match="units"):
        SNNDense(0)


def test_compiled_loops_are_traced_once_per_configuration(rng, monkeypatch):
    from dense_snns import fused

    monkeypatch.setattr(fused, "SHARED_STEPS", 10_000)  # no step of an earlier test evicted meanwhile

    def tracing_counts():
        return {
            key: (f.experimental_get_tracing_count(), b.experimental_get_tracing_count())
            for key, (f, b) in fused.shared_loops().items()
        }

    x = inputs(rng)
    layer = SNNDense(
        N, neuron=neuron("lif", beta=0.77), self_recurrent=True
    )  # recurrent: the loops, not the LIF kernel
    for i in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        tape.gradient(loss, layer.trainable_weights)
        if i == 0:
            counts = tracing_counts()
    assert tracing_counts() == counts
    # A layer of another configuration gets its own loops and leaves these untouched.
    other = SNNDense(N, neuron=neuron("alif", spike_func="boxcar"))
    other(x)
    after = tracing_counts()
    assert all(after[key] == value for key, value in counts.items())
    assert len(after) > len(counts)
    SNNDense(N, neuron=neuron("lif", beta=0.77), self_recurrent=True)(x)  # an equal layer reuses the traces
    assert all(tracing_counts()[key] == value for key, value in counts.items())


def outputs_and_gradients(layer, x, **call_kwargs):
    """[outputs, d loss/d x, d loss/d each trainable weight] of `ramp_loss`."""
    return helpers.outputs_and_gradients(layer, x, loss_fn=ramp_loss, **call_kwargs)


def assert_same_outputs_and_gradients(results, reference):
    """Identical outputs; gradients equal to float round-off (the loops sum in another order)."""
    assert_same_spikes_and_close_gradients(results, reference, rtol=1e-6)


@pytest.mark.parametrize("every", [1, 5, T, T + 3])
@pytest.mark.parametrize("jit_compile", [True, False])
def test_checkpointed_states_give_the_same_spikes_and_gradients(rng, every, jit_compile):
    """checkpoint_every=k (T=12 not a multiple of 5) recomputes the states of each segment in
    the backward pass: the result equals keeping every state."""
    x = inputs(rng)
    mask = tf.constant(np.arange(T)[None, :] < np.array([[T], [T - 4], [5]]))
    kwargs = dict(
        neuron=neuron("alif"),
        self_recurrent=True,
        jit_compile=jit_compile,
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=4),
    )
    plain, checkpointed = SNNDense(N, checkpoint_every=None, **kwargs), SNNDense(N, checkpoint_every=every, **kwargs)
    plain(x)
    checkpointed(x)
    checkpointed.set_weights(plain.get_weights())
    reference = outputs_and_gradients(plain, x, mask=mask)
    assert 0 < reference[0].numpy().sum() < reference[0].numpy().size
    assert_same_outputs_and_gradients(outputs_and_gradients(checkpointed, x, mask=mask), reference)
    assert SNNDense.from_config(checkpointed.get_config()).checkpoint_every == every


def test_checkpoint_every_must_be_positive():
    for bad in (0, -2, 2.5, True, "always"):
        with pytest.raises(ValueError, match="checkpoint_every"):
            SNNDense(N, checkpoint_every=bad)


def test_auto_checkpointing_resolves_by_sequence_length():
    from dense_snns import fused

    assert SNNDense(N).checkpoint_every == "auto"
    assert [fused.resolve_checkpoint_every("auto", steps) for steps in (None, 12, 255, 256, 1000, 1025, 4000)] == [
        None,
        None,
        None,
        32,
        32,
        33,
        64,
    ]
    assert fused.resolve_checkpoint_every(None, 4000) is None
    assert fused.resolve_checkpoint_every(7, 12) == 7


def test_auto_checkpointing_of_a_long_sequence_gives_the_same_spikes_and_gradients(rng, monkeypatch, tf_loops_only):
    """The default ("auto") on a 300-step sequence keeps every 32nd state (seen by the loop)
    and gives what keeping every state gives."""
    from dense_snns import fused

    steps = 300
    x = tf.constant((rng.random((2, steps, F)) < 0.3).astype(np.float32))
    # both through one compiler: TensorFlow before 2.9 runs checkpointed loops without XLA
    jit = ds.compat.TF_VERSION >= (2, 9)
    kwargs = dict(neuron=neuron("lif"), bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=4))
    plain = SNNDense(N, checkpoint_every=None, jit_compile=jit, **kwargs)
    auto = SNNDense(N, jit_compile=jit, **kwargs)
    plain(x[:, :2])
    auto(x[:, :2])
    auto.set_weights(plain.get_weights())
    seen = []
    original = fused.compiled_recurrence

    def spy(*args, **kwargs):
        seen.append(kwargs.get("checkpoint_every", args[7] if len(args) > 7 else None))
        return original(*args, **kwargs)

    monkeypatch.setattr(fused, "compiled_recurrence", spy)
    reference = outputs_and_gradients(plain, x)
    assert 0 < reference[0].numpy().sum() < reference[0].numpy().size
    assert_same_outputs_and_gradients(outputs_and_gradients(auto, x), reference)
    assert seen == [None, 32]


def test_inference_keeps_no_states_yet_gives_the_same_gradients(rng, monkeypatch):
    x = inputs(rng)
    layer = SNNDense(
        N,
        neuron=neuron("cuba_lif"),
        self_recurrent=True,
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=4),
    )
    from dense_snns import fused

    monkeypatch.setattr(fused, "SHARED_STEPS", 10_000)

    def forward_traces():
        return sum(f.experimental_get_tracing_count() for f, _ in fused.shared_loops().values())

    reference = outputs_and_gradients(layer, x, training=None)
    traces = forward_traces()
    assert_same_outputs_and_gradients(outputs_and_gradients(layer, x, training=False), reference)
    assert forward_traces() == traces + 1  # inference ran the forward loop that keeps no states


def test_a_default_model_fires_in_every_layer_on_the_main_jobs_data():
    """The randman data of the main example (1% input spikes) through layers built with all
    defaults: every layer fires, with the default neuron model."""
    from dense_snns.data import randman_dataset

    compat.set_random_seed(0)
    train, _ = randman_dataset(batch_size=32, seed=0)
    x, _ = next(iter(train))
    hidden = SNNDense(64)(x)
    rates = {
        "SNNDense": hidden,
        "SNNDense, second": SNNDense(64)(hidden),
        "SNNConv1D": SNNConv1D(8, 5)(x[..., None]),
        "RNN(SNNBlock)": keras.layers.RNN(ds.SNNBlock(64), return_sequences=True)(x),
    }
    for name, spikes in rates.items():
        assert float(tf.reduce_mean(spikes)) > 1e-4, f"{name} stays silent"
