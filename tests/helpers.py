"""Helpers shared by the tests: inputs, a loss that weights every output differently,
outputs and gradients in one call, comparisons to round-off, config round trips, save/load."""

import numpy as np
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras


def spiking_model_cases():
    """(model name, constructor kwargs) of every registered spiking model with its defaults,
    and once more with every other value of its choices (reset modes)."""
    spiking = [model for model in ds.neurons.MODELS.values() if model.spiking]
    cases = [(model.name, {}) for model in spiking]
    for model in spiking:
        for p in model.params:
            if p.kind == "choice":
                cases += [(model.name, {p.name: value}) for value in p.choices if value != p.default]
    return cases


def spike_raster(rng, shape, p=0.4, dtype=np.float32):
    """A Bernoulli(p) spike raster of `shape` as a tensor."""
    return tf.constant((rng.random(shape) < p).astype(dtype))


def floating_outputs(outputs):
    """The floating tensors of a layer's outputs (a tensor or a list, e.g. sparse spikes
    [ids, values, count]: only the values)."""
    return [t for t in tf.nest.flatten(outputs) if t.dtype.is_floating]


def weighted_loss(outputs):
    """sum_i w_i y_i over every floating output element, with fixed weights cos(i): each
    output gets its own gradient."""
    total = 0.0
    for y in floating_outputs(outputs):
        weights = tf.reshape(tf.cos(tf.range(tf.size(y), dtype=tf.float64) * 0.7), tf.shape(y))
        total += tf.reduce_sum(tf.cast(y, tf.float64) * weights)
    return total


def ramp_loss(outputs):
    """sum of the outputs weighted by 0.5 ... 1.5 along the last axes: every weight positive,
    so gradients do not cancel (tolerances calibrated on it)."""
    weights = np.linspace(0.5, 1.5, int(np.prod(outputs.shape[1:]))).reshape(outputs.shape[1:])
    return tf.reduce_sum(outputs * tf.constant(weights, dtype=outputs.dtype))


def outputs_and_gradients(layer, inputs, weights=None, loss_fn=None, **call_kwargs):
    """[outputs, d loss / d each floating input, d loss / d each weight] of `loss_fn` (default
    `weighted_loss`; weights: `layer.trainable_weights` unless given)."""
    sources = [t for t in tf.nest.flatten(inputs) if t.dtype.is_floating]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        outputs = layer(inputs, **call_kwargs)
        loss = (loss_fn or weighted_loss)(outputs)
    weights = layer.trainable_weights if weights is None else weights  # after the call: built
    return [outputs] + tape.gradient(loss, sources + list(weights), unconnected_gradients=tf.UnconnectedGradients.ZERO)


def assert_close_to_scale(actual, expected, rtol):
    """Equal to round-off relative to the largest magnitude of `expected` (gradients summed in
    another order differ by rounding of their largest terms, not of their own value)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-12)


def assert_same_spikes_and_close_gradients(result, reference, rtol=1e-5):
    """Identical outputs (spikes), then gradients to round-off (`assert_close_to_scale`)."""
    for got, want in zip(tf.nest.flatten(result[0]), tf.nest.flatten(reference[0])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert len(result) == len(reference)
    for got, want in zip(result[1:], reference[1:]):
        assert_close_to_scale(got, want, rtol)


def config_round_trip(obj):
    """`type(obj).from_config(obj.get_config())`, checked to have the same config."""
    clone = type(obj).from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    return clone


def save_and_load(model, path):
    """The model saved to `path` (its suffix picks the format: .keras or .h5; see
    `dense_snns.compat.model_file` for a subclassed model on Keras 2.6) and loaded back (with
    `dense_snns.custom_objects()`, which Keras 2 needs for the cells of RNN layers in .h5
    files)."""
    path = ds.compat.model_file(path, model)
    model.save(path)
    return keras.models.load_model(path, custom_objects=ds.custom_objects())


# -- event files ------------------------------------------------------------------------------
def encode_nmnist(x, y, p, t) -> bytes:
    """The published layout: bits 39-32 x, 31-24 y, 23 polarity, 22-0 time stamp (us)."""
    out = bytearray()
    for xi, yi, pi, ti in zip(x, y, p, t):
        word = (xi << 32) | (yi << 24) | (pi << 23) | ti
        out += word.to_bytes(5, "big")
    return bytes(out)


def write_nmnist_tree(root, per_digit=2):
    rng = np.random.default_rng(0)
    truth = {}
    for split in ("Train", "Test"):
        for digit in (0, 1, 2):
            folder = root / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(per_digit):
                n = 20
                sample = dict(
                    x=rng.integers(0, 34, n).tolist(),
                    y=rng.integers(0, 34, n).tolist(),
                    p=rng.integers(0, 2, n).tolist(),
                    t=np.sort(rng.integers(0, 300_000, n)).tolist(),
                )
                path = folder / f"{k:05d}.bin"
                path.write_bytes(encode_nmnist(**sample))
                truth[str(path)] = (digit, sample)
    return truth


# -- examples -----------------------------------------------------------------------------------
def load_example(name: str):
    """The module of ``examples/<name>.py``, loaded from its file (examples are scripts)."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelled_rasters(rng, samples: int, steps: int, features: int, classes: int = 2):
    """(spike rasters float32 [samples, steps, features], labels int32 [samples]): class c
    fires at 35% on the features f with f % classes == c and at 5% elsewhere, so that a
    few epochs separate the classes."""
    labels = rng.integers(0, classes, samples)
    rates = 0.05 + 0.3 * (np.arange(features)[None, :] % classes == labels[:, None])
    x = (rng.random((samples, steps, features)) < rates[:, None, :]).astype(np.float32)
    return x, labels.astype(np.int32)
