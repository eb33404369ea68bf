"""Event-driven input products of the dense layers: the event path equals the dense path
(spikes identical, every gradient within float32 round-off, the input's included) for spike,
graded and real-valued inputs; "auto" takes it for wide layers on sparse inputs only; bad
settings are errors that say why."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

import dense_snns as ds
from dense_snns import compat, input_products, keras
from dense_snns.implementation import ImplementationError
from dense_snns.ops import events as event_ops

pytestmark = pytest.mark.skipif(not event_ops.op_available(), reason=f"C++ ops unavailable: {event_ops.load_error()}")

LIF = {"class_name": "lif", "config": {"beta": 0.9, "threshold": 0.4}}


def pair(layer_class, **kwargs):
    """The same layer with the dense and with the event product, equal weights."""
    dense = layer_class(input_sparsity="dense", **kwargs)
    event = layer_class(input_sparsity="events", **kwargs)
    return dense, event


def outputs_and_gradients(layer, x, mask=None):
    xs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = layer(xs, mask=mask)
        loss = tf.reduce_sum(y * tf.cos(tf.range(y.shape[-1], dtype=y.dtype)))
    return y.numpy(), [g.numpy() for g in tape.gradient(loss, [xs] + layer.trainable_variables)]


def inputs(rng, kind, shape, activity):
    active = rng.random(shape) < activity
    if kind == "spikes":
        return active.astype(np.float32)
    if kind == "graded":
        return (active * rng.integers(1, 4, shape)).astype(np.float32)
    return np.where(active, rng.normal(size=shape), 0).astype(np.float32)


@settings(max_examples=12, deadline=None, database=None)
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 12),
    features=st.integers(1, 40),
    units=st.integers(1, 24),
    activity=st.floats(0.0, 0.6),
    kind=st.sampled_from(["spikes", "graded", "real"]),
    recurrent=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_event_path_equals_the_dense_path(batch, steps, features, units, activity, kind, recurrent, masked, seed):
    rng = np.random.default_rng(seed)
    x = inputs(rng, kind, (batch, steps, features), activity)
    mask = tf.constant(rng.random((batch, steps)) < 0.8) if masked else None
    init = keras.initializers.RandomNormal(0.3, 0.7, seed=seed)
    dense, event = pair(ds.SNNDense, units=units, neuron=LIF, self_recurrent=recurrent, kernel_initializer=init)
    dense.build(x.shape)
    event.build(x.shape)
    event.set_weights(dense.get_weights())
    want_spikes, want_grads = outputs_and_gradients(dense, x, mask)
    got_spikes, got_grads = outputs_and_gradients(event, x, mask)
    np.testing.assert_array_equal(got_spikes, want_spikes)
    for got, want in zip(got_grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_the_readout_takes_the_event_path_too(rng):
    x = inputs(rng, "spikes", (2, 15, 50), 0.1)
    dense, event = pair(ds.LeakyReadout, units=6, beta=0.8)
    dense.build(x.shape)
    event.build(x.shape)
    event.set_weights(dense.get_weights())
    (want, want_grads), (got, got_grads) = outputs_and_gradients(dense, x), outputs_and_gradients(event, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "units, kind, activity, expected",
    [(256, "spikes", 0.02, True), (256, "spikes", 0.5, False), (256, "real", 1.0, False), (20, "spikes", 0.02, False)],
)
def test_auto_takes_the_event_product_for_wide_layers_on_sparse_inputs(
    units, kind, activity, expected, rng, monkeypatch
):
    calls = []
    product = event_ops.event_matmul
    monkeypatch.setattr(event_ops, "event_matmul", lambda x, k: calls.append(1) or product(x, k))
    layer = ds.SNNDense(units, neuron=LIF)
    x = inputs(rng, kind, (4, 50, 64), activity)
    y = layer(x)  # eagerly, tf.cond runs the chosen branch only
    assert bool(calls) == expected
    reference = ds.SNNDense(units, neuron=LIF, input_sparsity="dense")
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    np.testing.assert_array_equal(y.numpy(), reference(x).numpy())
    assert (input_products.activity_threshold(units) is not None) == (units >= input_products.min_units)


def test_auto_inside_a_compiled_model_trains_like_the_dense_path(rng):
    x = inputs(rng, "spikes", (8, 20, 64), 0.05)
    labels = rng.integers(0, 3, 8)
    results = []
    for mode in ("auto", "dense"):
        compat.set_random_seed(0)
        inp = keras.Input((None, 64))
        h = ds.SNNDense(160, neuron=LIF, input_sparsity=mode)(inp)
        model = keras.Model(inp, ds.LeakyReadout(3, input_sparsity=mode)(h))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=ds.losses.MaxOverTimeCrossEntropy())
        model.fit(x, labels, epochs=2, batch_size=4, shuffle=False, verbose=0)
        results.append([w.copy() for w in model.get_weights()])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_input_sparsity_is_saved_and_checked(tmp_path):
    layer = ds.SNNDense(5, input_sparsity="events")
    assert ds.SNNDense.from_config(layer.get_config()).input_sparsity == "events"
    assert ds.LeakyReadout(2).get_config()["input_sparsity"] == "auto"
    with pytest.raises(ValueError, match=r"input_sparsity must be one of \['auto', 'dense', 'events'\], got 'sparse'"):
        ds.SNNDense(5, input_sparsity="sparse")
    with pytest.raises(ValueError, match=r"input_sparsity='events' runs the C\+\+ event kernels.*'compiled'"):
        ds.SNNDense(5, input_sparsity="events", implementation="compiled")


def test_events_under_xla_is_an_error_that_says_why():
    layer = ds.SNNDense(5, neuron=LIF, input_sparsity="events", name="ev")
    run = tf.function(lambda x: layer(x), jit_compile=True)
    with pytest.raises(ImplementationError, match=r"input_sparsity='events' cannot run SNNDense 'ev': .*XLA"):
        run(tf.zeros([1, 3, 4]))
