"""Resonate-and-fire neuron: a damped oscillator whose real part is the membrane."""

from __future__ import annotations

import tensorflow as tf

from ._common import RESET_MODES, apply_reset
from ._model import NeuronModel, choice, decay, real, threshold


def update(current, state, p):
    omega = tf.convert_to_tensor(p.omega, dtype=current.dtype)
    cos, sin = tf.cos(omega), tf.sin(omega)
    v = p.beta * (cos * state.v - sin * state.w) + current
    w = p.beta * (sin * state.v + cos * state.w)
    x = v - p.threshold
    spikes = p.spike_fn(x)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, (v, w), x


MODEL = NeuronModel(
    name="resonate_and_fire",
    class_name="ResonateAndFire",
    update=update,
    states=[("v", "membrane potential, the real part of z = v + i w"), ("w", "imaginary part")],
    params=[
        decay("beta", 0.9, "decay of |z| per step"),
        real("omega", 0.3, "rotation per step in radians: the resonance frequency is omega / (2 pi) per step"),
        threshold("threshold", 1.0, "firing threshold of the real part"),
        choice("reset", RESET_MODES, "subtract", "reset of the real part after a spike"),
    ],
    summary="Resonate-and-fire neuron: a damped oscillator z = v + i w driven by the input; spikes on v.",
    equations="""
z[t] = beta exp(i omega) z[t-1] + I[t],  z = v + i w, i.e.
  v[t] = beta (cos(omega) v[t-1] - sin(omega) w[t-1]) + I[t]
  w[t] = beta (sin(omega) v[t-1] + cos(omega) w[t-1])
S[t] = H(v[t] - threshold)
v[t] = v[t] - threshold S[t]   (reset "subtract"; "zero", "none")
With omega = 0 and w = 0 this is the LIF neuron.
""",
    references=["Izhikevich 2001, Resonate-and-fire neurons, Neural Networks 14"],
)

ResonateAndFireState = MODEL.State
ResonateAndFireParams = MODEL.Params
resonate_and_fire_step = MODEL.step
