"""Step functions against NumPy references written independently here."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from dense_snns import neurons, surrogates

SPIKE = surrogates.Surrogate("superspike")


def run_steps(step, state, params, currents):
    spikes, states = [], []
    for current in currents:
        s, state = step(tf.constant(current), state, params)
        spikes.append(s.numpy())
        states.append([x.numpy() for x in state])
    return np.array(spikes), states


def np_reset(v, s, thr, mode):
    if mode == "subtract":
        return v - thr * s
    if mode == "zero":
        return np.where(s > 0, 0.0, v)
    return v


@pytest.mark.parametrize("u_thresh,reset_val", [(0.5, None), (0.2, 0.7), (0.0, 0.0)])
def test_lif_neuron_matches_numpy(rng, u_thresh, reset_val):
    alpha, beta, gamma = 0.8, 0.7, 0.9
    reset = u_thresh if reset_val is None else reset_val
    currents = rng.normal(0.6, 1.0, size=(12, 3, 5)).astype(np.float32)
    params = neurons.LIFNeuronParams(alpha, beta, gamma, u_thresh, reset, True, SPIKE, tf.identity)
    zeros = tf.zeros([3, 5])
    spikes, states = run_steps(neurons.lif_neuron_step, neurons.LIFNeuronState(zeros, zeros), params, currents)

    u = np.zeros((3, 5))
    v = np.zeros((3, 5))
    for t, current in enumerate(currents):
        u_new = alpha * u + (1 - alpha) * (current + v)
        v_new = beta * v + (1 - beta) * gamma * u
        s = (u_new - v_new - u_thresh > 0).astype(np.float64)
        u, v = u_new - reset * s, v_new
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t][0], u, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(states[t][1], v, rtol=1e-5, atol=1e-6)
    assert 0 < spikes.sum() < spikes.size  # the test exercises both branches


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_lif_matches_numpy(rng, reset):
    beta, thr = 0.85, 1.0
    currents = rng.normal(0.4, 0.8, size=(15, 4, 6)).astype(np.float32)
    params = neurons.LIFParams(beta, thr, reset, True, SPIKE)
    spikes, states = run_steps(neurons.lif_step, neurons.LIFState(tf.zeros([4, 6])), params, currents)
    v = np.zeros((4, 6))
    for t, current in enumerate(currents):
        v = beta * v + current
        s = (v > thr).astype(np.float64)
        v = np_reset(v, s, thr, reset)
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t][0], v, rtol=1e-5, atol=1e-5)
    assert 0 < spikes.sum() < spikes.size


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_alif_matches_numpy(rng, reset):
    beta, rho, thr, adapt = 0.9, 0.95, 1.0, 1.5
    currents = rng.normal(0.5, 0.8, size=(20, 2, 7)).astype(np.float32)
    params = neurons.ALIFParams(beta, rho, thr, adapt, reset, True, SPIKE)
    zeros = tf.zeros([2, 7])
    spikes, states = run_steps(neurons.alif_step, neurons.ALIFState(zeros, zeros), params, currents)
    v = np.zeros((2, 7))
    a = np.zeros((2, 7))
    for t, current in enumerate(currents):
        v = beta * v + current
        s = (v > thr + adapt * a).astype(np.float64)
        v = np_reset(v, s, thr, reset)
        a = rho * a + (1 - rho) * s
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t][0], v, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(states[t][1], a, rtol=1e-5, atol=1e-6)
    assert states[-1][1].max() > 0  # adaptation was exercised


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_cuba_lif_matches_numpy(rng, reset):
    alpha, beta, thr = 0.7, 0.9, 1.0
    currents = rng.normal(0.2, 0.6, size=(15, 3, 4)).astype(np.float32)
    params = neurons.CubaLIFParams(alpha, beta, thr, reset, True, SPIKE)
    zeros = tf.zeros([3, 4])
    spikes, states = run_steps(neurons.cuba_lif_step, neurons.CubaLIFState(zeros, zeros), params, currents)
    i = np.zeros((3, 4))
    v = np.zeros((3, 4))
    for t, current in enumerate(currents):
        i = alpha * i + current
        v = beta * v + i
        s = (v > thr).astype(np.float64)
        v = np_reset(v, s, thr, reset)
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t][0], i, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(states[t][1], v, rtol=1e-5, atol=1e-5)
    assert 0 < spikes.sum() < spikes.size


def test_leaky_integrator_matches_numpy(rng):
    beta = 0.8
    currents = rng.normal(size=(10, 2, 3)).astype(np.float32)
    outputs, _ = run_steps(
        neurons.leaky_integrator_step,
        neurons.LeakyIntegratorState(tf.zeros([2, 3])),
        neurons.LeakyIntegratorParams(beta),
        currents,
    )
    v = np.zeros((2, 3))
    for t, current in enumerate(currents):
        v = beta * v + current
        np.testing.assert_allclose(outputs[t], v, rtol=1e-5, atol=1e-6)


def test_per_neuron_parameters_broadcast(rng):
    betas = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    thresholds = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    params = neurons.LIFParams(tf.constant(betas), tf.constant(thresholds), "subtract", True, SPIKE)
    current = tf.constant(np.full((2, 3), 0.8, dtype=np.float32))
    s, state = neurons.lif_step(current, neurons.LIFState(tf.ones([2, 3])), params)
    v = betas + 0.8
    np.testing.assert_array_equal(s.numpy(), np.broadcast_to((v > thresholds).astype(np.float32), (2, 3)))


@pytest.mark.parametrize("stop_reset_grad", [True, False])
def test_stop_reset_grad_controls_reset_gradient(stop_reset_grad):
    # One neuron above threshold: dV'/dI = 1 - thr * surrogate'(v - thr) * (0 if stopped else 1)
    params = neurons.LIFParams(0.5, 1.0, "subtract", stop_reset_grad, SPIKE)
    current = tf.constant([[1.05]])
    with tf.GradientTape() as tape:
        tape.watch(current)
        _, state = neurons.lif_step(current, neurons.LIFState(tf.zeros([1, 1])), params)
    grad = tape.gradient(state.v, current).numpy()[0, 0]
    sg = 1.0 / (10 * 0.05 + 1) ** 2
    expected = 1.0 if stop_reset_grad else 1.0 - sg
    assert grad == pytest.approx(expected, rel=1e-5)


def test_unknown_reset_mode_is_rejected():
    with pytest.raises(ValueError, match="reset"):
        neurons.apply_reset(tf.zeros([1]), tf.zeros([1]), 1.0, "bounce", True)


@settings(max_examples=25, deadline=None)
@given(
    beta=st.floats(0.05, 0.95),
    thr=st.floats(0.1, 2.0),
    batch=st.integers(1, 4),
    units=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_lif_subtract_reset_never_leaves_membrane_above_threshold_plus_input(beta, thr, batch, units, seed):
    # Property: with subtract reset, V after the step equals beta V + I - thr * S exactly.
    r = np.random.default_rng(seed)
    v0 = r.normal(size=(batch, units)).astype(np.float32)
    current = r.normal(size=(batch, units)).astype(np.float32)
    params = neurons.LIFParams(beta, thr, "subtract", True, SPIKE)
    s, state = neurons.lif_step(tf.constant(current), neurons.LIFState(tf.constant(v0)), params)
    pre = beta * v0.astype(np.float64) + current
    np.testing.assert_array_equal(s.numpy(), (pre > thr).astype(np.float32))
    np.testing.assert_allclose(state.v.numpy(), pre - thr * s.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_resonate_and_fire_matches_numpy(rng, reset):
    beta, omega, thr = 0.9, 0.4, 0.8
    currents = rng.normal(0.3, 0.6, size=(25, 3, 4)).astype(np.float32)
    params = neurons.ResonateAndFireParams(beta, omega, thr, reset, True, SPIKE)
    zeros = tf.zeros([3, 4])
    spikes, states = run_steps(
        neurons.resonate_and_fire_step, neurons.ResonateAndFireState(zeros, zeros), params, currents
    )
    v = np.zeros((3, 4))
    w = np.zeros((3, 4))
    for t, current in enumerate(currents):
        v, w = beta * (np.cos(omega) * v - np.sin(omega) * w) + current, beta * (np.sin(omega) * v + np.cos(omega) * w)
        s = (v > thr).astype(np.float64)
        v = np_reset(v, s, thr, reset)
        np.testing.assert_array_equal(spikes[t], s)
        np.testing.assert_allclose(states[t][0], v, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(states[t][1], w, rtol=1e-5, atol=1e-5)
    assert 0 < spikes.sum() < spikes.size


def test_resonate_and_fire_without_rotation_is_the_lif_neuron(rng):
    currents = rng.normal(0.4, 0.7, size=(15, 2, 5)).astype(np.float32)
    zeros = tf.zeros([2, 5])
    rf, _ = run_steps(
        neurons.resonate_and_fire_step,
        neurons.ResonateAndFireState(zeros, zeros),
        neurons.ResonateAndFireParams(0.85, 0.0, 1.0, "subtract", True, SPIKE),
        currents,
    )
    lif, _ = run_steps(
        neurons.lif_step, neurons.LIFState(zeros), neurons.LIFParams(0.85, 1.0, "subtract", True, SPIKE), currents
    )
    np.testing.assert_array_equal(rf, lif)


def test_resonate_and_fire_resonates():
    """Input pulses at the resonance period drive it to spike; the same pulses at half that
    period (off resonance) do not: the property a LIF neuron lacks."""
    omega = 2 * np.pi / 8  # period 8 steps
    params = neurons.ResonateAndFireParams(0.98, omega, 1.0, "subtract", True, SPIKE)

    def spikes_for(period):
        currents = np.zeros((64, 1, 1), np.float32)
        currents[::period] = 0.3
        zeros = tf.zeros([1, 1])
        out, _ = run_steps(neurons.resonate_and_fire_step, neurons.ResonateAndFireState(zeros, zeros), params, currents)
        return out.sum()

    assert spikes_for(8) > 0 and spikes_for(4) == 0
