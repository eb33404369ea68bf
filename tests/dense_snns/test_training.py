"""End-to-end training of a tiny SNN: reproducible under a fixed seed, learns an easy task,
and runs inside the default tf.distribute strategy scope."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import KERAS_3, compat, keras

from conftest import compile_kwargs

TIME, FEATURES, HIDDEN, CLASSES = 10, 8, 12, 2


def random_spikes(n=32, seed=7):
    data_rng = np.random.default_rng(seed)
    x = (data_rng.random((n, TIME, FEATURES)) < 0.3).astype(np.float32)
    y = data_rng.integers(0, CLASSES, n)
    return x, y


def separable_spikes(n=64, seed=3):
    """Class 0 fires on the first half of the input units, class 1 on the second half."""
    data_rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    data_rng.shuffle(y)
    rates = np.where((np.arange(FEATURES) < FEATURES // 2)[None, :] == (y == 0)[:, None], 0.6, 0.02)
    x = (data_rng.random((n, TIME, FEATURES)) < rates[:, None, :]).astype(np.float32)
    return x, y


def build_model(learning_rate=0.01):
    inputs = keras.Input((TIME, FEATURES))
    h = keras.layers.RNN(ds.SNNBlock(HIDDEN, neuron=ds.LIF(HIDDEN, threshold=0.5)), return_sequences=True)(inputs)
    out = ds.LeakyReadout(CLASSES, beta=0.8)(h)
    model = keras.Model(inputs, out)
    model.compile(
        keras.optimizers.Adam(learning_rate),
        ds.MaxOverTimeCrossEntropy(),
        metrics=[ds.TimeReducedAccuracy("max", name="acc")],
        **compile_kwargs(),
    )
    return model


def train(seed, x, y, epochs=2, strategy=None):
    """Seed, build, compile and fit; with `strategy`, build/compile/fit inside its scope."""
    compat.set_random_seed(seed)
    if strategy is None:
        model = build_model()
        initial = [w.copy() for w in model.get_weights()]
        history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0).history
    else:
        with strategy.scope():
            model = build_model()
            initial = [w.copy() for w in model.get_weights()]
            history = model.fit(x, y, batch_size=8, epochs=epochs, verbose=0).history
    return model, initial, history


@pytest.fixture(scope="module")
def seed0_runs():
    x, y = random_spikes()
    return [train(0, x, y) for _ in range(2)]


def test_same_seed_same_training_result(seed0_runs):
    (model_a, init_a, hist_a), (model_b, init_b, hist_b) = seed0_runs
    for a, b in zip(init_a, init_b):
        np.testing.assert_array_equal(a, b)
    weights_a, weights_b = model_a.get_weights(), model_b.get_weights()
    assert len(weights_a) == len(weights_b) == 4  # block kernel, bias; readout kernel, bias
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    assert hist_a == hist_b
    assert len(hist_a["loss"]) == 2 and all(np.isfinite(hist_a["loss"]))
    # training did change the weights
    assert any(not np.array_equal(w, w0) for w, w0 in zip(weights_a, init_a))


def test_different_seed_different_weights(seed0_runs):
    (model_a, init_a, hist_a), _ = seed0_runs
    x, y = random_spikes()
    model_c, init_c, hist_c = train(1, x, y)
    assert not np.array_equal(init_a[0], init_c[0])
    for a, c in zip(model_a.get_weights(), model_c.get_weights()):
        if a.size > 1 and np.any(a != 0):
            assert not np.array_equal(a, c)
    assert hist_a["loss"] != hist_c["loss"]


def test_learns_an_easy_separable_task():
    x, y = separable_spikes()
    compat.set_random_seed(0)
    model = build_model(learning_rate=0.05)
    before = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    after = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert after["loss"] < 0.2 * before["loss"]
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert after["acc"] >= 0.95
    # the accuracy metric agrees with NumPy on the model's outputs
    predicted = model(x).numpy().max(axis=1).argmax(-1)
    assert after["acc"] == pytest.approx(np.mean(predicted == y))


def test_fit_inside_default_strategy_scope(seed0_runs):
    strategy = tf.distribute.get_strategy()
    x, y = random_spikes()
    model, initial, history = train(0, x, y, strategy=strategy)
    tf_variables = [v.value if KERAS_3 else v for v in model.weights]  # Keras 3 wraps a tf.Variable
    assert all(strategy.extended.variable_created_in_scope(v) for v in tf_variables)
    assert all(np.isfinite(history["loss"])) and len(history["loss"]) == 2
    assert any(not np.array_equal(w, w0) for w, w0 in zip(model.get_weights(), initial))
    # the default strategy is a no-op: same result as the same seed outside any scope
    reference, _, reference_history = seed0_runs[0]
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert history == reference_history
