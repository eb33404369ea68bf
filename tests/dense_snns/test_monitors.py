"""Firing rates, the firing-rate regulariser and SpikeMonitor (pass-through, fit-log metric,
added penalty) against NumPy."""

import math

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras

from conftest import compile_kwargs

TIME, FEATURES, CLASSES = 5, 6, 3


def np_rates(spikes):
    spikes = np.asarray(spikes, np.float64)
    return spikes.reshape(-1, spikes.shape[-1]).mean(axis=0)


def np_penalty(spikes, target, strength):
    return strength * np.mean((np_rates(spikes) - target) ** 2)


def spikes_input(rng, batch, p=0.3, time=TIME, features=FEATURES):
    return (rng.random((batch, time, features)) < p).astype(np.float32)


# --- firing_rates -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 4), (3, 7, 4), (2, 3, 5, 4)])
def test_firing_rates_match_numpy(rng, shape):
    spikes = (rng.random(shape) < 0.4).astype(np.float32)
    rates = ds.firing_rates(tf.constant(spikes))
    assert tuple(rates.shape) == (shape[-1],)
    np.testing.assert_allclose(rates.numpy(), np_rates(spikes), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.float64])
def test_firing_rates_of_bool_and_int_spikes(rng, dtype):
    spikes = rng.random((3, 6, 4)) < 0.5
    rates = ds.firing_rates(tf.constant(spikes.astype(dtype)))
    assert rates.dtype == tf.float32
    np.testing.assert_allclose(rates.numpy(), np_rates(spikes), rtol=1e-6)


def test_firing_rates_hand_computed():
    spikes = np.array([[[1, 0], [1, 0], [0, 0], [1, 1]]], np.float32)  # [1, 4 steps, 2 units]
    np.testing.assert_allclose(ds.firing_rates(tf.constant(spikes)).numpy(), [0.75, 0.25])


# --- FiringRateRegularizer --------------------------------------------------------------


@pytest.mark.parametrize("target,strength", [(0.05, 1.0), (0.2, 3.0), (0.0, 0.5), (1.0, 0.0)])
def test_regularizer_matches_numpy_formula(rng, target, strength):
    spikes = spikes_input(rng, batch=4, p=0.25)
    value = float(ds.FiringRateRegularizer(target=target, strength=strength)(tf.constant(spikes)))
    assert value == pytest.approx(np_penalty(spikes, target, strength), rel=1e-5, abs=1e-9)


def test_regularizer_defaults_and_hand_computed_value():
    reg = ds.FiringRateRegularizer()
    assert (reg.target, reg.strength) == (0.05, 1.0)
    spikes = tf.constant([[[1.0, 0.0], [0.0, 0.0]]])  # rates [0.5, 0.0]
    expected = ((0.5 - 0.05) ** 2 + (0.0 - 0.05) ** 2) / 2
    assert float(reg(spikes)) == pytest.approx(expected, rel=1e-6)


def test_regularizer_config_round_trip():
    reg = ds.FiringRateRegularizer(0.1, 0.5)
    clone = ds.FiringRateRegularizer.from_config(reg.get_config())
    assert (clone.target, clone.strength) == (0.1, 0.5)
    monitor = ds.SpikeMonitor(regularizer=reg, name="mon")
    restored = ds.SpikeMonitor.from_config(monitor.get_config())
    assert isinstance(restored.regularizer, ds.FiringRateRegularizer)
    assert (restored.regularizer.target, restored.regularizer.strength) == (0.1, 0.5)
    assert restored.metric_name == "mon_rate"


@pytest.mark.parametrize("target", [-0.01, 1.01, 2, math.nan])
def test_regularizer_rejects_bad_target(target):
    with pytest.raises(ValueError, match="target"):
        ds.FiringRateRegularizer(target=target)


@pytest.mark.parametrize("strength", [-1.0, -1e-9, math.nan])
def test_regularizer_rejects_bad_strength(strength):
    with pytest.raises(ValueError, match="strength"):
        ds.FiringRateRegularizer(strength=strength)


# --- SpikeMonitor -----------------------------------------------------------------------


def test_monitor_passes_input_through_unchanged(rng):
    spikes = spikes_input(rng, batch=3)
    monitor = ds.SpikeMonitor(regularizer=ds.FiringRateRegularizer(0.1, 1.0), name="mon")
    out = monitor(tf.constant(spikes))
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), spikes)
    assert monitor.compute_output_shape((None, TIME, FEATURES)) == (None, TIME, FEATURES)

    inputs = keras.Input((TIME, FEATURES))
    model = keras.Model(inputs, ds.SpikeMonitor(name="mon2")(inputs))
    assert tuple(model.output_shape) == (None, TIME, FEATURES)
    np.testing.assert_array_equal(model.predict(spikes, verbose=0), spikes)


def monitored_model(regularizer=None):
    """Monitor on the input spikes, then a zero-initialised readout: until the weights move the
    outputs are all zero, so the max-over-time cross-entropy is exactly log(CLASSES)."""
    inputs = keras.Input((TIME, FEATURES))
    h = ds.SpikeMonitor(regularizer=regularizer, name="mon")(inputs)
    out = ds.LeakyReadout(CLASSES, kernel_initializer="zeros")(h)
    model = keras.Model(inputs, out)
    # learning rate 0: the weights (and so the cross-entropy) stay fixed during fit
    model.compile(keras.optimizers.SGD(0.0), ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    return model


def test_monitor_rate_metric_in_fit_history(rng):
    # two batches of equal size with different rates: the epoch value is the overall mean
    x = np.concatenate([spikes_input(rng, 4, p=0.2), spikes_input(rng, 4, p=0.6)])
    y = rng.integers(0, CLASSES, 8)
    x_val = spikes_input(rng, 4, p=0.9)
    history = (
        monitored_model()
        .fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(x_val, y[:4]))
        .history
    )
    assert "mon_rate" in history and "val_mon_rate" in history
    assert x[:4].mean() != x[4:].mean()
    np.testing.assert_allclose(history["mon_rate"], [x.mean()] * 2, rtol=1e-6)
    np.testing.assert_allclose(history["val_mon_rate"], [x_val.mean()] * 2, rtol=1e-6)
    np.testing.assert_allclose(history["loss"], [math.log(CLASSES)] * 2, rtol=1e-6)


def test_monitor_rate_of_hidden_spikes(rng):
    """A monitor after a spiking block reports the block's true mean firing rate."""
    inputs = keras.Input((TIME, FEATURES))
    hidden = keras.layers.RNN(
        ds.SNNBlock(
            5, neuron=ds.LIF(5, threshold=0.3), kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=5)
        ),
        return_sequences=True,
    )(inputs)
    out = ds.LeakyReadout(CLASSES)(ds.SpikeMonitor(name="hidden")(hidden))
    model = keras.Model(inputs, out)
    model.compile(keras.optimizers.SGD(0.0), ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    x = spikes_input(rng, 8, p=0.5)
    spikes = keras.Model(inputs, hidden).predict(x, verbose=0)
    assert 0.0 < spikes.mean() < 1.0
    history = model.fit(x, rng.integers(0, CLASSES, 8), batch_size=8, epochs=1, verbose=0).history
    assert history["hidden_rate"][0] == pytest.approx(spikes.mean(), rel=1e-6)


def test_monitor_regularizer_is_added_to_the_loss(rng):
    target, strength = 0.1, 2.0
    x = np.concatenate([spikes_input(rng, 4, p=0.2), spikes_input(rng, 4, p=0.5)])
    y = rng.integers(0, CLASSES, 8)
    penalties = [np_penalty(x[:4], target, strength), np_penalty(x[4:], target, strength)]
    assert min(penalties) > 1e-3

    plain = monitored_model()
    regularized = monitored_model(ds.FiringRateRegularizer(target, strength))

    # the penalty of the whole batch is the model's only extra loss
    plain(x)
    regularized(x)
    assert len(plain.losses) == 0
    assert len(regularized.losses) == 1
    assert float(regularized.losses[0]) == pytest.approx(np_penalty(x, target, strength), rel=1e-5)

    # training loss = log(CLASSES) + mean over the batches of each batch's penalty
    fit = dict(batch_size=4, epochs=1, shuffle=False, verbose=0)
    loss_plain = plain.fit(x, y, **fit).history["loss"][0]
    loss_reg = regularized.fit(x, y, **fit).history["loss"][0]
    assert loss_plain == pytest.approx(math.log(CLASSES), rel=1e-6)
    assert loss_reg == pytest.approx(math.log(CLASSES) + np.mean(penalties), rel=1e-5)

    # evaluate on the whole batch at once
    loss_eval = regularized.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"]
    assert loss_eval == pytest.approx(math.log(CLASSES) + np_penalty(x, target, strength), rel=1e-5)
