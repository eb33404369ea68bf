"""LeakyReadout against keras.layers.RNN(LeakyReadoutCell) and a NumPy leaky integrator:
V[t] = beta V[t-1] + x[t] W + b, V[-1] = 0, output V[t]."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_snns as ds
from dense_snns import keras


def np_leaky(x, w, b, beta):
    """float64 reference: [batch, time, features] -> [batch, time, units]."""
    x = np.asarray(x, np.float64)
    beta = np.asarray(beta, np.float64)
    v = np.zeros((x.shape[0], w.shape[1]))
    out = np.empty((x.shape[0], x.shape[1], w.shape[1]))
    for t in range(x.shape[1]):
        v = beta * v + x[:, t] @ w + b
        out[:, t] = v
    return out


def random_init(seed):
    return keras.initializers.RandomNormal(0.0, 1.0, seed=seed)


@pytest.mark.parametrize("use_bias", [True, False])
def test_readout_matches_rnn_of_cell_and_numpy(rng, use_bias):
    x = rng.normal(size=(3, 9, 5)).astype(np.float32)
    readout = ds.LeakyReadout(4, beta=0.8, use_bias=use_bias, bias_initializer=random_init(1))
    out = readout(x).numpy()
    rnn = keras.layers.RNN(ds.LeakyReadoutCell(4, beta=0.8, use_bias=use_bias), return_sequences=True)
    rnn(x)  # build
    rnn.set_weights(readout.get_weights())
    np.testing.assert_allclose(out, rnn(x).numpy(), rtol=1e-5, atol=1e-5)

    w = readout.cell.kernel.numpy()
    b = readout.cell.bias.numpy() if use_bias else np.zeros(4)
    assert (readout.cell.bias is not None) == use_bias
    if use_bias:
        assert np.any(b != 0)
    np.testing.assert_allclose(out, np_leaky(x, w, b, 0.8), rtol=1e-5, atol=1e-5)


def test_long_sequence_is_checkpointed_and_matches_the_cell(rng, checkpoint_choices, tf_loops_only):
    """T = 300: the compiled loop keeps every 32nd state ("auto") and still gives the
    integrator's output and the RNN cell's gradients."""
    x = tf.constant(rng.normal(size=(2, 300, 3)).astype(np.float32))
    readout = ds.LeakyReadout(2, beta=0.9, bias_initializer=random_init(1))
    rnn = keras.layers.RNN(ds.LeakyReadoutCell(2, beta=0.9), return_sequences=True)
    readout(x[:, :2])
    rnn(x[:, :2])
    rnn.set_weights(readout.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out, ref = readout(x), rnn(x)
        weights = np.linspace(-1.0, 1.0, 300)[None, :, None].astype(np.float32)
        loss, loss_ref = tf.reduce_sum(out * weights), tf.reduce_sum(ref * weights)
    assert 32 in checkpoint_choices
    w, b = readout.cell.kernel.numpy(), readout.cell.bias.numpy()
    np.testing.assert_allclose(out.numpy(), np_leaky(x.numpy(), w, b, 0.9), rtol=1e-4, atol=1e-4)
    for g, g_ref in zip(
        tape.gradient(loss, [x] + readout.trainable_weights), tape.gradient(loss_ref, [x] + rnn.trainable_weights)
    ):
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), rtol=1e-4, atol=1e-4 * np.abs(g_ref.numpy()).max())


def test_readout_hand_computed():
    """One input unit, weight 1, no bias, beta 0.5: an impulse decays geometrically."""
    readout = ds.LeakyReadout(1, beta=0.5, use_bias=False, kernel_initializer="ones")
    x = np.array([[[1.0], [0.0], [0.0], [2.0]]], np.float32)
    np.testing.assert_allclose(readout(x).numpy()[0, :, 0], [1.0, 0.5, 0.25, 2.125])


def test_spike_input_dtypes(rng):
    spikes = rng.random((2, 6, 3)) < 0.5
    readout = ds.LeakyReadout(2)
    reference = readout(spikes.astype(np.float32)).numpy()
    for dtype in (np.bool_, np.int32):
        out = readout(spikes.astype(dtype))
        assert out.dtype == tf.float32
        np.testing.assert_array_equal(out.numpy(), reference)


def test_per_neuron_beta(rng):
    betas = [0.5, 0.7, 0.95]
    x = rng.normal(size=(2, 8, 4)).astype(np.float32)
    readout = ds.LeakyReadout(3, beta=betas, bias_initializer=random_init(2))
    out = readout(x).numpy()
    w, b = readout.cell.kernel.numpy(), readout.cell.bias.numpy()
    np.testing.assert_allclose(out, np_leaky(x, w, b, betas), rtol=1e-5, atol=1e-5)
    # each unit really uses its own decay: a scalar beta gives different outputs
    assert not np.allclose(out, np_leaky(x, w, b, 0.7), atol=1e-3)
    assert readout.get_config()["beta"] == betas
    with pytest.raises(ValueError, match="beta"):
        ds.LeakyReadout(3, beta=[0.5, 0.7])


def test_trainable_decay_gets_the_analytic_gradient(rng):
    """d sum(V) / d logit(beta) against the NumPy recursion dV[t] = V[t-1] + beta dV[t-1]."""
    betas = np.array([0.6, 0.8, 0.9])
    x = rng.normal(size=(2, 7, 3)).astype(np.float32)
    readout = ds.LeakyReadout(3, beta=list(betas), trainable_decay=True, bias_initializer=random_init(3))
    readout(x)
    logit = readout.cell.beta_logit
    assert len(readout.trainable_weights) == 3 and any(w is logit for w in readout.trainable_weights)
    np.testing.assert_allclose(tf.sigmoid(logit).numpy(), betas, rtol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(readout(x))
    grads = dict(zip([id(w) for w in readout.trainable_weights], tape.gradient(loss, readout.trainable_weights)))
    grad_logit = grads[id(logit)].numpy()
    assert np.all(grad_logit != 0)

    w, b = readout.cell.kernel.numpy().astype(np.float64), readout.cell.bias.numpy().astype(np.float64)
    v = np.zeros((2, 3))
    dv = np.zeros((2, 3))
    total = np.zeros(3)
    for t in range(7):
        dv = v + betas * dv
        v = betas * v + x[:, t] @ w + b
        total += dv.sum(axis=0)
    np.testing.assert_allclose(grad_logit, total * betas * (1 - betas), rtol=1e-4, atol=1e-5)


def test_trainable_decay_is_learned_and_frozen_decay_is_not_a_weight(rng):
    assert len(ds.LeakyReadout(2).trainable_weights) == 0  # unbuilt
    frozen = ds.LeakyReadout(2, use_bias=False)
    frozen.build((None, 5, 3))
    assert [tuple(w.shape) for w in frozen.trainable_weights] == [(3, 2)]
    readout = ds.LeakyReadout(2, beta=0.9, trainable_decay=True)
    x = tf.constant(rng.normal(size=(4, 6, 3)).astype(np.float32))
    readout(x)
    before = readout.cell.beta_logit.numpy().copy()
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(readout(x) - 1.0))
    optimizer.apply_gradients(zip(tape.gradient(loss, readout.trainable_weights), readout.trainable_weights))
    assert np.all(readout.cell.beta_logit.numpy() != before)


@pytest.mark.parametrize("batch,time,features,units", [(1, 1, 1, 1), (3, 10, 5, 2), (2, 4, 7, 6)])
def test_output_shape(batch, time, features, units):
    readout = ds.LeakyReadout(units)
    assert tuple(readout(tf.zeros([batch, time, features])).shape) == (batch, time, units)
    assert tuple(readout.compute_output_shape((None, time, features))) == (None, time, units)
    inputs = keras.Input((time, features))
    assert tuple(ds.LeakyReadout(units)(inputs).shape) == (None, time, units)


def test_readout_in_model_matches_numpy(rng):
    """Inside a functional model (graph mode via predict), with a variable time length."""
    inputs = keras.Input((None, 4))
    readout = ds.LeakyReadout(3, beta=0.7, bias_initializer=random_init(4))
    model = keras.Model(inputs, readout(inputs))
    for time in (5, 11):
        x = rng.normal(size=(2, time, 4)).astype(np.float32)
        np.testing.assert_allclose(
            model.predict(x, verbose=0),
            np_leaky(x, readout.cell.kernel.numpy(), readout.cell.bias.numpy(), 0.7),
            rtol=1e-5,
            atol=1e-5,
        )


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 4),
    time=st.integers(1, 8),
    features=st.integers(1, 5),
    units=st.integers(1, 5),
    beta=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_property_readout_equals_numpy(batch, time, features, units, beta, seed):
    r = np.random.default_rng(seed)
    x = (r.random((batch, time, features)) < 0.5).astype(np.float32)
    readout = ds.LeakyReadout(
        units, beta=beta, kernel_initializer=random_init(seed), bias_initializer=random_init(seed + 1)
    )
    out = readout(x).numpy()
    assert out.shape == (batch, time, units)
    expected = np_leaky(x, readout.cell.kernel.numpy(), readout.cell.bias.numpy(), beta)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_trainable_decay_is_the_earlier_name_of_trainable_params():
    """Readouts name their trained parameters as the neuron cells do; configs saved with
    ``trainable_decay`` still load."""
    readout = ds.LeakyReadout(3, trainable_params=["beta"])
    assert readout.get_config()["trainable_params"] == ["beta"]
    config = {k: v for k, v in readout.get_config().items() if k != "trainable_params"}
    old = ds.LeakyReadout.from_config(dict(config, trainable_decay=True))
    assert old.get_config() == ds.LeakyReadout.from_config(readout.get_config()).get_config()
    assert ds.LeakyReadoutCell(2, trainable_decay=True).trainable_decay
