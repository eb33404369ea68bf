"""Gradients of a two-block network: autodiff through the cells vs central finite differences.

The spike non-linearity is replaced by a smooth function (forward and exact derivative), so the
network is differentiable and finite differences are meaningful: this checks that every
gradient path of the cells (membrane, second state, reset, recurrence, readout) is wired right.
The surrogate derivatives themselves are checked against closed forms in test_surrogates.py.
"""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras, neurons


class SmoothSpike:
    def __call__(self, x):
        return tf.sigmoid(4.0 * x)


def two_block_model(neuron_name, stop_reset_grad):
    def neuron(units):
        trainable = [p.name for p in neurons.get(neuron_name).params if p.trainable]
        cell = ds.NEURON_MODELS[neuron_name](
            units, stop_reset_grad=stop_reset_grad, trainable_params=trainable, dtype="float64"
        )
        cell.spike_func = SmoothSpike()
        return cell

    f64 = {"dtype": "float64"}
    inputs = keras.Input((6, 3), dtype="float64")
    h = keras.layers.RNN(
        ds.SNNBlock(
            4,
            neuron=neuron(4),
            self_recurrent=True,
            kernel_initializer=keras.initializers.RandomNormal(0.5, 0.8, seed=1),
            **f64,
        ),
        return_sequences=True,
        **f64,
    )(inputs)
    h = keras.layers.RNN(
        ds.SNNBlock(3, neuron=neuron(3), kernel_initializer=keras.initializers.RandomNormal(0.3, 0.8, seed=2), **f64),
        return_sequences=True,
        **f64,
    )(h)
    out = ds.LeakyReadout(2, kernel_initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=3), **f64)(h)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("neuron_name", [name for name, model in neurons.MODELS.items() if model.spiking])
def test_gradient_matches_central_differences(rng, neuron_name):
    # stop_reset_grad=False: the true gradient (stopping the reset path is a deliberate
    # approximation, tested in test_neurons.py).
    model = two_block_model(neuron_name, stop_reset_grad=False)
    x = tf.constant(rng.random((2, 6, 3)), dtype=tf.float64)
    target = tf.constant(rng.normal(size=(2, 6, 2)), dtype=tf.float64)

    @tf.function
    def loss_fn():
        return tf.reduce_sum(tf.square(model(x) - target))

    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == len(model.trainable_weights) and all(g is not None for g in grads)

    eps = 1e-6
    checked = 0
    for var, grad in zip(model.trainable_weights, grads):
        flat = var.numpy().reshape(-1)
        for index in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            original = flat[index]
            values = []
            for delta in (eps, -eps):
                flat[index] = original + delta
                var.assign(flat.reshape(var.shape))
                values.append(float(loss_fn()))
            flat[index] = original
            var.assign(flat.reshape(var.shape))
            numeric = (values[0] - values[1]) / (2 * eps)
            analytic = grad.numpy().reshape(-1)[index]
            assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), (var.name, index)
            checked += 1
    assert checked >= 10


def test_surrogate_gradient_flows_through_hard_spikes(rng):
    """With the real (Heaviside) spike, gradients are the surrogate's: finite and non-zero."""
    block = ds.SNNBlock(5, neuron=ds.LIF(5, threshold=0.5))
    layer = keras.layers.RNN(block, return_sequences=True)
    x = tf.constant((rng.random((3, 10, 4)) < 0.5).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0) for g in grads)
