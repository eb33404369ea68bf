"""The same checks over every public layer and cell (see registry.py), under Keras 3 and
Keras 2: config round trip, .keras and .h5 save/load with identical outputs, outputs and
gradients against the reference implementation in float32 and float64, masks, mixed
precision."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

import dense_snns
import snns_as_gnn
import sparse_snns
from dense_snns import keras

from helpers import assert_close_to_scale, config_round_trip, floating_outputs, save_and_load, weighted_loss
from registry import CASES

IDS = [case.name for case in CASES]
#: Base classes: not layers a user builds.
BASES = {"NeuronCell", "SNNSequenceLayer", "DenseSequenceLayer"}


def test_every_public_layer_and_cell_is_registered():
    public = set()
    for package in (dense_snns, sparse_snns, snns_as_gnn):
        for name in package.__all__:
            obj = getattr(package, name)
            # Models (the EProp trainer) are not layers to stack; test_eprop.py tests them.
            layer = inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and not issubclass(obj, keras.Model)
            if layer and not issubclass(obj, keras.metrics.Metric) and name not in BASES:  # Keras 2 metrics are layers
                public.add(obj)
    assert public - {case.cls for case in CASES} == set()


def layer_of(case, dtype="float32"):
    return case.make(dtype)


def keras_inputs(inputs):
    """keras.Input(s) of the shapes and dtypes of `inputs` (a tensor or a list)."""
    return [keras.Input(t.shape[1:], dtype=t.dtype.name) for t in inputs] if isinstance(inputs, list) else (
        keras.Input(inputs.shape[1:], dtype=inputs.dtype.name)
    )  # fmt: skip


def model_of(case, rng):
    inputs = case.inputs(rng, "float32")
    model_inputs = keras_inputs(inputs)
    model = keras.Model(model_inputs, case.make("float32")(model_inputs))
    return model, inputs


def assert_same_outputs(a, b, exact):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        if exact or not np.asarray(x).dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_round_trip(case):
    layer = layer_of(case)
    inner = getattr(layer, "cell", None) if isinstance(layer, keras.layers.RNN) else None
    config_round_trip(layer)
    if inner is not None:
        config_round_trip(inner)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_save_load_gives_identical_outputs(case, suffix, tmp_path, rng):
    model, inputs = model_of(case, rng)
    # Weights away from their initial values, so a load that re-initialised them would show.
    for weight in model.weights:
        weight.assign(
            weight + tf.cast(0.01 * np.cos(np.arange(np.prod(weight.shape))).reshape(weight.shape), weight.dtype)
        )
    loaded = save_and_load(model, tmp_path / f"model{suffix}")
    assert_same_outputs(model(inputs), loaded(inputs), exact=True)


def outputs_and_gradients(fn, inputs, weights, canonical):
    sources = [t for t in tf.nest.flatten(inputs) if t.dtype.is_floating]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        outputs = canonical(fn(inputs))
        loss = weighted_loss(outputs)
    grads = tape.gradient(loss, sources + list(weights), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [outputs] + grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_outputs_and_gradients_equal_the_reference(case, dtype, rng):
    if dtype == "float64" and not case.float64:
        pytest.skip(f"{case.name} does not run in float64")
    layer = case.make(dtype)
    inputs = case.inputs(rng, dtype)
    layer(inputs)
    reference, reference_weights = case.reference(layer, inputs)
    assert len(reference_weights) == len(layer.trainable_weights)
    got = outputs_and_gradients(layer, inputs, layer.trainable_weights, case.canonical)
    want = outputs_and_gradients(reference, inputs, reference_weights, lambda outputs: outputs)
    assert got[0].dtype == want[0].dtype == tf.as_dtype(dtype)
    assert_same_outputs(got[0], want[0], case.exact)
    if case.exact:
        spikes = got[0].numpy()
        assert 0 < spikes.sum() < spikes.size, "the case must exercise spiking and silence"
    rtol = case.rtol if dtype == "float32" else 1e-10
    for g, g_ref in zip(got[1:], want[1:]):
        assert_close_to_scale(g, g_ref, rtol)


def truncated(inputs, sample, steps):
    return tf.nest.map_structure(lambda t: t[sample : sample + 1, :steps], inputs)


@pytest.mark.parametrize("case", [c for c in CASES if c.masks], ids=[c.name for c in CASES if c.masks])
def test_a_mask_equals_running_the_valid_steps_only(case, rng):
    layer = case.make("float32")
    inputs = case.inputs(rng, "float32")
    full = inputs_time(inputs)
    lengths = [full, full - 4, 3]
    mask = tf.constant(np.arange(full)[None, :] < np.array(lengths)[:, None])
    masked = case.canonical(layer(inputs, mask=mask)).numpy()
    for sample, steps in enumerate(lengths):
        alone = case.canonical(layer(truncated(inputs, sample, steps))).numpy()[0]
        np.testing.assert_allclose(masked[sample, :steps], alone, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(masked[sample, steps:], 0.0)  # padded steps emit nothing


def inputs_time(inputs):
    return int(tf.nest.flatten(inputs)[0].shape[1])


MIXED = [c for c in CASES if c.mixed]


@pytest.mark.parametrize("case", MIXED, ids=[c.name for c in MIXED])
def test_mixed_precision(case, rng):
    layer = case.make("mixed_float16")
    inputs = case.inputs(rng, "float16")
    with tf.GradientTape() as tape:
        outputs = layer(inputs)
        loss = weighted_loss(outputs)
    assert all(y.dtype == tf.float16 for y in floating_outputs(outputs))
    assert all(w.dtype == tf.float32 for w in layer.weights if w.trainable)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    float32 = case.make("float32")
    float32(tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, inputs))
    float32.set_weights(layer.get_weights())
    reference = float32(tf.nest.map_structure(lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, inputs))
    agree = np.isclose(case.canonical(outputs).numpy().astype(np.float32), case.canonical(reference).numpy(), atol=2e-2)
    assert agree.mean() > 0.98  # float16 matmuls move a few neurons across their threshold


# input_sparsity="events" needs the C++ kernels, so "compiled" and "reference" refuse it
# (tests/dense_snns/test_input_products.py); the events cases run "auto" everywhere else.
WITH_IMPLEMENTATIONS = [
    c
    for c in CASES
    if "implementation" in c.make("float32").get_config()
    and c.make("float32").get_config().get("input_sparsity") != "events"
]


@pytest.mark.parametrize("case", WITH_IMPLEMENTATIONS, ids=[c.name for c in WITH_IMPLEMENTATIONS])
def test_every_implementation_equals_the_reference(case, rng):
    """Each value of `implementation` that can run the layer gives the reference's outputs and
    gradients; one that cannot says why (an ImplementationError)."""
    layer = case.make("float32")
    inputs = case.inputs(rng, "float32")
    layer(inputs)
    reference, reference_weights = case.reference(layer, inputs)
    want = outputs_and_gradients(reference, inputs, reference_weights, lambda outputs: outputs)
    ran = []
    for implementation in dense_snns.IMPLEMENTATIONS:
        config = dict(layer.get_config(), implementation=implementation, name=f"as_{implementation}")
        try:  # an ImplementationError when built or called
            other = type(layer)(**config)
            other(inputs)
        except dense_snns.ImplementationError as err:
            assert implementation == "kernel" and "cannot run" in str(err)
            continue
        other.set_weights(layer.get_weights())
        got = outputs_and_gradients(other, inputs, other.trainable_weights, case.canonical)
        assert_same_outputs(got[0], want[0], case.exact)
        for g, g_ref in zip(got[1:], want[1:]):
            assert_close_to_scale(g, g_ref, case.rtol)
        ran.append(implementation)
    assert {"auto", "compiled", "reference"} <= set(ran)


def with_a_nan(case, inputs, value=np.nan):
    """`inputs` with one NaN (or `value`) in sample 0 at step 2: in the raster or current, in
    the values of sparse spikes (whose count is raised to take it), or in packed spikes."""
    if isinstance(inputs, list):  # [ids, values, count]
        ids, values, count = (t.numpy().copy() for t in inputs)
        values[0, 2, 0] = value
        count[0, 2] = max(count[0, 2], 1)
        return [tf.constant(ids), tf.constant(values), tf.constant(count)]
    x = inputs.numpy().copy()
    if case.name == "sparse_snn_block":  # packed [ids | values | count]
        k = (x.shape[-1] - 1) // 2
        x[0, 2, k] = value
        x[0, 2, -1] = max(x[0, 2, -1], 1)
    else:
        x[(0, 2) + (0,) * (x.ndim - 2)] = value
    return tf.constant(x)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_nan_input_surfaces_in_the_outputs_and_the_loss(case, value, rng):
    """A NaN (or an infinity) reaching a neuron makes its outputs NaN (never "no spike", never a
    silent saturation), so the loss is NaN and `keras.callbacks.TerminateOnNaN` stops
    training; the other samples are untouched."""
    layer = case.make("float32")
    inputs = case.inputs(rng, "float32")
    clean = case.canonical(layer(inputs)).numpy()
    outputs = case.canonical(layer(with_a_nan(case, inputs, value))).numpy()
    assert not np.isfinite(outputs[0]).all(), "the NaN disappeared"
    np.testing.assert_array_equal(outputs[1:], clean[1:])
    assert not np.isfinite(float(weighted_loss(tf.constant(outputs))))
