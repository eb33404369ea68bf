"""Surrogate spike functions: Heaviside forward, closed-form derivatives backward."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dense_snns import surrogates
from dense_snns.surrogates import Surrogate

X = np.linspace(-2.0, 2.0, 81).astype(np.float32)


def closed_form(name, x, k):
    x = x.astype(np.float64)
    if name in ("superspike", "fast_sigmoid"):
        return 1.0 / (k * np.abs(x) + 1.0) ** 2
    if name == "rational":
        return 1.0 / (k * np.abs(x) + 1.0)
    if name == "arctan":
        return 1.0 / (1.0 + (math.pi / 2 * k * x) ** 2)
    if name == "sigmoid":
        sig = 1.0 / (1.0 + np.exp(-k * x))
        return 4.0 * sig * (1.0 - sig)
    if name == "triangle":
        return np.maximum(0.0, 1.0 - k * np.abs(x))
    if name == "boxcar":
        return (np.abs(x) < 0.5 / k).astype(np.float64)
    raise AssertionError(name)


def spikes_and_gradient(fn, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * upstream)
    return y, tape.gradient(loss, x)


@pytest.mark.parametrize("name", surrogates.SURROGATE_NAMES)
@pytest.mark.parametrize("scale", [None, 3.0])
@pytest.mark.parametrize("traced", [False, True])
def test_forward_is_heaviside_and_gradient_is_closed_form(name, scale, traced):
    """Eagerly and in a traced function (where the gradient is registered once per name)."""
    fn = Surrogate(name, scale)
    x = tf.constant(X)
    upstream = tf.constant(np.linspace(0.5, 1.5, X.size).astype(np.float32))
    run = tf.function(spikes_and_gradient) if traced else spikes_and_gradient
    y, grad = run(fn, x, upstream)
    np.testing.assert_array_equal(y.numpy(), (X > 0).astype(np.float32))
    grad = grad.numpy()
    expected = upstream.numpy() * closed_form(name, X, fn.scale)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)  # float32 vs float64 reference
    np.testing.assert_allclose(fn.derivative(x).numpy(), closed_form(name, X, fn.scale), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["superspike", "rational", "arctan", "sigmoid"])
def test_float64_gradient_uses_the_exact_scale(name):
    """A scale that float32 cannot hold (0.3) enters float64 gradients unrounded."""
    fn = Surrogate(name, 0.3)
    x = tf.constant(X.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(fn(x))
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), closed_form(name, X, 0.3), rtol=1e-13)
    np.testing.assert_allclose(fn.derivative(x).numpy(), closed_form(name, X, 0.3), rtol=1e-13)


@pytest.mark.parametrize("name", surrogates.SURROGATE_NAMES)
def test_derivative_peaks_at_one(name):
    assert Surrogate(name).derivative(tf.constant([0.0])).numpy()[0] == pytest.approx(1.0)


def test_compact_support_of_triangle_and_boxcar():
    far = tf.constant([-3.0, -1.01, 1.01, 3.0])
    assert np.all(Surrogate("triangle", 1.0).derivative(far).numpy() == 0)
    assert np.all(Surrogate("boxcar", 1.0).derivative(far).numpy() == 0)


def test_threshold_itself_does_not_spike():
    assert Surrogate()(tf.constant([0.0])).numpy()[0] == 0.0


def test_float16_and_float64_keep_dtype():
    for dtype in (tf.float16, tf.float64):
        x = tf.constant([-0.5, 0.5], dtype=dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = Surrogate("arctan")(x)
        assert y.dtype == dtype
        assert tape.gradient(y, x).dtype == dtype


def test_get_and_config_round_trip():
    fn = surrogates.get({"name": "triangle", "scale": 2.5})
    assert fn == Surrogate("triangle", 2.5)
    assert surrogates.get(fn.get_config()) == fn
    assert surrogates.get("boxcar").scale == 1.0
    assert surrogates.get(None) == Surrogate("superspike", 10.0)
    assert "triangle" in repr(fn)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="name='heavyside'"):
        Surrogate("heavyside")
    with pytest.raises(ValueError, match="spike_func"):
        surrogates.get(3)
    with pytest.raises(ValueError, match="Unknown keys"):
        surrogates.get({"name": "arctan", "width": 2})


@pytest.mark.parametrize("scale", [0, -1.0, "big", True, float("inf"), float("nan")])
def test_bad_scale_is_rejected(scale):
    with pytest.raises(ValueError, match="scale"):
        Surrogate("arctan", scale)


def test_tracing_registers_no_gradient_function():
    """Each new traced function that calls a spike function adds nothing to TensorFlow's
    gradient registry (tf.custom_gradient would, and keep every traced graph alive)."""
    from tensorflow.python.framework import ops

    fn = Surrogate("arctan")
    before = len(ops._gradient_registry.list())
    for _ in range(5):
        tf.function(lambda x: spikes_and_gradient(fn, x, tf.ones_like(x)))(tf.constant(X))
    assert len(ops._gradient_registry.list()) == before


def test_symbolic_gradients_in_a_graph_use_the_surrogate():
    """`tf.gradients` (graph-mode code, as Keras 2 builds it) gets the surrogate too."""
    fn = Surrogate("triangle", 0.8)

    @tf.function
    def gradient(x):
        return tf.gradients(tf.reduce_sum(fn(x)), x)[0]

    np.testing.assert_allclose(gradient(tf.constant(X)).numpy(), closed_form("triangle", X, 0.8), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_heaviside_keeps_nan_and_infinity_as_nan_under_every_compiler(mode):
    # a loop around it, as in the layers: graph optimisers and XLA rewrite such bodies
    def run(x):
        def body(i, total):
            return i + 1, total + surrogates.heaviside(x)

        return tf.while_loop(lambda i, _: i < 2, body, (0, tf.zeros_like(x)))[1]

    fn = {"eager": run, "graph": tf.function(run), "xla": tf.function(run, jit_compile=True)}[mode]
    x = tf.constant([np.nan, np.inf, -np.inf, 0.5, -0.5, 0.0], tf.float32)
    np.testing.assert_array_equal(fn(x).numpy(), [np.nan, np.nan, np.nan, 2.0, 0.0, 0.0])
