"""Neuron models as pure step functions: the only place neuron math is written.

Every model is ``step(current, state, params) -> (spikes, new_state)`` where `current` is the
synaptic input I[t] of shape [batch, units], `state` a NamedTuple of [batch, units] tensors and
`params` a NamedTuple of scalars or [units] tensors (per-neuron values broadcast). Cells,
fused layers, sparse blocks, graph nodes and streaming runners all call these functions.

Conventions shared by all models:
- a spike is emitted when the membrane exceeds its threshold: S = H(U - threshold), see
  `dense_snns.surrogates` for H and its surrogate derivative;
- the reset acts in the same step as the spike; with ``stop_reset_grad`` the spike in the
  reset term is wrapped in `tf.stop_gradient` (the usual choice for surrogate training);
- reset modes of the single-state models: ``"subtract"`` (U -= threshold * S),
  ``"zero"`` (U *= 1 - S), ``"none"``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Tuple

import tensorflow as tf

RESET_MODES = ("subtract", "zero", "none")


def _reset_spikes(spikes: tf.Tensor, stop_reset_grad: bool) -> tf.Tensor:
    return tf.stop_gradient(spikes) if stop_reset_grad else spikes


def apply_reset(u: tf.Tensor, spikes: tf.Tensor, threshold, reset: str, stop_reset_grad: bool) -> tf.Tensor:
    """Membrane after the reset of the spikes of this step ([batch, units])."""
    s = _reset_spikes(spikes, stop_reset_grad)
    if reset == "subtract":
        return u - threshold * s
    if reset == "zero":
        return u * (1.0 - s)
    if reset == "none":
        return u
    raise ValueError(f"reset must be one of {RESET_MODES}, got reset={reset!r}")


# --- the seed's two-state model --------------------------------------------------------


class LIFNeuronState(NamedTuple):
    u: Any  # membrane U, [batch, units]
    v: Any  # slow second state V (dynamic threshold), [batch, units]


class LIFNeuronParams(NamedTuple):
    alpha: Any  # decay of U, in (0, 1)
    beta: Any  # decay of V, in (0, 1)
    gamma: Any  # gain from U to V
    u_thresh: Any  # threshold offset: spike when U - V > u_thresh
    reset_val: Any  # amount subtracted from U at a spike
    stop_reset_grad: bool
    spike_fn: Callable  # Heaviside with surrogate gradient
    state2_fn: Callable  # f applied to V in the U update (identity by default)


def lif_neuron_step(current: tf.Tensor, state: LIFNeuronState, p: LIFNeuronParams) -> Tuple[tf.Tensor, LIFNeuronState]:
    """One step of the seed's two-state LIF neuron.

    U' = alpha U + (1 - alpha) (I + f(V))
    V' = beta V + (1 - beta) gamma U
    S  = H(U' - V' - u_thresh)
    U' = U' - reset_val * S
    """
    u = p.alpha * state.u + (1.0 - p.alpha) * (current + p.state2_fn(state.v))
    v = p.beta * state.v + (1.0 - p.beta) * p.gamma * state.u
    spikes = p.spike_fn(u - v - p.u_thresh)
    u = u - p.reset_val * _reset_spikes(spikes, p.stop_reset_grad)
    return spikes, LIFNeuronState(u, v)


# --- single-state LIF ------------------------------------------------------------------


class LIFState(NamedTuple):
    v: Any  # membrane, [batch, units]


class LIFParams(NamedTuple):
    beta: Any  # membrane decay, in (0, 1)
    threshold: Any
    reset: str
    stop_reset_grad: bool
    spike_fn: Callable


def lif_step(current: tf.Tensor, state: LIFState, p: LIFParams) -> Tuple[tf.Tensor, LIFState]:
    """One step of the leaky integrate-and-fire neuron.

    V' = beta V + I ;  S = H(V' - threshold) ;  reset V'
    """
    v = p.beta * state.v + current
    spikes = p.spike_fn(v - p.threshold)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, LIFState(v)


# --- adaptive-threshold LIF (LSNN / e-prop) ---------------------------------------------


class ALIFState(NamedTuple):
    v: Any  # membrane
    a: Any  # threshold adaptation variable


class ALIFParams(NamedTuple):
    beta: Any  # membrane decay, in (0, 1)
    rho: Any  # adaptation decay, in (0, 1)
    threshold: Any  # baseline threshold
    adaptation: Any  # threshold increase per unit of `a` (beta in the LSNN paper)
    reset: str
    stop_reset_grad: bool
    spike_fn: Callable


def alif_step(current: tf.Tensor, state: ALIFState, p: ALIFParams) -> Tuple[tf.Tensor, ALIFState]:
    """One step of the adaptive LIF neuron (Bellec et al. 2018, 2020).

    V' = beta V + I
    A  = threshold + adaptation * a       effective threshold
    S  = H(V' - A)
    reset V' by the baseline threshold (subtract) or to zero
    a' = rho a + (1 - rho) S
    """
    v = p.beta * state.v + current
    effective_threshold = p.threshold + p.adaptation * state.a
    spikes = p.spike_fn(v - effective_threshold)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    a = p.rho * state.a + (1.0 - p.rho) * spikes
    return spikes, ALIFState(v, a)


# --- current-based LIF ------------------------------------------------------------------


class CubaLIFState(NamedTuple):
    i: Any  # synaptic current
    v: Any  # membrane


class CubaLIFParams(NamedTuple):
    alpha: Any  # synaptic current decay, in (0, 1)
    beta: Any  # membrane decay, in (0, 1)
    threshold: Any
    reset: str
    stop_reset_grad: bool
    spike_fn: Callable


def cuba_lif_step(current: tf.Tensor, state: CubaLIFState, p: CubaLIFParams) -> Tuple[tf.Tensor, CubaLIFState]:
    """One step of the current-based LIF neuron.

    i' = alpha i + I ;  V' = beta V + i' ;  S = H(V' - threshold) ;  reset V'
    """
    i = p.alpha * state.i + current
    v = p.beta * state.v + i
    spikes = p.spike_fn(v - p.threshold)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, CubaLIFState(i, v)


# --- non-spiking leaky integrator (readout) ----------------------------------------------


class LeakyIntegratorState(NamedTuple):
    v: Any


class LeakyIntegratorParams(NamedTuple):
    beta: Any  # decay, in (0, 1)


def leaky_integrator_step(
    current: tf.Tensor, state: LeakyIntegratorState, p: LeakyIntegratorParams
) -> Tuple[tf.Tensor, LeakyIntegratorState]:
    """One step of a non-spiking leaky integrator: V' = beta V + I; the output is V'."""
    v = p.beta * state.v + current
    return v, LeakyIntegratorState(v)


# --- the SNN block step: neuron step with optional self-recurrent current ----------------


def block_step(step_fn, state_type, current, states, params, recurrent_kernel=None):
    """One step of an SNN block whose feed-forward current is already computed.

    Args:
        step_fn: a neuron step function of this module; `state_type` its state NamedTuple.
        current: feed-forward synaptic current x[t] W + b, [batch, ..., units].
        states: list of the neuron's states, then (if `recurrent_kernel` is given) the
            block's spikes of the previous step.
        params: the neuron's parameter NamedTuple.
        recurrent_kernel: [units, units] weights R of the self-recurrence, or None.
    Returns: (spikes, new states list in the same layout).
    """
    if recurrent_kernel is None:
        spikes, new_state = step_fn(current, state_type(*states), params)
        return spikes, list(new_state)
    neuron_states, prev_spikes = states[:-1], states[-1]
    current = current + tf.matmul(prev_spikes, recurrent_kernel)
    spikes, new_state = step_fn(current, state_type(*neuron_states), params)
    return spikes, list(new_state) + [spikes]
